import { readFile } from 'node:fs/promises';
import { UsageError } from './args.js';

export const DEFAULT_URL = 'http://127.0.0.1:18700/targetrpc';
export const DEFAULT_PORT = 18700;
export const DEFAULT_PATH = '/targetrpc';

/**
 * Completes a daemon address: `host`, `host:port`, `[v6]:port` or a full http(s) URL. Without a scheme
 * it is http; without a port it is targetd's 18700 for either scheme (the daemon's default, not 80/443);
 * without a path it is /targetrpc.
 */
export function normalizeUrl(input: string): URL {
  const text = input.trim();
  if (text === '') throw new UsageError('empty --url');
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text);
  if (scheme && !/^https?$/i.test(scheme[1]!)) {
    throw new UsageError(`unsupported URL scheme '${scheme[1]}': use http:// or https://`);
  }
  const withScheme = scheme ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new UsageError(`invalid --url ${JSON.stringify(input)}`);
  }
  if (url.username || url.password) {
    throw new UsageError('put credentials in --user and --password (or the environment), not in the URL');
  }
  // URL hides a port equal to the scheme's default, so look at the authority as written.
  const authority = withScheme.slice(withScheme.indexOf('//') + 2).split(/[/?#]/, 1)[0]!;
  if (!/:\d+$/.test(authority)) url.port = String(DEFAULT_PORT);
  if (url.pathname === '/' || url.pathname === '') url.pathname = DEFAULT_PATH;
  return url;
}

/** Where the password comes from; flags win over the environment. */
export interface PasswordSources {
  password?: string;
  passwordFile?: string;
}

/**
 * Reads the password from --password or --password-file (TARGETD_PASSWORD / TARGETD_PASSWORD_FILE come in
 * through the same options). A file's one trailing newline is dropped; everything else in it is the password.
 */
export async function resolvePassword(src: PasswordSources): Promise<string> {
  if (src.password !== undefined && src.passwordFile !== undefined) {
    throw new UsageError('give either a password or a password file, not both');
  }
  if (src.password !== undefined) return src.password;
  if (src.passwordFile !== undefined) {
    let text: string;
    try {
      text = await readFile(src.passwordFile, 'utf8');
    } catch (e) {
      throw new UsageError(`cannot read password file ${src.passwordFile}: ${(e as Error).message}`);
    }
    return text.replace(/\r?\n$/, '');
  }
  throw new UsageError(
    'no password: use --password, --password-file, TARGETD_PASSWORD or TARGETD_PASSWORD_FILE',
  );
}
