import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isLossy, poisonLossyNumbers } from '../../src/server/lossy-numbers.js';

test('literals whose double differs from the exact value are lossy', () => {
  for (const t of [
    '9007199254740993',
    '4096.0000000000001',
    '340282366920938463463374607431768211455',
    '1e-400',
  ]) {
    assert.equal(isLossy(t), true, t);
  }
  for (const t of ['9007199254740992', '4096', '4096.0', '1e3', '4096e0', '1.5', '-0', '0', '-17', '1e400']) {
    assert.equal(isLossy(t), false, t);
  }
});

test('only number tokens outside strings are rewritten, and they parse to Infinity', () => {
  const text =
    '{"id":9007199254740993,"params":{"name":"9007199254740993","size":9007199254740993,"x":[1.5,2]}}';
  const out = JSON.parse(poisonLossyNumbers(text));
  assert.equal(out.id, Number.POSITIVE_INFINITY);
  assert.equal(out.params.name, '9007199254740993');
  assert.equal(out.params.size, Number.POSITIVE_INFINITY);
  assert.deepEqual(out.params.x, [1.5, 2]);
  const esc = '{"a":"\\"9007199254740993","b":1}';
  assert.equal(poisonLossyNumbers(esc), esc);
});
