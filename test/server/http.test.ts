import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeSelfSignedCert } from '../helpers/tls.js';
import {
  basic,
  GOOD_AUTH,
  PASSWORD,
  post,
  request,
  rpc,
  startServer,
  type TestServer,
  USER,
} from './helpers.js';

const ECHO = request('echo', { text: 'x' }, '1');

describe('routing and limits', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer();
  });
  after(async () => {
    await s.close();
  });

  test('other paths are 404', async () => {
    for (const path of ['/', '/targetrpc/', '/TARGETRPC', '/targetrpcx', '/rpc']) {
      const a = await post(s.port, ECHO, { path });
      assert.equal(a.status, 404, path);
    }
  });

  test('other verbs are 405 with Allow: POST', async () => {
    for (const method of ['GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      const a = await post(s.port, method === 'GET' ? '' : ECHO, { method });
      assert.equal(a.status, 405, method);
      assert.equal(a.headers.allow, 'POST');
    }
  });

  test('a 200 KiB body with Content-Length is 413', async () => {
    const body = `${ECHO}${' '.repeat(200 * 1024)}`;
    const a = await post(s.port, body);
    assert.equal(a.status, 413);
    assert.deepEqual(s.effects.calls, []);
  });

  test('a 200 KiB chunked body is 413 while streaming', async () => {
    const body = `${ECHO}${' '.repeat(200 * 1024)}`;
    const a = await post(s.port, body, { chunked: true });
    assert.equal(a.status, 413);
    assert.deepEqual(s.effects.calls, []);
  });

  test('an endless chunked body is cut off, not buffered', async () => {
    const status = await new Promise<number | string>((resolve) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: s.port,
          method: 'POST',
          path: '/targetrpc',
          headers: { Authorization: GOOD_AUTH },
          agent: false,
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', (e) => resolve(e.message));
      const chunk = Buffer.alloc(16 * 1024, 0x20);
      const pump = (): void => {
        while (!req.destroyed && req.write(chunk));
        if (!req.destroyed) req.once('drain', pump);
      };
      pump();
    });
    assert.equal(status, 413);
  });

  test('a body of exactly 128 KiB is accepted', async () => {
    const body = ECHO.padEnd(128 * 1024, ' ');
    assert.equal(Buffer.byteLength(body), 128 * 1024);
    await rpc(s.port, body);
    await rpc(s.port, body, { chunked: true });
  });

  test('no Content-Type, any Content-Type, trailing whitespace and newline are accepted', async () => {
    const raw = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(s.port, '127.0.0.1', () => {
        const body = `${ECHO}\r\n`;
        sock.end(
          `POST /targetrpc HTTP/1.1\r\nHost: x\r\nAuthorization: ${GOOD_AUTH}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
        );
      });
      let got = '';
      sock.on('data', (d) => {
        got += d.toString();
      });
      sock.on('end', () => resolve(got));
      sock.on('error', reject);
    });
    assert.match(raw, /^HTTP\/1.1 200 /);
    assert.doesNotMatch(raw, /\r\ncontent-type: (?!application\/json\r\n)/i);
    assert.match(raw, /\r\nContent-Type: application\/json\r\n/);
    assert.match(raw, /"result":\{"text":"x"/);
    for (const body of [`${ECHO}\n`, `  ${ECHO} \n\t\r\n`]) await rpc(s.port, body);
    await rpc(s.port, ECHO, { headers: { 'Content-Type': 'text/plain' } });
  });

  test('Expect: 100-continue works', async () => {
    const a = await post(s.port, ECHO, { headers: { Expect: '100-continue' } });
    assert.equal(a.status, 200);
  });

  test('keep-alive connections are reused for normal clients', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const sockets = new Set<net.Socket>();
      agent.on('free', (sock: net.Socket) => sockets.add(sock));
      for (let i = 0; i < 3; i++) await rpc(s.port, ECHO, { agent });
      assert.equal(sockets.size, 1);
    } finally {
      agent.destroy();
    }
  });
});

describe('authentication', () => {
  let s: TestServer;
  before(async () => {
    // Short tarpit: only reply codes are checked here; the timing has its own block.
    s = await startServer({ tarpitMs: 100 });
  });
  after(async () => {
    await s.close();
  });

  test('the right pair, with a password containing colons, is served', async () => {
    assert.ok(PASSWORD.includes(':'));
    await rpc(s.port, ECHO, { auth: basic(USER, PASSWORD) });
  });

  test('missing credentials: 401 with the challenge', async () => {
    const a = await post(s.port, ECHO, { auth: null });
    assert.equal(a.status, 401);
    assert.equal(a.headers['www-authenticate'], 'Basic realm="targetd"');
  });

  test('malformed Authorization headers: 401, server keeps working', async () => {
    s.effects.calls.length = 0;
    const b64 = (t: string): string => Buffer.from(t).toString('base64');
    for (const h of [
      'Basic',
      `Bearer ${b64(`${USER}:${PASSWORD}`)}`,
      b64(`${USER}:${PASSWORD}`),
      'Basic %%%%',
      'Basic a',
      `Basic ${b64(USER)}`,
      `Basic ${b64(`${USER}${PASSWORD}`)}`,
    ]) {
      const a = await post(s.port, ECHO, { auth: h });
      assert.equal(a.status, 401, h);
      assert.equal(a.headers['www-authenticate'], 'Basic realm="targetd"');
    }
    await rpc(s.port, ECHO);
    assert.deepEqual(s.effects.calls, ['echo:x']);
  });

  test('wrong user or password: 401 with the challenge; failures logged at warn without the password', async () => {
    s.lines.length = 0;
    for (const auth of [
      basic(USER, 'pa:ss'),
      basic('root', PASSWORD),
      basic(USER, `${PASSWORD}x`),
      basic('', ''),
    ]) {
      const a = await post(s.port, ECHO, { auth });
      assert.equal(a.status, 401);
      assert.equal(a.headers['www-authenticate'], 'Basic realm="targetd"');
    }
    const warns = s.lines.filter((l) => l.msg === 'auth failed');
    assert.equal(warns.length, 4);
    for (const w of warns) assert.equal(w.level, 40);
    assert.ok(!JSON.stringify(s.lines).includes(PASSWORD));
    assert.ok(!JSON.stringify(s.lines).includes('pa:ss'));
  });
});

describe('tarpit', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer(); // the default 2 s
  });
  after(async () => {
    await s.close();
  });

  test('a failed login waits ~2 s; meanwhile failures get 503 at once and good logins are served', async () => {
    const bad = basic(USER, 'wrong');
    const first = post(s.port, ECHO, { auth: bad });
    await new Promise((r) => setTimeout(r, 200));

    const second = await post(s.port, ECHO, { auth: bad });
    assert.equal(second.status, 503);
    assert.ok(second.ms < 300, `503 took ${second.ms} ms`);

    const good = await post(s.port, ECHO);
    assert.equal(good.status, 200);
    assert.ok(good.ms < 1000, `good login took ${good.ms} ms during another client's tarpit`);

    const firstAnswer = await first;
    assert.equal(firstAnswer.status, 401);
    assert.equal(firstAnswer.headers['www-authenticate'], 'Basic realm="targetd"');
    assert.ok(firstAnswer.ms >= 1800, `401 came after ${firstAnswer.ms} ms`);

    // The tarpit is over: the next failure is delayed again rather than refused.
    const third = await post(s.port, ECHO, { auth: bad });
    assert.equal(third.status, 401);
    assert.ok(third.ms >= 1800);
  });

  test('hanging up during the tarpit does not end it early', async () => {
    const other = await startServer();
    try {
      const bad = basic(USER, 'wrong');
      await new Promise<void>((resolve) => {
        const req = http.request({
          host: '127.0.0.1',
          port: other.port,
          method: 'POST',
          path: '/targetrpc',
          headers: { Authorization: bad, 'Content-Length': String(ECHO.length) },
          agent: false,
        });
        req.on('error', () => resolve());
        req.end(ECHO);
        setTimeout(() => {
          req.destroy();
          resolve();
        }, 100);
      });
      await new Promise((r) => setTimeout(r, 100));
      const again = await post(other.port, ECHO, { auth: bad });
      assert.equal(again.status, 503);
    } finally {
      await other.close();
    }
  });

  test('close() does not wait for a tarpitted request', async () => {
    const other = await startServer();
    const pending = post(other.port, ECHO, { auth: basic(USER, 'wrong') }).catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, 100));
    const t0 = performance.now();
    await other.close();
    assert.ok(performance.now() - t0 < 1500);
    assert.ok((await pending) instanceof Error);
  });
});

describe('timeouts', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ timeouts: { headersMs: 300, requestMs: 600, keepAliveMs: 300, idleMs: 300 } });
  });
  after(async () => {
    await s.close();
  });

  /** Connects, sends `data`, and resolves with how the connection ended and what came back. */
  function hold(data: string | null, giveUpMs: number): Promise<{ closed: boolean; got: string }> {
    return new Promise((resolve) => {
      let got = '';
      const sock = net.connect(s.port, '127.0.0.1', () => {
        if (data !== null) sock.write(data);
      });
      const timer = setTimeout(() => {
        sock.destroy();
        resolve({ closed: false, got });
      }, giveUpMs);
      sock.on('data', (d) => {
        got += d.toString();
      });
      sock.on('error', () => {});
      sock.on('close', () => {
        clearTimeout(timer);
        resolve({ closed: true, got });
      });
    });
  }

  test('a client that connects and says nothing is dropped', async () => {
    const r = await hold(null, 5000);
    assert.equal(r.closed, true);
  });

  test('a client that never finishes its headers is dropped', async () => {
    const r = await hold('POST /targetrpc HTTP/1.1\r\nHost: x\r\n', 5000);
    assert.equal(r.closed, true);
  });

  test('a client that never finishes its body is dropped', async () => {
    const r = await hold(
      `POST /targetrpc HTTP/1.1\r\nHost: x\r\nAuthorization: ${GOOD_AUTH}\r\nContent-Length: 100\r\n\r\n{"jsonrpc"`,
      5000,
    );
    assert.equal(r.closed, true);
    assert.doesNotMatch(r.got, /HTTP\/1.1 200/);
  });

  test('a method slower than the idle timeout still gets its answer', async () => {
    const { json } = await rpc(s.port, request('slow', { ms: 800 }, '1'));
    assert.deepEqual(json, { jsonrpc: '2.0', id: 1, result: 'done' });
  });
});

describe('HTTPS', () => {
  let dir: string;
  let cert: Buffer;
  let s: TestServer;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'targetd-tls-'));
    const files = makeSelfSignedCert(dir);
    cert = readFileSync(files.cert);
    s = await startServer({ tls: { cert, key: readFileSync(files.key) } });
  });
  after(async () => {
    await s?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('JSON-RPC over TLS with a self-made certificate', async () => {
    const { text } = await rpc(
      s.port,
      request('set_secret', { name: 'a', password: 'p' }, '340282366920938463463374607431768211455'),
      {
        tls: { ca: cert },
      },
    );
    assert.equal(text, '{"jsonrpc":"2.0","id":340282366920938463463374607431768211455,"result":null}');
    const a = await post(s.port, ECHO, { tls: { ca: cert }, auth: basic(USER, 'nope'), path: '/other' });
    assert.equal(a.status, 404);
  });

  test('plain HTTP to the TLS port gets no JSON-RPC answer', async () => {
    await assert.rejects(post(s.port, ECHO));
  });
});
