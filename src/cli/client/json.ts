/**
 * JSON that keeps big integers exact. `JSON.parse` rounds integers beyond 2^53 and `JSON.stringify` refuses
 * bigints, so the client carries such integers as `bigint` and writes their literal digits back out.
 */

/** A JSON value in which integers that don't fit a double exactly are bigints. */
export type Json = null | boolean | number | bigint | string | Json[] | { [key: string]: Json };

const NUMBER_RE = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
const WS_RE = /[ \t\n\r]*/y;

/** An integer literal as a number when that number prints back as the same digits (2^53 does), else a bigint. */
export function integerValue(digits: string): number | bigint {
  const n = Number(digits);
  return n === 0 || String(n) === digits ? n : BigInt(digits);
}

/** Parses JSON text; integers outside the safe range come back as bigints, everything else as JSON.parse does. */
export function parseJson(text: string): Json {
  let pos = 0;

  const fail = (what: string): never => {
    throw new SyntaxError(`invalid JSON: ${what} at position ${pos}`);
  };
  const skipWs = (): void => {
    WS_RE.lastIndex = pos;
    WS_RE.exec(text);
    pos = WS_RE.lastIndex;
  };
  const parseString = (): string => {
    const start = pos;
    pos++;
    for (;;) {
      const c = text.charCodeAt(pos);
      if (Number.isNaN(c)) fail('unterminated string');
      if (c === 0x22) break;
      pos += c === 0x5c ? 2 : 1;
    }
    pos++;
    // JSON.parse applies the escape and control-character rules exactly.
    return JSON.parse(text.slice(start, pos)) as string;
  };
  const parseValue = (): Json => {
    skipWs();
    const c = text[pos];
    if (c === '{') {
      pos++;
      const obj: { [key: string]: Json } = {};
      skipWs();
      if (text[pos] === '}') {
        pos++;
        return obj;
      }
      for (;;) {
        skipWs();
        if (text[pos] !== '"') fail('expected a string key');
        const key = parseString();
        skipWs();
        if (text[pos] !== ':') fail("expected ':'");
        pos++;
        // defineProperty so that a "__proto__" key stays an ordinary own property, as with JSON.parse.
        Object.defineProperty(obj, key, {
          value: parseValue(),
          enumerable: true,
          writable: true,
          configurable: true,
        });
        skipWs();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === '}') {
          pos++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      pos++;
      const arr: Json[] = [];
      skipWs();
      if (text[pos] === ']') {
        pos++;
        return arr;
      }
      for (;;) {
        arr.push(parseValue());
        skipWs();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === ']') {
          pos++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return parseString();
    for (const [word, value] of [
      ['true', true],
      ['false', false],
      ['null', null],
    ] as const) {
      if (text.startsWith(word, pos)) {
        pos += word.length;
        return value;
      }
    }
    NUMBER_RE.lastIndex = pos;
    const m = NUMBER_RE.exec(text);
    if (!m) return fail(c === undefined ? 'unexpected end' : `unexpected character ${JSON.stringify(c)}`);
    pos = NUMBER_RE.lastIndex;
    return m[1] === undefined && m[2] === undefined ? integerValue(m[0]) : Number(m[0]);
  };

  const value = parseValue();
  skipWs();
  if (pos !== text.length) fail('unexpected trailing text');
  return value;
}

/**
 * Serializes like JSON.stringify(value, null, indent), but writes bigints as their digits and drops
 * object members whose value is undefined (optional parameters left out).
 */
export function stringifyJson(value: unknown, indent = 0): string {
  const pad = ' '.repeat(indent);
  const write = (v: unknown, depth: string): string => {
    if (v === null || v === undefined) return 'null';
    switch (typeof v) {
      case 'bigint':
        return v.toString();
      case 'number':
        if (!Number.isFinite(v)) return 'null';
        // String(2 ** 64) is "18446744073709552000"; an integer's exact digits are what was meant.
        return Number.isInteger(v) && !Number.isSafeInteger(v) ? BigInt(v).toString() : String(v);
      case 'boolean':
        return v ? 'true' : 'false';
      case 'string':
        return JSON.stringify(v);
    }
    const inner = depth + pad;
    const open = indent ? `\n${inner}` : '';
    const sep = indent ? `,\n${inner}` : ',';
    const close = indent ? `\n${depth}` : '';
    if (Array.isArray(v)) {
      if (v.length === 0) return '[]';
      return `[${open}${v.map((e) => write(e, inner)).join(sep)}${close}]`;
    }
    const entries = Object.entries(v as object).filter(([, e]) => e !== undefined);
    if (entries.length === 0) return '{}';
    const colon = indent ? ': ' : ':';
    return `{${open}${entries.map(([k, e]) => `${JSON.stringify(k)}${colon}${write(e, inner)}`).join(sep)}${close}}`;
  };
  return write(value, '');
}
