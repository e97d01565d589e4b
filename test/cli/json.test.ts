import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseJson, stringifyJson } from '../../src/cli/client/json.js';

describe('parseJson', () => {
  it('agrees with JSON.parse on ordinary documents', () => {
    for (const text of [
      '{"a":1,"b":[true,false,null],"c":"x\\n\\u00e9\\"","d":{"e":-1.5e3}}',
      ' [ ] ',
      '{}',
      '"str"',
      '0',
      '-0.25',
      '[{"__proto__":1}]',
    ]) {
      assert.deepEqual(parseJson(text), JSON.parse(text), text);
    }
  });

  it('keeps integers beyond 2^53 exact as bigints', () => {
    const v = parseJson('{"id":340282366920938463463374607431768211455,"n":9007199254740991}') as Record<
      string,
      unknown
    >;
    assert.equal(v.id, 340282366920938463463374607431768211455n);
    assert.equal(v.n, 9007199254740991);
    assert.equal(parseJson('-9007199254740993'), -9007199254740993n);
  });

  it('keeps a "__proto__" key as own data', () => {
    const v = parseJson('{"__proto__":{"x":1}}') as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(v), Object.prototype);
    assert.deepEqual(Object.keys(v), ['__proto__']);
  });

  it('rejects malformed text', () => {
    for (const bad of ['', '{', '[1,]', '{"a" 1}', '01', '1 2', 'tru', '"abc', '{a:1}', "'x'", '[1]x']) {
      assert.throws(() => parseJson(bad), SyntaxError, bad);
    }
  });
});

describe('stringifyJson', () => {
  it('matches JSON.stringify, compact and indented', () => {
    const v = { a: 1, b: [true, null, 'x"y'], c: {}, d: [], e: { f: -2.5 } };
    assert.equal(stringifyJson(v), JSON.stringify(v));
    assert.equal(stringifyJson(v, 2), JSON.stringify(v, null, 2));
  });

  it('writes bigints as digits and leaves out undefined members', () => {
    assert.equal(
      stringifyJson({ id: 2n ** 70n, skip: undefined, n: 1 }),
      '{"id":1180591620717411303424,"n":1}',
    );
    assert.equal(stringifyJson(parseJson('[12345678901234567890123]')), '[12345678901234567890123]');
  });
});

describe('integer exactness boundary', () => {
  it('keeps integers a double holds exactly as numbers, 2^53 included', () => {
    assert.equal(parseJson('9007199254740992'), 2 ** 53);
    assert.equal(parseJson('9007199254740993'), 9007199254740993n);
    assert.equal(parseJson('18446744073709551616'), 2n ** 64n);
    assert.equal(parseJson('-0'), -0);
  });

  it('writes integral doubles beyond 2^53 with their exact digits', () => {
    assert.equal(stringifyJson(2 ** 64), '18446744073709551616');
    assert.equal(stringifyJson(1e21), '1000000000000000000000');
    assert.equal(stringifyJson(0.5), '0.5');
  });
});
