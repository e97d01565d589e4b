import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** The outcome of reading an Authorization header. */
export type BasicCredentials =
  | { kind: 'ok'; user: string; password: string }
  | { kind: 'missing' }
  | { kind: 'malformed'; reason: string };

const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

/** Parses an HTTP Basic Authorization header; never throws. */
export function parseBasicAuth(header: string | undefined): BasicCredentials {
  if (header === undefined || header.trim() === '') return { kind: 'missing' };
  const match = /^\s*([A-Za-z]+)\s+(\S+)\s*$/.exec(header);
  if (!match) return { kind: 'malformed', reason: 'not "<scheme> <credentials>"' };
  if (match[1]!.toLowerCase() !== 'basic') return { kind: 'malformed', reason: 'scheme is not Basic' };
  const encoded = match[2]!;
  // Buffer.from(…, 'base64') silently skips junk, so check the alphabet and length first.
  if (!BASE64_RE.test(encoded) || encoded.length % 4 === 1) {
    return { kind: 'malformed', reason: 'credentials are not base64' };
  }
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  // RFC 7617: user-id cannot contain ':', the password can, so split on the first one.
  const colon = decoded.indexOf(':');
  if (colon < 0) return { kind: 'malformed', reason: "credentials have no ':'" };
  return { kind: 'ok', user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Checks credentials against the configured pair without leaking, by timing, where or by how much they differ. */
export class CredentialChecker {
  // A per-process key: digests of guesses are not comparable across runs or precomputable.
  private readonly key = randomBytes(32);
  private readonly userDigest: Buffer;
  private readonly passwordDigest: Buffer;

  constructor(user: string, password: string) {
    this.userDigest = this.digest(user);
    this.passwordDigest = this.digest(password);
  }

  private digest(s: string): Buffer {
    // Fixed-length digests make timingSafeEqual usable and keep the lengths secret.
    return createHmac('sha256', this.key).update(s, 'utf8').digest();
  }

  /** True when both user and password match. */
  check(user: string, password: string): boolean {
    const userOk = timingSafeEqual(this.digest(user), this.userDigest);
    const passwordOk = timingSafeEqual(this.digest(password), this.passwordDigest);
    // Both comparisons always run, so a right user with a wrong password takes as long as a wrong user.
    return userOk && passwordOk;
  }
}
