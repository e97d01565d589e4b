import { z } from 'zod';

/** Names of volumes, access groups and CHAP users: the seed's character set, bounded length. */
export const NAME_RE = /^[A-Za-z0-9_-]{1,127}$/;
export const MAX_SIZE = 2 ** 53;

export const name = z
  .string({ error: 'must be a string' })
  .min(1, { error: 'must not be empty', abort: true })
  .max(127, { error: 'must be at most 127 characters' })
  .regex(/^[A-Za-z0-9_-]+$/, { error: 'may contain only A-Z, a-z, 0-9, _ and -' });

/** A byte count: a JSON integer, 1 … 2^53 (strings, floats, zero and negatives are refused). */
export const size = z
  .number({ error: 'must be an integer number of bytes' })
  .refine((n) => n !== Number.POSITIVE_INFINITY, {
    error: `must be an integer number of bytes, at most 2^53 (${2 ** 53})`,
  })
  .refine(Number.isInteger, { error: 'must be an integer number of bytes' })
  .refine((n) => n > 0, { error: 'must be greater than 0' })
  .refine((n) => n <= MAX_SIZE, { error: `must be at most 2^53 (${MAX_SIZE})` });

export const lun = z
  .number({ error: 'must be an integer' })
  .refine(Number.isInteger, { error: 'must be an integer' })
  .refine((n) => n >= 0 && n <= 255, { error: 'must be between 0 and 255' });

// After ':' the name is free-form, but control characters and white space never belong in it.
const IQN_RE =
  /^iqn\.\d{4}-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[^\s\p{Cc}]+)?$/iu;
const EUI_RE = /^eui\.[0-9a-f]{16}$/i;
const NAA_RE = /^naa\.([0-9a-f]{16}|[0-9a-f]{32})$/i;

/** True for a valid iSCSI name (iqn., eui., naa.) of at most 223 bytes (RFC 7143 §4.2.7.1). */
export function isIscsiName(s: string): boolean {
  return Buffer.byteLength(s) <= 223 && (IQN_RE.test(s) || EUI_RE.test(s) || NAA_RE.test(s));
}

/** An initiator's iSCSI name, lower-cased (IQNs compare case-insensitively). */
export const initiatorName = z
  .string({ error: 'must be a string' })
  .refine(isIscsiName, {
    error: 'must be an iSCSI name (iqn.YYYY-MM.domain[:id], eui.<16 hex>, naa.<16|32 hex>)',
  })
  .transform((s) => s.toLowerCase());

/** A CHAP secret or user; null or "" disables that direction. */
export const chapField = z
  .union([z.string({ error: 'must be a string or null' }), z.null()], { error: 'must be a string or null' })
  .refine((s) => s === null || s.length <= 255, { error: 'must be at most 255 characters' });

/** Upstream clients send booleans as true/false or as the strings "True"/"False". */
export const looseBool = z
  .union([z.boolean(), z.string()], { error: 'must be a boolean' })
  .transform((v, ctx) => {
    if (typeof v === 'boolean') return v;
    const s = v.trim().toLowerCase();
    if (['true', '1', 'yes'].includes(s)) return true;
    if (['false', '0', 'no', ''].includes(s)) return false;
    ctx.addIssue({ code: 'custom', message: 'must be a boolean' });
    return z.NEVER;
  });

export const initType = z.literal('iscsi', { error: "must be 'iscsi'" });

/** A configured pool's name (checked against the pool list, which answers -110). */
export const poolName = z.string({ error: 'must be a string' }).min(1, { error: 'must not be empty' });

/** An optional parameter: absent, undefined and null (upstream clients send None) all mean "not given". */
export function optional<T extends z.ZodType>(schema: T) {
  return z.preprocess((v) => (v === null ? undefined : v), schema.optional());
}
