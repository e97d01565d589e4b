// Finds the source text of each request's top-level "id" member, so ids can be echoed
// digit for digit: JSON.parse turns 340282366920938463463374607431768211455 into a
// rounded double and "1.50" into 1.5, and clients compare the text they sent.
//
// The scanner runs only on text that JSON.parse has already accepted, so it does not
// validate; it only has to agree with JSON.parse on structure and on key names.

/** What the scan found: the raw id text of the top-level object, or of each batch element. */
export type RawIdScan =
  | { kind: 'object'; id: string | undefined }
  | { kind: 'array'; ids: (string | undefined)[] }
  | { kind: 'other' };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

function isJsonWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

class Scanner {
  pos = 0;

  constructor(private readonly text: string) {}

  fail(what: string): never {
    throw new Error(`raw-id scanner: ${what} at offset ${this.pos}`);
  }

  peek(): number {
    return this.pos < this.text.length ? this.text.charCodeAt(this.pos) : -1;
  }

  skipWhitespace(): void {
    while (this.pos < this.text.length && isJsonWhitespace(this.text.charCodeAt(this.pos))) this.pos++;
  }

  expect(c: number): void {
    if (this.peek() !== c) this.fail(`expected '${String.fromCharCode(c)}'`);
    this.pos++;
  }

  /** Advances past a string token (the cursor is on its opening quote); returns its source text. */
  skipString(): string {
    const start = this.pos;
    this.expect(QUOTE);
    const text = this.text;
    for (;;) {
      if (this.pos >= text.length) this.fail('unterminated string');
      const c = text.charCodeAt(this.pos);
      if (c === BACKSLASH) {
        // Every escape's second character is what matters for finding the closing quote;
        // \uXXXX's hex digits contain no quote or backslash.
        this.pos += 2;
      } else {
        this.pos++;
        if (c === QUOTE) return text.slice(start, this.pos);
      }
    }
  }

  /** Advances past any one value (the cursor is on its first character). */
  skipValue(): void {
    const c = this.peek();
    if (c === QUOTE) {
      this.skipString();
      return;
    }
    if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      // Iterative, so deep nesting cannot overflow the stack; only strings need care.
      let depth = 0;
      do {
        const d = this.peek();
        if (d === -1) this.fail('unterminated container');
        if (d === QUOTE) {
          this.skipString();
          continue;
        }
        if (d === OPEN_OBJECT || d === OPEN_ARRAY) depth++;
        else if (d === CLOSE_OBJECT || d === CLOSE_ARRAY) depth--;
        this.pos++;
      } while (depth > 0);
      return;
    }
    // A number or a literal: runs until a structural character or whitespace.
    const start = this.pos;
    while (this.pos < this.text.length) {
      const d = this.text.charCodeAt(this.pos);
      if (d === COMMA || d === CLOSE_OBJECT || d === CLOSE_ARRAY || isJsonWhitespace(d)) break;
      this.pos++;
    }
    if (this.pos === start) this.fail('expected a value');
  }

  /** Advances past an object (cursor on '{'); returns the raw text of its last "id" member. */
  scanObject(): string | undefined {
    this.expect(OPEN_OBJECT);
    let id: string | undefined;
    this.skipWhitespace();
    if (this.peek() === CLOSE_OBJECT) {
      this.pos++;
      return id;
    }
    for (;;) {
      this.skipWhitespace();
      const rawKey = this.skipString();
      // Keys with escapes ("\u0069d") are decoded exactly as JSON.parse would decode them.
      const key = rawKey.includes('\\') ? (JSON.parse(rawKey) as string) : rawKey.slice(1, -1);
      this.skipWhitespace();
      this.expect(COLON);
      this.skipWhitespace();
      const valueStart = this.pos;
      this.skipValue();
      // Duplicate keys: the last one wins, as with JSON.parse.
      if (key === 'id') id = this.text.slice(valueStart, this.pos);
      this.skipWhitespace();
      const sep = this.peek();
      this.pos++;
      if (sep === CLOSE_OBJECT) return id;
      if (sep !== COMMA) this.fail("expected ',' or '}'");
    }
  }

  scanArray(): (string | undefined)[] {
    this.expect(OPEN_ARRAY);
    const ids: (string | undefined)[] = [];
    this.skipWhitespace();
    if (this.peek() === CLOSE_ARRAY) {
      this.pos++;
      return ids;
    }
    for (;;) {
      this.skipWhitespace();
      if (this.peek() === OPEN_OBJECT) ids.push(this.scanObject());
      else {
        this.skipValue();
        ids.push(undefined);
      }
      this.skipWhitespace();
      const sep = this.peek();
      this.pos++;
      if (sep === CLOSE_ARRAY) return ids;
      if (sep !== COMMA) this.fail("expected ',' or ']'");
    }
  }
}

/**
 * Returns the raw source text of the top-level "id" of a request object, or of each element
 * of a batch array (undefined where absent or where the element is not an object).
 * `text` must already be valid JSON (checked with JSON.parse first); throws otherwise.
 */
export function scanRawIds(text: string): RawIdScan {
  const s = new Scanner(text);
  s.skipWhitespace();
  const c = s.peek();
  if (c === OPEN_OBJECT) return { kind: 'object', id: s.scanObject() };
  if (c === OPEN_ARRAY) return { kind: 'array', ids: s.scanArray() };
  return { kind: 'other' };
}
