import http from 'node:http';
import https from 'node:https';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { z } from 'zod';
import type { Logger } from '../../src/log.js';
import { TargetdError } from '../../src/rpc/errors.js';
import { MethodRegistry, method } from '../../src/rpc/registry.js';
import { createRpcServer, type RpcServer, type RpcServerOptions } from '../../src/server/rpc-server.js';

export const USER = 'admin';
export const PASSWORD = 'pa:ss:word';

/** Basic credentials header value. */
export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

export const GOOD_AUTH = basic(USER, PASSWORD);

/** Side effects of the test methods, to see that notifications and batches ran, and in what order. */
export interface Effects {
  calls: string[];
}

/** A registry with a few methods covering the shapes real API methods have. */
export function testRegistry(effects: Effects): MethodRegistry {
  const registry = new MethodRegistry();
  registry.register(
    method({
      name: 'echo',
      params: z.strictObject({ text: z.string().optional(), n: z.number().optional() }),
      mutating: false,
      handler: async (p, ctx) => {
        effects.calls.push(`echo:${p.text ?? ''}`);
        return { text: p.text ?? null, n: p.n ?? null, remote: ctx.remote };
      },
    }),
    method({
      name: 'set_secret',
      params: z.strictObject({ name: z.string(), password: z.string() }),
      mutating: true,
      secret: ['password'],
      handler: async (p) => {
        effects.calls.push(`set_secret:${p.name}`);
      },
    }),
    method({
      name: 'missing',
      params: z.strictObject({}),
      mutating: true,
      handler: async () => {
        effects.calls.push('missing');
        throw new TargetdError(-103, 'volume not found: vol1');
      },
    }),
    method({
      name: 'with_data',
      params: z.strictObject({}),
      mutating: false,
      handler: async () => {
        throw new TargetdError(-50, 'name exists', { name: 'vol1' });
      },
    }),
    method({
      name: 'boom',
      params: z.strictObject({}),
      mutating: false,
      handler: async () => {
        effects.calls.push('boom');
        throw new TypeError('kaboom');
      },
    }),
    method({
      name: 'throw_string',
      params: z.strictObject({}),
      mutating: false,
      handler: async () => {
        throw 'oops';
      },
    }),
    method({
      name: 'bad_data',
      params: z.strictObject({}),
      mutating: false,
      handler: async () => {
        throw new TargetdError(-153, 'not supported', { size: 1n });
      },
    }),
    method({
      name: 'bigint',
      params: z.strictObject({}),
      mutating: false,
      handler: async () => 10n,
    }),
    method({
      name: 'slow',
      params: z.strictObject({ ms: z.number() }),
      mutating: false,
      handler: async (p) => {
        await new Promise((r) => setTimeout(r, p.ms));
        effects.calls.push(`slow:${p.ms}`);
        return 'done';
      },
    }),
  );
  return registry;
}

/** A pino logger whose lines land in an array, for asserting on what was logged. */
export function captureLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(JSON.parse(line));
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

export interface TestServer {
  server: RpcServer;
  port: number;
  effects: Effects;
  lines: Record<string, unknown>[];
  close(): Promise<void>;
}

/** Starts a server on a free port of 127.0.0.1 with the test registry. */
export async function startServer(extra: Partial<RpcServerOptions> = {}): Promise<TestServer> {
  const effects: Effects = { calls: [] };
  const { logger, lines } = captureLogger();
  const server = createRpcServer({
    registry: testRegistry(effects),
    user: USER,
    password: PASSWORD,
    logger,
    ...extra,
  });
  const { port } = await server.listen('127.0.0.1', 0);
  return { server, port, effects, lines, close: () => server.close() };
}

export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  ms: number;
}

export interface PostOptions {
  auth?: string | null;
  path?: string;
  method?: string;
  headers?: Record<string, string>;
  /** Send the body in pieces with Transfer-Encoding: chunked. */
  chunked?: boolean;
  tls?: { ca: Buffer };
  agent?: http.Agent;
}

/** Sends one HTTP request on its own connection and collects the whole answer. */
export function post(port: number, body: string | Buffer, o: PostOptions = {}): Promise<HttpAnswer> {
  const started = performance.now();
  const data = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const headers: Record<string, string> = { ...o.headers };
  const auth = o.auth === undefined ? GOOD_AUTH : o.auth;
  if (auth !== null) headers.Authorization = auth;
  if (!o.chunked && !('Content-Length' in headers)) headers['Content-Length'] = String(data.length);
  if (!('Content-Type' in headers)) headers['Content-Type'] = 'application/json';
  const options: https.RequestOptions = {
    host: '127.0.0.1',
    port,
    method: o.method ?? 'POST',
    path: o.path ?? '/targetrpc',
    headers,
    agent: o.agent ?? false,
    ...(o.tls ? { ca: o.tls.ca, servername: 'localhost' } : {}),
  };
  return new Promise((resolve, reject) => {
    const req = (o.tls ? https : http).request(options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          text: Buffer.concat(chunks).toString('utf8'),
          ms: performance.now() - started,
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    if (o.chunked) {
      for (let off = 0; off < data.length; off += 8192) req.write(data.subarray(off, off + 8192));
      req.end();
    } else req.end(data);
  });
}

/** Posts a JSON-RPC body and expects a 200 application/json answer; returns the raw text and parsed value. */
export async function rpc(
  port: number,
  body: string,
  o: PostOptions = {},
): Promise<{ text: string; json: unknown }> {
  const a = await post(port, body, o);
  if (a.status !== 200) throw new Error(`expected HTTP 200, got ${a.status}: ${a.text}`);
  if (a.headers['content-type'] !== 'application/json') {
    throw new Error(`expected Content-Type application/json, got ${a.headers['content-type']}`);
  }
  return { text: a.text, json: JSON.parse(a.text) };
}

/** One request object as text; `id` is raw JSON text, undefined for a notification. */
export function request(methodName: string, params: unknown, id: string | undefined): string {
  const parts = ['"jsonrpc":"2.0"', `"method":${JSON.stringify(methodName)}`];
  if (params !== undefined) parts.push(`"params":${JSON.stringify(params)}`);
  if (id !== undefined) parts.push(`"id":${id}`);
  return `{${parts.join(',')}}`;
}
