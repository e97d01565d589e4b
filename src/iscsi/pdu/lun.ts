/**
 * LUN field helpers (SAM-5 §4.7). The PDU codec keeps the raw 64-bit field; these map it to the small
 * LUN numbers the export registry uses: peripheral addressing below 256 (what Linux and libiscsi send
 * for those), flat space addressing up to 16383.
 */

/** Raw 64-bit LUN field for LUN number `n` (0..16383). */
export function lunField(n: number): bigint {
  if (!Number.isInteger(n) || n < 0 || n > 0x3fff) throw new RangeError(`LUN ${n} out of range`);
  return n < 256 ? BigInt(n) << 48n : BigInt(0x4000 | n) << 48n;
}

/**
 * LUN number of a raw field in peripheral or flat space addressing with a single level, or -1 for any
 * other form (which no mapped LUN can match).
 */
export function lunNumber(field: bigint): number {
  if ((field & 0xffff_ffff_ffffn) !== 0n) return -1;
  const top = Number(field >> 48n);
  const method = top >> 14;
  if (method === 0) return top >> 8 === 0 ? top & 0xff : -1;
  if (method === 1) return top & 0x3fff;
  return -1;
}
