import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';

export const MiB = 1024 * 1024;
const EXT4_MAGIC = 0xef53;

/** A fresh temp directory; the caller removes it. */
export function tempDir(prefix = 'targetd-pool-'): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** True when `dir` is on ext4 (no reflink, 16 TiB file limit). */
export async function isExt4(dir: string): Promise<boolean> {
  return (await fsp.statfs(dir)).type === EXT4_MAGIC;
}

/** sha256 of a whole file, holes read as zeros. */
export async function hashFile(file: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(file, { highWaterMark: 4 * MiB }), h);
  return h.digest('hex');
}

/** Allocated bytes of a file (st_blocks × 512). */
export async function allocated(file: string): Promise<number> {
  return (await fsp.stat(file)).blocks * 512;
}

/**
 * Writes `count` pseudo-random blocks of `blockSize` at distinct scattered, block-aligned offsets inside the
 * first `span` bytes of `file` (which must already exist), deterministic for a given `seed`.
 */
export async function writeScattered(
  file: string,
  span: number,
  count: number,
  blockSize: number,
  seed = 1,
): Promise<void> {
  const slots = Math.floor(span / blockSize);
  if (count > slots) throw new Error('more blocks than fit in span');
  let x = seed >>> 0 || 1;
  const rand = (): number => {
    // xorshift32: reproducible without depending on Math.random.
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(rand() % slots);
  const buf = Buffer.alloc(blockSize);
  const fh = await fsp.open(file, 'r+');
  try {
    for (const slot of [...chosen].sort((a, b) => a - b)) {
      for (let i = 0; i < buf.length; i += 4) buf.writeUInt32LE(rand(), i);
      await fh.write(buf, 0, buf.length, slot * blockSize);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Names of the files in `dir`, sorted; [] if it does not exist. */
export async function ls(dir: string): Promise<string[]> {
  try {
    return (await fsp.readdir(dir)).sort();
  } catch {
    return [];
  }
}

/** What a pool's temp area holds besides its ready spares (empty files made ahead for the next create). */
export async function tempLeftovers(poolDir: string): Promise<string[]> {
  return (await ls(path.join(poolDir, '.targetd', 'tmp'))).filter((f) => !f.startsWith('spare-'));
}
