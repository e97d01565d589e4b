import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type Json, parseJson, stringifyJson } from '../../src/cli/client/json.js';
import { MAIN, ROOT } from '../helpers/daemon.js';

/** The client commands alone, run from source (no build, no daemon modules). */
export const CLIENT_ONLY = ['--import', 'tsx', join(ROOT, 'test/cli/fixtures/client-main.ts')];
/** The real built `targetd` command. */
export const BUILT = [MAIN];

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI as a child process without inherited TARGETD_* or TLS-trust variables, plus `env`. */
export async function runCli(
  entry: string[],
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 60_000,
): Promise<CliResult> {
  const base = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => !k.startsWith('TARGETD_') && k !== 'NODE_TLS_REJECT_UNAUTHORIZED',
    ),
  );
  const child = spawn(process.execPath, [...entry, ...args], {
    cwd: ROOT,
    env: { ...base, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** One request as the fake daemon saw it: the raw body too, to check digits sent exactly. */
export interface SeenCall {
  method: string;
  params: Json;
  body: string;
}

export type FakeAnswer = { result: Json } | { error: { code: number; message: string } } | { status: number };

export interface FakeServer {
  url: string;
  calls: SeenCall[];
  close(): Promise<void>;
}

/**
 * A stand-in daemon: checks Basic auth (admin / `password`) like targetd, and answers each call with
 * whatever `answer` returns.
 */
export async function startFakeServer(
  answer: (method: string, params: Json) => FakeAnswer | Promise<FakeAnswer>,
  opts: { password?: string; tls?: { key: string; cert: string } } = {},
): Promise<FakeServer> {
  const password = opts.password ?? 'pw';
  const calls: SeenCall[] = [];
  const handler: http.RequestListener = async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    if (req.headers.authorization !== `Basic ${Buffer.from(`admin:${password}`).toString('base64')}`) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="targetd"' }).end();
      return;
    }
    const request = parseJson(body) as { id: Json; method: string; params: Json };
    calls.push({ method: request.method, params: request.params, body });
    const a = await answer(request.method, request.params);
    if ('status' in a) {
      res.writeHead(a.status).end('nope');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(stringifyJson({ jsonrpc: '2.0', id: request.id, ...a }));
  };
  const server = opts.tls ? https.createServer(opts.tls, handler) : http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}/targetrpc`,
    calls,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A throwaway self-signed certificate for 127.0.0.1, or undefined when openssl is not installed. */
export async function selfSignedCert(): Promise<{ key: string; cert: string } | undefined> {
  const dir = await mkdtemp(join(tmpdir(), 'targetd-cli-tls-'));
  try {
    await promisify(execFile)('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ]);
    return {
      key: await readFile(join(dir, 'key.pem'), 'utf8'),
      cert: await readFile(join(dir, 'cert.pem'), 'utf8'),
    };
  } catch {
    return undefined;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
