/**
 * A block pool kept in a directory of sparse files, on any filesystem.
 *
 * Layout under the pool directory <path>:
 *   <name>.vol                  the volume's data, a sparse file; its size is the volume size
 *   .targetd/vols/<name>.json   the volume's metadata: {version, name, uuid, created}
 *   .targetd/tmp/               half-made files of running creates/copies and the reflink probe
 *   .targetd/lock               flock'd while a pool object has the directory open
 *
 * A volume exists iff both its .vol and its .json exist. create/copy build both in tmp/ (fsynced), rename the
 * .json into vols/ first and the .vol into <path> last: that last rename is the commit point. destroy unlinks
 * the .vol first. So whatever instant a crash hits, what remains is complete volumes, files in tmp/, and at
 * most a .json without its .vol; open() removes the latter two. Anything else in <path> (a .vol without our
 * metadata, other files) belongs to someone else: never listed, never touched, and its name is not reused.
 *
 * Volume names can hold only [A-Za-z0-9_-], so no name can escape the directory or collide with `.targetd`.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { constants as fsConstants, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { copyRanges, dataExtents, flock, ftruncate, isErrno } from '../../native/index.js';
import { ErrorCode, invalidParam, TargetdError } from '../../rpc/errors.js';
import { NAME_RE } from '../../rpc/params.js';
import type { BlockPool, PoolStats, ProgressFn, VolumeInfo } from '../types.js';

/** The slice of a pino logger the pool uses. */
export interface PoolLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

/** Options for {@link FilePool}. */
export interface FilePoolOptions {
  /** The pool's name as clients see it. */
  name: string;
  /** The directory holding the volumes; created by open() if missing. */
  path: string;
  /** Reported pool size in bytes; also bounds the real allocation reported in free_size. */
  sizeCap?: number;
  logger?: PoolLogger;
  /** Try reflink copies (default true); false forces the sparse copy, for benchmarks and tests. */
  reflink?: boolean;
  /**
   * Bytes of data per second one sparse copy may move (unset or 0: unlimited), so a big clone does not starve
   * the live volumes' I/O. Reflink copies move no data and are not limited.
   */
  copyRateLimit?: number;
}

interface Entry {
  name: string;
  uuid: string;
  size: number;
  created: string;
}

interface Metadata {
  version: 1;
  name: string;
  uuid: string;
  created: string;
}

/** Volume sizes are whole 4 KiB blocks: the largest logical block size initiators use. */
export const BLOCK = 4096;
const MAX_SIZE = 2 ** 53;
/** Data copied per copy_file_range batch: bounds how long progress and abort checks wait. */
const MiB = 1024 * 1024;
const COPY_CHUNK = 64 * MiB;
/** Extents fetched per native call while mapping a source. */
const EXTENT_BATCH = 65536;
/** Parallel stat() calls when summing allocation over thousands of volumes. */
const STAT_CONCURRENCY = 32;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// Errors that mean "this filesystem cannot clone", as opposed to a real failure of the copy.
const NO_REFLINK = ['EOPNOTSUPP', 'ENOTSUP', 'EXDEV', 'EINVAL', 'ENOSYS', 'ENOTTY', 'EPERM'];
const noop = (): void => {};

/** Rounds a size up to whole blocks after checking it is an integer in 1 … 2^53. */
export function roundSize(size: number, param = 'size'): number {
  if (typeof size !== 'number' || !Number.isInteger(size) || size <= 0 || size > MAX_SIZE) {
    throw invalidParam(param, `must be an integer number of bytes between 1 and 2^53, got ${String(size)}`);
  }
  return Math.ceil(size / BLOCK) * BLOCK;
}

// Callers validate names too; this second check sits right before every path is built.
function assertName(name: string): void {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw invalidParam('name', 'must be 1-127 characters of A-Z, a-z, 0-9, _ and -');
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function writeDurably(file: string, data: string): Promise<void> {
  const fh = await fsp.open(file, 'wx', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A {@link BlockPool} of sparse files in one directory; see the layout at the top of this file. */
export class FilePool implements BlockPool {
  readonly name: string;
  readonly kind = 'file';
  /** Absolute path of the pool directory. */
  readonly dir: string;
  private readonly sizeCap: number | undefined;
  private readonly log: PoolLogger;
  private readonly tryReflink: boolean;
  private readonly rateLimit: number | undefined;
  private readonly metaDir: string;
  private readonly tmpDir: string;
  /** The pool is the only writer of its directory, so this index is the truth between open() and close(). */
  private readonly index = new Map<string, Entry>();
  /** Names being created or copied to, so a second mutation cannot claim the same name meanwhile. */
  private readonly pending = new Set<string>();
  private sorted: VolumeInfo[] | undefined;
  private lock: FileHandle | undefined;
  private reflinkWorks = false;
  private opened = false;

  constructor(opts: FilePoolOptions) {
    if (opts.sizeCap !== undefined && (!Number.isInteger(opts.sizeCap) || opts.sizeCap <= 0)) {
      throw new TypeError(`file pool ${opts.name}: sizeCap must be a positive integer`);
    }
    if (
      opts.copyRateLimit !== undefined &&
      (!Number.isInteger(opts.copyRateLimit) || opts.copyRateLimit < 0)
    ) {
      throw new TypeError(`file pool ${opts.name}: copyRateLimit must be a non-negative integer`);
    }
    this.name = opts.name;
    this.dir = path.resolve(opts.path);
    this.sizeCap = opts.sizeCap;
    this.log = opts.logger ?? { info: noop, warn: noop };
    this.tryReflink = opts.reflink ?? true;
    this.rateLimit = opts.copyRateLimit || undefined;
    this.metaDir = path.join(this.dir, '.targetd', 'vols');
    this.tmpDir = path.join(this.dir, '.targetd', 'tmp');
  }

  /** Creates the directories, takes the pool lock, clears crash leftovers, loads the index, probes reflink. */
  async open(): Promise<void> {
    if (this.opened) return;
    await fsp.mkdir(this.metaDir, { recursive: true, mode: 0o700 });
    await fsp.mkdir(this.tmpDir, { recursive: true, mode: 0o700 });

    const lock = await fsp.open(path.join(this.dir, '.targetd', 'lock'), 'a', 0o600);
    try {
      flock(lock.fd, true, true);
    } catch (err) {
      await lock.close();
      if (isErrno(err, 'EWOULDBLOCK', 'EAGAIN')) {
        throw new TargetdError(
          ErrorCode.INVALID,
          `file pool ${this.name}: ${this.dir} is in use by another process`,
        );
      }
      throw err;
    }
    this.lock = lock;

    try {
      const leftovers = await fsp.readdir(this.tmpDir);
      for (const f of leftovers) await fsp.rm(path.join(this.tmpDir, f), { recursive: true, force: true });
      const orphans = await this.loadIndex();
      if (orphans > 0) await fsyncDir(this.metaDir);
      this.reflinkWorks = this.tryReflink && (await this.probeReflink());
      this.opened = true;
      this.log.info(
        {
          pool: this.name,
          path: this.dir,
          volumes: this.index.size,
          reflink: this.reflinkWorks,
          leftovers: leftovers.length,
          orphans,
        },
        'file pool opened',
      );
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /** Releases the pool lock; the object must be opened again before further use. */
  async close(): Promise<void> {
    this.opened = false;
    this.index.clear();
    this.sorted = undefined;
    const lock = this.lock;
    this.lock = undefined;
    await lock?.close();
  }

  /** Reads every metadata file; drops those whose data never arrived (or was already destroyed). */
  private async loadIndex(): Promise<number> {
    this.index.clear();
    this.sorted = undefined;
    let orphans = 0;
    const files = (await fsp.readdir(this.metaDir)).filter((f) => f.endsWith('.json'));
    await forEachLimit(files, STAT_CONCURRENCY, async (file) => {
      const name = file.slice(0, -'.json'.length);
      if (!NAME_RE.test(name)) return;
      const metaPath = path.join(this.metaDir, file);
      let meta: Partial<Metadata>;
      try {
        meta = JSON.parse(await fsp.readFile(metaPath, 'utf8')) as Partial<Metadata>;
      } catch (err) {
        this.log.warn(
          { pool: this.name, file: metaPath, err: String(err) },
          'unreadable volume metadata ignored',
        );
        return;
      }
      if (meta.name !== name || typeof meta.uuid !== 'string' || !UUID_RE.test(meta.uuid)) {
        this.log.warn({ pool: this.name, file: metaPath }, 'invalid volume metadata ignored');
        return;
      }
      let st: Stats;
      try {
        st = await fsp.lstat(this.dataPath(name));
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
        // Metadata without data: a create or copy cut short before its commit, or a destroy cut short after.
        await fsp.rm(metaPath, { force: true });
        orphans++;
        return;
      }
      if (!st.isFile()) {
        this.log.warn({ pool: this.name, name }, 'volume data is not a regular file; volume ignored');
        return;
      }
      this.index.set(name, { name, uuid: meta.uuid, size: st.size, created: String(meta.created ?? '') });
    });
    return orphans;
  }

  // Two tiny files in tmp/: whether FICLONE works here decides copy strategy and sync vs async answers.
  private async probeReflink(): Promise<boolean> {
    const a = path.join(this.tmpDir, `probe-${randomBytes(6).toString('hex')}`);
    const b = `${a}.clone`;
    try {
      await fsp.writeFile(a, Buffer.alloc(BLOCK, 1), { mode: 0o600 });
      await fsp.copyFile(a, b, fsConstants.COPYFILE_FICLONE_FORCE | fsConstants.COPYFILE_EXCL);
      return true;
    } catch {
      return false;
    } finally {
      await fsp.rm(a, { force: true });
      await fsp.rm(b, { force: true });
    }
  }

  private assertOpen(): void {
    if (!this.opened) throw new TargetdError(ErrorCode.INVALID, `file pool ${this.name} is not open`);
  }

  // A cap refuses a volume whose size alone exceeds it: such a request can never succeed on this pool,
  // whatever is freed, so like a size the filesystem refuses it is a bad parameter (-32602), not a transient
  // shortage. The *sum* of sizes may exceed the cap: volumes are sparse, over-commit is what thin
  // provisioning is for, and free_size reports what is really allocated.
  private assertCap(size: number, param = 'size'): void {
    if (this.sizeCap !== undefined && size > this.sizeCap) {
      throw invalidParam(
        param,
        `${size} bytes exceeds the size cap of pool ${this.name} (${this.sizeCap} bytes)`,
      );
    }
  }

  // Claims a free name: no entry, no running create/copy, no file of someone else in the way. The claim is
  // taken before the first await, so two overlapping mutations cannot both pass the check.
  private async reserve(name: string): Promise<void> {
    if (this.index.has(name) || this.pending.has(name)) {
      throw new TargetdError(ErrorCode.NAME_CONFLICT, `volume ${name} already exists in pool ${this.name}`);
    }
    this.pending.add(name);
    try {
      await fsp.lstat(this.dataPath(name));
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      this.pending.delete(name);
      throw err;
    }
    this.pending.delete(name);
    throw new TargetdError(
      ErrorCode.NAME_CONFLICT,
      `${this.dataPath(name)} already exists in pool ${this.name} and is not a volume of this pool`,
    );
  }

  private entry(name: string): Entry {
    const e = this.index.get(name);
    if (e === undefined) {
      throw new TargetdError(ErrorCode.NOT_FOUND_VOLUME, `volume ${name} not found in pool ${this.name}`);
    }
    return e;
  }

  private metaPath(name: string): string {
    return path.join(this.metaDir, `${name}.json`);
  }

  private tmpBase(op: string, name: string): string {
    return path.join(this.tmpDir, `${op}-${name}-${randomBytes(6).toString('hex')}`);
  }

  /** Path of the volume's data file. */
  dataPath(name: string): string {
    assertName(name);
    return path.join(this.dir, `${name}.vol`);
  }

  /** size = sizeCap or the filesystem size; free_size = real free bytes, within the cap if there is one. */
  async stats(): Promise<PoolStats> {
    this.assertOpen();
    const fs = await fsp.statfs(this.dir);
    const fsSize = fs.blocks * fs.bsize;
    const fsFree = fs.bavail * fs.bsize;
    if (this.sizeCap === undefined) return { size: fsSize, free_size: clamp(fsFree, 0, fsSize) };
    let allocated = 0;
    await forEachLimit([...this.index.keys()], STAT_CONCURRENCY, async (name) => {
      try {
        const st = await fsp.stat(this.dataPath(name));
        allocated += st.blocks * 512;
      } catch (err) {
        // Destroyed while we were summing: it no longer takes space.
        if (!isErrno(err, 'ENOENT')) throw err;
      }
    });
    return {
      size: this.sizeCap,
      free_size: clamp(Math.min(this.sizeCap - allocated, fsFree), 0, this.sizeCap),
    };
  }

  /** All complete volumes, by name; served from the in-memory index. */
  async list(): Promise<VolumeInfo[]> {
    this.assertOpen();
    this.sorted ??= [...this.index.values()]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((e) => ({ name: e.name, size: e.size, uuid: e.uuid }));
    return this.sorted.map((v) => ({ ...v }));
  }

  /** One volume, or undefined when it does not exist (or is still being made). */
  async get(name: string): Promise<VolumeInfo | undefined> {
    assertName(name);
    this.assertOpen();
    const e = this.index.get(name);
    return e && { name: e.name, size: e.size, uuid: e.uuid };
  }

  /** Creates an empty (all-hole) volume of `size` rounded up to 4 KiB, atomically; -50 if the name is taken. */
  async create(name: string, size: number): Promise<VolumeInfo> {
    assertName(name);
    this.assertOpen();
    const rounded = roundSize(size);
    this.assertCap(rounded);
    await this.reserve(name);
    const tmp = this.tmpBase('create', name);
    try {
      const uuid = randomUUID();
      const created = new Date().toISOString();
      // Both temp files are independent until commit, so their fsyncs can overlap.
      const makeData = async () => {
        const fh = await fsp.open(`${tmp}.vol`, 'wx', 0o600);
        try {
          await truncateOrRefuse(fh, rounded);
          await fh.sync();
        } finally {
          await fh.close();
        }
      };
      const results = await Promise.allSettled([
        writeDurably(`${tmp}.json`, metadataJson(name, uuid, created)),
        makeData(),
      ]);
      for (const r of results) if (r.status === 'rejected') throw r.reason;
      await this.commit(name, tmp, { name, uuid, size: rounded, created });
      this.log.info({ pool: this.name, name, size: rounded, uuid }, 'volume created');
      return { name, size: rounded, uuid };
    } catch (err) {
      await this.discard(name, tmp);
      throw err;
    } finally {
      this.pending.delete(name);
    }
  }

  // Moves a finished volume from tmp/ into place: metadata first, data last (the commit point).
  private async commit(name: string, tmp: string, entry: Entry): Promise<void> {
    await fsp.rename(`${tmp}.json`, this.metaPath(name));
    await fsyncDir(this.metaDir);
    await fsp.rename(`${tmp}.vol`, this.dataPath(name));
    this.index.set(name, entry);
    this.sorted = undefined;
    await fsyncDir(this.dir);
  }

  // Best-effort removal of a failed create/copy; anything missed is removed by the next open().
  private async discard(name: string, tmp: string): Promise<void> {
    const quiet = (p: string) => fsp.rm(p, { force: true }).catch(noop);
    await quiet(`${tmp}.vol`);
    await quiet(`${tmp}.json`);
    if (!this.index.has(name)) await quiet(this.metaPath(name));
  }

  /** Removes a volume's data, then its metadata; -103 when it does not exist. */
  async destroy(name: string): Promise<void> {
    assertName(name);
    this.assertOpen();
    const e = this.entry(name);
    await fsp.unlink(this.dataPath(name));
    this.index.delete(name);
    this.sorted = undefined;
    // The data's removal must be durable before the metadata's: a .vol left without metadata would be
    // someone else's file forever, while metadata left without data is cleaned up by open().
    await fsyncDir(this.dir);
    await fsp.rm(this.metaPath(name), { force: true });
    this.log.info({ pool: this.name, name, uuid: e.uuid }, 'volume destroyed');
  }

  /** Grows a volume in place to `size` rounded up to 4 KiB; -103 when missing, -32602 if it would shrink. */
  async resize(name: string, size: number): Promise<VolumeInfo> {
    assertName(name);
    this.assertOpen();
    const rounded = roundSize(size);
    const e = this.entry(name);
    this.assertCap(rounded);
    if (rounded < e.size) throw invalidParam('size', `${size} is smaller than the volume's ${e.size} bytes`);
    if (rounded > e.size) {
      const fh = await fsp.open(this.dataPath(name), 'r+');
      try {
        await truncateOrRefuse(fh, rounded);
        await fh.sync();
      } finally {
        await fh.close();
      }
      e.size = rounded;
      this.sorted = undefined;
      this.log.info({ pool: this.name, name, size: rounded }, 'volume resized');
    }
    return { name, size: e.size, uuid: e.uuid };
  }

  /** True when this filesystem clones files by reflink (probed at open()), so a copy takes constant time. */
  async canCloneInstantly(src: string): Promise<boolean> {
    assertName(src);
    this.assertOpen();
    return this.reflinkWorks && this.index.has(src);
  }

  /**
   * Copies `src` to a new volume `dst` (new UUID), grown to `size` if given. Reflink when the filesystem
   * can, else a sparse copy of the data extents only. `dst` appears only once complete; on failure or abort
   * nothing of it remains.
   */
  async copy(
    src: string,
    dst: string,
    size: number | undefined,
    onProgress: ProgressFn,
    signal: AbortSignal,
  ): Promise<VolumeInfo> {
    assertName(src);
    assertName(dst);
    this.assertOpen();
    const source = this.entry(src);
    const target = size === undefined ? undefined : roundSize(size);
    if (target !== undefined) {
      this.assertCap(target);
      if (target < source.size)
        throw invalidParam('size', `${size} is smaller than volume ${src} (${source.size} bytes)`);
    }
    signal.throwIfAborted();
    await this.reserve(dst);
    const tmp = this.tmpBase('copy', dst);
    const started = Date.now();
    try {
      let method = 'sparse';
      if (this.reflinkWorks && (await this.cloneFile(this.dataPath(src), `${tmp}.vol`))) {
        method = 'reflink';
      } else {
        await this.sparseCopy(this.dataPath(src), `${tmp}.vol`, onProgress, signal);
      }
      signal.throwIfAborted();
      const fh = await fsp.open(`${tmp}.vol`, 'r+');
      let finalSize: number;
      try {
        finalSize = (await fh.stat()).size;
        if (target !== undefined && target > finalSize) {
          await truncateOrRefuse(fh, target);
          finalSize = target;
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      const uuid = randomUUID();
      const created = new Date().toISOString();
      await writeDurably(`${tmp}.json`, metadataJson(dst, uuid, created));
      signal.throwIfAborted();
      await this.commit(dst, tmp, { name: dst, uuid, size: finalSize, created });
      onProgress(1);
      this.log.info(
        { pool: this.name, src, dst, size: finalSize, uuid, method, ms: Date.now() - started },
        'volume copied',
      );
      return { name: dst, size: finalSize, uuid };
    } catch (err) {
      await this.discard(dst, tmp);
      throw err;
    } finally {
      this.pending.delete(dst);
    }
  }

  // False when this file cannot be cloned (then the caller falls back to a sparse copy).
  private async cloneFile(from: string, to: string): Promise<boolean> {
    try {
      await fsp.copyFile(from, to, fsConstants.COPYFILE_FICLONE_FORCE | fsConstants.COPYFILE_EXCL);
      return true;
    } catch (err) {
      await fsp.rm(to, { force: true });
      if (isErrno(err, ...NO_REFLINK)) return false;
      throw err;
    }
  }

  // Copies only the data extents, so holes stay holes; progress is data bytes copied / data bytes in total.
  private async sparseCopy(
    from: string,
    to: string,
    onProgress: ProgressFn,
    signal: AbortSignal,
  ): Promise<void> {
    const input = await fsp.open(from, 'r');
    try {
      const output = await fsp.open(to, 'wx', 0o600);
      try {
        const length = (await input.stat()).size;
        await ftruncate(output.fd, length);
        // Map first, so progress has a true denominator; lseek on a mapped file is cheap next to copying.
        const extents: number[] = [];
        let total = 0;
        for (let off = 0; off < length; ) {
          const batch = await dataExtents(input.fd, off, EXTENT_BATCH);
          if (batch.length === 0) break;
          for (let i = 0; i < batch.length; i += 2) {
            const start = batch[i]!;
            const end = Math.min(batch[i + 1]!, length);
            if (start >= end) continue;
            extents.push(start, end);
            total += end - start;
          }
          off = batch[batch.length - 1]!;
          signal.throwIfAborted();
        }
        onProgress(0);
        const rate = this.rateLimit;
        // Under a rate limit, ~4 chunks a second keep the pacing smooth instead of bursts and long sleeps.
        const chunk = rate ? clamp(Math.floor(rate / 4 / BLOCK) * BLOCK, MiB, COPY_CHUNK) : COPY_CHUNK;
        const started = performance.now();
        let done = 0;
        const ranges: number[] = [];
        let inChunk = 0;
        const flush = async (): Promise<void> => {
          if (ranges.length === 0) return;
          done += await copyRanges(input.fd, output.fd, Float64Array.from(ranges));
          ranges.length = 0;
          inChunk = 0;
          onProgress(total > 0 ? Math.min(done / total, 1) : 1);
          signal.throwIfAborted();
          if (rate) {
            const ahead = started + (done / rate) * 1000 - performance.now();
            if (ahead > 0) await sleep(ahead, undefined, { signal }).catch(() => signal.throwIfAborted());
          }
        };
        for (let i = 0; i < extents.length; i += 2) {
          let start = extents[i]!;
          const end = extents[i + 1]!;
          while (start < end) {
            const take = Math.min(end - start, chunk - inChunk);
            ranges.push(start, start + take);
            start += take;
            inChunk += take;
            if (inChunk >= chunk) await flush();
          }
        }
        await flush();
      } finally {
        await output.close();
      }
    } finally {
      await input.close();
    }
  }
}

function metadataJson(name: string, uuid: string, created: string): string {
  const meta: Metadata = { version: 1, name, uuid, created };
  return `${JSON.stringify(meta)}\n`;
}

// The filesystem is the judge of the largest file it can hold (ext4 stops at 16 TiB with 4 KiB blocks).
async function truncateOrRefuse(fh: FileHandle, size: number): Promise<void> {
  try {
    await ftruncate(fh.fd, size);
  } catch (err) {
    if (isErrno(err, 'EFBIG', 'EINVAL')) {
      throw invalidParam('size', `${size} bytes is larger than this filesystem allows for a file`);
    }
    throw err;
  }
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.max(lo, Math.min(hi, n));
}

async function forEachLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
