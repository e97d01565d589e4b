/**
 * Human sizes for the CLI and the config file (the API itself only speaks integer bytes).
 *
 * Parsing, case-insensitive:
 *   - a plain number, or with `B`: bytes;
 *   - `K M G T P`, alone or followed by `i`/`iB` (`10G`, `10Gi`, `10GiB`): binary, powers of 1024;
 *   - `KB MB GB TB PB` (a unit followed directly by `B`): decimal, powers of 1000, as disk vendors count.
 * Fractions are allowed with a unit (`1.5G`); a result that is not a whole number of bytes is rounded up,
 * because the daemon never makes a volume smaller than asked either. A plain byte count must be whole, as
 * the API requires (`1.5` is refused, not sent as 2).
 */

const UNITS = ['', 'k', 'm', 'g', 't', 'p'] as const;
const SIZE_RE = /^(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgtp])(i?))?(b?)$/i;

/** True when `text` has the shape of a human size (digits with an optional unit). */
export function looksLikeSize(text: string): boolean {
  return SIZE_RE.test(text.trim());
}

/** Parses a human size into exact bytes; throws on anything that is not a size. */
export function parseSize(text: string): bigint {
  const m = SIZE_RE.exec(text.trim());
  if (!m) {
    throw new Error(`invalid size ${JSON.stringify(text)}: expected e.g. 1048576, 512M, 10G, 1.5GiB or 20GB`);
  }
  const [, number, unitLetter, binaryMark, byteMark] = m;
  const exponent = UNITS.indexOf((unitLetter ?? '').toLowerCase() as (typeof UNITS)[number]);
  if (exponent === 0 && !/^\d+\.?0*$/.test(number!)) {
    throw new Error(`invalid size ${JSON.stringify(text)}: a byte count must be a whole number`);
  }
  const decimal = exponent > 0 && byteMark !== '' && !binaryMark;
  const multiplier = (decimal ? 1000n : 1024n) ** BigInt(exponent);
  const [whole, fraction = ''] = number!.split('.');
  const numerator = BigInt((whole || '0') + fraction) * multiplier;
  const denominator = 10n ** BigInt(fraction.length);
  return (numerator + denominator - 1n) / denominator;
}

const BINARY_UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** Formats bytes with one decimal in binary units (`10.0 GiB`); below 1 KiB as plain bytes (`512 B`). */
export function formatSize(bytes: number | bigint): string {
  const n = Number(bytes);
  if (!Number.isFinite(n)) return String(bytes);
  if (Math.abs(n) < 1024) return `${n} B`;
  let value = n / 1024;
  let unit = 0;
  // Test the rounded text: 1023.96 KiB must print as 1.0 MiB, not 1024.0 KiB.
  while (unit < BINARY_UNITS.length - 1 && Math.abs(Number(value.toFixed(1))) >= 1024) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${BINARY_UNITS[unit]}`;
}
