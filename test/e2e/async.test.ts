import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { type DaemonHandle, RpcError, startDaemon } from '../helpers/daemon.js';

const MiB = 1024 * 1024;
const isRoot = process.getuid?.() === 0;

/** Fills `mib` MiB of a volume file with data at scattered offsets, so copies have real work to do. */
async function fill(path: string, mib: number): Promise<void> {
  const h = await open(path, 'r+');
  const chunk = Buffer.alloc(MiB, 0xa5);
  for (let i = 0; i < mib; i++) await h.write(chunk, 0, MiB, i * 2 * MiB);
  await h.close();
}

async function volFile(d: DaemonHandle, pool: string, name: string): Promise<string> {
  const pools = d.config.file_pools as { name: string; path: string }[];
  const dir = pools.find((p) => p.name === pool)!.path;
  const f = (await readdir(dir)).find((x) => x === name || x.startsWith(`${name}.`));
  assert.ok(f, `no file for ${name} in ${dir}`);
  return join(dir, f);
}

/** Starts vol_copy and returns its async id (the call must answer async). */
async function startAsyncCopy(d: DaemonHandle, params: Record<string, unknown>): Promise<number> {
  try {
    await d.call('vol_copy', params);
  } catch (e) {
    if (e instanceof RpcError && e.code > 0) return e.code;
    throw e;
  }
  assert.fail('vol_copy finished synchronously; expected an async id');
}

const list = (d: DaemonHandle) => d.call<Record<string, [number, number]>>('async_list');
const names = async (d: DaemonHandle, pool = 'pool1') =>
  (await d.call<{ name: string }[]>('vol_list', { pool })).map((v) => v.name);

describe('async vol_copy (the seed contract)', () => {
  const daemons: DaemonHandle[] = [];
  after(async () => {
    for (const d of daemons) await d.dispose();
  });

  test('percent moves, the new volume appears only when complete, then the id is dropped', async () => {
    const d = await startDaemon({ config: { async_after: 0, copy_rate_limit: 40 * MiB } });
    daemons.push(d);
    await d.call('vol_create', { pool: 'pool1', name: 'src', size: 256 * MiB });
    await fill(await volFile(d, 'pool1', 'src'), 64);
    const id = await startAsyncCopy(d, { pool: 'pool1', vol_orig: 'src', vol_new: 'dst' });
    assert.ok(id > 0);
    const seen: number[] = [];
    for (;;) {
      const l = await list(d);
      if (!l[String(id)]) break;
      const [status, pct] = l[String(id)];
      assert.equal(status, 0);
      assert.ok(Number.isInteger(pct) && pct >= 0 && pct <= 100);
      seen.push(pct);
      // while it runs: the target is not listed, reads are served, the source cannot be destroyed
      assert.ok(!(await names(d)).includes('dst'));
      try {
        await d.call('vol_destroy', { pool: 'pool1', name: 'src' });
        // Legal only if the copy ended between async_list and this call.
        assert.ok(!(await list(d))[String(id)], 'the source was destroyed while its copy was running');
        break;
      } catch (e) {
        assert.ok(e instanceof RpcError && e.code === -303, String(e));
      }
      assert.equal(await d.errorCode('vol_create', { pool: 'pool1', name: 'dst', size: 4096 }), -50);
      await d.call('vol_create', { pool: 'pool1', name: `side${seen.length}`, size: 4096 });
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(seen.length >= 3, `too few samples: ${seen}`);
    assert.ok(new Set(seen).size >= 3, `percent did not move: ${seen}`);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i] >= seen[i - 1], `percent went back: ${seen}`);
    assert.ok((await names(d)).includes('dst'));
    assert.deepEqual(await list(d), {});
  });

  test('async_after: -1 is always synchronous, even for a long copy', async () => {
    const d = await startDaemon({ config: { async_after: -1, copy_rate_limit: 100 * MiB } });
    daemons.push(d);
    await d.call('vol_create', { pool: 'pool1', name: 'src', size: 64 * MiB });
    await fill(await volFile(d, 'pool1', 'src'), 16);
    assert.equal(await d.call('vol_copy', { pool: 'pool1', vol_orig: 'src', vol_new: 'dst' }), null);
    assert.ok((await names(d)).includes('dst'));
  });

  test('a short copy with async_after 10 answers null', async () => {
    const d = await startDaemon({ config: { async_after: 10 } });
    daemons.push(d);
    await d.call('vol_create', { pool: 'pool1', name: 'src', size: 16 * MiB });
    assert.equal(await d.call('vol_copy', { pool: 'pool1', vol_orig: 'src', vol_new: 'dst' }), null);
  });

  test('a failure is reported exactly once, with a negative status', {
    skip: !isRoot && 'needs root to mount a tmpfs',
  }, async () => {
    const base = await startDaemon({ config: { async_after: 0 } });
    daemons.push(base);
    // A small filesystem that the copy will fill up.
    const mnt = join(base.dir, 'small');
    await mkdir(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', mnt]);
    try {
      await base.kill();
      base.config.file_pools = [{ name: 'small', path: join(mnt, 'pool') }];
      base.config.copy_rate_limit = 20 * MiB;
      await base.start();
      await base.call('vol_create', { pool: 'small', name: 'src', size: 128 * MiB });
      await fill(await volFile(base, 'small', 'src'), 32);
      const id = await startAsyncCopy(base, { pool: 'small', vol_orig: 'src', vol_new: 'dst' });
      let failure: [number, number] | undefined;
      const deadline = Date.now() + 20000;
      while (!failure && Date.now() < deadline) {
        const l = await list(base);
        if (l[String(id)] && l[String(id)][0] !== 0) failure = l[String(id)];
        else if (!l[String(id)]) assert.fail('the copy succeeded on a full filesystem');
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(failure, 'no failure reported');
      assert.ok(failure[0] < 0);
      assert.deepEqual(await list(base), {}, 'reported twice');
      assert.deepEqual(await names(base, 'small'), ['src']);
      await base.kill();
    } finally {
      await base.kill('SIGKILL');
      execFileSync('umount', [mnt]);
    }
  });

  test('kill -9 mid-copy: after restart the half-made volume is gone and the failure is reported once', async () => {
    const d = await startDaemon({ config: { async_after: 0, copy_rate_limit: 20 * MiB } });
    daemons.push(d);
    await d.call('vol_create', { pool: 'pool1', name: 'src', size: 256 * MiB });
    await fill(await volFile(d, 'pool1', 'src'), 64);
    await d.call('export_create', { pool: 'pool1', vol: 'src', initiator_wwn: 'iqn.2024-01.test:a', lun: 2 });
    const before = await d.call<{ name: string; uuid: string }[]>('vol_list', { pool: 'pool1' });
    const id = await startAsyncCopy(d, { pool: 'pool1', vol_orig: 'src', vol_new: 'dst' });
    await new Promise((r) => setTimeout(r, 700));
    assert.equal((await list(d))[String(id)]?.[0], 0);
    const filesDuring = await readdir(join(d.dir, 'pool1'), { recursive: true });
    await d.restart('SIGKILL');
    assert.deepEqual(await d.call('vol_list', { pool: 'pool1' }), before);
    const l = await list(d);
    assert.ok(l[String(id)] && l[String(id)][0] < 0, `failure not reported: ${JSON.stringify(l)}`);
    assert.deepEqual(await list(d), {});
    const filesAfter = await readdir(join(d.dir, 'pool1'), { recursive: true });
    assert.ok(filesAfter.length < filesDuring.length, `half-made copy left behind: ${filesAfter}`);
    assert.deepEqual(
      (await d.call<{ vol: string; lun: number }[]>('export_list')).map((e) => [e.vol, e.lun]),
      [['src', 2]],
    );
    // ids are not reused after a restart
    await d.call('export_destroy', { pool: 'pool1', vol: 'src', initiator_wwn: 'iqn.2024-01.test:a' });
    const id2 = await startAsyncCopy(d, { pool: 'pool1', vol_orig: 'src', vol_new: 'dst2' });
    assert.ok(id2 > id);
  });

  test('kill -9 during creates: nothing half-made is listed; complete volumes keep their UUIDs', async () => {
    const d = await startDaemon();
    daemons.push(d);
    for (let round = 0; round < 3; round++) {
      const before = await d.call<{ name: string; uuid: string; size: number }[]>('vol_list', {
        pool: 'pool1',
      });
      const inflight = Array.from({ length: 40 }, (_, i) =>
        d.call('vol_create', { pool: 'pool1', name: `k${round}-${i}`, size: (i + 1) * MiB }).catch(() => {}),
      );
      await new Promise((r) => setTimeout(r, 15 + round * 10));
      await d.restart('SIGKILL');
      await Promise.all(inflight);
      const vols = await d.call<{ name: string; uuid: string; size: number }[]>('vol_list', {
        pool: 'pool1',
      });
      for (const v of before)
        assert.deepEqual(
          vols.find((x) => x.name === v.name),
          v,
        );
      for (const v of vols) {
        const m = /^k\d-(\d+)$/.exec(v.name);
        assert.ok(m);
        assert.equal(v.size, (Number(m[1]) + 1) * MiB, `${v.name} half-made`);
        assert.match(v.uuid, /^[0-9a-f-]{36}$/);
      }
    }
  });
});
