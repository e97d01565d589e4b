// Regressions found by adversarial testing. Each test fails for the defect named in its title and passes
// once that defect is fixed. Specs: ../shared/seed/targetd-api-0.2.txt, ../shared/api-reference.md, issue 2.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { type DaemonHandle, freePort, MAIN, startDaemon } from '../helpers/daemon.js';

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Writes `mib` MiB of non-zero data at the start of a volume's file, so a sparse copy has work to do. */
async function fillVolume(d: DaemonHandle, name: string, mib: number): Promise<void> {
  const h = await open(join(d.dir, 'pool1', `${name}.vol`), 'r+');
  const chunk = Buffer.alloc(MiB, 0x5a);
  for (let i = 0; i < mib; i++) await h.write(chunk, 0, MiB, i * MiB);
  await h.close();
}

/** Sends one raw JSON-RPC body and returns the parsed reply. */
async function rawCall(
  d: DaemonHandle,
  body: string,
): Promise<{ result?: unknown; error?: { code: number; message: string } }> {
  const res = await d.post(body);
  assert.equal(res.status, 200);
  return (await res.json()) as { result?: unknown; error?: { code: number; message: string } };
}

/** Runs `targetd serve --config` with `config` until it exits or `ms` pass (then kills it by PID). */
async function serveOnce(
  config: Record<string, unknown>,
  ms = 3000,
): Promise<{ code: number | null; running: boolean; output: string; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'targetd-reg-cfg-'));
  const cfgPath = join(dir, 'targetd.yaml');
  const full: Record<string, unknown> = {
    password: 'test-password-1234',
    rpc_address: '127.0.0.1',
    rpc_port: await freePort(),
    state_dir: join(dir, 'state'),
    iscsi_backend: 'none',
    file_pools: [{ name: 'pool1', path: join(dir, 'pool1') }],
    ...config,
  };
  for (const [k, v] of Object.entries(full)) if (typeof v === 'string') full[k] = v.replaceAll('$DIR', dir);
  if (Array.isArray(full.file_pools)) {
    full.file_pools = (full.file_pools as { path: string }[]).map((p) => ({
      ...p,
      path: p.path.replaceAll('$DIR', dir),
    }));
  }
  await writeFile(cfgPath, stringify(full), { mode: 0o600 });
  const proc = spawn(process.execPath, [MAIN, 'serve', '--config', cfgPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout.on('data', (c) => (output += c));
  proc.stderr.on('data', (c) => (output += c));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const outcome = await Promise.race([exited, sleep(ms).then(() => 'timeout' as const)]);
  if (outcome === 'timeout') {
    proc.kill('SIGKILL');
    await exited;
    return { code: null, running: true, output, dir };
  }
  return { code: outcome, running: false, output, dir };
}

describe('regressions', () => {
  const daemons: DaemonHandle[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const d of daemons) await d.dispose();
    for (const x of dirs) await rm(x, { recursive: true, force: true });
  });
  async function daemon(config: Record<string, unknown> = {}): Promise<DaemonHandle> {
    const d = await startDaemon({ config });
    daemons.push(d);
    return d;
  }

  // ---- JSON-RPC parameter validation ----

  test('-32602 for a wrong-typed parameter says it is the wrong type, not "missing" (issue 2 §3)', async () => {
    const d = await daemon();
    const cases: [string, Record<string, unknown>, string][] = [
      ['vol_create', { pool: 'pool1', name: 'v', size: '4096' }, 'size'],
      ['vol_create', { pool: 'pool1', name: 5, size: 4096 }, 'name'],
      ['vol_list', { pool: 7 }, 'pool'],
      [
        'export_create',
        { pool: 'pool1', vol: 'v', initiator_wwn: 'iqn.2024-01.com.example:h', lun: '0' },
        'lun',
      ],
    ];
    for (const [method, params, param] of cases) {
      const reply = await rawCall(d, JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }));
      assert.equal(reply.error?.code, -32602);
      assert.match(reply.error!.message, new RegExp(`'${param}'`));
      assert.doesNotMatch(
        reply.error!.message,
        /missing/i,
        `${method}: '${param}' was sent (with the wrong type) but the error says: ${reply.error!.message}`,
      );
    }
  });

  test('an empty name gets one reason, not "empty" and "may contain only" together', async () => {
    const d = await daemon();
    await assert.rejects(d.call('vol_create', { pool: 'pool1', name: '', size: 4096 }), (e: Error) => {
      assert.equal(e.message, "-32602: invalid parameter 'name': must not be empty");
      return true;
    });
  });

  test('-32602 for an absent required parameter says "missing" (access_group_create without init_type)', async () => {
    const d = await daemon();
    const reply = await rawCall(
      d,
      JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'access_group_create',
        params: { ag_name: 'g', init_id: 'iqn.2024-01.com.example:h' },
      }),
    );
    assert.equal(reply.error?.code, -32602);
    assert.match(reply.error!.message, /missing parameter 'init_type'/);
  });

  test('a size of 2^53+1 is refused, not rounded down to 2^53 and created smaller than asked', async (t) => {
    // tmpfs holds files up to 2^63 bytes, so the filesystem does not mask the lossy number parsing.
    if (!existsSync('/dev/shm')) return t.skip('no /dev/shm (tmpfs) here');
    const shm = await mkdtemp('/dev/shm/targetd-reg-');
    dirs.push(shm);
    const d = await daemon({ file_pools: [{ name: 'pool1', path: join(shm, 'pool1') }] });
    const reply = await rawCall(
      d,
      '{"jsonrpc":"2.0","id":1,"method":"vol_create","params":{"pool":"pool1","name":"big","size":9007199254740993}}',
    );
    const vols = await d.call<{ name: string; size: number }[]>('vol_list', { pool: 'pool1' });
    assert.equal(reply.error?.code, -32602, `accepted; vol_list: ${JSON.stringify(vols)}`);
    assert.deepEqual(vols, []);
  });

  test('a non-integer JSON number for a size (4096.0000000000001) is refused, not rounded to 4096', async () => {
    const d = await daemon();
    const reply = await rawCall(
      d,
      '{"jsonrpc":"2.0","id":1,"method":"vol_create","params":{"pool":"pool1","name":"fl","size":4096.0000000000001}}',
    );
    assert.equal(reply.error?.code, -32602, `accepted: ${JSON.stringify(reply)}`);
  });

  test('optional parameters sent as null mean "absent" (h_lun_id: null picks a LUN, vol_copy size: null)', async () => {
    // Upstream's signatures default them to None; targetd-client sends "h_lun_id": null by default.
    const d = await daemon();
    await d.call('vol_create', { pool: 'pool1', name: 'v', size: 4096 });
    await d.call('access_group_create', {
      ag_name: 'g',
      init_id: 'iqn.2024-01.com.example:h',
      init_type: 'iscsi',
    });
    await d.call('access_group_map_create', {
      pool_name: 'pool1',
      vol_name: 'v',
      ag_name: 'g',
      h_lun_id: null,
    });
    assert.deepEqual(await d.call('access_group_map_list'), [
      { ag_name: 'g', h_lun_id: 0, pool_name: 'pool1', vol_name: 'v' },
    ]);
    await d.call('vol_copy', { pool: 'pool1', vol_orig: 'v', vol_new: 'v2', size: null });
    const names = (await d.call<{ name: string }[]>('vol_list', { pool: 'pool1' })).map((v) => v.name);
    assert.deepEqual(names, ['v', 'v2']);
  });

  test('initiator names with control characters (NUL, ESC, DEL) are refused with -32602', async () => {
    const d = await daemon();
    await d.call('vol_create', { pool: 'pool1', name: 'v', size: 4096 });
    for (const bad of [
      'iqn.2024-01.com.example:a\u0000b',
      'iqn.2024-01.com.example:a\u001b[2Jb',
      'iqn.2024-01.com.example:a\u007fb',
    ]) {
      assert.equal(
        await d.errorCode('initiator_set_auth', { initiator_wwn: bad }),
        -32602,
        JSON.stringify(bad),
      );
      assert.equal(
        await d.errorCode('export_create', { pool: 'pool1', vol: 'v', initiator_wwn: bad, lun: 0 }),
        -32602,
        JSON.stringify(bad),
      );
      assert.equal(
        await d.errorCode('access_group_create', { ag_name: 'g', init_id: bad, init_type: 'iscsi' }),
        -32602,
        JSON.stringify(bad),
      );
    }
    assert.deepEqual(await d.call('export_list'), []);
    assert.deepEqual(await d.call('initiator_list'), []);
  });

  // ---- access groups named like Object.prototype members ----

  test("access_group_create 'constructor' works on a fresh server (no false -50)", async () => {
    const d = await daemon();
    assert.deepEqual(await d.call('access_group_list'), []);
    await d.call('access_group_create', {
      ag_name: 'constructor',
      init_id: 'iqn.2024-01.com.example:a',
      init_type: 'iscsi',
    });
    await d.call('access_group_create', {
      ag_name: 'toString',
      init_id: 'iqn.2024-01.com.example:b',
      init_type: 'iscsi',
    });
    assert.deepEqual((await d.call<{ name: string }[]>('access_group_list')).map((g) => g.name).sort(), [
      'constructor',
      'toString',
    ]);
  });

  test("access_group_map_create to a missing group 'hasOwnProperty' is -200 and does not brick the registry", async () => {
    const d = await daemon();
    await d.call('vol_create', { pool: 'pool1', name: 'v', size: 4096 });
    assert.equal(
      await d.errorCode('access_group_map_create', {
        pool_name: 'pool1',
        vol_name: 'v',
        ag_name: 'hasOwnProperty',
      }),
      -200,
    );
    assert.deepEqual(await d.call('access_group_map_list'), []);
    // Today the bogus map is saved: export_list and every later export fail with -1, and the daemon
    // cannot start again (applyExports throws at start-up).
    assert.deepEqual(await d.call('export_list'), []);
    await d.call('export_create', {
      pool: 'pool1',
      vol: 'v',
      initiator_wwn: 'iqn.2024-01.com.example:x',
      lun: 0,
    });
    await d.restart('SIGKILL');
    assert.equal((await d.call<unknown[]>('export_list')).length, 1);
  });

  test('a new volume does not inherit the exports of a missing volume of the same name', async () => {
    const d = await daemon();
    const z = 'iqn.2024-01.com.example:z';
    await d.call('vol_create', { pool: 'pool1', name: 'v1', size: MiB });
    await d.call('export_create', { pool: 'pool1', vol: 'v1', initiator_wwn: z, lun: 0 });
    await d.call('access_group_create', {
      ag_name: 'g',
      init_id: 'iqn.2024-01.com.example:y',
      init_type: 'iscsi',
    });
    await d.call('access_group_map_create', {
      pool_name: 'pool1',
      vol_name: 'v1',
      ag_name: 'g',
      h_lun_id: 1,
    });
    // The volume disappears behind the daemon's back (removed by hand, or a pool path that changed).
    await d.kill();
    await rm(join(d.dir, 'pool1', 'v1.vol'));
    await rm(join(d.dir, 'pool1', '.targetd', 'vols', 'v1.json'));
    await d.start();
    const create = () => d.call('vol_create', { pool: 'pool1', name: 'v1', size: MiB });
    const copySrc = await d.call('vol_create', { pool: 'pool1', name: 'src', size: MiB }).then(() => 'src');
    // Before: the create succeeded and host z and group g could read the new volume at once.
    await assert.rejects(create(), (e: Error & { code?: number }) => {
      assert.equal(e.code, -50);
      assert.match(e.message, /iqn\.2024-01\.com\.example:z.*export_destroy/);
      return true;
    });
    await assert.rejects(
      d.call('vol_copy', { pool: 'pool1', vol_orig: copySrc, vol_new: 'v1' }),
      /export_destroy/,
    );
    await d.call('export_destroy', { pool: 'pool1', vol: 'v1', initiator_wwn: z });
    await assert.rejects(create(), /access group 'g'.*access_group_map_destroy/);
    await d.call('access_group_map_destroy', { pool_name: 'pool1', vol_name: 'v1', ag_name: 'g' });
    await create();
    assert.deepEqual(await d.call('export_list'), []);
    assert.deepEqual(await d.call('access_group_map_list'), []);
  });

  // ---- secrets ----

  test('CHAP secrets sent as positional params never reach the log', async () => {
    const d = await daemon();
    const secret = 'POSITIONAL-CHAP-SECRET-9f3a';
    const reply = await rawCall(
      d,
      JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initiator_set_auth',
        params: ['iqn.2024-01.com.example:h', 'user1', secret, null, null],
      }),
    );
    assert.equal(reply.error?.code, -32602);
    await sleep(300);
    assert.match(d.stderr, /"method":"initiator_set_auth"/, 'the call was not logged at all');
    assert.ok(!d.stderr.includes(secret), 'the CHAP secret is in the daemon log');
  });

  test('a CHAP secret shorter than 12 characters is accepted with a warning (api-reference: "warn below 12")', async () => {
    const d = await daemon();
    await d.call('initiator_set_auth', {
      initiator_wwn: 'iqn.2024-01.com.example:h',
      in_user: 'u',
      in_pass: 'short1',
    });
    await sleep(300);
    const warnings = d.stderr.split('\n').filter((l) => l.includes('"level":40'));
    assert.ok(
      warnings.some((l) => /in_pass|chap|secret/i.test(l)),
      `no warning about the short CHAP secret; warnings: ${warnings.join('\n')}`,
    );
  });

  // ---- async copies ----

  test('async_after above the longest timer (2^31 ms) is a config error, not an async answer after 1 ms', async () => {
    const r = await serveOnce({ async_after: 3_000_000 });
    dirs.push(r.dir);
    assert.ok(!r.running, 'the daemon started with an async_after it cannot honour');
    assert.equal(r.code, 2, r.output);
    assert.match(r.output, /async_after: .*2147483/);
    const ok = await serveOnce({ async_after: 2147483 });
    dirs.push(ok.dir);
    assert.ok(ok.running, ok.output);
  });

  test('kill -9 just after a copy committed: not reported failed while the new volume exists', async () => {
    const d = await daemon({ async_after: 0 });
    await d.call('vol_create', { pool: 'pool1', name: 'src', size: 8 * MiB });
    await fillVolume(d, 'src', 4);
    // The pool logs "volume copied" right after the commit, before the core clears the job journal.
    const killed = new Promise<void>((resolve) => {
      d.proc.stderr!.on('data', (c: Buffer) => {
        if (String(c).includes('volume copied')) {
          d.proc.kill('SIGKILL');
          resolve();
        }
      });
    });
    await d.call('vol_copy', { pool: 'pool1', vol_orig: 'src', vol_new: 'dst' }).catch(() => {});
    await Promise.race([killed, sleep(10_000)]);
    await d.restart('SIGKILL');
    const listed = (await d.call<{ name: string }[]>('vol_list', { pool: 'pool1' })).some(
      (v) => v.name === 'dst',
    );
    const failed = Object.values(await d.call<Record<string, [number, number]>>('async_list')).some(
      ([s]) => s < 0,
    );
    assert.ok(
      !(listed && failed),
      'async_list reports the copy as failed, yet the "failed" copy is a complete, listed volume',
    );
  });

  test('SIGTERM during an in-call copy (async_after: -1) stops the daemon promptly', {
    timeout: 60_000,
  }, async () => {
    const d = await daemon({ async_after: -1, copy_rate_limit: 1 * MiB });
    await d.call('vol_create', { pool: 'pool1', name: 'src', size: 64 * MiB });
    await fillVolume(d, 'src', 30);
    const copy = d.call('vol_copy', { pool: 'pool1', vol_orig: 'src', vol_new: 'dst' }).catch(() => {});
    await sleep(1000);
    const exited = new Promise((r) => d.proc.once('exit', r));
    const t0 = Date.now();
    d.proc.kill('SIGTERM');
    const won = await Promise.race([exited.then(() => 'exited'), sleep(5000).then(() => 'hung')]);
    const waited = Date.now() - t0;
    await d.kill('SIGKILL');
    await copy;
    assert.equal(
      won,
      'exited',
      `still running ${waited} ms after SIGTERM (it waits for the 30 s copy to finish)`,
    );
  });

  // ---- configuration ----

  test('config: a value of the wrong type is reported as such, not as "is required"', async () => {
    const r = await serveOnce({ rpc_port: '18777', ssl: 'yes' });
    dirs.push(r.dir);
    assert.equal(r.code, 2, r.output);
    assert.match(r.output, /rpc_port/);
    assert.doesNotMatch(r.output, /rpc_port: is required/, r.output);
    assert.doesNotMatch(r.output, /ssl: is required/, r.output);
  });

  test("config: a user containing ':' is refused (Basic auth can never match it)", async () => {
    const r = await serveOnce({ user: 'ad:min' });
    dirs.push(r.dir);
    assert.ok(!r.running, 'the daemon started with a user no client can authenticate as');
    assert.equal(r.code, 2, r.output);
    assert.match(r.output, /\buser\b/);
  });

  const noStack = (out: string) => !/^\s+at .+\(.*:\d+:\d+\)$/m.test(out);

  test('config: state_dir that is a regular file gives a one-line error naming state_dir, no stack trace', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'targetd-reg-'));
    dirs.push(dir);
    await writeFile(join(dir, 'afile'), 'x');
    const r = await serveOnce({ state_dir: join(dir, 'afile') });
    dirs.push(r.dir);
    assert.notEqual(r.code, 0);
    assert.ok(!r.running);
    assert.match(r.output, /state_dir/, r.output);
    assert.ok(noStack(r.output), `stack trace on stderr:\n${r.output}`);
  });

  test('config: a file pool path that is a regular file gives an error naming the pool, no stack trace', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'targetd-reg-'));
    dirs.push(dir);
    await writeFile(join(dir, 'afile'), 'x');
    const r = await serveOnce({ file_pools: [{ name: 'pool1', path: join(dir, 'afile') }] });
    dirs.push(r.dir);
    assert.notEqual(r.code, 0);
    assert.match(r.output, /file_pools|pool1/, r.output);
    assert.ok(noStack(r.output), `stack trace on stderr:\n${r.output}`);
  });

  test('config: two file pools on one path give a config error, not a stack trace', async () => {
    const r = await serveOnce({
      file_pools: [
        { name: 'a', path: '$DIR/p' },
        { name: 'b', path: '$DIR/p' },
      ],
    });
    dirs.push(r.dir);
    assert.notEqual(r.code, 0);
    assert.match(r.output, /file_pools|same path|in use/, r.output);
    assert.ok(noStack(r.output), `stack trace on stderr:\n${r.output}`);
  });

  test('config: ssl_cert/ssl_key that are not PEM give a clear error naming the key, no stack trace', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'targetd-reg-'));
    dirs.push(dir);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'cert.pem'), 'not a certificate\n', { mode: 0o600 });
    await writeFile(join(dir, 'key.pem'), 'not a key\n', { mode: 0o600 });
    const r = await serveOnce({ ssl: true, ssl_cert: join(dir, 'cert.pem'), ssl_key: join(dir, 'key.pem') });
    dirs.push(r.dir);
    assert.notEqual(r.code, 0);
    assert.match(r.output, /ssl_cert|ssl_key/, r.output);
    assert.ok(noStack(r.output), `stack trace on stderr:\n${r.output}`);
  });
});
