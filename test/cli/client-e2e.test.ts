// The built `targetd` client commands against a real daemon (test/helpers/daemon.ts).
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DaemonHandle, freePort, startDaemon } from '../helpers/daemon.js';
import { BUILT, type CliResult, runCli, selfSignedCert } from './helpers.js';

const IQN1 = 'iqn.2024-01.com.example:host1';
const IQN2 = 'iqn.2024-01.com.example:host2';
const IQN3 = 'iqn.2024-01.com.example:host3';

interface Vol {
  name: string;
  size: number;
  uuid: string;
}

/** Asserts a successful run and returns its stdout. */
function ok(r: CliResult, what: string): string {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** Asserts a failed run with `error <code>: …` on stderr and nothing on stdout. */
function fails(r: CliResult, code: number, what: string): void {
  assert.equal(r.code, 1, `${what}: exit ${r.code}\nstderr: ${r.stderr}`);
  assert.match(r.stderr, new RegExp(`^error ${code}: \\S`, 'm'), what);
  assert.equal(r.stdout, '', what);
}

/** Rows of a printed table, split on runs of two or more spaces. */
function tableRows(out: string): string[][] {
  return out
    .trimEnd()
    .split('\n')
    .map((l) => l.trim().split(/ {2,}/));
}

describe('targetd client against a real daemon', () => {
  let d: DaemonHandle;
  const cli = (...args: string[]) =>
    runCli(BUILT, args, { TARGETD_URL: d.url, TARGETD_PASSWORD: d.password });
  const vols = async () => d.call<Vol[]>('vol_list', { pool: 'pool1' });

  before(async () => {
    d = await startDaemon();
  });
  after(async () => {
    await d?.dispose();
  });

  it('pool list: a table with human sizes, exact bytes with --bytes, raw JSON with --json', async () => {
    const pools =
      await d.call<{ name: string; size: number; free_size: number; type: string }[]>('pool_list');
    const table = tableRows(ok(await cli('pool', 'list'), 'pool list'));
    assert.deepEqual(table[0]!.slice(0, 4), ['NAME', 'TYPE', 'SIZE', 'FREE']);
    const row = table.find((r) => r[0] === 'pool1');
    assert.ok(row, 'pool1 listed');
    assert.equal(row[1], 'block');
    assert.match(row[2]!, /^\d+(\.\d)? (B|KiB|MiB|GiB|TiB|PiB)$/);

    const bytes = tableRows(ok(await cli('pool', 'list', '--bytes'), 'pool list --bytes'));
    assert.equal(
      bytes.find((r) => r[0] === 'pool1')![2],
      String(pools.find((p) => p.name === 'pool1')!.size),
    );

    const json = JSON.parse(ok(await cli('pool', 'list', '--json'), 'pool list --json'));
    assert.deepEqual(
      json.map((p: { name: string }) => p.name),
      pools.map((p) => p.name),
    );
  });

  it('vol create with a human size, then vol list shows it', async () => {
    assert.equal(ok(await cli('vol', 'create', 'pool1', 'vol1', '10M'), 'vol create'), '');
    const v = (await vols()).find((x) => x.name === 'vol1');
    assert.ok(v);
    assert.ok(v.size >= 10 * 2 ** 20);

    const out = ok(await cli('vol', 'list', 'pool1'), 'vol list');
    const rows = tableRows(out);
    assert.deepEqual(rows[0], ['NAME', 'SIZE', 'UUID']);
    assert.deepEqual(
      rows.find((r) => r[0] === 'vol1'),
      ['vol1', v.size === 10 * 2 ** 20 ? '10.0 MiB' : rows.find((r) => r[0] === 'vol1')![1], v.uuid],
    );
    // Columns line up: every row starts its UUID where the header does.
    const lines = out.trimEnd().split('\n');
    const at = lines[0]!.indexOf('UUID');
    for (const l of lines.slice(1)) assert.match(l.slice(at), /^[0-9a-f-]{32,36}$/, l);

    const bytes = tableRows(ok(await cli('vol', 'list', 'pool1', '--bytes'), 'vol list --bytes'));
    assert.equal(bytes.find((r) => r[0] === 'vol1')![1], String(v.size));
    const json = JSON.parse(ok(await cli('vol', 'list', 'pool1', '--json'), 'vol list --json'));
    assert.deepEqual(json, await vols());
  });

  it('reports API errors as "error <code>: <message>" with a non-zero exit', async () => {
    const r = await cli('vol', 'create', 'nopool', 'x', '1M');
    fails(r, -110, 'unknown pool');
    assert.match(r.stderr, /nopool/);
    fails(await cli('vol', 'list', 'nopool'), -110, 'vol list unknown pool');
    fails(await cli('vol', 'create', 'pool1', 'vol1', '1M'), -50, 'duplicate name');
    fails(await cli('vol', 'destroy', 'pool1', 'missing'), -103, 'missing volume');
    fails(await cli('vol', 'resize', 'pool1', 'vol1', '1M'), -32602, 'shrink');
    fails(await cli('call', 'no_such_method'), -32601, 'unknown method');
  });

  it('vol resize grows a volume', async () => {
    assert.equal(ok(await cli('vol', 'resize', 'pool1', 'vol1', '20MiB'), 'vol resize'), '');
    assert.ok((await vols()).find((v) => v.name === 'vol1')!.size >= 20 * 2 ** 20);
  });

  it('vol copy waits for the copy, with and without --size', async () => {
    ok(await cli('vol', 'copy', 'pool1', 'vol1', 'vol1-copy'), 'vol copy');
    ok(await cli('vol', 'copy', 'pool1', 'vol1', 'vol1-big', '--size', '32M'), 'vol copy --size');
    const list = await vols();
    const orig = list.find((v) => v.name === 'vol1')!;
    const copy = list.find((v) => v.name === 'vol1-copy')!;
    assert.equal(copy.size, orig.size);
    assert.notEqual(copy.uuid, orig.uuid);
    assert.ok(list.find((v) => v.name === 'vol1-big')!.size >= 32 * 2 ** 20);
    fails(await cli('vol', 'copy', 'pool1', 'nope', 'x'), -103, 'copy of a missing volume');
  });

  it('export create / list / destroy', async () => {
    ok(await cli('export', 'create', 'pool1', 'vol1', IQN1, '3'), 'export create');
    const rows = tableRows(ok(await cli('export', 'list'), 'export list'));
    assert.deepEqual(rows[0], ['INITIATOR', 'LUN', 'POOL', 'VOLUME', 'SIZE']);
    assert.deepEqual(rows.find((r) => r[0] === IQN1)?.slice(0, 4), [IQN1, '3', 'pool1', 'vol1']);
    const json = JSON.parse(ok(await cli('export', 'list', '--json'), 'export list --json'));
    assert.equal(json.find((e: { initiator_wwn: string }) => e.initiator_wwn === IQN1).vol_name, 'vol1');

    fails(await cli('vol', 'destroy', 'pool1', 'vol1'), -303, 'destroy while exported');
    ok(await cli('export', 'destroy', 'pool1', 'vol1', IQN1), 'export destroy');
    fails(await cli('export', 'destroy', 'pool1', 'vol1', IQN1), -151, 'export destroy again');
    assert.deepEqual(await d.call('export_list'), []);
  });

  it('initiator list and set-auth', async () => {
    ok(
      await cli('initiator', 'set-auth', IQN1, '--in-user', 'alice', '--in-pass', 'secret-secret-1'),
      'set-auth',
    );
    ok(await cli('export', 'create', 'pool1', 'vol1', IQN1, '0'), 'export create');
    const rows = tableRows(ok(await cli('initiator', 'list'), 'initiator list'));
    assert.deepEqual(rows[0], ['INITIATOR', 'TYPE']);
    assert.deepEqual(
      rows.find((r) => r[0] === IQN1),
      [IQN1, 'iscsi'],
    );
    ok(await cli('initiator', 'list', '--standalone-only'), 'initiator list --standalone-only');
    ok(await cli('initiator', 'set-auth', IQN1), 'set-auth off');
    ok(await cli('export', 'destroy', 'pool1', 'vol1', IQN1), 'export destroy');
  });

  it('access groups: create, add, list, map, unmap, remove, destroy', async () => {
    ok(await cli('ag', 'create', 'group1', IQN2), 'ag create');
    ok(await cli('ag', 'add', 'group1', IQN3), 'ag add');
    let rows = tableRows(ok(await cli('ag', 'list'), 'ag list'));
    assert.deepEqual(rows[0], ['NAME', 'TYPE', 'INITIATORS']);
    assert.deepEqual(
      rows.find((r) => r[0] === 'group1'),
      ['group1', 'iscsi', `${IQN2},${IQN3}`],
    );

    ok(await cli('ag', 'map', 'create', 'pool1', 'vol1-copy', 'group1'), 'ag map create');
    ok(await cli('ag', 'map', 'create', 'pool1', 'vol1-big', 'group1', '--lun', '9'), 'ag map create --lun');
    rows = tableRows(ok(await cli('ag', 'map', 'list'), 'ag map list'));
    assert.deepEqual(rows[0], ['GROUP', 'LUN', 'POOL', 'VOLUME']);
    // Without --lun the daemon picks the group's lowest free LUN.
    assert.deepEqual(
      rows
        .slice(1)
        .map((r) => r.join(' '))
        .sort(),
      ['group1 0 pool1 vol1-copy', 'group1 9 pool1 vol1-big'],
    );
    // Group mappings show in export_list once per member.
    const exports = tableRows(ok(await cli('export', 'list'), 'export list'));
    assert.equal(exports.filter((r) => r[3] === 'vol1-big').length, 2);

    fails(await cli('ag', 'map', 'create', 'pool1', 'vol1', 'nogroup'), -200, 'map to unknown group');
    ok(await cli('ag', 'map', 'destroy', 'pool1', 'vol1-copy', 'group1'), 'ag map destroy');
    ok(await cli('ag', 'map', 'destroy', 'pool1', 'vol1-big', 'group1'), 'ag map destroy');
    ok(await cli('ag', 'remove', 'group1', IQN3), 'ag remove');
    const groups = JSON.parse(ok(await cli('ag', 'list', '--json'), 'ag list --json'));
    assert.deepEqual(groups.find((g: { name: string }) => g.name === 'group1').init_ids, [IQN2]);
    ok(await cli('ag', 'destroy', 'group1'), 'ag destroy');
    assert.deepEqual(await d.call('access_group_list'), []);
    assert.deepEqual(JSON.parse(ok(await cli('ag', 'map', 'list', '--json'), 'ag map list --json')), []);
  });

  it('async list: a header when idle, {} as JSON', async () => {
    assert.equal(ok(await cli('async', 'list'), 'async list'), 'ID  STATE  PROGRESS\n');
    assert.deepEqual(JSON.parse(ok(await cli('async', 'list', '--json'), 'async list --json')), {});
  });

  it('call: typed key=value params, human sizes for size, pretty JSON out', async () => {
    assert.equal(
      ok(await cli('call', 'vol_create', 'pool=pool1', 'name=called', 'size=1.5M'), 'call'),
      'null\n',
    );
    assert.ok((await vols()).find((v) => v.name === 'called')!.size >= 1.5 * 2 ** 20);
    const out = ok(await cli('call', 'vol_list', 'pool=pool1'), 'call vol_list');
    assert.match(out, /^\[\n {2}\{\n {4}"name": /);
    assert.deepEqual(JSON.parse(out), await vols());
    ok(await cli('call', 'initiator_list', 'standalone_only:=false'), 'call with :=');
    fails(
      await cli('call', 'vol_create', 'pool=pool1', 'name=x', 'size=9007199254740993'),
      -32602,
      'size > 2^53',
    );
    fails(await cli('call', 'vol_destroy', 'pool=pool1'), -32602, 'missing param');
  });

  it('vol destroy', async () => {
    for (const v of ['vol1', 'vol1-copy', 'vol1-big', 'called'])
      ok(await cli('vol', 'destroy', 'pool1', v), v);
    assert.deepEqual(await vols(), []);
  });

  it('reads the password from --password-file and the user from --user', async () => {
    const file = join(d.dir, 'pw.txt');
    await writeFile(file, `${d.password}\n`, { mode: 0o600 });
    const r = await runCli(BUILT, [
      'pool',
      'list',
      '--url',
      d.url,
      '--password-file',
      file,
      '--user',
      'admin',
    ]);
    ok(r, 'password file');
  });

  it('takes connection flags before the subcommand too; the ones after it win', async () => {
    const port = await freePort();
    const before = await runCli(BUILT, ['--url', d.url, '--password', d.password, '--json', 'pool', 'list']);
    const pools = JSON.parse(ok(before, 'flags before')) as { name: string }[];
    assert.ok(pools.some((p) => p.name === 'pool1'));
    // A flag after the subcommand beats the same flag before it, and either beats the environment.
    ok(
      await runCli(BUILT, ['--url', `127.0.0.1:${port}`, 'vol', 'list', 'pool1', '--url', d.url], {
        TARGETD_PASSWORD: d.password,
      }),
      'after beats before',
    );
    ok(
      await runCli(BUILT, ['--password', d.password, 'pool', 'list'], {
        TARGETD_URL: d.url,
        TARGETD_PASSWORD: 'wrong-password',
      }),
      'before beats the environment',
    );
    const refused = await runCli(BUILT, ['--url', `127.0.0.1:${port}`, 'pool', 'list'], {
      TARGETD_URL: d.url,
      TARGETD_PASSWORD: d.password,
    });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, new RegExp(`cannot connect to http://127\\.0\\.0\\.1:${port}/`));
  });

  it('takes connection flags between a command group and its subcommand, the nearest winning', async () => {
    const port = await freePort();
    ok(
      await runCli(BUILT, ['vol', '--url', d.url, 'list', 'pool1'], { TARGETD_PASSWORD: d.password }),
      'vol --url X list',
    );
    const json = ok(
      await runCli(BUILT, ['--url', `127.0.0.1:${port}`, 'ag', 'map', '--url', d.url, '--json', 'list'], {
        TARGETD_PASSWORD: d.password,
      }),
      'ag map --url --json list',
    );
    assert.deepEqual(JSON.parse(json), []);
  });

  it('refuses client flags given to serve, and --timeout values a timer cannot take', async () => {
    const serve = await runCli(BUILT, [
      '--url',
      d.url,
      '--password',
      'x',
      'serve',
      '--config',
      '/nonexistent',
    ]);
    assert.equal(serve.code, 2);
    assert.match(serve.stderr, /--url, --password are for the client commands/);
    for (const bad of ['3000000', '0x10', '1e-400', '-1', '']) {
      const r = await runCli(BUILT, ['--timeout', bad, 'pool', 'list'], {
        TARGETD_URL: d.url,
        TARGETD_PASSWORD: d.password,
      });
      assert.equal(r.code, 1, bad);
      assert.match(r.stderr, /--timeout <seconds>' argument .* is invalid/, bad);
    }
    ok(await cli('--timeout', '2.5', 'pool', 'list'), 'fractional timeout');
  });

  it('says "authentication failed" for a wrong password', async () => {
    const r = await runCli(BUILT, ['pool', 'list', '--url', d.url, '--password', 'wrong-password']);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.match(
      r.stderr,
      /^error: authentication failed for user 'admin' at http:\/\/127\.0\.0\.1:\d+\/targetrpc\n$/,
    );
  });

  it('accepts host:port for --url and names the URL when nothing listens', async () => {
    ok(
      await runCli(BUILT, ['pool', 'list', '--url', `127.0.0.1:${d.port}`, '--password', d.password]),
      'host:port',
    );
    const port = await freePort();
    const r = await runCli(BUILT, ['pool', 'list', '--url', `127.0.0.1:${port}`, '--password', 'x']);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      `error: cannot connect to http://127.0.0.1:${port}/targetrpc: connection refused (is targetd running?)\n`,
    );
  });
});

describe('targetd client: background copies against a real daemon', () => {
  let d: DaemonHandle;
  const cli = (...args: string[]) =>
    runCli(BUILT, args, { TARGETD_URL: d.url, TARGETD_PASSWORD: d.password });

  before(async () => {
    // async_after 0 and a copy rate limit make vol_copy answer with an async id and take a few seconds.
    d = await startDaemon({ config: { async_after: 0, copy_rate_limit: 8 * 2 ** 20 } });
    await d.call('vol_create', { pool: 'pool1', name: 'src', size: 24 * 2 ** 20 });
    // Real data, not holes, so that the sparse copy has bytes to move at the limited rate.
    await writeFile(join(d.dir, 'pool1', 'src.vol'), Buffer.alloc(24 * 2 ** 20, 0xa5));
  });
  after(async () => {
    await d?.dispose();
  });

  it('vol copy waits for an async copy, reporting progress on stderr', async () => {
    const r = await cli('vol', 'copy', 'pool1', 'src', 'dst');
    ok(r, 'vol copy');
    assert.equal(r.stdout, '');
    // Not a terminal: one line per 10 % step, rising, ending at 100 %. (Empty only if the filesystem
    // cloned by reflink, which is always synchronous.)
    if (r.stderr !== '') {
      const lines = r.stderr.trimEnd().split('\n');
      for (const l of lines) assert.match(l, /^copy pool1\/src -> dst: (0|[1-9]0|100)%$/);
      assert.ok(lines.length >= 2, r.stderr);
      assert.equal(lines.at(-1), 'copy pool1/src -> dst: 100%');
      const percents = lines.map((l) => Number(/(\d+)%$/.exec(l)![1]));
      assert.deepEqual(
        percents,
        [...new Set(percents)].sort((a, b) => a - b),
      );
    }
    const list = await d.call<Vol[]>('vol_list', { pool: 'pool1' });
    assert.equal(list.find((v) => v.name === 'dst')?.size, 24 * 2 ** 20);
    assert.deepEqual(await d.call('async_list'), {});
  });

  it('vol copy --no-wait prints the async id, which async list shows', async () => {
    const r = await cli('vol', 'copy', 'pool1', 'src', 'dst2', '--no-wait');
    const out = ok(r, 'vol copy --no-wait');
    if (out === '') {
      // The copy beat the 0 s threshold (a reflink-capable filesystem): nothing to wait for.
      assert.ok((await d.call<Vol[]>('vol_list', { pool: 'pool1' })).some((v) => v.name === 'dst2'));
      return;
    }
    assert.match(out, /^[1-9]\d*\n$/);
    const id = out.trim();
    const listed = await cli('async', 'list');
    const rows = tableRows(ok(listed, 'async list'));
    assert.deepEqual(rows[0], ['ID', 'STATE', 'PROGRESS']);
    const row = rows.find((x) => x[0] === id);
    if (row) {
      assert.equal(row[1], 'running');
      assert.match(row[2]!, /^\d+%$/);
    }
    for (let i = 0; i < 600 && id in (await d.call<Record<string, unknown>>('async_list')); i++) {
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.ok((await d.call<Vol[]>('vol_list', { pool: 'pool1' })).some((v) => v.name === 'dst2'));
  });

  it('vol copy reports a failed copy target as an error', async () => {
    fails(await cli('vol', 'copy', 'pool1', 'src', 'dst'), -50, 'copy onto an existing name');
  });
});

describe('targetd client over TLS', () => {
  let d: DaemonHandle | undefined;
  let skip = '';

  before(async () => {
    const tls = await selfSignedCert();
    if (!tls) {
      skip = 'openssl not available';
      return;
    }
    const dir = await mkdtemp(join(tmpdir(), 'targetd-cli-tls-'));
    await writeFile(join(dir, 'cert.pem'), tls.cert);
    await writeFile(join(dir, 'key.pem'), tls.key, { mode: 0o600 });
    const handle = new DaemonHandle(dir, {
      password: 'test-password-1234',
      rpc_address: '127.0.0.1',
      rpc_port: await freePort(),
      state_dir: join(dir, 'state'),
      iscsi_backend: 'none',
      file_pools: [{ name: 'pool1', path: join(dir, 'pool1') }],
      ssl: true,
      ssl_cert: join(dir, 'cert.pem'),
      ssl_key: join(dir, 'key.pem'),
    });
    // The handle polls with this process's fetch, which must trust the self-signed certificate; the CLI
    // children don't inherit this (runCli drops it).
    const saved = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
    try {
      await handle.start();
      d = handle;
    } catch (e) {
      // start() leaves a spawned process behind on failure; without this the test run never exits.
      await handle.dispose();
      throw e;
    } finally {
      if (saved === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
      else process.env.NODE_TLS_REJECT_UNAUTHORIZED = saved;
    }
  });
  after(async () => {
    await d?.dispose();
  });

  it('refuses a self-signed certificate unless --insecure', async (t) => {
    if (!d) {
      t.skip(skip);
      return;
    }
    const args = ['pool', 'list', '--url', d.url, '--password', d.password];
    const strict = await runCli(BUILT, args);
    assert.equal(strict.code, 1);
    assert.match(
      strict.stderr,
      /^error: TLS certificate of https:\/\/127\.0\.0\.1:\d+\/targetrpc not trusted .*--insecure/,
    );
    const lax = await runCli(BUILT, [...args, '--insecure']);
    assert.match(ok(lax, 'pool list --insecure'), /^NAME +TYPE +SIZE +FREE/);
    // A plain-http URL against the TLS port fails with a hint rather than hanging.
    const plain = await runCli(BUILT, [
      'pool',
      'list',
      '--url',
      `127.0.0.1:${d.port}`,
      '--password',
      d.password,
    ]);
    assert.equal(plain.code, 1);
    assert.match(plain.stderr, /^error: /);
  });
});
