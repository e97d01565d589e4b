import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type DaemonHandle, startDaemon } from '../helpers/daemon.js';
import { makeSelfSignedCert } from '../helpers/tls.js';

/** Every method of the seed and of upstream's block, initiator and access-group families. */
const METHODS = [
  'pool_list',
  'vol_list',
  'vol_create',
  'vol_destroy',
  'vol_copy',
  'vol_resize',
  'export_list',
  'export_create',
  'export_destroy',
  'initiator_set_auth',
  'initiator_list',
  'access_group_list',
  'access_group_create',
  'access_group_destroy',
  'access_group_init_add',
  'access_group_init_del',
  'access_group_map_list',
  'access_group_map_create',
  'access_group_map_destroy',
  'async_list',
];

describe('the real daemon over HTTP', () => {
  let d: DaemonHandle;
  before(async () => {
    d = await startDaemon();
  });
  after(async () => {
    await d.dispose();
  });

  test('every method exists (none answers -32601)', async () => {
    for (const m of METHODS) {
      const res = await d.post(JSON.stringify({ jsonrpc: '2.0', id: m, method: m, params: {} }));
      const body = (await res.json()) as { error?: { code: number } };
      assert.notEqual(body.error?.code, -32601, m);
    }
    assert.equal(await d.errorCode('no_such_method'), -32601);
  });

  test('the reply envelope is exactly jsonrpc, id, result', async () => {
    const res = await d.post(
      '{"jsonrpc":"2.0","id":340282366920938463463374607431768211455,"method":"pool_list"}\n',
      {
        'content-type': '',
      },
    );
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/json');
    const text = await res.text();
    assert.match(text, /"id":340282366920938463463374607431768211455[,}]/);
    assert.deepEqual(Object.keys(JSON.parse(text)).sort(), ['id', 'jsonrpc', 'result']);
  });

  test('void methods answer result null; every params form means no arguments', async () => {
    for (const params of ['', ',"params":null', ',"params":{}', ',"params":[]']) {
      const res = await d.post(`{"jsonrpc":"2.0","id":0,"method":"export_list"${params}}`);
      assert.deepEqual(await res.json(), { jsonrpc: '2.0', id: 0, result: [] });
    }
    const res = await d.post(
      JSON.stringify({
        jsonrpc: '2.0',
        id: 's',
        method: 'vol_create',
        params: { pool: 'pool1', name: 'v', size: 1 },
      }),
    );
    assert.deepEqual(await res.json(), { jsonrpc: '2.0', id: 's', result: null });
    const pos = await d.post('{"jsonrpc":"2.0","id":1,"method":"vol_list","params":["pool1"]}');
    assert.equal(((await pos.json()) as { error: { code: number } }).error.code, -32602);
  });

  test('batches and notifications', async () => {
    const res = await d.post(
      JSON.stringify([
        { jsonrpc: '2.0', id: 1, method: 'pool_list' },
        { jsonrpc: '2.0', method: 'vol_create', params: { pool: 'pool1', name: 'note', size: 4096 } },
        { jsonrpc: '2.0', id: 2, method: 'nope' },
        { foo: 1 },
      ]),
    );
    const replies = (await res.json()) as { id: unknown; error?: { code: number } }[];
    assert.equal(replies.length, 3);
    assert.equal(replies[0].id, 1);
    assert.equal(replies[1].error?.code, -32601);
    assert.equal(replies[2].error?.code, -32600);
    const note = await d.post(
      '{"jsonrpc":"2.0","method":"vol_destroy","params":{"pool":"pool1","name":"note"}}',
    );
    assert.equal(note.status, 204);
    assert.equal(await note.text(), '');
    assert.ok(
      !(await d.call<{ name: string }[]>('vol_list', { pool: 'pool1' })).some((v) => v.name === 'note'),
    );
    const parse = await d.post('{"jsonrpc":');
    assert.deepEqual(((await parse.json()) as { error: { code: number } }).error.code, -32700);
  });

  test('401 after the tarpit, 503 during it, good credentials still served', async () => {
    const bad = `Basic ${Buffer.from('admin:wrong').toString('base64')}`;
    const t0 = Date.now();
    const first = d.post('{"jsonrpc":"2.0","id":1,"method":"pool_list"}', { authorization: bad }, false);
    await new Promise((r) => setTimeout(r, 200));
    const t1 = Date.now();
    const second = await d.post(
      '{"jsonrpc":"2.0","id":1,"method":"pool_list"}',
      { authorization: bad },
      false,
    );
    assert.equal(second.status, 503);
    assert.ok(Date.now() - t1 < 1000);
    const t2 = Date.now();
    assert.ok(Array.isArray(await d.call('pool_list')));
    assert.ok(Date.now() - t2 < 1000, 'good credentials were tarpitted');
    const r = await first;
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate') ?? '', /^Basic/);
    assert.ok(Date.now() - t0 >= 1800, 'no tarpit delay');
    await new Promise((r) => setTimeout(r, 300));
    const none = await d.post('{"jsonrpc":"2.0","id":1,"method":"pool_list"}', {}, false);
    assert.equal(none.status, 401);
  });

  test('404, 405, 413', async () => {
    const auth = `Basic ${Buffer.from(`${d.user}:${d.password}`).toString('base64')}`;
    assert.equal(
      (
        await fetch(d.url.replace('/targetrpc', '/other'), {
          method: 'POST',
          headers: { authorization: auth },
        })
      ).status,
      404,
    );
    assert.equal((await fetch(d.url, { headers: { authorization: auth } })).status, 405);
    const big = await new Promise<number>((ok, fail) => {
      const req = request(
        d.url,
        { method: 'POST', headers: { authorization: auth, 'content-length': 200 * 1024 } },
        (res) => {
          res.resume();
          ok(res.statusCode ?? 0);
        },
      );
      req.on('error', fail);
      req.end(Buffer.alloc(200 * 1024, 0x20));
    });
    assert.equal(big, 413);
  });
});

describe('HTTPS', () => {
  let d: DaemonHandle;
  let certDir: string;
  before(async () => {
    certDir = await mkdtemp(join(tmpdir(), 'targetd-cert-'));
    const { cert, key } = makeSelfSignedCert(certDir);
    execFileSync('chmod', ['600', key]);
    d = await startDaemon({
      config: { ssl: true, ssl_cert: cert, ssl_key: key },
      ca: await readFile(cert),
    });
  });
  after(async () => {
    await d.dispose();
    await rm(certDir, { recursive: true, force: true });
  });

  test('serves JSON-RPC over TLS', async () => {
    assert.ok(d.url.startsWith('https://'));
    assert.equal((await d.call<unknown[]>('pool_list')).length, 1);
  });

  test('refuses to start when the key is readable by others', async () => {
    execFileSync('chmod', ['644', join(certDir, 'key.pem')]);
    const { spawnSync } = await import('node:child_process');
    const { MAIN } = await import('../helpers/daemon.js');
    const cfg = join(certDir, 'bad.yaml');
    const { writeFile } = await import('node:fs/promises');
    await writeFile(
      cfg,
      `password: x\nssl: true\nssl_cert: ${join(certDir, 'cert.pem')}\nssl_key: ${join(certDir, 'key.pem')}\nstate_dir: ${join(certDir, 'st')}\nrpc_port: 1\n`,
    );
    const r = spawnSync(process.execPath, [MAIN, 'serve', '--config', cfg], {
      encoding: 'utf8',
      timeout: 15000,
    });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /ssl_key: .* readable by group or others/);
  });
});
