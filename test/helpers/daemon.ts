import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const MAIN = join(ROOT, 'dist/main.js');

/** A JSON-RPC error answer, as thrown by DaemonHandle.call. */
export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/** Returns a TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

export interface DaemonOptions {
  /** Extra or overriding config keys. */
  config?: Record<string, unknown>;
  /** Reuse a directory (state and pools) from an earlier daemon, for restart tests. */
  dir?: string;
  env?: Record<string, string>;
  /** CA to trust for HTTPS. */
  ca?: Buffer;
  /** Start the daemon under this umask (e.g. 0 to prove files get explicit modes). */
  umask?: number;
}

/** A real `targetd serve` process on free ports, with its own temp dir holding state and one file pool. */
export class DaemonHandle {
  proc!: ChildProcess;
  stderr = '';
  port = 0;
  user = 'admin';
  password = 'test-password-1234';
  scheme = 'http';
  configPath: string;
  config: Record<string, unknown>;

  constructor(
    readonly dir: string,
    config: Record<string, unknown>,
    private readonly env: Record<string, string> = {},
    private readonly umask?: number,
  ) {
    this.configPath = join(dir, 'targetd.yaml');
    this.config = config;
  }

  get url(): string {
    return `${this.scheme}://127.0.0.1:${this.port}/targetrpc`;
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** Starts the process and waits until it answers pool_list. */
  async start(): Promise<void> {
    this.port = (this.config.rpc_port as number) ?? 0;
    this.user = (this.config.user as string) ?? 'admin';
    this.password = this.config.password as string;
    this.scheme = this.config.ssl ? 'https' : 'http';
    await writeFile(this.configPath, stringify(this.config), { mode: 0o600 });
    this.stderr = '';
    const argv = [MAIN, 'serve', '--config', this.configPath];
    const [cmd, args] =
      this.umask === undefined
        ? [process.execPath, argv]
        : [
            '/bin/sh',
            [
              '-c',
              `umask ${this.umask.toString(8).padStart(3, '0')} && exec "$0" "$@"`,
              process.execPath,
              ...argv,
            ],
          ];
    this.proc = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...this.env },
    });
    this.proc.stdout!.on('data', (d) => {
      this.stderr += d;
    });
    this.proc.stderr!.on('data', (d) => {
      this.stderr += d;
    });
    const deadline = Date.now() + 15000;
    for (;;) {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
        throw new Error(`daemon exited (${this.proc.exitCode ?? this.proc.signalCode}):\n${this.stderr}`);
      }
      try {
        await this.call('pool_list');
        return;
      } catch (e) {
        if (Date.now() > deadline) {
          // A daemon that never became ready must not outlive the test and keep its runner alive.
          await this.kill('SIGKILL');
          throw new Error(`daemon did not answer: ${e}\n${this.stderr}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /** CA certificate to trust for HTTPS (the test's self-made certificate). */
  ca: Buffer | undefined;

  /** POSTs a raw body; returns a fetch-style Response. */
  async post(body: string, headers: Record<string, string> = {}, auth = true): Promise<Response> {
    const h: Record<string, string> = { 'content-type': 'application/json', ...headers };
    if (auth) h.authorization = `Basic ${Buffer.from(`${this.user}:${this.password}`).toString('base64')}`;
    if (this.scheme === 'http') return fetch(this.url, { method: 'POST', headers: h, body });
    // fetch cannot be told to trust one CA; node:https can, so the certificate is really verified.
    return new Promise((ok, fail) => {
      const req = httpsRequest(
        this.url,
        { method: 'POST', headers: h, ca: this.ca, servername: 'localhost' },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            const hdrs = new Headers();
            for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') hdrs.set(k, v);
            ok(new Response(status === 204 ? null : Buffer.concat(chunks), { status, headers: hdrs }));
          });
        },
      );
      req.on('error', fail);
      req.end(body);
    });
  }

  /** Calls a method; resolves with `result`, rejects with RpcError (a positive code is an async id). */
  async call<T = unknown>(method: string, params?: Record<string, unknown>): Promise<T> {
    const res = await this.post(JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: params ?? {} }));
    if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
    const body = (await res.json()) as { result?: T; error?: { code: number; message: string } };
    if (body.error) throw new RpcError(body.error.code, body.error.message);
    return body.result as T;
  }

  /** Calls and returns the error code (fails the test if the call succeeded). */
  async errorCode(method: string, params?: Record<string, unknown>): Promise<number> {
    try {
      await this.call(method, params);
    } catch (e) {
      if (e instanceof RpcError) return e.code;
      throw e;
    }
    throw new Error(`${method} ${JSON.stringify(params)} succeeded; an error was expected`);
  }

  /** Sends a signal and waits for the process to exit. */
  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill(signal);
    await exited;
  }

  /** Kills (SIGTERM by default) and starts again on the same dir and ports. */
  async restart(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await this.kill(signal);
    await this.start();
  }

  /** Stops the daemon and removes its directory. */
  async dispose(): Promise<void> {
    await this.kill('SIGKILL');
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Starts a daemon with a file pool `pool1` and the `none` iSCSI backend unless overridden. */
export async function startDaemon(opts: DaemonOptions = {}): Promise<DaemonHandle> {
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'targetd-test-')));
  const config: Record<string, unknown> = {
    password: 'test-password-1234',
    rpc_address: '127.0.0.1',
    rpc_port: await freePort(),
    state_dir: join(dir, 'state'),
    iscsi_backend: 'none',
    file_pools: [{ name: 'pool1', path: join(dir, 'pool1') }],
    log_level: 'info',
    ...opts.config,
  };
  const d = new DaemonHandle(dir, config, opts.env, opts.umask);
  d.ca = opts.ca;
  await d.start();
  return d;
}
