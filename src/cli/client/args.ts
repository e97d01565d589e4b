import { looksLikeSize, parseSize } from '../../sizes.js';
import { integerValue, type Json, parseJson } from './json.js';

/** A mistake in the command line, reported without contacting the daemon. */
export class UsageError extends Error {
  override name = 'UsageError';
}

const INTEGER_RE = /^-?(?:0|[1-9]\d*)$/;

/** Keys whose values may be written as human sizes (`10G`); `size` is the only byte-count parameter in the API. */
const SIZE_KEYS = new Set(['size']);

/** A byte count from a human size, exact: a number when a double holds it exactly, else a bigint. */
export function sizeValue(text: string): number | bigint {
  try {
    return integerValue(parseSize(text).toString());
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/**
 * Interprets one `key=value` value: integers become numbers (or bigints, digits kept exact), `true`,
 * `false` and `null` their JSON values, text starting with `{` or `[` JSON, a `size` a human size;
 * anything else stays a string.
 */
export function parseValue(key: string, raw: string): Json {
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  if (raw === 'null') return null;
  if (INTEGER_RE.test(raw)) return integerValue(raw);
  if (SIZE_KEYS.has(key) && looksLikeSize(raw)) return sizeValue(raw);
  const trimmed = raw.trimStart();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      return parseJson(raw);
    } catch (e) {
      // A typo in a JSON argument would otherwise go out silently as a string.
      throw new UsageError(`${key}: value looks like JSON but does not parse (${(e as Error).message})`);
    }
  }
  return raw;
}

/** Turns `key=value` and `key:=RAW_JSON` arguments into a params object; repeated keys are an error. */
export function parseCallArgs(args: readonly string[]): Record<string, Json> {
  const params: Record<string, Json> = {};
  const seen = new Set<string>();
  for (const arg of args) {
    const eq = arg.indexOf('=');
    if (eq <= 0) throw new UsageError(`expected key=value or key:=JSON, got ${JSON.stringify(arg)}`);
    const rawJson = arg[eq - 1] === ':';
    const key = arg.slice(0, rawJson ? eq - 1 : eq);
    const text = arg.slice(eq + 1);
    if (key === '') throw new UsageError(`missing parameter name in ${JSON.stringify(arg)}`);
    if (seen.has(key)) throw new UsageError(`parameter '${key}' given twice`);
    seen.add(key);
    let value: Json;
    if (rawJson) {
      try {
        value = parseJson(text);
      } catch (e) {
        throw new UsageError(`${key}:= needs valid JSON (${(e as Error).message})`);
      }
    } else {
      value = parseValue(key, text);
    }
    Object.defineProperty(params, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return params;
}
