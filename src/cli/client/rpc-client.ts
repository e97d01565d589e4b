import http from 'node:http';
import https from 'node:https';
import { type Json, parseJson, stringifyJson } from './json.js';

/** A JSON-RPC error answer. A positive `code` is not a failure but an async id (see isAsyncId). */
export class RpcCallError extends Error {
  override name = 'RpcCallError';
  constructor(
    readonly code: number,
    message: string,
    readonly data?: Json,
  ) {
    super(message);
  }

  /** True when the daemon answered with an async id: the operation goes on in the background. */
  get isAsyncId(): boolean {
    return this.code > 0;
  }
}

/** Why a call got no JSON-RPC answer at all. */
export type TransportFailure = 'auth' | 'busy' | 'http' | 'connect' | 'timeout' | 'tls' | 'protocol';

/** The daemon could not be reached, refused the credentials, or did not answer in JSON-RPC. */
export class TransportError extends Error {
  override name = 'TransportError';
  constructor(
    readonly kind: TransportFailure,
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

export interface RpcClientOptions {
  url: string | URL;
  user: string;
  password: string;
  /** Accept any TLS certificate (self-signed daemons). */
  insecure?: boolean;
  /** Per-call limit in milliseconds; 0 or absent waits forever. */
  timeoutMs?: number;
}

const TLS_TRUST_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** A small JSON-RPC 2.0 client for targetd: Basic auth, optional TLS, exact big integers. */
export class RpcClient {
  readonly url: URL;
  private readonly agent: http.Agent;
  private readonly auth: string;
  private nextId = 1;

  constructor(private readonly opts: RpcClientOptions) {
    this.url = new URL(opts.url);
    if (this.url.protocol !== 'http:' && this.url.protocol !== 'https:') {
      throw new TypeError(`unsupported URL scheme ${this.url.protocol}`);
    }
    // An agent of our own, so that --insecure affects only this client and polling reuses one connection.
    this.agent =
      this.url.protocol === 'https:'
        ? // Without --insecure leave the default, so NODE_TLS_REJECT_UNAUTHORIZED and NODE_EXTRA_CA_CERTS still apply.
          new https.Agent({ keepAlive: true, ...(opts.insecure ? { rejectUnauthorized: false } : {}) })
        : new http.Agent({ keepAlive: true });
    this.auth = `Basic ${Buffer.from(`${opts.user}:${opts.password}`, 'utf8').toString('base64')}`;
  }

  /** Calls `method`; resolves with its result, rejects with RpcCallError (an answer) or TransportError. */
  async call(method: string, params: Record<string, unknown> = {}): Promise<Json> {
    const id = this.nextId++;
    const body = stringifyJson({ jsonrpc: '2.0', id, method, params });
    const { status, text } = await this.post(body);
    if (status === 401) {
      throw new TransportError(
        'auth',
        `authentication failed for user '${this.opts.user}' at ${this.url}`,
        401,
      );
    }
    if (status === 503) {
      throw new TransportError(
        'busy',
        `${this.url} refused the request (HTTP 503): a recent failed login from this address is being held back; retry in a few seconds`,
        503,
      );
    }
    if (status !== 200) {
      const hint = status === 404 ? ` (is the path right? targetd answers on /targetrpc)` : '';
      const snippet = text.trim().slice(0, 200);
      throw new TransportError(
        'http',
        `HTTP ${status} from ${this.url}${hint}${snippet ? `: ${snippet}` : ''}`,
        status,
      );
    }
    let reply: Json;
    try {
      reply = parseJson(text);
    } catch (e) {
      throw new TransportError('protocol', `${this.url} did not answer JSON: ${(e as Error).message}`);
    }
    if (reply === null || typeof reply !== 'object' || Array.isArray(reply)) {
      throw new TransportError(
        'protocol',
        `${this.url} answered with something that is not a JSON-RPC reply`,
      );
    }
    if (reply.id !== id) {
      throw new TransportError(
        'protocol',
        `${this.url} answered id ${stringifyJson(reply.id)}, expected ${id}`,
      );
    }
    const error = reply.error;
    if (error !== undefined && error !== null) {
      if (typeof error !== 'object' || Array.isArray(error)) {
        throw new TransportError('protocol', `malformed JSON-RPC error: ${stringifyJson(error)}`);
      }
      const code = Number(error.code);
      if (!Number.isInteger(code)) {
        throw new TransportError('protocol', `malformed JSON-RPC error code: ${stringifyJson(error.code)}`);
      }
      const message = typeof error.message === 'string' ? error.message : stringifyJson(error.message);
      throw new RpcCallError(code, message, error.data);
    }
    if (!('result' in reply)) throw new TransportError('protocol', 'JSON-RPC reply without result or error');
    return reply.result ?? null;
  }

  /** Releases pooled connections. */
  close(): void {
    this.agent.destroy();
  }

  private post(body: string): Promise<{ status: number; text: string }> {
    const request = this.url.protocol === 'https:' ? https.request : http.request;
    return new Promise((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (f: () => void): void => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        f();
      };
      const req = request(
        this.url,
        {
          method: 'POST',
          agent: this.agent,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            accept: 'application/json',
            authorization: this.auth,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            finish(() =>
              resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
            ),
          );
          res.on('error', (e) => finish(() => reject(this.describe(e))));
        },
      );
      const timeoutMs = this.opts.timeoutMs ?? 0;
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          finish(() =>
            reject(
              new TransportError(
                'timeout',
                `no answer from ${this.url} within ${timeoutMs / 1000} s (the daemon may still finish the call; --timeout 0 waits without limit)`,
              ),
            ),
          );
          req.destroy();
        }, timeoutMs);
      }
      req.on('error', (e) => finish(() => reject(this.describe(e))));
      req.end(body);
    });
  }

  /** Turns a socket or TLS error into a message that names the URL and, where it helps, the fix. */
  private describe(e: Error & { code?: string }): TransportError {
    const url = String(this.url);
    const code = e.code ?? '';
    if (code === 'ECONNREFUSED') {
      return new TransportError(
        'connect',
        `cannot connect to ${url}: connection refused (is targetd running?)`,
      );
    }
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
      return new TransportError('connect', `cannot connect to ${url}: unknown host ${this.url.hostname}`);
    }
    if (code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') {
      return new TransportError('connect', `cannot connect to ${url}: ${e.message}`);
    }
    if (TLS_TRUST_CODES.has(code)) {
      return new TransportError(
        'tls',
        `TLS certificate of ${url} not trusted (${code}); use --insecure to accept a self-signed certificate`,
      );
    }
    if (code === 'EPROTO' || code.startsWith('ERR_SSL')) {
      return new TransportError(
        'tls',
        `TLS handshake with ${url} failed (${e.message}); is the daemon serving plain http?`,
      );
    }
    if (code === 'ECONNRESET' || code === 'EPIPE') {
      const hint = this.url.protocol === 'http:' ? '; if the daemon uses ssl, use an https:// URL' : '';
      return new TransportError('connect', `connection to ${url} was closed (${e.message})${hint}`);
    }
    return new TransportError('connect', `request to ${url} failed: ${e.message}`);
  }
}
