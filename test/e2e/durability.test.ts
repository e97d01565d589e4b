// vol_copy answers before the copy's data is on disk ("durable before it matters"): the real daemon makes the
// copy durable before exporting it, resizing it, or exiting.
import assert from 'node:assert/strict';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { type DaemonHandle, startDaemon } from '../helpers/daemon.js';

const MiB = 1024 * 1024;

/** Writes `mib` MiB of non-zero data, 1 MiB every 4 MiB, into a volume's file. */
async function fill(d: DaemonHandle, name: string, mib: number): Promise<void> {
  const h = await open(join(d.dir, 'pool1', `${name}.vol`), 'r+');
  const chunk = Buffer.alloc(MiB);
  for (let i = 0; i < mib; i++) {
    chunk.fill(i + 1);
    await h.write(chunk, 0, MiB, i * 4 * MiB);
  }
  await h.close();
}

async function meta(d: DaemonHandle, name: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(join(d.dir, 'pool1', '.targetd', 'vols', `${name}.json`), 'utf8'));
}

/** The daemon's log lines so far, parsed. */
function logLines(d: DaemonHandle): Record<string, unknown>[] {
  return d.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function indexOf(lines: Record<string, unknown>[], pred: (l: Record<string, unknown>) => boolean): number {
  const i = lines.findIndex(pred);
  assert.ok(i >= 0, 'expected log line not found');
  return i;
}

describe('vol_copy durability (real daemon)', () => {
  const daemons: DaemonHandle[] = [];
  after(async () => {
    for (const d of daemons) await d.dispose();
  });
  async function daemon(): Promise<DaemonHandle> {
    const d = await startDaemon({ config: { async_after: -1, log_level: 'info' } });
    daemons.push(d);
    await d.call('vol_create', { pool: 'pool1', name: 'src', size: 256 * MiB });
    await fill(d, 'src', 64);
    return d;
  }

  test('export_create and vol_resize of a fresh copy wait until its data is durable', async () => {
    const d = await daemon();
    await d.call('vol_copy', { pool: 'pool1', vol_orig: 'src', vol_new: 'c1' });
    const vols = await d.call<{ name: string }[]>('vol_list', { pool: 'pool1' });
    assert.deepEqual(vols.map((v) => v.name).sort(), ['c1', 'src'], 'listed as soon as vol_copy answers');
    await d.call('export_create', {
      pool: 'pool1',
      vol: 'c1',
      initiator_wwn: 'iqn.2024-01.com.example:h1',
      lun: 0,
    });
    assert.equal((await meta(d, 'c1')).unsynced, undefined, 'no exported volume carries the marker');
    let lines = logLines(d);
    const durable = indexOf(lines, (l) => l.msg === 'copy data durable' && l.name === 'c1');
    const exported = indexOf(lines, (l) => l.msg === 'rpc call' && l.method === 'export_create');
    assert.ok(durable < exported, 'the copy was durable before export_create answered');

    await d.call('vol_copy', { pool: 'pool1', vol_orig: 'src', vol_new: 'c2' });
    await d.call('vol_resize', { pool: 'pool1', name: 'c2', size: 512 * MiB });
    assert.equal((await meta(d, 'c2')).unsynced, undefined);
    lines = logLines(d);
    assert.ok(
      indexOf(lines, (l) => l.msg === 'copy data durable' && l.name === 'c2') <
        indexOf(lines, (l) => l.msg === 'rpc call' && l.method === 'vol_resize'),
    );
  });

  test('a clean shutdown makes every copy durable first', async () => {
    const d = await daemon();
    await d.call('vol_copy', { pool: 'pool1', vol_orig: 'src', vol_new: 'c1' });
    await d.call('vol_copy', { pool: 'pool1', vol_orig: 'c1', vol_new: 'c2' });
    await d.kill('SIGTERM');
    assert.equal(d.proc.exitCode, 0, d.stderr);
    assert.equal((await meta(d, 'c1')).unsynced, undefined);
    assert.equal((await meta(d, 'c2')).unsynced, undefined);
    await d.start();
    const vols = await d.call<{ name: string }[]>('vol_list', { pool: 'pool1' });
    assert.deepEqual(vols.map((v) => v.name).sort(), ['c1', 'c2', 'src']);
  });

  test('vol_destroy right after vol_copy is fine, and the name can be copied to again', async () => {
    const d = await daemon();
    for (let i = 0; i < 3; i++) {
      await d.call('vol_copy', { pool: 'pool1', vol_orig: 'src', vol_new: 'c' });
      await d.call('vol_destroy', { pool: 'pool1', name: 'c' });
    }
    await d.call('vol_copy', { pool: 'pool1', vol_orig: 'src', vol_new: 'c' });
    const uuid = (await d.call<{ name: string; uuid: string }[]>('vol_list', { pool: 'pool1' })).find(
      (v) => v.name === 'c',
    )!.uuid;
    await d.call('export_create', {
      pool: 'pool1',
      vol: 'c',
      initiator_wwn: 'iqn.2024-01.com.example:h',
      lun: 1,
    });
    const m = await meta(d, 'c');
    assert.equal(m.uuid, uuid);
    assert.equal(m.unsynced, undefined);
    assert.ok(!d.stderr.includes('"level":50'), `no error logged:\n${d.stderr}`);
  });
});
