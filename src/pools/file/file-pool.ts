/**
 * A block pool kept in a directory of sparse files, on any filesystem.
 *
 * Layout under the pool directory <path>:
 *   <name>.vol                  the volume's data, a sparse file; its size is the volume size
 *   .targetd/vols/<name>.json   the volume's metadata: {version, name, uuid, created, size, unsynced?}
 *   .targetd/tmp/               half-made files of running creates/copies and metadata rewrites; the reflink probe
 *   .targetd/quarantine/        copies whose data a machine restart may have torn: <name>-<uuid>.{vol,json}
 *   .targetd/lock               flock'd while a pool object has the directory open
 *
 * A volume exists iff both its .vol and its .json exist. create/copy build the .vol in tmp/, write the .json
 * in tmp/ and rename it into vols/, make that .json's content and its directory entry durable, and only then
 * rename the .vol into <path>: that last rename is the commit point, made durable by an fsync of <path>
 * before the call returns (a create does all of it in one native job, see fsSteps). destroy unlinks the .vol first (durably), then the .json. So
 * whatever instant a crash hits, what remains is complete volumes, files in tmp/, and at most a .json
 * without its .vol (possibly empty, if its content had not reached the disk); open() removes the latter two.
 * Anything else in <path> (a .vol without our metadata, other files) belongs to someone else: never listed,
 * never touched, and its name is not reused.
 *
 * Metadata fields: `size` is the size the volume was created (or copied) with. Volumes only grow, so the
 * data file is never smaller; a new volume's data file (all holes) is not fsynced, and open() extends one
 * whose size a crash lost back to `size`. Metadata written before `size` existed has none and is not checked.
 *
 * `unsynced: {boot_id}` marks a sparse copy whose data is not known to be on disk yet ("durable before it
 * matters"). A sparse copy is committed without fdatasync of its data, with this marker holding the kernel's
 * boot id (/proc/sys/kernel/random/boot_id), so vol_copy returns as soon as the data is in the page cache.
 * The pool then fdatasyncs the data in the background (SYNC_GRACE_MS after the commit, or at once when
 * something waits for it) through the copy's own descriptor, and rewrites the metadata without the marker
 * (tmp/ + fsync + rename + fsync of vols/). Whatever makes the volume matter waits for that first
 * (whenDurable): an export or access-group mapping of it, a resize, and close(). If the sync fails,
 * whenDurable keeps failing until the volume is destroyed, and the marker stays for open() to judge.
 * destroy drops a pending sync; the rewrite and destroy are serialized per name, so the metadata of a
 * destroyed (or destroyed and re-created) volume is never rewritten. At open(), a
 * marker with the current boot id means only the process died and the page cache still holds the data:
 * it is fdatasynced and the marker cleared. A marker with another boot id means the machine restarted
 * before the data reached the disk, so the copy may be torn: both files are moved to quarantine/ (never
 * deleted), the volume is not listed, its name is free again, and an error is logged. Reflink copies move
 * no data and are fsynced before commit, without a marker. Without a readable boot id every copy is
 * fsynced before commit.
 *
 * Volume names can hold only [A-Za-z0-9_-], so no name can escape the directory or collide with `.targetd`.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { constants as fsConstants, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  copyRanges,
  dataExtents,
  type FsStep,
  failedStep,
  flock,
  fsSteps,
  ftruncate,
  isErrno,
} from '../../native/index.js';
import { ErrorCode, invalidParam, TargetdError } from '../../rpc/errors.js';
import { NAME_RE } from '../../rpc/params.js';
import { closeFd, runWithSpares, SpareFiles, type TempFile } from '../../store/spare-file.js';
import type { BlockPool, PoolStats, ProgressFn, VolumeInfo } from '../types.js';

/** The slice of a pino logger the pool uses. */
export interface PoolLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
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
  /**
   * The current boot's id, compared with the one an unsynced copy recorded (default: the contents of
   * /proc/sys/kernel/random/boot_id; undefined: unknown, so copies are synced before commit). Tests inject
   * another value to simulate a machine restart.
   */
  bootId?: () => Promise<string | undefined> | string | undefined;
  /**
   * Awaited before a copy's background data sync starts. A test seam: it holds a copy in its
   * not-yet-durable state. Unset in the daemon.
   */
  beforeBackgroundSync?: (name: string) => Promise<void>;
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
  /** Size at creation or copy; the data file is never smaller (see the top of this file). */
  size?: number;
  /** Present while a copy's data may not be on disk yet: the boot it was made in. */
  unsynced?: { boot_id: string };
}

/** A copy's pending background sync (see `unsynced` at the top of this file). */
interface SyncJob {
  uuid: string;
  /** Set by destroy: the metadata must not be rewritten any more. */
  cancelled: boolean;
  /** Starts the sync now instead of after its grace period. */
  start: () => void;
  /** Resolves (never rejects) once the job has ended, whatever the outcome. */
  done: Promise<void>;
  failed?: Error;
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
/**
 * A copy's background sync starts this long after its commit, or as soon as something waits for it. On
 * ext4 (data=ordered) the writeback's block allocation holds every journal commit, so every fsync in the
 * filesystem, until the data is written: starting at once would stall the copy's own last bookkeeping (the
 * array's state file) for the whole writeback, and a copy destroyed straight away need not be written at all.
 */
const SYNC_GRACE_MS = 100;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// Errors that mean "this filesystem cannot clone", as opposed to a real failure of the copy.
const NO_REFLINK = ['EOPNOTSUPP', 'ENOTSUP', 'EXDEV', 'EINVAL', 'ENOSYS', 'ENOTTY', 'EPERM'];
const noop = (): void => {};
const BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id';

async function readBootId(): Promise<string | undefined> {
  try {
    const id = (await fsp.readFile(BOOT_ID_FILE, 'utf8')).trim();
    return id === '' ? undefined : id;
  } catch {
    return undefined;
  }
}

/** Awaits every promise (none is left running), then throws the first failure, if any. */
async function settleAll(ps: (Promise<unknown> | undefined)[]): Promise<void> {
  const rs = await Promise.allSettled(ps);
  for (const r of rs) if (r.status === 'rejected') throw r.reason;
}

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
  private readonly bootIdSource: () => Promise<string | undefined> | string | undefined;
  private readonly beforeBackgroundSync: ((name: string) => Promise<void>) | undefined;
  private readonly metaDir: string;
  private readonly tmpDir: string;
  private readonly quarantineDir: string;
  /** The pool is the only writer of its directory, so this index is the truth between open() and close(). */
  private readonly index = new Map<string, Entry>();
  /** Names being created or copied to, so a second mutation cannot claim the same name meanwhile. */
  private readonly pending = new Set<string>();
  /** Copies whose data is being made durable in the background, by name. */
  private readonly syncs = new Map<string, SyncJob>();
  /** Every background sync not yet ended, including those destroy dropped (they still hold a descriptor). */
  private readonly running = new Set<Promise<void>>();
  /** Per-name chains serializing a copy's metadata rewrite with destroy (see `serial`). */
  private readonly chains = new Map<string, Promise<void>>();
  private sorted: VolumeInfo[] | undefined;
  private lock: FileHandle | undefined;
  // The two directories every create and destroy fsyncs, open for the pool's lifetime: an fsync through a
  // held handle is one thread-pool round trip instead of three (open, fsync, close).
  private dirHandle: FileHandle | undefined;
  private metaDirHandle: FileHandle | undefined;
  // The next create's two temp files, made by the previous create's job (see SpareFiles).
  private readonly spareData: SpareFiles;
  private readonly spareMeta: SpareFiles;
  private bootId: string | undefined;
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
    this.log = opts.logger ?? { info: noop, warn: noop, error: noop };
    this.tryReflink = opts.reflink ?? true;
    this.rateLimit = opts.copyRateLimit || undefined;
    this.bootIdSource = opts.bootId ?? readBootId;
    this.beforeBackgroundSync = opts.beforeBackgroundSync;
    this.metaDir = path.join(this.dir, '.targetd', 'vols');
    this.tmpDir = path.join(this.dir, '.targetd', 'tmp');
    this.quarantineDir = path.join(this.dir, '.targetd', 'quarantine');
    const spareName = (ext: string) => () =>
      path.join(this.tmpDir, `spare-${randomBytes(6).toString('hex')}.${ext}`);
    this.spareData = new SpareFiles(spareName('vol'));
    this.spareMeta = new SpareFiles(spareName('json'));
  }

  /**
   * Creates the directories, takes the pool lock, clears crash leftovers, loads the index (syncing or
   * quarantining copies a crash left unsynced), probes reflink.
   */
  async open(): Promise<void> {
    if (this.opened) return;
    // mkdir answers with the first directory it created: the pool's own (or one above) means it was missing.
    const created = await fsp.mkdir(this.metaDir, { recursive: true, mode: 0o700 });
    const madeDir =
      created !== undefined && (created === this.dir || this.dir.startsWith(created + path.sep));
    if (madeDir) {
      // Often right (a first start), but also what a mistyped path or an unmounted disk looks like.
      this.log.warn(
        { pool: this.name, path: this.dir },
        'file pool directory did not exist: created it empty',
      );
    }
    await fsp.mkdir(this.tmpDir, { recursive: true, mode: 0o700 });
    // Our own directories are private whatever the umask was when they were made.
    const mine = [path.join(this.dir, '.targetd'), this.metaDir, this.tmpDir];
    if (madeDir) mine.push(this.dir);
    for (const d of mine) await fsp.chmod(d, 0o700);

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
      this.dirHandle = await fsp.open(this.dir, 'r');
      this.metaDirHandle = await fsp.open(this.metaDir, 'r');
      this.bootId = (await this.bootIdSource()) || undefined;
      if (this.bootId === undefined) {
        this.log.warn(
          { pool: this.name, file: BOOT_ID_FILE },
          'no boot id: sparse copies are made durable before they are listed',
        );
      }
      const leftovers = await fsp.readdir(this.tmpDir);
      for (const f of leftovers) await fsp.rm(path.join(this.tmpDir, f), { recursive: true, force: true });
      this.spareData.resume();
      this.spareMeta.resume();
      const { orphans, recovered, quarantined } = await this.loadIndex();
      if (orphans > 0) await this.metaDirHandle.sync();
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
          recovered,
          quarantined,
        },
        'file pool opened',
      );
    } catch (err) {
      await this.release();
      throw err;
    }
  }

  /**
   * Waits for every pending background sync (so each copy listed so far is durable and unmarked), then
   * releases the pool lock; the object must be opened again before further use.
   */
  async close(): Promise<void> {
    this.opened = false;
    for (const job of this.syncs.values()) job.start();
    while (this.running.size > 0) await Promise.all(this.running);
    await Promise.all(this.chains.values());
    await this.release();
  }

  private async release(): Promise<void> {
    this.opened = false;
    await Promise.all([this.spareData.dispose(), this.spareMeta.dispose()]);
    this.index.clear();
    this.sorted = undefined;
    const handles = [this.dirHandle, this.metaDirHandle, this.lock];
    this.dirHandle = undefined;
    this.metaDirHandle = undefined;
    this.lock = undefined;
    for (const h of handles) await h?.close();
  }

  /**
   * Reads every metadata file; drops those whose data never arrived (or was already destroyed), restores a
   * data file's size a crash lost, and settles copies a crash left unsynced (see the top of this file).
   */
  private async loadIndex(): Promise<{ orphans: number; recovered: number; quarantined: number }> {
    this.index.clear();
    this.sorted = undefined;
    let orphans = 0;
    const unsynced: { name: string; meta: Metadata }[] = [];
    const torn: { name: string; meta: Metadata }[] = [];
    const files = (await fsp.readdir(this.metaDir)).filter((f) => f.endsWith('.json'));
    await forEachLimit(files, STAT_CONCURRENCY, async (file) => {
      const name = file.slice(0, -'.json'.length);
      if (!NAME_RE.test(name)) return;
      const metaPath = path.join(this.metaDir, file);
      let text: string;
      let meta: Partial<Metadata> | undefined;
      try {
        text = await fsp.readFile(metaPath, 'utf8');
      } catch (err) {
        this.log.warn(
          { pool: this.name, file: metaPath, err: String(err) },
          'unreadable volume metadata ignored',
        );
        return;
      }
      try {
        meta = JSON.parse(text) as Partial<Metadata>;
      } catch {
        meta = undefined;
      }
      let st: Stats | undefined;
      try {
        st = await fsp.lstat(this.dataPath(name));
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
      // A create or copy renames its metadata into place before syncing it, so a crash can leave an empty
      // (or zero-filled) one, never a .vol beside it.
      if (st === undefined && meta === undefined && /^\0*$/.test(text)) {
        await fsp.rm(metaPath, { force: true });
        orphans++;
        return;
      }
      if (meta === undefined) {
        this.log.warn({ pool: this.name, file: metaPath }, 'unreadable volume metadata ignored');
        return;
      }
      if (meta.name !== name || typeof meta.uuid !== 'string' || !UUID_RE.test(meta.uuid)) {
        this.log.warn({ pool: this.name, file: metaPath }, 'invalid volume metadata ignored');
        return;
      }
      if (st === undefined) {
        // Metadata without data: a create or copy cut short before its commit, or a destroy cut short after.
        await fsp.rm(metaPath, { force: true });
        orphans++;
        return;
      }
      if (!st.isFile()) {
        this.log.warn({ pool: this.name, name }, 'volume data is not a regular file; volume ignored');
        return;
      }
      const full = meta as Metadata;
      if (full.unsynced !== undefined) {
        const sameBoot = this.bootId !== undefined && full.unsynced?.boot_id === this.bootId;
        (sameBoot ? unsynced : torn).push({ name, meta: full });
        if (!sameBoot) return;
      }
      let size = st.size;
      if (typeof full.size === 'number' && Number.isSafeInteger(full.size) && size < full.size) {
        await this.restoreSize(name, st.size, full.size);
        size = full.size;
      }
      this.index.set(name, { name, uuid: full.uuid, size, created: String(full.created ?? '') });
    });
    for (const t of torn) await this.quarantine(t.name, t.meta);
    await forEachLimit(unsynced, 4, async ({ name, meta }) => {
      const t0 = Date.now();
      let fh: FileHandle;
      try {
        fh = await fsp.open(this.dataPath(name), 'r');
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
        // Gone since it was listed a moment ago (not by us): metadata without data, like any orphan.
        this.index.delete(name);
        await fsp.rm(this.metaPath(name), { force: true });
        return;
      }
      try {
        await fh.datasync();
      } finally {
        await fh.close();
      }
      await this.writeMetadata(name, { ...meta, unsynced: undefined });
      this.log.info(
        { pool: this.name, name, uuid: meta.uuid, ms: Date.now() - t0 },
        'copy left unsynced by a daemon restart (same boot) made durable',
      );
    });
    return { orphans, recovered: unsynced.length, quarantined: torn.length };
  }

  // The data file of a volume whose creation a crash cut short of its (never synced) size: it was all
  // holes, so extending it restores exactly what the volume held.
  private async restoreSize(name: string, had: number, want: number): Promise<void> {
    const fh = await fsp.open(this.dataPath(name), 'r+');
    try {
      await ftruncate(fh.fd, want);
      await fh.sync();
    } finally {
      await fh.close();
    }
    this.log.warn(
      { pool: this.name, name, size: had, recorded: want },
      'volume data file shorter than recorded (a crash lost its size); extended',
    );
  }

  // Moves a copy that may be torn out of the pool: .json linked into quarantine/ first, then the .vol moved,
  // then the .json unlinked, so a crash in between leaves either a complete volume (quarantined again at the
  // next open) or an orphan .json beside a complete quarantine entry (removed at the next open).
  private async quarantine(name: string, meta: Metadata): Promise<void> {
    await fsp.mkdir(this.quarantineDir, { recursive: true, mode: 0o700 });
    const base = path.join(this.quarantineDir, `${name}-${meta.uuid}`);
    await fsp.link(this.metaPath(name), `${base}.json`).catch((err: unknown) => {
      if (!isErrno(err, 'EEXIST')) throw err;
    });
    await fsp.rename(this.dataPath(name), `${base}.vol`);
    const qdir = await fsp.open(this.quarantineDir, 'r');
    try {
      await settleAll([qdir.sync(), this.metaDirHandle!.sync(), this.dirHandle!.sync()]);
    } finally {
      await qdir.close();
    }
    await fsp.rm(this.metaPath(name), { force: true });
    await this.metaDirHandle!.sync();
    this.log.error(
      {
        pool: this.name,
        name,
        uuid: meta.uuid,
        path: `${base}.vol`,
        metadata: `${base}.json`,
        boot_id: meta.unsynced?.boot_id,
      },
      `volume ${name} (uuid ${meta.uuid}) was a copy whose data had not reached the disk when the machine ` +
        `restarted, so it may be torn: moved to ${base}.vol (not listed; the name ${name} is free again)`,
    );
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

  // Claims a free name: no entry, no running create/copy. Taken synchronously, so two overlapping
  // mutations cannot both pass; the caller also runs assertNotForeign before anything lands in vols/.
  private claim(name: string): void {
    if (this.index.has(name) || this.pending.has(name)) {
      throw new TargetdError(
        ErrorCode.NAME_CONFLICT,
        `volume '${name}' already exists in pool '${this.name}'`,
      );
    }
    this.pending.add(name);
  }

  // No file of someone else in the way of the name's data file.
  private async assertNotForeign(name: string): Promise<void> {
    try {
      await fsp.lstat(this.dataPath(name));
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      throw err;
    }
    throw this.foreignError(name);
  }

  // Checks first in every create and destroy job: the directories held open are still those at the pool's
  // paths (removed and made again, they may now be another process's pool).
  private guards(): FsStep[] {
    return [
      { op: 'same', fd: this.dirHandle!.fd, path: this.dir },
      { op: 'same', fd: this.metaDirHandle!.fd, path: this.metaDir },
    ];
  }

  private movedError(err: unknown): TargetdError {
    return new TargetdError(
      ErrorCode.INVALID,
      `pool ${this.name}: ${this.dir} was removed or replaced while the pool was open; nothing written ` +
        `(restart targetd to use the new directory): ${(err as Error).message}`,
    );
  }

  private foreignError(name: string): TargetdError {
    return new TargetdError(
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
    this.claim(name);
    let data: TempFile | undefined;
    let meta: TempFile | undefined;
    let placed = false;
    try {
      const uuid = randomUUID();
      const created = new Date().toISOString();
      const json = metadataJson({ version: 1, name, uuid, created, size: rounded });
      const taken = await Promise.allSettled([this.spareData.take(), this.spareMeta.take()]);
      if (taken[0].status === 'fulfilled') data = taken[0].value;
      if (taken[1].status === 'fulfilled') meta = taken[1].value;
      if (!data || !meta) {
        for (const f of [data, meta]) if (f) closeFd(f.fd);
        throw (taken.find((t) => t.status === 'rejected') as PromiseRejectedResult).reason;
      }
      // The commit protocol at the top of this file, as one thread-pool job: on a fast disk each separate
      // step's round trip between threads costs as much as its I/O. The data file is all holes and its size
      // is in the metadata, so it needs no fsync.
      const guards = this.guards();
      const steps: FsStep[] = [
        ...guards,
        { op: 'absent', path: this.dataPath(name) },
        { op: 'ftruncate', fd: data.fd, length: rounded },
        { op: 'pwrite', fd: meta.fd, data: Buffer.from(json) },
        { op: 'rename', from: meta.path, to: this.metaPath(name) },
        { op: 'fsync', fd: meta.fd },
        { op: 'fsync', fd: this.metaDirHandle!.fd },
        { op: 'rename', from: data.path, to: this.dataPath(name) },
        { op: 'fsync', fd: this.dirHandle!.fd },
        // Close steps run whatever happened before them: the spares are never leaked.
        { op: 'close', fd: data.fd },
        { op: 'close', fd: meta.fd },
      ];
      const FOREIGN = guards.length;
      const SIZE = FOREIGN + 1;
      const PLACED = SIZE + 2;
      const COMMITTED = PLACED + 3;
      try {
        await runWithSpares(steps, this.spareData, this.spareMeta);
      } catch (err) {
        const at = failedStep(err);
        // Not a step's failure: the job never ran, so neither did its closes.
        if (at < 0) for (const f of [data, meta]) closeFd(f.fd);
        placed = at > PLACED;
        if (at >= 0 && at < FOREIGN) throw this.movedError(err);
        if (at === FOREIGN && isErrno(err, 'EEXIST')) throw this.foreignError(name);
        if (at === SIZE) throw sizeRefusal(err, rounded);
        if (at > COMMITTED) {
          // Only the directory's fsync failed: the volume is in place (listed, as a restart may well find
          // it), though not known to be durable.
          this.index.set(name, { name, uuid, size: rounded, created });
          this.sorted = undefined;
          throw new TargetdError(
            ErrorCode.INVALID,
            `volume ${name} was created in pool ${this.name} but could not be made durable: ${(err as Error).message}`,
          );
        }
        throw err;
      }
      this.index.set(name, { name, uuid, size: rounded, created });
      this.sorted = undefined;
      this.log.info({ pool: this.name, name, size: rounded, uuid }, 'volume created');
      return { name, size: rounded, uuid };
    } catch (err) {
      await this.discard(name, [data?.path, meta?.path], placed);
      throw err;
    } finally {
      this.pending.delete(name);
    }
  }

  // Writes `<tmp>.json` (not yet synced) and returns it open.
  private async writeTmpMetadata(tmp: string, meta: Metadata): Promise<FileHandle> {
    const fh = await fsp.open(`${tmp}.json`, 'wx', 0o600);
    try {
      await fh.writeFile(metadataJson(meta));
    } catch (err) {
      await fh.close();
      throw err;
    }
    return fh;
  }

  // Moves a finished volume into place: its metadata is already in vols/ (`meta`, open, not yet synced),
  // the data is the temp file `dataTmp` (`data`, open unless the caller keeps it); the data's rename is the
  // commit point. Closes both handles given.
  private async commit(
    name: string,
    dataTmp: string,
    meta: FileHandle,
    data: FileHandle | undefined,
    entry: Entry,
  ): Promise<void> {
    // The metadata's content and its directory entry must both be durable before the data's rename; the
    // two fsyncs are independent of each other, so they overlap (one journal commit on ext4).
    await settleAll([meta.sync(), this.metaDirHandle!.sync()]);
    await settleAll([
      fsp.rename(dataTmp, this.dataPath(name)),
      meta.close(),
      data ? data.close() : undefined,
    ]);
    this.index.set(name, entry);
    this.sorted = undefined;
    await this.dirHandle!.sync();
  }

  // Best-effort removal of a failed create/copy (`placed`: its metadata had reached vols/); anything missed
  // is removed by the next open().
  private async discard(name: string, temps: (string | undefined)[], placed: boolean): Promise<void> {
    const quiet = (p: string) => fsp.rm(p, { force: true }).catch(noop);
    for (const t of temps) if (t) await quiet(t);
    if (placed && !this.index.has(name)) await quiet(this.metaPath(name));
  }

  /**
   * Removes a volume's data, then its metadata; -103 when it does not exist. A pending background sync of
   * it is dropped: its metadata is not rewritten after this.
   */
  async destroy(name: string): Promise<void> {
    assertName(name);
    this.assertOpen();
    const e = this.entry(name);
    // Under the name's chain: a metadata rewrite already under way finishes before the unlinks below, and
    // one that comes later finds its job dropped.
    await this.serial(name, async () => {
      // The data's removal must be durable before the metadata's: a .vol left without metadata would be
      // someone else's file forever, while metadata left without data is cleaned up by open(). One
      // thread-pool job for the three steps (see create).
      let err: unknown;
      const guards = this.guards();
      await fsSteps([
        ...guards,
        { op: 'unlink', path: this.dataPath(name) },
        { op: 'fsync', fd: this.dirHandle!.fd },
        { op: 'unlink', path: this.metaPath(name), missingOk: true },
      ]).catch((e: unknown) => {
        err = e;
      });
      const at = failedStep(err);
      const UNLINK_DATA = guards.length;
      if (err !== undefined && at >= 0 && at < UNLINK_DATA) throw this.movedError(err);
      if (err !== undefined && at === UNLINK_DATA) {
        if (!isErrno(err, 'ENOENT')) throw err;
        // Its data file was removed behind the pool's back: the volume is gone already, so finish the job.
        this.log.warn({ pool: this.name, name, uuid: e.uuid }, 'volume data file was already missing');
        err = undefined;
        await fsp.unlink(this.metaPath(name)).catch((e2: unknown) => {
          if (!isErrno(e2, 'ENOENT')) err = e2;
        });
      }
      // Past the data's unlink the volume is gone, whatever failed after it.
      const job = this.syncs.get(name);
      if (job) {
        job.cancelled = true;
        this.syncs.delete(name);
        job.start();
      }
      this.index.delete(name);
      this.sorted = undefined;
      if (err !== undefined && at === UNLINK_DATA + 1) {
        throw new TargetdError(
          ErrorCode.INVALID,
          `volume ${name} was removed from pool ${this.name} but its removal could not be made durable ` +
            `(it may reappear after a crash): ${(err as Error).message}`,
        );
      }
      if (err !== undefined) {
        // Metadata left without data is removed by the next open().
        this.log.warn(
          { pool: this.name, name, err: (err as Error).message },
          'volume destroyed; its metadata file could not be removed yet',
        );
      }
    });
    this.log.info({ pool: this.name, name, uuid: e.uuid }, 'volume destroyed');
  }

  /**
   * Grows a volume in place to `size` rounded up to 4 KiB; -103 when missing, -32602 if it would shrink.
   * A copy's data is made durable first.
   */
  async resize(name: string, size: number): Promise<VolumeInfo> {
    assertName(name);
    this.assertOpen();
    const rounded = roundSize(size);
    this.entry(name);
    this.assertCap(rounded);
    await this.whenDurable(name);
    const e = this.entry(name);
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

  /**
   * Resolves once the volume's data is known to be on disk: at once, unless it is a sparse copy whose
   * background sync is still running (then when that ends). Throws when that sync failed: such a volume's
   * data may be lost, so it is not to be exported or changed (destroy it).
   */
  async whenDurable(name: string): Promise<void> {
    assertName(name);
    const job = this.syncs.get(name);
    if (!job) return;
    job.start();
    await job.done;
    if (job.failed && this.syncs.get(name) === job) {
      throw new TargetdError(
        ErrorCode.INVALID,
        `volume ${name} of pool ${this.name}: its data could not be written to disk ` +
          `(${job.failed.message}); destroy it and copy it again`,
      );
    }
  }

  // The background half of a sparse copy: fdatasync through `data` (the copy's own descriptor, so it is
  // the right file whatever renames or unlinks happen meanwhile), then clear the marker, unless destroy
  // has dropped the job meanwhile.
  private scheduleSync(name: string, data: FileHandle, meta: Metadata): void {
    let go!: () => void;
    const started = new Promise<void>((resolve) => {
      go = resolve;
    });
    const timer = setTimeout(go, SYNC_GRACE_MS);
    const job: SyncJob = {
      uuid: meta.uuid,
      cancelled: false,
      start: () => {
        clearTimeout(timer);
        go();
      },
      done: Promise.resolve(),
    };
    const t0 = Date.now();
    job.done = (async () => {
      try {
        try {
          await started;
          if (this.beforeBackgroundSync) await this.beforeBackgroundSync(name);
          // A destroyed copy's pages are dropped with its last descriptor: nothing to write.
          if (!job.cancelled) await data.datasync();
        } finally {
          await data.close();
        }
        await this.serial(name, async () => {
          if (job.cancelled || this.syncs.get(name) !== job) return;
          await this.writeMetadata(name, { ...meta, unsynced: undefined });
          this.syncs.delete(name);
          this.log.info({ pool: this.name, name, uuid: meta.uuid, ms: Date.now() - t0 }, 'copy data durable');
        });
      } catch (err) {
        job.failed = err instanceof Error ? err : new Error(String(err));
        if (!job.cancelled) {
          this.log.error(
            { pool: this.name, name, uuid: meta.uuid, err: job.failed.message },
            `copy ${name}: its data could not be made durable; it cannot be exported`,
          );
        }
      }
    })();
    this.syncs.set(name, job);
    this.running.add(job.done);
    void job.done.then(() => this.running.delete(job.done));
  }

  // Replaces a volume's metadata atomically and durably: tmp/ file, fsync, rename, fsync of vols/.
  private async writeMetadata(name: string, meta: Metadata): Promise<void> {
    const tmp = this.tmpBase('meta', name);
    const fh = await this.writeTmpMetadata(tmp, meta);
    try {
      await fh.sync();
    } catch (err) {
      await fh.close();
      await fsp.rm(`${tmp}.json`, { force: true }).catch(noop);
      throw err;
    }
    await settleAll([fh.close(), fsp.rename(`${tmp}.json`, this.metaPath(name))]).catch(async (err) => {
      await fsp.rm(`${tmp}.json`, { force: true }).catch(noop);
      throw err;
    });
    await this.metaDirHandle!.sync();
  }

  // Runs `task` after every earlier task chained on `name` (a metadata rewrite and a destroy of one name
  // never interleave).
  private serial(name: string, task: () => Promise<void>): Promise<void> {
    const prev = this.chains.get(name) ?? Promise.resolve();
    const run = prev.then(task);
    const tail = run.catch(noop);
    this.chains.set(name, tail);
    void tail.then(() => {
      if (this.chains.get(name) === tail) this.chains.delete(name);
    });
    return run;
  }

  /** True when this filesystem clones files by reflink (probed at open()), so a copy takes constant time. */
  async canCloneInstantly(src: string): Promise<boolean> {
    assertName(src);
    this.assertOpen();
    return this.reflinkWorks && this.index.has(src);
  }

  /**
   * Copies `src` to a new volume `dst` (new UUID), grown to `size` if given. Reflink when the filesystem
   * can (synced before commit), else a sparse copy of the data extents only, committed with the `unsynced`
   * marker and synced in the background (see the top of this file). `dst` appears only once complete; on
   * failure or abort nothing of it remains.
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
    this.claim(dst);
    const tmp = this.tmpBase('copy', dst);
    const started = Date.now();
    let data: FileHandle | undefined;
    let meta: FileHandle | undefined;
    let placed = false;
    let unsynced: { data: FileHandle; meta: Metadata } | undefined;
    try {
      await this.assertNotForeign(dst);
      let method = 'sparse';
      if (this.reflinkWorks && (await this.cloneFile(this.dataPath(src), `${tmp}.vol`))) {
        method = 'reflink';
      } else {
        await this.sparseCopy(this.dataPath(src), `${tmp}.vol`, onProgress, signal);
      }
      signal.throwIfAborted();
      data = await fsp.open(`${tmp}.vol`, 'r+');
      let finalSize = (await data.stat()).size;
      if (target !== undefined && target > finalSize) {
        await truncateOrRefuse(data, target);
        finalSize = target;
      }
      const bootId = this.bootId;
      const deferred = method === 'sparse' && bootId !== undefined;
      // A reflink moved no data: its sync is cheap metadata. Without a boot id the marker would be useless.
      if (!deferred) await data.sync();
      const uuid = randomUUID();
      const created = new Date().toISOString();
      const m: Metadata = { version: 1, name: dst, uuid, created, size: finalSize };
      if (deferred) m.unsynced = { boot_id: bootId };
      meta = await this.writeTmpMetadata(tmp, m);
      signal.throwIfAborted();
      await fsp.rename(`${tmp}.json`, this.metaPath(dst));
      placed = true;
      // The data file stays open for the background sync (commit closes it otherwise).
      if (deferred) unsynced = { data, meta: m };
      await this.commit(dst, `${tmp}.vol`, meta, deferred ? undefined : data, {
        name: dst,
        uuid,
        size: finalSize,
        created,
      });
      data = undefined;
      if (unsynced) this.scheduleSync(dst, unsynced.data, unsynced.meta);
      onProgress(1);
      this.log.info(
        {
          pool: this.name,
          src,
          dst,
          size: finalSize,
          uuid,
          method,
          ms: Date.now() - started,
          durable: !deferred,
        },
        'volume copied',
      );
      return { name: dst, size: finalSize, uuid };
    } catch (err) {
      await meta?.close().catch(noop);
      // Failed after the commit point (a directory fsync): the copy exists, so it must still become durable.
      if (unsynced && this.index.get(dst)?.uuid === unsynced.meta.uuid) {
        this.scheduleSync(dst, unsynced.data, unsynced.meta);
        data = undefined;
      }
      await this.discard(dst, [`${tmp}.vol`, `${tmp}.json`], placed);
      throw err;
    } finally {
      await data?.close().catch(noop);
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

function metadataJson(meta: Metadata): string {
  return `${JSON.stringify(meta)}\n`;
}

// The filesystem is the judge of the largest file it can hold (ext4 stops at 16 TiB with 4 KiB blocks).
async function truncateOrRefuse(fh: FileHandle, size: number): Promise<void> {
  try {
    await ftruncate(fh.fd, size);
  } catch (err) {
    throw sizeRefusal(err, size);
  }
}

// A failed ftruncate to `size`: a size error for the client when the filesystem refused the size itself.
function sizeRefusal(err: unknown, size: number): unknown {
  if (isErrno(err, 'EFBIG', 'EINVAL')) {
    return invalidParam('size', `${size} bytes is larger than this filesystem allows for a file`);
  }
  return err;
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
