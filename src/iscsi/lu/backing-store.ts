import {
  constants as fsConstants,
  type promises as fsp,
  read as fsRead,
  write as fsWrite,
  writev as fsWritev,
} from 'node:fs';
import { open } from 'node:fs/promises';

/**
 * The bytes behind one logical unit. Offsets and lengths are in bytes; callers (the SCSI layer) only issue
 * whole-block, in-range requests, so implementations need not re-check bounds.
 */
export interface BackingStore {
  /** Current size in bytes (what READ CAPACITY reports, rounded down to whole blocks). */
  size(): number;
  /** Reads `length` bytes at `offset`; bytes past the end of the underlying file read as zeros. */
  read(offset: number, length: number): Promise<Buffer>;
  /** Writes `data` (one buffer or several, back to back) at `offset`. */
  write(offset: number, data: Buffer | readonly Buffer[]): Promise<void>;
  /** Makes every completed write durable (fdatasync). */
  flush(): Promise<void>;
  /** Deallocates the range; it then reads as zeros. Present only when the store can thin-provision. */
  punchHole?(offset: number, length: number): Promise<void>;
  /** First offset ≥ `offset` holding data, or -1 when only holes follow. */
  seekData?(offset: number): Promise<number>;
  /** First offset ≥ `offset` inside a hole (the end counts as one), or -1 past the end. */
  seekHole?(offset: number): Promise<number>;
  /** Re-reads the size from the underlying file (after an out-of-band resize) and returns it. */
  refreshSize?(): Promise<number>;
  close(): Promise<void>;
}

/**
 * File-descriptor level operations Node's fs lacks. The daemon passes the native addon (src/native); tests
 * pass stand-ins. Signatures match the addon's so it can be handed over as is.
 */
export interface FileOps {
  punchHole?(fd: number, offset: number, length: number): Promise<void>;
  seekData?(fd: number, offset: number): Promise<number>;
  seekHole?(fd: number, offset: number): Promise<number>;
  /**
   * Synchronous pread that never waits for the disk (preadv2 with RWF_NOWAIT): the bytes read when all of
   * them are in the page cache, else -1 or a short count (the read then goes to the threadpool as usual), or
   * -2 when the file cannot be read that way at all (the store stops trying). It spares a cached small read the threadpool round trip (two thread wake-ups,
   * most of a 4 KiB read's cost on a 2-core VM). Optional: without it every read uses the threadpool.
   */
  preadNowait?(fd: number, buffer: Buffer, offset: number): number;
}

/** A write waiting for the end of the JavaScript turn, when queued writes are merged and submitted. */
interface QueuedWrite {
  offset: number;
  bufs: Buffer[];
  length: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** Bounds of one merged writev: bytes, and buffers (below IOV_MAX, 1024). */
const MERGE_MAX_BYTES = 4 * 1024 * 1024;
const MERGE_MAX_IOVS = 512;

/** Reads up to this size try {@link FileOps.preadNowait} first; larger ones are worth a threadpool thread. */
const NOWAIT_MAX_READ = 64 * 1024;

export interface FileBackingStoreOptions {
  readOnly?: boolean;
  ops?: FileOps;
}

/**
 * A backing store over a regular file or block device, using positional I/O on one FileHandle.
 *
 * Reads and writes go through the callback form of fs.read/write/writev on the handle's descriptor rather
 * than FileHandle's promise methods: measured on the 2-core benchmark VM, a 4 KiB page-cache read costs about
 * 5 µs of CPU that way against 12–15 µs through FileHandle.read (its per-call ref-counting, wrapper objects and
 * result object). Since the handle is bypassed, the store counts its own in-flight operations and close()
 * waits for them, so the descriptor is never closed (and reused) under a pending read.
 */
export class FileBackingStore implements BackingStore {
  private bytes: number;
  private readonly fd: number;
  private inflight = 0;
  private idleWaiters: (() => void)[] = [];
  /** Set by close(): the descriptor number may be reused by another file, so it must not be touched again. */
  private closed = false;
  private queuedWrites: QueuedWrite[] = [];
  private flushQueued = false;
  punchHole?: (offset: number, length: number) => Promise<void>;
  seekData?: (offset: number) => Promise<number>;
  seekHole?: (offset: number) => Promise<number>;
  private preadNowait: FileOps['preadNowait'];

  private constructor(
    private readonly fh: fsp.FileHandle,
    bytes: number,
    readonly path: string,
    readonly readOnly: boolean,
    ops: FileOps,
  ) {
    this.bytes = bytes;
    const fd = fh.fd;
    this.fd = fd;
    this.preadNowait = ops.preadNowait;
    // Bound per instance so a store without an op simply lacks the method, which is how the SCSI layer
    // decides whether to advertise thin provisioning.
    if (ops.punchHole && !readOnly) {
      const punch = ops.punchHole;
      this.punchHole = (offset, length) => punch(fd, offset, length);
    }
    if (ops.seekData && ops.seekHole) {
      const sd = ops.seekData;
      const sh = ops.seekHole;
      this.seekData = (offset) => sd(fd, offset);
      this.seekHole = (offset) => sh(fd, offset);
    }
  }

  /** Opens `path` read-write (or read-only) and reads its size. */
  static async open(path: string, options: FileBackingStoreOptions = {}): Promise<FileBackingStore> {
    const readOnly = options.readOnly ?? false;
    const fh = await open(path, readOnly ? fsConstants.O_RDONLY : fsConstants.O_RDWR);
    try {
      const bytes = await sizeOf(fh);
      return new FileBackingStore(fh, bytes, path, readOnly, options.ops ?? {});
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  size(): number {
    return this.bytes;
  }

  async refreshSize(): Promise<number> {
    this.bytes = await sizeOf(this.fh);
    return this.bytes;
  }

  read(offset: number, length: number): Promise<Buffer> {
    if (this.closed) return Promise.reject(closedError('read'));
    const buf = readBuffer(length);
    const fd = this.fd;
    if (this.preadNowait !== undefined && length <= NOWAIT_MAX_READ && length > 0) {
      // Anything but the whole range at once (not cached, EOF, an error) is retried the ordinary way.
      const n = this.preadNowait(fd, buf, offset);
      if (n === length) return Promise.resolve(buf);
      if (n === -2) this.preadNowait = undefined;
    }
    this.inflight++;
    return new Promise<Buffer>((resolve, reject) => {
      let done = 0;
      const step = (err: NodeJS.ErrnoException | null, bytesRead: number): void => {
        if (err) {
          this.settled();
          reject(err);
          return;
        }
        if (bytesRead === 0) {
          // A file shorter than the LU (e.g. truncated behind our back) reads as zeros, never stale memory.
          buf.fill(0, done);
          done = length;
        } else {
          done += bytesRead;
        }
        if (done >= length) {
          this.settled();
          resolve(buf);
          return;
        }
        fsRead(fd, buf, done, length - done, offset + done, step);
      };
      fsRead(fd, buf, 0, length, offset, step);
    });
  }

  /**
   * Queues the write; the queue is submitted once the current JavaScript turn ends, with writes that continue
   * one another merged into one writev (see {@link flushWrites}).
   */
  write(offset: number, data: Buffer | readonly Buffer[]): Promise<void> {
    if (this.closed) return Promise.reject(closedError('write'));
    let bufs: Buffer[];
    let length = 0;
    if (Buffer.isBuffer(data)) {
      bufs = [data];
      length = data.length;
    } else {
      bufs = [];
      for (const b of data) {
        if (b.length === 0) continue;
        bufs.push(b);
        length += b.length;
      }
    }
    if (length === 0) return Promise.resolve();
    this.inflight++;
    return new Promise<void>((resolve, reject) => {
      this.queuedWrites.push({ offset, bufs, length, resolve, reject });
      if (!this.flushQueued) {
        this.flushQueued = true;
        queueMicrotask(() => this.flushWrites());
      }
    });
  }

  /**
   * Submits the queued writes: sorted by offset, each run of writes that continue one another (a sequential
   * writer's queue depth, arriving in one socket read) goes out as one writev. 32 queued 4 KiB writes then
   * cost one threadpool round trip and one inode-lock acquisition instead of 32 of each, which on the 2-core
   * VM were mostly thread wake-ups and threads contending for the file's i_rwsem. Writes never overlap here:
   * the SCSI layer holds a range lock over each, so reordering disjoint ones changes nothing.
   */
  private flushWrites(): void {
    this.flushQueued = false;
    const q = this.queuedWrites;
    this.queuedWrites = [];
    if (q.length > 1) q.sort((a, b) => a.offset - b.offset);
    let i = 0;
    while (i < q.length) {
      const first = q[i]!;
      let end = first.offset + first.length;
      let bytes = first.length;
      let iovs = first.bufs.length;
      let j = i + 1;
      for (; j < q.length; j++) {
        const w = q[j]!;
        const fits = bytes + w.length <= MERGE_MAX_BYTES && iovs + w.bufs.length <= MERGE_MAX_IOVS;
        if (w.offset !== end || !fits) break;
        end += w.length;
        bytes += w.length;
        iovs += w.bufs.length;
      }
      this.submitWrites(j === i + 1 ? [first] : q.slice(i, j));
      i = j;
    }
  }

  /** Writes a run of contiguous queued writes with as few calls as it takes, then settles each of them. */
  private submitWrites(run: QueuedWrite[]): void {
    const fd = this.fd;
    let pos = run[0]!.offset;
    let bufs: Buffer[] = run.length === 1 ? run[0]!.bufs : run.flatMap((w) => w.bufs);
    const done = (err: NodeJS.ErrnoException | null): void => {
      for (const w of run) {
        this.settled();
        if (err) w.reject(err);
        else w.resolve();
      }
    };
    const step = (err: NodeJS.ErrnoException | null, written: number): void => {
      if (err) {
        done(err);
        return;
      }
      pos += written;
      bufs = skipBytes(bufs, written);
      if (bufs.length === 0) {
        done(null);
        return;
      }
      next();
    };
    const next = (): void => {
      if (bufs.length === 1) fsWrite(fd, bufs[0]!, 0, bufs[0]!.length, pos, step);
      else fsWritev(fd, bufs, pos, step);
    };
    next();
  }

  private settled(): void {
    if (--this.inflight === 0 && this.idleWaiters.length > 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  async flush(): Promise<void> {
    await this.fh.datasync();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.inflight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await this.fh.close();
  }
}

function closedError(syscall: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`EBADF: the backing store is closed, ${syscall}`);
  err.code = 'EBADF';
  err.syscall = syscall;
  return err;
}

/** Reads up to this size are carved from a shared slab instead of getting an ArrayBuffer each. */
const SLAB_MAX_READ = 16 * 1024;
const SLAB_BYTES = 128 * 1024;
let slab = Buffer.allocUnsafeSlow(0);
let slabOffset = 0;

/**
 * A buffer for a read of `n` bytes. A new ArrayBuffer per 4 KiB read (Buffer.allocUnsafe allocates one for
 * 4096 bytes and up) costs about 1 µs in allocation and GC; a view of a slab about half that. A slab region is
 * handed out once and never reused: the read overwrites all of it (or zero-fills a short read), so no bytes
 * of another read are ever visible, and the slab is freed when the last view of it is.
 */
function readBuffer(n: number): Buffer {
  if (n > SLAB_MAX_READ) return Buffer.allocUnsafe(n);
  if (slabOffset + n > slab.length) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
    slabOffset = 0;
  }
  const b = slab.subarray(slabOffset, slabOffset + n);
  slabOffset = (slabOffset + n + 7) & ~7;
  return b;
}

async function sizeOf(fh: fsp.FileHandle): Promise<number> {
  const st = await fh.stat();
  if (st.isBlockDevice()) {
    // stat reports 0 for block devices; the end offset is their size.
    const probe = Buffer.alloc(1);
    return binarySearchEnd(fh, probe);
  }
  return st.size;
}

// Block devices have no size in stat and Node has no BLKGETSIZE64; find the end by probing reads, which is
// O(log size) small reads and only happens at open/resize.
async function binarySearchEnd(fh: fsp.FileHandle, probe: Buffer): Promise<number> {
  let lo = 0;
  let hi = 1;
  while ((await fh.read(probe, 0, 1, hi - 1)).bytesRead === 1) {
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if ((await fh.read(probe, 0, 1, mid - 1)).bytesRead === 1) lo = mid;
    else hi = mid;
  }
  return lo;
}

function skipBytes(bufs: Buffer[], n: number): Buffer[] {
  let i = 0;
  while (i < bufs.length && n >= bufs[i]!.length) {
    n -= bufs[i]!.length;
    i++;
  }
  const rest = bufs.slice(i);
  if (n > 0 && rest.length > 0) rest[0] = rest[0]!.subarray(n);
  return rest;
}
