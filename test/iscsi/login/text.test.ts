import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  encodeText,
  parseText,
  splitText,
  TextAssembler,
  TextFormatError,
} from '../../../src/iscsi/login/index.js';

describe('text key=value', () => {
  test('parse and encode round trip, order kept, UTF-8 values', () => {
    const pairs: Array<[string, string]> = [
      ['InitiatorName', 'iqn.2004-10.com.example:host1'],
      ['InitiatorAlias', 'héte ✓'],
      ['Empty', ''],
      ['Eq', 'a=b=c'],
    ];
    const enc = encodeText(pairs);
    assert.equal(enc.at(-1), 0);
    assert.deepEqual(parseText(enc), pairs);
    assert.equal(encodeText([]).length, 0);
  });

  test('stray NULs are skipped and a missing final NUL is tolerated', () => {
    assert.deepEqual(parseText(Buffer.from('\0A=1\0\0B=2')), [
      ['A', '1'],
      ['B', '2'],
    ]);
    assert.deepEqual(parseText(Buffer.from('A=1\0\0\0\0')), [['A', '1']]);
    assert.deepEqual(parseText(new Uint8Array(0)), []);
  });

  test('malformed pairs throw TextFormatError', () => {
    for (const bad of [
      'NoEquals\0',
      '=value\0',
      'bad key=1\0',
      `${'K'.repeat(64)}=1\0`,
      `A=${'v'.repeat(9000)}\0`,
    ]) {
      assert.throws(() => parseText(Buffer.from(bad)), TextFormatError, JSON.stringify(bad.slice(0, 20)));
    }
  });

  test('parses a view into a larger buffer correctly', () => {
    const big = Buffer.from('xxxxA=1\0B=2\0yyyy');
    assert.deepEqual(parseText(big.subarray(4, 12)), [
      ['A', '1'],
      ['B', '2'],
    ]);
  });

  test('splitText cuts at the segment size, anywhere, and reassembles', () => {
    const text = encodeText(Array.from({ length: 50 }, (_, i): [string, string] => [`Key${i}`, `value${i}`]));
    for (const max of [1, 7, 64, 512, text.length, text.length + 1]) {
      const parts = splitText(text, max);
      assert.ok(parts.every((p) => p.length <= max));
      assert.ok(Buffer.concat(parts).equals(text));
      assert.equal(parts.length, Math.max(1, Math.ceil(text.length / max)));
    }
    assert.deepEqual(splitText(Buffer.alloc(0), 10), [Buffer.alloc(0)]);
    assert.throws(() => splitText(text, 0), RangeError);
  });

  test('TextAssembler joins continued parts and bounds the total', () => {
    const asm = new TextAssembler(100);
    assert.equal(asm.push(Buffer.from('A=1\0B='), true), undefined);
    assert.equal(asm.pending, true);
    assert.equal(asm.push(Buffer.alloc(0), true), undefined);
    const whole = asm.push(Buffer.from('2\0'), false);
    assert.equal(whole?.toString(), 'A=1\0B=2\0');
    assert.equal(asm.pending, false);
    assert.equal(asm.push(Buffer.from('C=3\0'), false)?.toString(), 'C=3\0');

    asm.push(Buffer.alloc(60), true);
    assert.throws(() => asm.push(Buffer.alloc(60), true), TextFormatError);
    assert.equal(asm.pending, false, 'reset after overflow');
  });
});
