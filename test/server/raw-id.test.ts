import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { scanRawIds } from '../../src/server/raw-id.js';

function objectId(text: string): string | undefined {
  JSON.parse(text); // the scanner's contract: only valid JSON
  const scan = scanRawIds(text);
  assert.equal(scan.kind, 'object');
  return scan.kind === 'object' ? scan.id : undefined;
}

describe('scanRawIds', () => {
  test('finds numbers as written, beyond double precision', () => {
    assert.equal(
      objectId('{"jsonrpc":"2.0","id":340282366920938463463374607431768211455,"method":"x"}'),
      '340282366920938463463374607431768211455',
    );
    for (const n of ['0', '-0', '1.50', '1e3', '-1E+300', '-12', '0.000001', '1e400']) {
      assert.equal(objectId(`{"id":${n}}`), n);
    }
  });

  test('strings and null keep their source text', () => {
    assert.equal(objectId('{"id":"abc"}'), '"abc"');
    assert.equal(objectId('{"id":"a\\"b\\\\"}'), '"a\\"b\\\\"');
    assert.equal(objectId('{"id":"\\ud83d\\ude00"}'), '"\\ud83d\\ude00"');
    assert.equal(objectId('{"id":null}'), 'null');
    assert.equal(objectId('{"id":""}'), '""');
  });

  test('absent id is undefined; ids nested in other members are not the request id', () => {
    assert.equal(objectId('{"method":"x"}'), undefined);
    assert.equal(objectId('{}'), undefined);
    assert.equal(objectId('{"params":{"id":5},"x":[{"id":6}],"s":"\\"id\\":7"}'), undefined);
    assert.equal(objectId('{"params":{"id":5},"id":8}'), '8');
    assert.equal(objectId('{"ids":1,"id ":2,"Id":3}'), undefined);
  });

  test('escaped key names are decoded like JSON.parse does', () => {
    assert.equal(objectId('{"\\u0069d":42}'), '42');
    assert.equal(objectId('{"\\u0069\\u0064":"x"}'), '"x"');
    assert.equal(objectId('{"i\\u0064":7}'), '7');
    assert.equal(objectId('{"\\"id":7}'), undefined);
  });

  test('duplicate keys: the last one wins, as with JSON.parse', () => {
    assert.equal(objectId('{"id":1,"method":"x","id":2}'), '2');
    assert.equal(objectId('{"id":1,"\\u0069d":"two"}'), '"two"');
  });

  test('whitespace anywhere JSON allows it', () => {
    const text = ' \r\n\t{ \n"id" \t:\r\n 123.0 , "method" : "x" } \n';
    assert.equal(objectId(text), '123.0');
  });

  test('batches: one entry per element, undefined for non-objects and missing ids', () => {
    const text = '[{"id":1},2,{"method":"n"},[{"id":9}],"s",{"id":"x","p":{"id":0}},null,{"id":-0}]';
    JSON.parse(text);
    assert.deepEqual(scanRawIds(text), {
      kind: 'array',
      ids: ['1', undefined, undefined, undefined, undefined, '"x"', undefined, '-0'],
    });
    assert.deepEqual(scanRawIds('[]'), { kind: 'array', ids: [] });
    assert.deepEqual(scanRawIds(' [ ] '), { kind: 'array', ids: [] });
  });

  test('scalars at top level', () => {
    for (const t of ['1', '"x"', 'null', 'true']) assert.deepEqual(scanRawIds(t), { kind: 'other' });
  });

  test('deep nesting does not overflow the stack', () => {
    const deep = `${'['.repeat(50_000)}${']'.repeat(50_000)}`;
    const text = `{"params":${deep},"id":3}`;
    assert.equal(scanRawIds(text).kind, 'object');
    assert.deepEqual(scanRawIds(text), { kind: 'object', id: '3' });
  });

  test('refuses text that is not JSON rather than guessing', () => {
    assert.throws(() => scanRawIds('{"id":1'));
    assert.throws(() => scanRawIds('{"id":"x'));
    assert.throws(() => scanRawIds('{"id" 1}'));
  });

  test('agrees with JSON.parse on random requests', () => {
    // A small deterministic PRNG so a failure reproduces.
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const ws = (): string => [' ', '', '\n', '\t', '\r\n', '  '][rand(6)]!;
    const strings = ['"id"', '"\\u0069d"', '"x\\"y"', '"\\\\"', '"é€😀"', '"\\n\\t"', '"[{"', '""'];
    const scalar = (): string =>
      [
        () => String(rand(1000) - 500),
        () => `${rand(100)}.${rand(100)}e${rand(10)}`,
        () => strings[rand(strings.length)]!,
        () => ['true', 'false', 'null'][rand(3)]!,
        () => '340282366920938463463374607431768211455',
      ][rand(5)]!();
    const value = (depth: number): string => {
      if (depth > 3 || rand(3) === 0) return scalar();
      const n = rand(4);
      if (rand(2) === 0) {
        return `[${ws()}${Array.from({ length: n }, () => value(depth + 1)).join(`${ws()},${ws()}`)}${ws()}]`;
      }
      return `{${ws()}${Array.from({ length: n }, () => `${key()}${ws()}:${ws()}${value(depth + 1)}`).join(`${ws()},${ws()}`)}${ws()}}`;
    };
    const key = (): string => ['"id"', '"\\u0069d"', '"method"', '"params"', '"i\\u0064"', '"idx"'][rand(6)]!;

    for (let i = 0; i < 3000; i++) {
      const n = 1 + rand(5);
      const members = Array.from({ length: n }, () => `${ws()}${key()}${ws()}:${ws()}${value(1)}${ws()}`);
      const text = `${ws()}{${members.join(',')}}${ws()}`;
      const parsed = JSON.parse(text) as Record<string, unknown>;
      const raw = objectId(text);
      if (Object.hasOwn(parsed, 'id')) {
        assert.ok(raw !== undefined, text);
        assert.deepEqual(JSON.parse(raw), parsed.id, text);
      } else assert.equal(raw, undefined, text);
    }
  });
});
