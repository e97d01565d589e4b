/**
 * JSON.parse turns a number literal into the nearest double, so `9007199254740993` arrives as 2^53 and
 * `4096.0000000000001` as 4096: a request would then act on a value the client never sent. This module finds
 * number literals whose exact value is an integer different from (or not representable as) the double they
 * parse to, and rewrites each to `1e999`, which parses to Infinity: a value every parameter refuses, so the
 * call fails with -32602 instead of silently acting on a rounded value. Ids are echoed from the original text,
 * so they keep every digit.
 */

const NUMBER_RE = /-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
const POISON = '1e999';

/** Exact value of a decimal literal as a fraction num / 10^scale (scale >= 0). */
function exact(literal: string): { num: bigint; scale: number } {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(literal)!;
  const digits = BigInt(`${m[1]}${m[2]}${m[3] ?? ''}`);
  const exp = Number(m[4] ?? 0) - (m[3]?.length ?? 0);
  return exp >= 0 ? { num: digits * 10n ** BigInt(exp), scale: 0 } : { num: digits, scale: -exp };
}

/** True when `literal` denotes a number the parsed double does not equal exactly, where that could matter. */
export function isLossy(literal: string): boolean {
  const n = Number(literal);
  if (!Number.isFinite(n)) return /^-?\d+$/.test(literal); // huge integers; 1e400 is plainly out of range anyway
  if (!Number.isInteger(n)) return false; // a non-integer stays a non-integer: validators refuse it as such
  const { num, scale } = exact(literal);
  // Exponents this large cannot denote a value near a safe integer; they are rounding noise either way.
  if (scale > 1000) return true;
  const target = BigInt(n) * 10n ** BigInt(scale);
  return num !== target;
}

/** Returns `text` with every lossy number literal (outside strings) replaced by a literal that parses to Infinity. */
export function poisonLossyNumbers(text: string): string {
  let out: string[] | undefined;
  let last = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // skip a string, honouring escapes
      i++;
      while (i < n) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) i += 2;
        else if (d === 0x22) break;
        else i++;
      }
      i++;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      NUMBER_RE.lastIndex = i;
      const m = NUMBER_RE.exec(text);
      if (!m) {
        i++;
        continue;
      }
      const end = i + m[0].length;
      // Only long or non-plain literals can lose precision; short integers skip the BigInt work.
      if ((m[0].length > 15 || m[2] !== undefined || m[3] !== undefined) && isLossy(m[0])) {
        out ??= [];
        out.push(text.slice(last, i), POISON);
        last = end;
      }
      i = end;
    } else {
      i++;
    }
  }
  if (!out) return text;
  out.push(text.slice(last));
  return out.join('');
}
