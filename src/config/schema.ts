import { z } from 'zod';
import { parseSize } from '../sizes.js';

const poolName = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,127}$/, { error: 'must match [A-Za-z0-9_-], 1-127 characters' });

/** One file pool: a directory whose files are the volumes. */
export const filePoolSchema = z.strictObject({
  name: poolName,
  path: z.string().min(1, { error: 'must be a directory path' }),
  size: z
    .union([z.number(), z.string()], { error: 'must be a number of bytes or a size like 10G' })
    .transform((v, ctx) => {
      let n = Number.NaN;
      try {
        const b = typeof v === 'number' ? v : parseSize(v);
        if (typeof b === 'number' || b <= BigInt(Number.MAX_SAFE_INTEGER)) n = Number(b);
      } catch {
        // Reported below, with the accepted forms.
      }
      if (!Number.isInteger(n) || n <= 0) {
        ctx.issues.push({
          code: 'custom',
          input: v,
          message: 'must be a positive whole number of bytes or a size like 500G or 1.5T (binary units)',
        });
        return z.NEVER;
      }
      return n;
    })
    .optional(),
});

const logLevel = z
  .enum(['trace', 'debug', 'info', 'warn', 'warning', 'error', 'fatal', 'critical'])
  .transform((l) => (l === 'warning' ? 'warn' : l === 'critical' ? 'fatal' : l));

/** targetd.yaml: upstream's keys with their meaning, plus ours. */
export const configSchema = z.object({
  // upstream keys
  user: z
    .string()
    .min(1)
    .refine((u) => !u.includes(':'), {
      error: "must not contain ':' (HTTP Basic auth splits on the first ':')",
    })
    .default('admin'),
  password: z
    .string({ error: 'is required: set a password for the API' })
    .min(1, { error: 'must not be empty' }),
  ssl: z.boolean().default(false),
  ssl_cert: z.string().default('/etc/target/targetd_cert.pem'),
  ssl_key: z.string().default('/etc/target/targetd_key.pem'),
  target_name: z
    .string()
    .regex(/^(iqn\.\d{4}-\d{2}\.[^\s]+|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16,32})$/, {
      error: 'must be an iSCSI name (iqn.YYYY-MM.domain:id)',
    })
    .default('iqn.2003-01.org.linux-iscsi.targetd:storage'),
  portal_addresses: z.array(z.string().min(1)).min(1).default(['0.0.0.0']),
  block_pools: z.array(z.string()).default([]),
  fs_pools: z.array(z.string()).default([]),
  log_level: logLevel.default('info'),
  // ours
  rpc_address: z.string().min(1).default('0.0.0.0'),
  rpc_port: z.number().int().min(1).max(65535).default(18700),
  state_dir: z.string().min(1).default('/var/lib/targetd'),
  iscsi_backend: z.enum(['builtin', 'lio', 'tgt', 'none']).default('builtin'),
  iscsi_port: z.number().int().min(1).max(65535).default(3260),
  /**
   * Built-in target: `optional` accepts the initiator's first choice (RFC 7143), `required` accepts only
   * CRC32C, so a login whose initiator offers only None fails.
   */
  iscsi_header_digest: z.enum(['optional', 'required']).default('optional'),
  iscsi_data_digest: z.enum(['optional', 'required']).default('optional'),
  async_after: z
    .number()
    .refine((n) => n === -1 || (n >= 0 && n <= 2147483), {
      // 2147483 s is the longest timer Node can set (2^31 - 1 ms).
      error: 'must be -1 (always synchronous), 0, or a number of seconds up to 2147483',
    })
    .default(10),
  file_pools: z.array(filePoolSchema).default([]),
  /** Bytes per second one vol_copy may read and write (0: unlimited), so clones do not starve live volumes. */
  copy_rate_limit: z
    .number()
    .refine((n) => Number.isInteger(n) && n >= 0, {
      error: 'must be a non-negative integer (bytes per second)',
    })
    .default(0),
});

export type Config = z.output<typeof configSchema>;
export type FilePoolConfig = z.output<typeof filePoolSchema>;

/** Keys the schema knows, for the unknown-key warning. */
export const KNOWN_KEYS = new Set(Object.keys(configSchema.shape));
