import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { RpcCallError, RpcClient, TransportError } from '../../src/cli/client/rpc-client.js';
import { freePort } from '../helpers/daemon.js';
import { type FakeServer, selfSignedCert, startFakeServer } from './helpers.js';

describe('RpcClient', () => {
  let fake: FakeServer;
  before(async () => {
    fake = await startFakeServer((method, params) => {
      switch (method) {
        case 'pool_list':
          return { result: [{ name: 'pool1', size: 2 ** 53, free_size: 1 }] };
        case 'echo':
          return { result: params };
        case 'vol_destroy':
          return { error: { code: -103, message: 'volume not found' } };
        case 'vol_copy':
          return { error: { code: 7, message: 'async' } };
        case 'teapot':
          return { status: 418 };
        default:
          return { error: { code: -32601, message: `method not found: ${method}` } };
      }
    });
  });
  after(() => fake.close());

  const client = (over: Partial<ConstructorParameters<typeof RpcClient>[0]> = {}) =>
    new RpcClient({ url: fake.url, user: 'admin', password: 'pw', ...over });

  it('returns results and sends a JSON-RPC 2.0 request with named params', async () => {
    const c = client();
    try {
      assert.deepEqual(await c.call('pool_list'), [{ name: 'pool1', size: 2 ** 53, free_size: 1 }]);
      const seen = JSON.parse(fake.calls.at(-1)!.body);
      assert.equal(seen.jsonrpc, '2.0');
      assert.equal(seen.method, 'pool_list');
      assert.deepEqual(seen.params, {});
      assert.equal(typeof seen.id, 'number');
    } finally {
      c.close();
    }
  });

  it('sends and receives big integers exactly', async () => {
    const c = client();
    try {
      const big = 123456789012345678901234567890n;
      assert.deepEqual(await c.call('echo', { n: big, s: 'x' }), { n: big, s: 'x' });
      assert.match(fake.calls.at(-1)!.body, /"n":123456789012345678901234567890,/);
    } finally {
      c.close();
    }
  });

  it('throws RpcCallError with the code and message of an error answer', async () => {
    const c = client();
    try {
      await assert.rejects(c.call('vol_destroy', { pool: 'p', name: 'n' }), (e: unknown) => {
        assert.ok(e instanceof RpcCallError);
        assert.equal(e.code, -103);
        assert.equal(e.message, 'volume not found');
        assert.equal(e.isAsyncId, false);
        return true;
      });
      await assert.rejects(
        c.call('vol_copy'),
        (e: unknown) => e instanceof RpcCallError && e.isAsyncId && e.code === 7,
      );
    } finally {
      c.close();
    }
  });

  it('reports bad credentials as an authentication failure', async () => {
    const c = client({ password: 'wrong' });
    try {
      await assert.rejects(c.call('pool_list'), (e: unknown) => {
        assert.ok(e instanceof TransportError);
        assert.equal(e.kind, 'auth');
        assert.match(e.message, /authentication failed for user 'admin'/);
        return true;
      });
    } finally {
      c.close();
    }
  });

  it('reports other HTTP statuses with the URL', async () => {
    const c = client();
    try {
      await assert.rejects(c.call('teapot'), /HTTP 418 from http:\/\/127\.0\.0\.1:\d+\/targetrpc: nope/);
    } finally {
      c.close();
    }
  });

  it('reports a refused connection with the URL', async () => {
    const port = await freePort();
    const c = new RpcClient({ url: `http://127.0.0.1:${port}/targetrpc`, user: 'admin', password: 'pw' });
    await assert.rejects(c.call('pool_list'), (e: unknown) => {
      assert.ok(e instanceof TransportError);
      assert.equal(e.kind, 'connect');
      assert.equal(
        e.message,
        `cannot connect to http://127.0.0.1:${port}/targetrpc: connection refused (is targetd running?)`,
      );
      return true;
    });
    c.close();
  });

  it('gives up after the timeout', async () => {
    const silent = http.createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as AddressInfo).port;
    const c = new RpcClient({ url: `http://127.0.0.1:${port}/`, user: 'a', password: 'b', timeoutMs: 200 });
    try {
      await assert.rejects(
        c.call('pool_list'),
        (e: unknown) => e instanceof TransportError && e.kind === 'timeout',
      );
    } finally {
      c.close();
      silent.closeAllConnections();
      silent.close();
    }
  });

  it('refuses a reply with the wrong id', async () => {
    const liar = http.createServer((_req, res) => {
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end('{"jsonrpc":"2.0","id":999,"result":null}');
    });
    await new Promise<void>((r) => liar.listen(0, '127.0.0.1', r));
    const port = (liar.address() as AddressInfo).port;
    const c = new RpcClient({ url: `http://127.0.0.1:${port}/`, user: 'a', password: 'b' });
    try {
      await assert.rejects(
        c.call('pool_list'),
        (e: unknown) => e instanceof TransportError && e.kind === 'protocol',
      );
    } finally {
      c.close();
      liar.closeAllConnections();
      liar.close();
    }
  });

  it('distrusts a self-signed certificate unless insecure, per client', async (t) => {
    const tls = await selfSignedCert();
    if (!tls) {
      t.skip('openssl not available');
      return;
    }
    const secure = await startFakeServer(() => ({ result: 'ok' }), { tls });
    const strict = new RpcClient({ url: secure.url, user: 'admin', password: 'pw' });
    const lax = new RpcClient({ url: secure.url, user: 'admin', password: 'pw', insecure: true });
    try {
      await assert.rejects(strict.call('pool_list'), (e: unknown) => {
        assert.ok(e instanceof TransportError);
        assert.equal(e.kind, 'tls');
        assert.match(e.message, /--insecure/);
        return true;
      });
      assert.equal(await lax.call('pool_list'), 'ok');
      // The insecure agent must not have loosened the strict client.
      await assert.rejects(strict.call('pool_list'), /not trusted/);
    } finally {
      strict.close();
      lax.close();
      await secure.close();
    }
  });
});
