import { constants as fsConstants, type promises as fsp } from 'node:fs';
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
}

export interface FileBackingStoreOptions {
  readOnly?: boolean;
  ops?: FileOps;
}

/** A backing store over a regular file or block device, using positional I/O on one FileHandle. */
export class FileBackingStore implements BackingStore {
  private bytes: number;
  punchHole?: (offset: number, length: number) => Promise<void>;
  seekData?: (offset: number) => Promise<number>;
  seekHole?: (offset: number) => Promise<number>;

  private constructor(
    private readonly fh: fsp.FileHandle,
    bytes: number,
    readonly path: string,
    readonly readOnly: boolean,
    ops: FileOps,
  ) {
    this.bytes = bytes;
    const fd = fh.fd;
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

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) {
        // A file shorter than the LU (e.g. truncated behind our back) reads as zeros, never stale memory.
        buf.fill(0, done);
        break;
      }
      done += bytesRead;
    }
    return buf;
  }

  async write(offset: number, data: Buffer | readonly Buffer[]): Promise<void> {
    if (Buffer.isBuffer(data)) {
      await writeAll(this.fh, data, offset);
      return;
    }
    if (data.length === 1) {
      await writeAll(this.fh, data[0]!, offset);
      return;
    }
    let pos = offset;
    let bufs = data.filter((b) => b.length > 0);
    while (bufs.length > 0) {
      const { bytesWritten } = await this.fh.writev(bufs, pos);
      pos += bytesWritten;
      bufs = skipBytes(bufs, bytesWritten);
    }
  }

  async flush(): Promise<void> {
    await this.fh.datasync();
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
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

async function writeAll(fh: fsp.FileHandle, buf: Buffer, offset: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, offset + done);
    done += bytesWritten;
  }
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
