/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI header and data digests.
 *
 * Pure TypeScript, slicing-by-8. Node's zlib.crc32 is CRC-32/IEEE, not this one, and a native addon
 * would cost more per call than a 48-byte header takes to checksum here (iscsi-notes §5).
 */

const POLY = 0x82f63b78;

// Eight 256-entry tables in one array: table k at offset k*256 advances the CRC over a byte that is
// followed by k more bytes, which lets the inner loop consume 8 bytes with independent lookups.
const T = new Int32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[n] = c;
}
for (let n = 0; n < 256; n++) {
  let c = T[n]!;
  for (let k = 1; k < 8; k++) {
    c = T[c & 0xff]! ^ (c >>> 8);
    T[k * 256 + n] = c;
  }
}

/** Raw (non-inverted) CRC register update over buf[start, end). */
function update(crc: number, buf: Uint8Array, start: number, end: number): number {
  let i = start;
  const stop8 = end - ((end - start) & 7);
  while (i < stop8) {
    const lo = crc ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    crc =
      T[1792 + (lo & 0xff)]! ^
      T[1536 + ((lo >>> 8) & 0xff)]! ^
      T[1280 + ((lo >>> 16) & 0xff)]! ^
      T[1024 + (lo >>> 24)]! ^
      T[768 + buf[i + 4]!]! ^
      T[512 + buf[i + 5]!]! ^
      T[256 + buf[i + 6]!]! ^
      T[buf[i + 7]!]!;
    i += 8;
  }
  while (i < end) crc = T[(crc ^ buf[i++]!) & 0xff]! ^ (crc >>> 8);
  return crc;
}

/**
 * CRC-32C of `buf`. `seed` is a previous result, so `crc32c(b, crc32c(a)) === crc32c(a‖b)`:
 * that is how one digest covers a header and its AHS, or a data segment and its padding, without concatenating.
 */
export function crc32c(buf: Uint8Array, seed = 0): number {
  return ~update(~seed, buf, 0, buf.length) >>> 0;
}

/** CRC-32C of buf[start, end), chaining like {@link crc32c}. */
export function crc32cRange(buf: Uint8Array, start: number, end: number, seed = 0): number {
  return ~update(~seed, buf, start, end) >>> 0;
}

/**
 * CRC-32C of the 48 bytes at buf[offset]: the Basic Header Segment. Fixed trip count and no tail loop,
 * because header digests are computed for every PDU in both directions once negotiated.
 */
export function crc32c48(buf: Uint8Array, offset = 0): number {
  let crc = -1;
  for (let i = offset, end = offset + 48; i < end; i += 8) {
    const lo = crc ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    crc =
      T[1792 + (lo & 0xff)]! ^
      T[1536 + ((lo >>> 8) & 0xff)]! ^
      T[1280 + ((lo >>> 16) & 0xff)]! ^
      T[1024 + (lo >>> 24)]! ^
      T[768 + buf[i + 4]!]! ^
      T[512 + buf[i + 5]!]! ^
      T[256 + buf[i + 6]!]! ^
      T[buf[i + 7]!]!;
  }
  return ~crc >>> 0;
}
