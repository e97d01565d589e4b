import assert from 'node:assert/strict';
import { constants as fsConstants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { run } from '../../src/exec/index.js';
import { FilePool } from '../../src/pools/file/file-pool.js';
import { allocated, hashFile, isExt4, MiB, tempDir, writeScattered } from './helpers.js';

const never = new AbortController().signal;

async function onPath(cmd: string): Promise<boolean> {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin'];
  for (const d of dirs) {
    try {
      await fsp.access(path.join(d, cmd), fsConstants.X_OK);
      return true;
    } catch {}
  }
  return false;
}

/** Why loop-mount tests cannot run here, or undefined when they can. */
async function cannotMount(fsType: string): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root to make and mount a loop filesystem';
  if (!(await onPath(`mkfs.${fsType}`)))
    return `mkfs.${fsType} is not installed (apt-get install btrfs-progs xfsprogs)`;
  return undefined;
}

/** Fills a fresh volume with data at scattered offsets plus one long extent, leaving holes between. */
async function fillSource(pool: FilePool, name: string): Promise<string> {
  await pool.create(name, 256 * MiB);
  await writeScattered(pool.dataPath(name), 256 * MiB, 48, 256 * 1024, 5);
  const fh = await fsp.open(pool.dataPath(name), 'r+');
  await fh.write(Buffer.alloc(24 * MiB, 0x77), 0, 24 * MiB, 200 * MiB);
  await fh.sync();
  await fh.close();
  return hashFile(pool.dataPath(name));
}

/** Copies src→dst and checks content, holes and progress; returns the copy's wall time in ms. */
async function copyAndCheck(pool: FilePool, src: string, dst: string, srcHash: string): Promise<number> {
  const progress: number[] = [];
  const t0 = performance.now();
  await pool.copy(src, dst, undefined, (f) => progress.push(f), never);
  const ms = performance.now() - t0;
  assert.equal(await hashFile(pool.dataPath(dst)), srcHash, 'contents identical');
  const a = await allocated(pool.dataPath(src));
  const b = await allocated(pool.dataPath(dst));
  assert.ok(b <= a, `holes preserved: dst ${b} bytes allocated, src ${a}`);
  assert.ok(progress.length >= 1, 'progress reported');
  for (let i = 1; i < progress.length; i++)
    assert.ok(progress[i]! >= progress[i - 1]!, `monotone: ${progress}`);
  assert.equal(progress.at(-1), 1);
  return ms;
}

for (const fsType of ['btrfs', 'xfs'] as const) {
  describe(`FilePool on a ${fsType} loop mount`, async () => {
    const reason = await cannotMount(fsType);
    let root = '';
    let mnt = '';
    let mounted = false;

    before(async () => {
      if (reason) return;
      root = await tempDir(`targetd-${fsType}-`);
      const img = path.join(root, `${fsType}.img`);
      mnt = path.join(root, 'mnt');
      await fsp.mkdir(mnt);
      const fh = await fsp.open(img, 'w');
      await fh.truncate(1024 * MiB);
      await fh.close();
      await run(`mkfs.${fsType}`, ['-q', img], { timeoutMs: 120_000 });
      await run('mount', ['-o', 'loop', img, mnt]);
      mounted = true;
    });

    after(async () => {
      if (mounted) {
        // A just-closed file can keep the mount busy for a moment.
        for (let i = 0; ; i++) {
          try {
            await run('umount', [mnt]);
            break;
          } catch (err) {
            if (i >= 10) throw err;
            await new Promise((r) => setTimeout(r, 200));
          }
        }
      }
      if (root) await fsp.rm(root, { recursive: true, force: true });
    });

    it('clones instantly by reflink, contents identical, holes kept', { skip: reason }, async (t) => {
      const pool = new FilePool({ name: fsType, path: path.join(mnt, 'pool') });
      await pool.open();
      try {
        const srcHash = await fillSource(pool, 'src');
        assert.equal(await pool.canCloneInstantly('src'), true);
        const ms = await copyAndCheck(pool, 'src', 'clone', srcHash);
        t.diagnostic(
          `reflink copy of 256 MiB (${((await allocated(pool.dataPath('src'))) / MiB).toFixed(1)} MiB data): ${ms.toFixed(1)} ms`,
        );
        // Copy-on-write: writing the clone leaves the source alone.
        const fh = await fsp.open(pool.dataPath('clone'), 'r+');
        await fh.write(Buffer.alloc(4096, 0xee), 0, 4096, 0);
        await fh.close();
        assert.equal(await hashFile(pool.dataPath('src')), srcHash);
        await pool.destroy('src');
        assert.notEqual(await hashFile(pool.dataPath('clone')), srcHash);
      } finally {
        await pool.close();
      }
    });

    it('sparse copy path (reflink disabled) keeps contents and holes', { skip: reason }, async () => {
      const pool = new FilePool({ name: fsType, path: path.join(mnt, 'pool2'), reflink: false });
      await pool.open();
      try {
        const srcHash = await fillSource(pool, 'src');
        assert.equal(await pool.canCloneInstantly('src'), false);
        await copyAndCheck(pool, 'src', 'copy', srcHash);
      } finally {
        await pool.close();
      }
    });
  });
}

describe('FilePool on the plain test directory', () => {
  it('has no reflink on ext4 and copies sparsely', async (t) => {
    const root = await tempDir();
    const pool = new FilePool({ name: 'plain', path: path.join(root, 'pool') });
    try {
      await pool.open();
      const srcHash = await fillSource(pool, 'src');
      if (await isExt4(root)) assert.equal(await pool.canCloneInstantly('src'), false);
      else t.diagnostic('test directory is not ext4: reflink expectation not checked');
      await copyAndCheck(pool, 'src', 'copy', srcHash);
    } finally {
      await pool.close();
      await fsp.rm(root, { recursive: true, force: true });
    }
  });
});
