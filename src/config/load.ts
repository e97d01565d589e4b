import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve, sep } from 'node:path';
import { parse } from 'yaml';
import type { z } from 'zod';
import { type Config, configSchema, KNOWN_KEYS } from './schema.js';

export const DEFAULT_CONFIG_PATH = '/etc/target/targetd.yaml';

/** A configuration problem: the message names the key. */
export class ConfigError extends Error {}

/** What loading produced: the config, warnings to log, and notes for the first log lines. */
export interface LoadedConfig {
  config: Config;
  source: string;
  warnings: string[];
  /** Set in the embedded default: where its data lives and the password to print once (first start only). */
  embedded?: { dataDir: string; passwordFile: string; newPassword?: string };
}

function describe(error: z.ZodError, doc: Record<string, unknown>): string {
  return error.issues
    .map((i) => {
      const key = i.path.map(String).join('.') || '(top level)';
      const top = i.path[0];
      // zod does not say whether a value was absent or of the wrong type: the document does.
      if (typeof top === 'string' && (!Object.hasOwn(doc, top) || doc[top] == null) && i.path.length === 1) {
        return `${key}: ${i.message.startsWith('is required') ? i.message : 'is required'}`;
      }
      return `${key}: ${i.message.startsWith('is required') ? 'must be a string' : i.message}`;
    })
    .join('; ');
}

/** Validates a parsed YAML document; throws ConfigError naming each bad key. */
export function validateConfig(doc: unknown, source: string): { config: Config; warnings: string[] } {
  const obj = doc ?? {};
  if (typeof obj !== 'object' || Array.isArray(obj))
    throw new ConfigError(`${source}: must be a mapping of keys to values`);
  const warnings = Object.keys(obj)
    .filter((k) => !KNOWN_KEYS.has(k))
    .map((k) => `${source}: unknown key '${k}' ignored`);
  const result = configSchema.safeParse(obj);
  if (!result.success)
    throw new ConfigError(`${source}: ${describe(result.error, obj as Record<string, unknown>)}`);
  const config = result.data;
  const names = new Set<string>();
  const paths = new Map<string, string>();
  for (const p of config.file_pools) {
    if (names.has(p.name))
      throw new ConfigError(`${source}: file_pools: pool name '${p.name}' is used twice`);
    names.add(p.name);
    const path = resolve(p.path);
    const other = paths.get(path);
    if (other) {
      throw new ConfigError(
        `${source}: file_pools: pools '${other}' and '${p.name}' have the same path ${path}`,
      );
    }
    paths.set(path, p.name);
    if (!isAbsolute(p.path)) {
      warnings.push(`${source}: file_pools: pool '${p.name}' has a relative path; it resolves to ${path}`);
    }
  }
  // Nested directories would let one owner's cleanup or listing meet another's files.
  const stateDir = resolve(config.state_dir);
  const within = (inner: string, outer: string) => inner === outer || inner.startsWith(`${outer}${sep}`);
  for (const [path, name] of paths) {
    for (const [other, otherName] of paths) {
      if (other !== path && within(path, other)) {
        throw new ConfigError(
          `${source}: file_pools: pool '${name}' (${path}) is inside pool '${otherName}' (${other})`,
        );
      }
    }
    if (within(path, stateDir) || within(stateDir, path)) {
      throw new ConfigError(
        `${source}: file_pools: pool '${name}' (${path}) and state_dir (${stateDir}) must not contain each other`,
      );
    }
  }
  if (config.block_pools.length > 0) {
    throw new ConfigError(
      `${source}: block_pools: LVM block pools are not supported by this build yet; use file_pools`,
    );
  }
  if (config.fs_pools.length > 0) {
    throw new ConfigError(`${source}: fs_pools: filesystem pools are not supported by this build yet`);
  }
  if (config.iscsi_backend !== 'builtin' && config.iscsi_backend !== 'none') {
    throw new ConfigError(
      `${source}: iscsi_backend: '${config.iscsi_backend}' is not available in this build yet; use 'builtin' or 'none'`,
    );
  }
  return { config, warnings };
}

/** Reads and validates a YAML config file. */
export async function loadConfigFile(path: string): Promise<LoadedConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${path}: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (e) {
    throw new ConfigError(`${path}: not valid YAML: ${(e as Error).message}`);
  }
  return { ...validateConfig(doc, path), source: path };
}

/** Where the embedded default keeps its data when no config file exists. */
export function embeddedDataDir(): string {
  if (process.env.TARGETD_DATA_DIR) return resolve(process.env.TARGETD_DATA_DIR);
  const base = process.env.XDG_DATA_HOME || join(homedir(), '.local', 'share');
  return join(base, 'targetd');
}

/** iSCSI port of the embedded default: the standard 3260 needs root, so others get 13260. */
export function embeddedIscsiPort(): number {
  return process.getuid?.() === 0 ? 3260 : 13260;
}

/**
 * The embedded default: no root, no config file. A state dir and one file pool in a data folder,
 * a generated password kept there with mode 0600, API and iSCSI portal on 127.0.0.1 only.
 */
export async function embeddedConfig(): Promise<LoadedConfig> {
  const dataDir = embeddedDataDir();
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  // Made here, where it is expected, so the pool does not warn about a directory it had to create.
  await mkdir(join(dataDir, 'pools', 'default'), { recursive: true, mode: 0o700 });
  const passwordFile = join(dataDir, 'password');
  let password: string;
  let newPassword: string | undefined;
  if (existsSync(passwordFile)) {
    password = (await readFile(passwordFile, 'utf8')).trim();
  } else {
    password = randomBytes(18).toString('base64url');
    await writeFile(passwordFile, `${password}\n`, { mode: 0o600, flag: 'wx' });
    newPassword = password;
  }
  const { config, warnings } = validateConfig(
    {
      password,
      rpc_address: '127.0.0.1',
      portal_addresses: ['127.0.0.1'],
      iscsi_port: embeddedIscsiPort(),
      state_dir: join(dataDir, 'state'),
      file_pools: [{ name: 'default', path: join(dataDir, 'pools', 'default') }],
    },
    'embedded default',
  );
  return { config, warnings, source: 'embedded default', embedded: { dataDir, passwordFile, newPassword } };
}

/** Loads the config for `serve`: an explicit path must exist; the default path falls back to the embedded default. */
export async function loadConfig(explicitPath: string | undefined): Promise<LoadedConfig> {
  if (explicitPath) return loadConfigFile(explicitPath);
  if (existsSync(DEFAULT_CONFIG_PATH)) return loadConfigFile(DEFAULT_CONFIG_PATH);
  return embeddedConfig();
}
