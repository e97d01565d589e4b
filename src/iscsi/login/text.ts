/**
 * iSCSI text: key=value pairs, each NUL-terminated, UTF-8 (RFC 7143 §6.1), and the Continue-bit framing
 * that lets one text span several Login or Text PDUs in either direction.
 */

/** One key=value pair, in the order it appeared. */
export type KeyValue = [key: string, value: string];

/** Text that cannot be parsed; the login answers it with Initiator Error, a Text Request with Reject. */
export class TextFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TextFormatError';
  }
}

/** RFC 7143 §6.1: key names are at most 63 bytes of letters, digits, '.', '-', '+', '@', '_'. */
const KEY_RE = /^[A-Za-z0-9.\-+@_]{1,63}$/;
/** Generous bound for one pair: binary CHAP values may be 1024 bytes, i.e. 2050 hex characters. */
export const MAX_PAIR_LENGTH = 8192;

/**
 * Parses a complete text into pairs. Empty strings (stray NULs, e.g. trailing padding) are skipped; a
 * pair without '=' or with an invalid key name throws {@link TextFormatError}. A text not ending in NUL is
 * accepted: some initiators omit the final one.
 */
export function parseText(data: Uint8Array): KeyValue[] {
  const out: KeyValue[] = [];
  let start = 0;
  const n = data.length;
  while (start < n) {
    let end = data.indexOf(0, start);
    if (end < 0) end = n;
    if (end > start) {
      if (end - start > MAX_PAIR_LENGTH) throw new TextFormatError('key=value pair too long');
      const s = Buffer.from(data.buffer, data.byteOffset + start, end - start).toString('utf8');
      const eq = s.indexOf('=');
      if (eq < 0) throw new TextFormatError(`missing '=' in "${truncate(s)}"`);
      const key = s.slice(0, eq);
      if (!KEY_RE.test(key)) throw new TextFormatError(`invalid key name "${truncate(key)}"`);
      out.push([key, s.slice(eq + 1)]);
    }
    start = end + 1;
  }
  return out;
}

/** Encodes pairs as key=value\0… */
export function encodeText(pairs: readonly KeyValue[]): Buffer {
  if (pairs.length === 0) return Buffer.alloc(0);
  return Buffer.from(pairs.map(([k, v]) => `${k}=${v}\0`).join(''), 'utf8');
}

/**
 * Splits outbound text into segments of at most `maxSegment` bytes (the peer's MaxRecvDataSegmentLength).
 * Every segment but the last goes out with C=1. A split may fall inside a pair: the peer reassembles bytes.
 */
export function splitText(text: Buffer, maxSegment: number): Buffer[] {
  if (maxSegment < 1) throw new RangeError('maxSegment must be positive');
  if (text.length <= maxSegment) return [text];
  const out: Buffer[] = [];
  for (let off = 0; off < text.length; off += maxSegment) out.push(text.subarray(off, off + maxSegment));
  return out;
}

/**
 * Reassembles inbound text sent with the C bit across several PDUs, bounding the total so a peer cannot
 * make us buffer without limit.
 */
export class TextAssembler {
  private parts: Buffer[] = [];
  private length = 0;
  private open = false;

  constructor(private readonly maxLength = 65536) {}

  /**
   * Adds one PDU's data segment. Returns the whole text once a PDU with C=0 arrives, else undefined.
   * Throws {@link TextFormatError} when the text grows beyond the bound.
   */
  push(data: Buffer, continues: boolean): Buffer | undefined {
    this.length += data.length;
    if (this.length > this.maxLength) {
      this.reset();
      throw new TextFormatError(`text longer than ${this.maxLength} bytes`);
    }
    if (data.length > 0) this.parts.push(data);
    if (continues) {
      this.open = true;
      return undefined;
    }
    const whole = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.length);
    this.reset();
    return whole;
  }

  /** True while a continued text is incomplete. */
  get pending(): boolean {
    return this.open;
  }

  reset(): void {
    this.parts = [];
    this.length = 0;
    this.open = false;
  }
}

function truncate(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}
