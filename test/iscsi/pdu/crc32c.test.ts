import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { crc32c, crc32c48, crc32cRange } from '../../../src/iscsi/crc32c.js';

/** Bit-at-a-time reference, independent of the table code. */
function reference(buf: Uint8Array, seed = 0): number {
  let c = ~seed >>> 0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}

describe('crc32c', () => {
  test('check value of "123456789" is 0xE3069283', () => {
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  });

  test('RFC 3720 B.4 vectors (digest bytes are sent little-endian)', () => {
    const wire = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(n);
      return b.toString('hex');
    };
    assert.equal(wire(crc32c(Buffer.alloc(32))), 'aa36918a');
    assert.equal(wire(crc32c(Buffer.alloc(32, 0xff))), '43aba862');
    const inc = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
    assert.equal(wire(crc32c(inc)), '4e79dd46');
    const dec = Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i));
    assert.equal(crc32c(dec), reference(dec));
  });

  test('empty input is 0 and leaves a seed unchanged', () => {
    assert.equal(crc32c(new Uint8Array(0)), 0);
    assert.equal(crc32c(new Uint8Array(0), 0x12345678), 0x12345678);
  });

  test('matches the bitwise reference for every length 0..100 and odd alignments', () => {
    const big = randomBytes(200);
    for (let len = 0; len <= 100; len++) {
      for (const off of [0, 1, 3, 7]) {
        const view = big.subarray(off, off + len);
        assert.equal(crc32c(view), reference(view), `len ${len} off ${off}`);
      }
    }
  });

  test('chains: crc32c(b, crc32c(a)) === crc32c(a‖b) at every split', () => {
    const all = randomBytes(67);
    const whole = crc32c(all);
    for (let i = 0; i <= all.length; i++) {
      assert.equal(crc32c(all.subarray(i), crc32c(all.subarray(0, i))), whole, `split ${i}`);
    }
  });

  test('range and 48-byte fast path agree with the general function', () => {
    for (let n = 0; n < 20; n++) {
      const b = randomBytes(60);
      assert.equal(crc32c48(b), crc32c(b.subarray(0, 48)));
      assert.equal(crc32c48(b, 5), crc32c(b.subarray(5, 53)));
      assert.equal(crc32cRange(b, 3, 41), crc32c(b.subarray(3, 41)));
    }
  });

  test('1 MiB checksums quickly enough for the data path (> 200 MB/s even on a loaded CI box)', () => {
    const mib = randomBytes(1 << 20);
    crc32c(mib);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 5; i++) crc32c(mib);
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    assert.ok(5 / secs > 200, `${(5 / secs).toFixed(0)} MiB/s`);
  });
});
