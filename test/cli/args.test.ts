import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseCallArgs, parseValue, UsageError } from '../../src/cli/client/args.js';
import { stringifyJson } from '../../src/cli/client/json.js';

describe('parseValue', () => {
  it('makes integers numbers, keeping big ones exact', () => {
    assert.equal(parseValue('lun', '0'), 0);
    assert.equal(parseValue('lun', '-5'), -5);
    assert.equal(parseValue('x', '9007199254740991'), 9007199254740991);
    assert.equal(
      parseValue('id', '340282366920938463463374607431768211455'),
      340282366920938463463374607431768211455n,
    );
  });

  it('keeps leading-zero digits, decimals and other text as strings', () => {
    assert.equal(parseValue('x', '007'), '007');
    assert.equal(parseValue('x', '1.5'), '1.5');
    assert.equal(parseValue('x', '10G'), '10G');
    assert.equal(parseValue('x', 'iqn.2003-01.org.example:host'), 'iqn.2003-01.org.example:host');
    assert.equal(parseValue('x', ''), '');
    assert.equal(parseValue('x', 'True'), 'True');
  });

  it('maps true/false/null', () => {
    assert.equal(parseValue('x', 'true'), true);
    assert.equal(parseValue('x', 'false'), false);
    assert.equal(parseValue('x', 'null'), null);
  });

  it('parses JSON-looking values and refuses broken ones', () => {
    assert.deepEqual(parseValue('x', '{"a":[1,2]}'), { a: [1, 2] });
    assert.deepEqual(parseValue('x', '[]'), []);
    assert.throws(() => parseValue('x', '{"a":'), UsageError);
  });

  it('reads human sizes for the size key only', () => {
    assert.equal(parseValue('size', '10M'), 10 * 2 ** 20);
    assert.equal(parseValue('size', '1.5G'), 1610612736);
    assert.equal(parseValue('size', '10GB'), 10_000_000_000);
    assert.equal(parseValue('size', '4096'), 4096);
    assert.equal(stringifyJson(parseValue('size', '16P')), (2n ** 54n).toString());
    assert.equal(parseValue('size', '9007199254740993'), 9007199254740993n);
    assert.equal(parseValue('size', 'big'), 'big');
    assert.equal(parseValue('name', '10M'), '10M');
  });
});

describe('parseCallArgs', () => {
  it('builds a params object from key=value and key:=JSON', () => {
    const p = parseCallArgs([
      'pool=pool1',
      'name=v1',
      'size=10M',
      'lun=3',
      'x:="007"',
      'opts:={"a":null}',
      'eq=a=b',
    ]);
    assert.deepEqual(p, {
      pool: 'pool1',
      name: 'v1',
      size: 10485760,
      lun: 3,
      x: '007',
      opts: { a: null },
      eq: 'a=b',
    });
  });

  it('sends big integers digit for digit', () => {
    const p = parseCallArgs([
      'a=123456789012345678901234567890',
      'b:=98765432109876543210',
      'c:=[1,18446744073709551616]',
    ]);
    assert.equal(
      stringifyJson(p),
      '{"a":123456789012345678901234567890,"b":98765432109876543210,"c":[1,18446744073709551616]}',
    );
  });

  it('gives no arguments as an empty object', () => {
    assert.deepEqual(parseCallArgs([]), {});
  });

  it('refuses malformed arguments', () => {
    for (const bad of [['novalue'], ['=x'], [':=1'], ['a=1', 'a=2'], ['a:=nope'], ['a:=']]) {
      assert.throws(() => parseCallArgs(bad), UsageError, bad.join(' '));
    }
  });

  it('keeps a __proto__ parameter as ordinary data', () => {
    const p = parseCallArgs(['__proto__=x']);
    assert.equal(Object.getPrototypeOf(p), Object.prototype);
    assert.equal(stringifyJson(p), '{"__proto__":"x"}');
  });
});
