/**
 * CHAP, target side (RFC 1994 as profiled by RFC 7143 §12.1.3), with the hash algorithms registered for
 * CHAP_A beyond MD5 (IANA PPP authentication algorithms: 6 SHA-1, 7 SHA-256, 8 SHA3-256), and mutual CHAP.
 *
 * Exchange: initiator CHAP_A=<list> → target CHAP_A, CHAP_I, CHAP_C → initiator CHAP_N, CHAP_R
 * [, CHAP_I, CHAP_C for mutual] → target [CHAP_N, CHAP_R].
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { parseNumber } from './negotiate.js';
import type { KeyValue } from './text.js';

/** CHAP_A values. */
export const ChapAlgorithm = {
  MD5: 5,
  SHA1: 6,
  SHA256: 7,
  SHA3_256: 8,
} as const;

const HASHES: Readonly<Record<number, { name: string; size: number }>> = {
  5: { name: 'md5', size: 16 },
  6: { name: 'sha1', size: 20 },
  7: { name: 'sha256', size: 32 },
  8: { name: 'sha3-256', size: 32 },
};

/** Every algorithm we implement. Which one is used follows the initiator's order (RFC 7143 §6.2.1). */
export const DEFAULT_CHAP_ALGORITHMS: readonly number[] = Object.freeze([5, 6, 7, 8]);

/** RFC 7143 §12.1.3 caps binary CHAP values at 1024 bytes. */
const MAX_CHALLENGE = 1024;

/** Digest size in bytes of a CHAP algorithm, or undefined if we do not implement it. */
export function chapDigestSize(algorithm: number): number | undefined {
  return HASHES[algorithm]?.size;
}

/** The CHAP response H(identifier ‖ secret ‖ challenge) (RFC 1994 §4.1). */
export function chapResponse(
  algorithm: number,
  id: number,
  secret: string | Buffer,
  challenge: Buffer,
): Buffer {
  const h = HASHES[algorithm];
  if (!h) throw new RangeError(`unsupported CHAP algorithm ${algorithm}`);
  return createHash(h.name)
    .update(Buffer.of(id & 0xff))
    .update(typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret)
    .update(challenge)
    .digest();
}

/**
 * Decodes an iSCSI binary value: 0x/0X hex (an odd digit count implies a leading zero) or 0b/0B base64
 * (RFC 7143 §6.1). Returns undefined when malformed or empty.
 */
export function decodeBinary(s: string): Buffer | undefined {
  const prefix = s.slice(0, 2).toLowerCase();
  const body = s.slice(2);
  if (body.length === 0) return undefined;
  if (prefix === '0x') {
    if (!/^[0-9a-fA-F]+$/.test(body)) return undefined;
    return Buffer.from(body.length % 2 ? `0${body}` : body, 'hex');
  }
  if (prefix === '0b') {
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body) || body.length % 4 !== 0) return undefined;
    const b = Buffer.from(body, 'base64');
    return b.length > 0 ? b : undefined;
  }
  return undefined;
}

/** Encodes binary as 0x + lowercase hex, the form every initiator parses. */
export function encodeBinary(b: Buffer): string {
  return `0x${b.toString('hex')}`;
}

/** Credentials for one CHAP login: what the initiator must prove, and what we answer with for mutual CHAP. */
export interface ChapSecrets {
  user: string;
  secret: string;
  /** Target's own name and secret for mutual CHAP; absent when not configured (mutual is then refused). */
  targetUser?: string;
  targetSecret?: string;
}

export interface ChapOptions {
  /** CHAP_A values accepted; default all of {@link DEFAULT_CHAP_ALGORITHMS}. */
  algorithms?: readonly number[];
  /** Source of randomness (identifier and challenge); replaceable for reproducible tests. */
  random?: (n: number) => Buffer;
}

/** Outcome of one CHAP step: keys to send, and whether authentication finished or failed. */
export type ChapStep =
  | { status: 'continue'; responses: KeyValue[] }
  | { status: 'done'; responses: KeyValue[]; mutual: boolean; algorithm: number }
  | { status: 'failed'; reason: string };

const CHAP_KEYS = new Set(['CHAP_A', 'CHAP_I', 'CHAP_C', 'CHAP_N', 'CHAP_R']);

/** True for CHAP_* keys. */
export function isChapKey(key: string): boolean {
  return CHAP_KEYS.has(key);
}

/** Target side of one CHAP exchange. Feed it each request's CHAP keys with {@link step}. */
export class ChapTargetAuth {
  private state: 'algorithm' | 'response' | 'done' | 'failed' = 'algorithm';
  private algorithm = 0;
  private id = 0;
  private challenge: Buffer = Buffer.alloc(0);
  private readonly algorithms: readonly number[];
  private readonly random: (n: number) => Buffer;

  constructor(
    private readonly secrets: ChapSecrets,
    opts: ChapOptions = {},
  ) {
    this.algorithms = (opts.algorithms ?? DEFAULT_CHAP_ALGORITHMS).filter((a) => HASHES[a] !== undefined);
    this.random = opts.random ?? randomBytes;
  }

  /** True once the challenge has been issued. */
  get started(): boolean {
    return this.state !== 'algorithm';
  }

  /** True once the initiator has proven its identity (and we answered a mutual challenge, if any). */
  get done(): boolean {
    return this.state === 'done';
  }

  /** Processes the CHAP keys of one request (keys absent from the map were not sent). */
  step(keys: ReadonlyMap<string, string>): ChapStep {
    switch (this.state) {
      case 'algorithm':
        return this.chooseAlgorithm(keys);
      case 'response':
        return this.verify(keys);
      default:
        return this.fail(
          keys.size > 0 ? 'CHAP keys after authentication completed' : 'CHAP already finished',
        );
    }
  }

  private fail(reason: string): ChapStep {
    this.state = 'failed';
    return { status: 'failed', reason };
  }

  private chooseAlgorithm(keys: ReadonlyMap<string, string>): ChapStep {
    for (const k of keys.keys()) if (k !== 'CHAP_A') return this.fail(`${k} sent before the challenge`);
    const list = keys.get('CHAP_A');
    if (list === undefined) return { status: 'continue', responses: [] };
    const pick = list
      .split(',')
      .map((v) => parseNumber(v))
      .find((a): a is number => a !== undefined && this.algorithms.includes(a));
    if (pick === undefined) return this.fail(`no supported CHAP algorithm in CHAP_A=${list}`);
    this.algorithm = pick;
    this.id = this.random(1)[0]!;
    // At least 16 bytes and never shorter than the digest, so the challenge carries the hash's full strength.
    this.challenge = this.random(Math.max(16, HASHES[pick]!.size));
    this.state = 'response';
    return {
      status: 'continue',
      responses: [
        ['CHAP_A', String(pick)],
        ['CHAP_I', String(this.id)],
        ['CHAP_C', encodeBinary(this.challenge)],
      ],
    };
  }

  private verify(keys: ReadonlyMap<string, string>): ChapStep {
    if (keys.has('CHAP_A')) return this.fail('CHAP_A sent twice');
    const name = keys.get('CHAP_N');
    const resp = keys.get('CHAP_R');
    if (name === undefined && resp === undefined && keys.size === 0)
      return { status: 'continue', responses: [] };
    if (name === undefined || resp === undefined) return this.fail('CHAP_N and CHAP_R are both required');
    const mutualI = keys.get('CHAP_I');
    const mutualC = keys.get('CHAP_C');
    const mutual = mutualI !== undefined || mutualC !== undefined;
    let theirId = 0;
    let theirChallenge: Buffer | undefined;
    if (mutual) {
      if (mutualI === undefined || mutualC === undefined)
        return this.fail('mutual CHAP needs both CHAP_I and CHAP_C');
      const id = parseNumber(mutualI);
      if (id === undefined || id > 255) return this.fail('invalid CHAP_I');
      theirChallenge = decodeBinary(mutualC);
      if (!theirChallenge || theirChallenge.length > MAX_CHALLENGE) return this.fail('invalid CHAP_C');
      // RFC 7143 §12.1.3: a challenge equal to ours is a reflection attack.
      if (theirChallenge.equals(this.challenge)) return this.fail('initiator reflected our CHAP challenge');
      if (!this.secrets.targetUser || !this.secrets.targetSecret) {
        return this.fail('mutual CHAP requested but no target credentials are configured');
      }
      theirId = id;
    }

    const size = HASHES[this.algorithm]!.size;
    const expected = chapResponse(this.algorithm, this.id, this.secrets.secret, this.challenge);
    const got = decodeBinary(resp);
    // Compare both fields before deciding, so a wrong name takes as long as a wrong response.
    const responseOk = got !== undefined && got.length === size && timingSafeEqual(got, expected);
    const nameOk = safeEqualString(name, this.secrets.user);
    if (!responseOk || !nameOk) return this.fail(nameOk ? 'CHAP response mismatch' : 'CHAP name mismatch');

    this.state = 'done';
    if (!mutual) return { status: 'done', responses: [], mutual: false, algorithm: this.algorithm };
    const answer = chapResponse(this.algorithm, theirId, this.secrets.targetSecret!, theirChallenge!);
    return {
      status: 'done',
      responses: [
        ['CHAP_N', this.secrets.targetUser!],
        ['CHAP_R', encodeBinary(answer)],
      ],
      mutual: true,
      algorithm: this.algorithm,
    };
  }
}

function safeEqualString(a: string, b: string): boolean {
  const x = createHash('sha256').update(a, 'utf8').digest();
  const y = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(x, y);
}
