// "Durable before it matters": a sparse copy is listed before its data is on disk, marked `unsynced` in its
// metadata until a background fdatasync has run; whatever makes the volume matter waits for that first, and
// a pool opened after a crash syncs (same boot) or quarantines (another boot) what was left marked.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { StorageArray } from '../../src/core/array.js';
import { NoExportBackend } from '../../src/exports/none.js';
import { silentLogger } from '../../src/log.js';
import { FilePool, type FilePoolOptions } from '../../src/pools/file/file-pool.js';
import { StateStore } from '../../src/store/state-store.js';
import { hashFile, ls, MiB, tempDir, tempLeftovers, writeScattered } from './helpers.js';

const CHILD = fileURLToPath(new URL('./fixtures/crash-child.ts', import.meta.url));
const never = new AbortController().signal;
const noProgress = (): void => {};
const tick = (ms = 30) => new Promise((r) => setTimeout(r, ms));
const BOOT = 'boot-of-this-test';

let root: string;
let poolDir: string;
let pools: FilePool[];

beforeEach(async () => {
  root = await tempDir('targetd-durable-');
  poolDir = path.join(root, 'pool');
  pools = [];
});
afterEach(async () => {
  for (const p of pools) await p.close();
  await fsp.rm(root, { recursive: true, force: true });
});

/** A gate a test opens by hand: holds a copy's background sync before it starts. */
function gate(): { wait: (name: string) => Promise<void>; open: () => void; waiting: string[] } {
  let open!: () => void;
  const opened = new Promise<void>((r) => {
    open = r;
  });
  const waiting: string[] = [];
  return {
    wait: (name) => {
      waiting.push(name);
      return opened;
    },
    open,
    waiting,
  };
}

/** Log lines by level, for asserting on what the pool said. */
function captureLog() {
  const lines: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
  const at =
    (level: string) =>
    (obj: object, msg = '') =>
      lines.push({ level, obj: obj as Record<string, unknown>, msg });
  return { logger: { info: at('info'), warn: at('warn'), error: at('error') }, lines };
}

async function openPool(opts: Partial<FilePoolOptions> = {}): Promise<FilePool> {
  const pool = new FilePool({ name: 'p1', path: poolDir, reflink: false, bootId: () => BOOT, ...opts });
  await pool.open();
  pools.push(pool);
  return pool;
}

function metaFile(name: string): string {
  return path.join(poolDir, '.targetd', 'vols', `${name}.json`);
}

async function readMeta(name: string): Promise<Record<string, unknown>> {
  return JSON.parse(await fsp.readFile(metaFile(name), 'utf8')) as Record<string, unknown>;
}

/** A settled-or-not probe: true once `p` has settled. */
function watch(p: Promise<unknown>): () => boolean {
  let settled = false;
  p.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  return () => settled;
}

/** A source volume with scattered data; returns its content hash. */
async function source(pool: FilePool, name = 'src', size = 64 * MiB): Promise<string> {
  await pool.create(name, size);
  await writeScattered(pool.dataPath(name), size, 16, MiB, 5);
  return hashFile(pool.dataPath(name));
}

describe('FilePool copy durability', () => {
  it('lists a sparse copy at once with the unsynced marker, cleared once its data is durable', async () => {
    const g = gate();
    const pool = await openPool({ beforeBackgroundSync: g.wait });
    const hash = await source(pool);
    const c = await pool.copy('src', 'dst', undefined, noProgress, never);
    assert.deepEqual(await pool.get('dst'), c, 'listed right after the copy');
    const meta = await readMeta('dst');
    assert.deepEqual(meta.unsynced, { boot_id: BOOT });
    assert.equal(meta.size, 64 * MiB);
    assert.equal(meta.uuid, c.uuid);

    const durable = pool.whenDurable('dst');
    const done = watch(durable);
    await tick(150); // past the grace period: the sync has started and waits at the gate
    assert.deepEqual(g.waiting, ['dst']);
    assert.equal(done(), false, 'whenDurable waits for the sync');
    assert.deepEqual((await readMeta('dst')).unsynced, { boot_id: BOOT });
    g.open();
    await durable;
    const after = await readMeta('dst');
    assert.equal(after.unsynced, undefined, 'marker cleared');
    assert.equal(after.uuid, c.uuid);
    assert.equal(after.size, 64 * MiB);
    assert.equal(await hashFile(pool.dataPath('dst')), hash);
    assert.deepEqual(await tempLeftovers(poolDir), []);
  });

  it('starts the sync by itself after a short grace period', async () => {
    const { logger, lines } = captureLog();
    const pool = await openPool({ logger });
    await source(pool);
    await pool.copy('src', 'dst', undefined, noProgress, never);
    // Nothing waits for it: the pool starts the sync on its own (it logs once the marker is durably gone).
    const deadline = Date.now() + 10_000;
    while (!lines.some((l) => l.msg === 'copy data durable' && l.obj.name === 'dst')) {
      assert.ok(Date.now() < deadline, 'the sync never ran');
      await tick(20);
    }
    assert.equal((await readMeta('dst')).unsynced, undefined);
  });

  it('a copy of an unsynced copy is itself unsynced, and both become durable', async () => {
    const g = gate();
    const pool = await openPool({ beforeBackgroundSync: g.wait });
    const hash = await source(pool);
    await pool.copy('src', 'a', undefined, noProgress, never);
    await pool.copy('a', 'b', 8 * 64 * MiB, noProgress, never);
    assert.deepEqual((await readMeta('b')).unsynced, { boot_id: BOOT });
    assert.equal((await readMeta('b')).size, 8 * 64 * MiB);
    g.open();
    await Promise.all([pool.whenDurable('a'), pool.whenDurable('b')]);
    assert.equal((await readMeta('a')).unsynced, undefined);
    assert.equal((await readMeta('b')).unsynced, undefined);
    const head = await fsp.open(pool.dataPath('b'), 'r');
    const buf = Buffer.alloc(64 * MiB);
    await head.read(buf, 0, buf.length, 0);
    await head.close();
    assert.ok(buf.equals(await fsp.readFile(pool.dataPath('src'))), String(hash));
  });

  it('resize waits for the copy to be durable', async () => {
    const g = gate();
    const pool = await openPool({ beforeBackgroundSync: g.wait });
    await source(pool);
    await pool.copy('src', 'dst', undefined, noProgress, never);
    const resizing = pool.resize('dst', 128 * MiB);
    const done = watch(resizing);
    await tick();
    assert.equal(done(), false);
    assert.equal((await fsp.stat(pool.dataPath('dst'))).size, 64 * MiB, 'not resized before durable');
    g.open();
    assert.equal((await resizing).size, 128 * MiB);
    assert.equal((await readMeta('dst')).unsynced, undefined);
  });

  it('destroy drops a pending sync; the name can be reused and its new metadata is never overwritten', async () => {
    const g = gate();
    const { logger, lines } = captureLog();
    const pool = await openPool({ beforeBackgroundSync: g.wait, logger });
    await source(pool);
    // 1. Destroyed while its sync is held before it starts.
    const first = await pool.copy('src', 'dst', undefined, noProgress, never);
    await tick(150);
    assert.deepEqual(g.waiting, ['dst']);
    await pool.destroy('dst');
    assert.equal(await pool.get('dst'), undefined);
    // Re-created under the same name (a plain create: not synced in the background).
    const again = await pool.create('dst', 4 * MiB);
    g.open();
    await pool.whenDurable('dst');
    await tick(50);
    const meta = await readMeta('dst');
    assert.equal(meta.uuid, again.uuid, 'the old sync did not rewrite the new volume');
    assert.notEqual(meta.uuid, first.uuid);
    assert.equal(meta.unsynced, undefined);
    assert.deepEqual(await pool.get('dst'), again);
    await pool.destroy('dst');

    // 2. Destroyed while its fdatasync runs (gate already open), then copied again at once.
    const second = await pool.copy('src', 'dst2', undefined, noProgress, never);
    const durable = pool.whenDurable('dst2'); // starts the sync now
    await pool.destroy('dst2');
    await durable; // never throws for a dropped sync
    const third = await pool.copy('src', 'dst2', undefined, noProgress, never);
    await pool.whenDurable('dst2');
    const meta3 = await readMeta('dst2');
    assert.equal(meta3.uuid, third.uuid);
    assert.notEqual(meta3.uuid, second.uuid);
    assert.equal(meta3.unsynced, undefined);

    // 3. The file vanished under a pending sync: no crash, no metadata resurrected.
    const fourth = await pool.copy('src', 'dst3', undefined, noProgress, never);
    await pool.destroy('dst3');
    await tick(200);
    await assert.rejects(fsp.stat(metaFile('dst3')), /ENOENT/);
    assert.equal(await pool.get('dst3'), undefined);
    assert.ok(fourth.uuid);

    assert.deepEqual(
      lines.filter((l) => l.level === 'error'),
      [],
      'no error logged for dropped syncs',
    );
    assert.deepEqual(await tempLeftovers(poolDir), []);
    assert.deepEqual(await ls(path.join(poolDir, '.targetd', 'vols')), ['dst2.json', 'src.json']);
  });

  it('close waits for pending syncs and leaves no marker behind', async () => {
    const g = gate();
    const pool = await openPool({ beforeBackgroundSync: g.wait });
    await source(pool);
    await pool.copy('src', 'a', undefined, noProgress, never);
    await pool.copy('src', 'b', undefined, noProgress, never);
    pools.splice(pools.indexOf(pool), 1);
    const closing = pool.close();
    const done = watch(closing);
    await tick(200);
    assert.equal(done(), false, 'close waits for the held syncs');
    assert.deepEqual(g.waiting.sort(), ['a', 'b'], 'close starts them without waiting out the grace period');
    g.open();
    await closing;
    assert.equal((await readMeta('a')).unsynced, undefined);
    assert.equal((await readMeta('b')).unsynced, undefined);
  });

  it('reflink-less pools without a boot id sync before commit (no marker)', async () => {
    const pool = await openPool({ bootId: () => undefined });
    await source(pool);
    await pool.copy('src', 'dst', undefined, noProgress, never);
    assert.equal((await readMeta('dst')).unsynced, undefined);
  });
});

/** Runs the crash-child in `copy-unsynced` mode and kill -9s it once the copy is listed. */
async function leaveUnsyncedCopy(src: string, dst: string): Promise<{ uuid: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, 'copy-unsynced', poolDir, src, dst], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const exited = once(child, 'exit');
  try {
    for await (const line of createInterface({ input: child.stdout! })) {
      const ev = JSON.parse(line) as { ev: string; uuid?: string };
      if (ev.ev === 'copied') return { uuid: ev.uuid! };
    }
    throw new Error(`child ended without copying: ${stderr}`);
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
}

describe('FilePool open() after a crash that left a copy unsynced', () => {
  it('same boot: the copy stays, is synced, and its marker cleared', async () => {
    let pool = await openPool();
    const hash = await source(pool);
    pools.pop();
    await pool.close();

    const { uuid } = await leaveUnsyncedCopy('src', 'dst');
    const marker = (await readMeta('dst')).unsynced as { boot_id: string };
    const realBoot = (await fsp.readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
    assert.deepEqual(marker, { boot_id: realBoot }, 'the marker holds the kernel boot id');

    const { logger, lines } = captureLog();
    pool = await openPool({ bootId: undefined, logger }); // the real boot id
    assert.equal((await pool.get('dst'))?.uuid, uuid);
    assert.equal((await readMeta('dst')).unsynced, undefined);
    assert.equal(await hashFile(pool.dataPath('dst')), hash);
    assert.ok(lines.some((l) => /same boot/.test(l.msg) && l.obj.name === 'dst'));
    assert.deepEqual(await ls(path.join(poolDir, '.targetd', 'quarantine')), []);
  });

  it('another boot: the copy is quarantined (moved, not listed, not deleted), its name free, an error logged', async () => {
    let pool = await openPool();
    const hash = await source(pool);
    pools.pop();
    await pool.close();
    const { uuid } = await leaveUnsyncedCopy('src', 'dst');

    const { logger, lines } = captureLog();
    pool = await openPool({ bootId: () => 'a-later-boot', logger });
    assert.equal(await pool.get('dst'), undefined, 'not listed');
    assert.deepEqual(
      (await pool.list()).map((v) => v.name),
      ['src'],
    );
    const q = path.join(poolDir, '.targetd', 'quarantine');
    assert.deepEqual(await ls(q), [`dst-${uuid}.json`, `dst-${uuid}.vol`]);
    assert.deepEqual(await ls(poolDir), ['.targetd', 'src.vol']);
    assert.deepEqual(await ls(path.join(poolDir, '.targetd', 'vols')), ['src.json']);
    // Moved, not deleted: here (same machine in truth) the contents are even intact.
    assert.equal(await hashFile(path.join(q, `dst-${uuid}.vol`)), hash);
    const qmeta = JSON.parse(await fsp.readFile(path.join(q, `dst-${uuid}.json`), 'utf8'));
    assert.equal(qmeta.uuid, uuid);
    const errors = lines.filter((l) => l.level === 'error');
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.obj.name, 'dst');
    assert.equal(errors[0]!.obj.uuid, uuid);
    assert.equal(errors[0]!.obj.path, path.join(q, `dst-${uuid}.vol`));
    assert.match(errors[0]!.msg, /dst/);
    assert.match(errors[0]!.msg, new RegExp(uuid));
    assert.match(errors[0]!.msg, /quarantine/);

    // The name is free again, and the quarantine is left alone.
    const fresh = await pool.copy('src', 'dst', undefined, noProgress, never);
    assert.notEqual(fresh.uuid, uuid);
    await pool.whenDurable('dst');
    pools.pop();
    await pool.close();
    pool = await openPool({ bootId: () => 'yet-another-boot' });
    assert.equal((await pool.get('dst'))?.uuid, fresh.uuid, 'a synced copy survives any boot');
    assert.deepEqual(await ls(q), [`dst-${uuid}.json`, `dst-${uuid}.vol`]);
  });

  it('a quarantine cut short (metadata linked, data not yet moved) is redone at the next open', async () => {
    let pool = await openPool();
    await source(pool);
    pools.pop();
    await pool.close();
    const { uuid } = await leaveUnsyncedCopy('src', 'dst');
    const q = path.join(poolDir, '.targetd', 'quarantine');
    await fsp.mkdir(q, { recursive: true });
    await fsp.link(metaFile('dst'), path.join(q, `dst-${uuid}.json`));
    pool = await openPool({ bootId: () => 'a-later-boot' });
    assert.equal(await pool.get('dst'), undefined);
    assert.deepEqual(await ls(q), [`dst-${uuid}.json`, `dst-${uuid}.vol`]);
    assert.deepEqual(await ls(path.join(poolDir, '.targetd', 'vols')), ['src.json']);
  });
});

describe('FilePool create without a data fsync', () => {
  it('records the size in the metadata and restores a size a crash lost', async () => {
    const { logger, lines } = captureLog();
    let pool = await openPool({ logger });
    const v = await pool.create('v', 10 * MiB);
    assert.equal((await readMeta('v')).size, 10 * MiB);
    pools.pop();
    await pool.close();
    // What a crash before the (never synced) ftruncate reached the disk leaves: an empty data file.
    await fsp.truncate(path.join(poolDir, 'v.vol'), 0);
    pool = await openPool({ logger });
    assert.deepEqual(await pool.get('v'), v);
    assert.equal((await fsp.stat(pool.dataPath('v'))).size, 10 * MiB);
    assert.ok(lines.some((l) => l.level === 'warn' && l.obj.name === 'v' && /extended/.test(l.msg)));
    // A volume grown since (resize syncs its new size) is not cut back to the recorded size.
    await pool.resize('v', 20 * MiB);
    pools.pop();
    await pool.close();
    pool = await openPool();
    assert.equal((await pool.get('v'))?.size, 20 * MiB);
  });

  it('open() removes an empty metadata file without data (a create cut short before it was synced)', async () => {
    let pool = await openPool();
    await pool.create('keep', MiB);
    pools.pop();
    await pool.close();
    const vols = path.join(poolDir, '.targetd', 'vols');
    await fsp.writeFile(path.join(vols, 'cut.json'), '');
    await fsp.writeFile(path.join(vols, 'zeros.json'), Buffer.alloc(120));
    await fsp.writeFile(path.join(vols, 'junk.json'), '{not json');
    pool = await openPool();
    assert.deepEqual(await ls(vols), ['junk.json', 'keep.json']);
    await pool.create('cut', MiB);
  });
});

describe('StorageArray waits for a copy to be durable before it matters', () => {
  it('export_create and access_group_map_create wait; the marker is gone afterwards', async () => {
    const g = gate();
    const pool = await openPool({ beforeBackgroundSync: g.wait });
    await source(pool);
    const store = new StateStore(path.join(root, 'state'));
    await store.open();
    const array = new StorageArray({
      pools: [pool],
      store,
      backend: new NoExportBackend(),
      targetName: 'iqn.2003-01.org.example:t',
      asyncAfter: -1,
      logger: silentLogger,
    });
    try {
      await array.start();
      await array.volCopy('p1', 'src', 'a', undefined);
      await array.volCopy('p1', 'src', 'b', undefined);
      assert.deepEqual((await readMeta('a')).unsynced, { boot_id: BOOT });
      const exporting = array.exportCreate('p1', 'a', 'iqn.2024-01.com.example:h1', 0);
      await array.accessGroupCreate('g1', 'iqn.2024-01.com.example:h2');
      const mapping = array.accessGroupMapCreate('p1', 'b', 'g1', undefined);
      const exported = watch(exporting);
      const mapped = watch(mapping);
      await tick(200);
      assert.equal(exported(), false, 'export_create waits for the copy to be durable');
      assert.equal(mapped(), false, 'access_group_map_create waits too');
      assert.deepEqual(await array.exportList(), []);
      // Other volumes are not held up meanwhile.
      await array.volCreate('p1', 'other', MiB);
      await array.exportCreate('p1', 'other', 'iqn.2024-01.com.example:h1', 5);
      g.open();
      await exporting;
      await mapping;
      assert.equal((await readMeta('a')).unsynced, undefined);
      assert.equal((await readMeta('b')).unsynced, undefined);
      assert.deepEqual((await array.exportList()).map((e) => e.vol_name).sort(), ['a', 'b', 'other']);
    } finally {
      await array.stop();
      await store.close();
    }
  });
});
