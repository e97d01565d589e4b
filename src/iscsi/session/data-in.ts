import { crc32c } from '../crc32c.js';
import type { DataInPdu, DigestOptions } from '../pdu/index.js';
import { encodeDataIn } from '../pdu/index.js';

const PAD: readonly Buffer[] = [Buffer.alloc(0), Buffer.alloc(1), Buffer.alloc(2), Buffer.alloc(3)];
const HEADER_DIGEST_ONLY: DigestOptions = { headerDigest: true };

/**
 * Data-In whose data segment is one buffer or several (a PDU boundary that falls across two read buffers):
 * the header is patched with the total length and digests are chained over the pieces, so nothing is copied.
 */
export function encodeDataInParts(
  p: Omit<DataInPdu, 'opcode' | 'data'>,
  parts: readonly Buffer[],
  opts: DigestOptions,
): Buffer[] {
  // One path for one part or several: `{ ...p, data }` here used to cost more than the rest of the PDU (a
  // spread of this size takes V8's slow define path and leaves an object every encodeDataIn load misses on).
  let length = 0;
  for (const b of parts) length += b.length;
  // The header alone, already carrying the total length (and its digest over that).
  const header = encodeDataIn(p, opts.headerDigest ? HEADER_DIGEST_ONLY : undefined, length)[0]!;
  const out: Buffer[] = parts.length === 1 ? [header, parts[0]!] : [header, ...parts];
  const pad = (4 - (length & 3)) & 3;
  if (opts.dataDigest) {
    let crc = 0;
    for (const b of parts) crc = crc32c(b, crc);
    if (pad > 0) crc = crc32c(PAD[pad]!, crc);
    const trailer = Buffer.alloc(pad + 4);
    trailer.writeUInt32LE(crc, pad);
    out.push(trailer);
  } else if (pad > 0) {
    out.push(PAD[pad]!);
  }
  return out;
}

/** Walks a list of buffers handing out consecutive slices as views (the zero-copy Data-In cursor). */
export class BufferCursor {
  private index = 0;
  private offset = 0;

  constructor(private readonly buffers: readonly Buffer[]) {}

  /** The next `n` bytes as one or more views; fewer only when the buffers run out. */
  take(n: number): Buffer[] {
    const out: Buffer[] = [];
    while (n > 0 && this.index < this.buffers.length) {
      const b = this.buffers[this.index]!;
      const avail = b.length - this.offset;
      if (avail <= 0) {
        this.index++;
        this.offset = 0;
        continue;
      }
      const k = Math.min(avail, n);
      out.push(k === b.length ? b : b.subarray(this.offset, this.offset + k));
      this.offset += k;
      n -= k;
      if (this.offset >= b.length) {
        this.index++;
        this.offset = 0;
      }
    }
    return out;
  }
}
