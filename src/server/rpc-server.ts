import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from '../log.js';
import type { MethodRegistry } from '../rpc/registry.js';
import { CredentialChecker, parseBasicAuth } from './auth.js';
import { dispatchBody } from './jsonrpc.js';
import { Tarpit } from './tarpit.js';

/** Connection timeouts, in milliseconds. */
export interface RpcServerTimeouts {
  /** Time to receive the request headers once a request has begun (slowloris). Default 10 s. */
  headersMs?: number;
  /** Time to receive a whole request, headers and body. Default 30 s. */
  requestMs?: number;
  /** How long an idle keep-alive connection stays open between requests. Default 5 s. */
  keepAliveMs?: number;
  /** A socket with no traffic for this long and no call in progress is closed. Default 60 s. */
  idleMs?: number;
}

export interface RpcServerOptions {
  registry: MethodRegistry;
  user: string;
  password: string;
  /** HTTPS when given. */
  tls?: { cert: Buffer; key: Buffer };
  logger: Logger;
  /** Delay before a failed login's 401. Default 2000. */
  tarpitMs?: number;
  /** Largest accepted request body. Default 128 KiB. */
  maxBodyBytes?: number;
  timeouts?: RpcServerTimeouts;
}

export interface RpcServer {
  /** Starts listening; resolves with the bound address (port 0 picks a free port). */
  listen(host: string, port: number): Promise<{ address: string; port: number }>;
  /** Stops accepting, lets calls in progress finish, drops idle and tarpitted connections. */
  close(): Promise<void>;
}

const RPC_PATH = '/targetrpc';
const REALM = 'Basic realm="targetd"';
// Node closes the socket once a refusal is flushed. Reading (and discarding) what has
// already arrived keeps the kernel from answering unread data with a TCP reset, which can
// overtake the status line at the client. These bound that draining when the client is
// not reading our answer.
const LINGER_BYTES = 1024 * 1024;
const LINGER_MS = 2000;

/** Strips the IPv4-mapped prefix so one client has one tarpit entry whichever way it connects. */
function remoteOf(socket: Socket): string {
  const addr = socket.remoteAddress ?? 'unknown';
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

type BodyResult = { kind: 'ok'; body: Buffer } | { kind: 'too-large' } | { kind: 'aborted' };

/** Reads the body, refusing (without buffering further) once it exceeds `max` bytes. */
function readBody(req: IncomingMessage, max: number): Promise<BodyResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let done = false;
    const finish = (result: BodyResult): void => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      total += chunk.length;
      if (total > max) {
        chunks.length = 0;
        finish({ kind: 'too-large' });
      } else chunks.push(chunk);
    };
    const onEnd = (): void => finish({ kind: 'ok', body: Buffer.concat(chunks, total) });
    const onClose = (): void => finish({ kind: 'aborted' });
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('close', onClose);
  });
}

/** Creates the JSON-RPC transport: POST /targetrpc over HTTP(S), Basic auth, tarpit, size limits. */
export function createRpcServer(opts: RpcServerOptions): RpcServer {
  const { registry, logger } = opts;
  const maxBody = opts.maxBodyBytes ?? 128 * 1024;
  const tarpit = new Tarpit(opts.tarpitMs ?? 2000);
  const credentials = new CredentialChecker(opts.user, opts.password);
  const headersMs = opts.timeouts?.headersMs ?? 10_000;
  const requestMs = Math.max(opts.timeouts?.requestMs ?? 30_000, headersMs);
  const keepAliveMs = opts.timeouts?.keepAliveMs ?? 5_000;
  const idleMs = opts.timeouts?.idleMs ?? 60_000;

  // Sockets with a request being served; the idle timeout must not cut a slow method short.
  const busy = new Set<Socket>();
  // Failed logins waiting out their delay, so close() need not wait for them.
  const tarpitted = new Map<ServerResponse, NodeJS.Timeout>();
  let closing = false;

  const serverOptions: http.ServerOptions = {
    headersTimeout: headersMs,
    requestTimeout: requestMs,
    keepAliveTimeout: keepAliveMs,
    // Node checks the headers/request deadlines on this interval (default 30 s, too coarse).
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersMs / 4))),
  };
  const server: http.Server = opts.tls
    ? https.createServer({
        ...serverOptions,
        cert: opts.tls.cert,
        key: opts.tls.key,
        minVersion: 'TLSv1.2',
        handshakeTimeout: headersMs,
      })
    : http.createServer(serverOptions);
  server.timeout = idleMs;
  // With a listener here Node leaves timed-out sockets to us instead of destroying them.
  server.on('timeout', (socket: Socket) => {
    if (!busy.has(socket)) socket.destroy();
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    void serve(req, res, false);
  });
  // Answering Expect: 100-continue ourselves lets a refused request be refused before its body is sent.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    void serve(req, res, true);
  });
  server.on('tlsClientError', (err: Error, socket: Socket) => {
    logger.debug({ err: err.message, remote: remoteOf(socket) }, 'TLS handshake failed');
  });

  /** Sends a non-200 answer and closes the connection, draining a bounded amount of unread body. */
  function refuse(
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    headers: Record<string, string> = {},
  ): void {
    const text = `${http.STATUS_CODES[status] ?? 'Error'}\n`;
    busy.delete(req.socket);
    res.shouldKeepAlive = false;
    res.writeHead(status, {
      ...headers,
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': String(Buffer.byteLength(text)),
      Connection: 'close',
    });
    res.end(text);
    if (req.complete) return;
    const socket = req.socket;
    let drained = 0;
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
    req.on('data', (chunk: Buffer) => {
      drained += chunk.length;
      if (drained > LINGER_BYTES) socket.destroy();
    });
    req.resume();
  }

  function answer(req: IncomingMessage, res: ServerResponse, text: string | null): void {
    busy.delete(req.socket);
    if (closing) res.shouldKeepAlive = false;
    if (text === null) {
      res.writeHead(204);
      res.end();
      return;
    }
    const body = Buffer.from(text, 'utf8');
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': String(body.length) });
    res.end(body);
  }

  function delayThenRefuse(req: IncomingMessage, res: ServerResponse, remote: string): void {
    const token = tarpit.enter(remote);
    const timer = setTimeout(() => {
      tarpitted.delete(res);
      tarpit.release(remote, token);
      refuse(req, res, 401, { 'WWW-Authenticate': REALM });
    }, tarpit.delayMs);
    tarpitted.set(res, timer);
    res.once('close', () => {
      // The client gave up: nothing is left to answer, but its entry stays until the delay
      // runs out, so hanging up early does not buy a faster next guess.
      if (tarpitted.get(res) === timer) {
        clearTimeout(timer);
        tarpitted.delete(res);
      }
    });
  }

  async function serve(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): Promise<void> {
    const socket = req.socket;
    const remote = remoteOf(socket);
    busy.add(socket);
    res.once('close', () => busy.delete(socket));
    try {
      const path = (req.url ?? '').split('?')[0];
      if (path !== RPC_PATH) return refuse(req, res, 404);
      if (req.method !== 'POST') return refuse(req, res, 405, { Allow: 'POST' });
      const declared = req.headers['content-length'];
      if (declared !== undefined && Number(declared) > maxBody) return refuse(req, res, 413);

      const auth = parseBasicAuth(req.headers.authorization);
      if (auth.kind !== 'ok') {
        // Nothing here can match the password, so there is nothing to slow down.
        logger.warn(
          { remote, reason: auth.kind === 'missing' ? 'no credentials' : auth.reason },
          'auth failed',
        );
        return refuse(req, res, 401, { 'WWW-Authenticate': REALM });
      }
      if (!credentials.check(auth.user, auth.password)) {
        if (tarpit.busy(remote)) {
          logger.warn({ remote, reason: 'tarpit busy' }, 'auth failed');
          return refuse(req, res, 503, { 'Retry-After': String(Math.ceil(tarpit.delayMs / 1000)) });
        }
        // The attempted user name is not logged either: people type passwords into it.
        logger.warn({ remote, reason: 'bad credentials' }, 'auth failed');
        return delayThenRefuse(req, res, remote);
      }

      if (expectsContinue) res.writeContinue();
      const body = await readBody(req, maxBody);
      if (body.kind === 'aborted') return;
      if (body.kind === 'too-large') return refuse(req, res, 413);

      const reply = await dispatchBody(body.body, { registry, logger, ctx: { remote } });
      if (!res.destroyed) answer(req, res, reply);
    } catch (err) {
      // dispatchBody turns method failures into replies; reaching here is a transport bug.
      logger.error({ err, remote }, 'request handling failed');
      if (!res.headersSent) refuse(req, res, 500);
      else res.destroy();
    }
  }

  return {
    listen(host: string, port: number) {
      return new Promise((resolve, reject) => {
        const onError = (err: Error): void => reject(err);
        server.once('error', onError);
        server.listen(port, host, () => {
          server.off('error', onError);
          const addr = server.address() as AddressInfo;
          resolve({ address: addr.address, port: addr.port });
        });
      });
    },
    close() {
      closing = true;
      return new Promise((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeIdleConnections();
        for (const [res, timer] of tarpitted) {
          clearTimeout(timer);
          res.destroy();
        }
        tarpitted.clear();
      });
    },
  };
}
