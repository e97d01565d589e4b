import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, open, readdir, rename, rm, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SpareFiles, type TempFile } from './spare-file.js';

const noop = (): void => {};
// O_DSYNC: each write returns once its data, and the size needed to read it back, are on disk (an
// fdatasync folded into the write).
const CREATE_DSYNC = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DSYNC;

/** fsyncs a directory so a rename inside it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const h = await open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/** Awaits every promise (none is left running), then throws the first failure, if any. */
async function settleAll(ps: Promise<unknown>[]): Promise<void> {
  const rs = await Promise.allSettled(ps);
  for (const r of rs) if (r.status === 'rejected') throw r.reason;
}

/**
 * Replaces `path` with `data` so that a crash at any instant leaves either the old or the new content:
 * temp file created 0600 (explicit chmod too, so the mode is exactly that whatever the umask), its content
 * made durable, rename, fsync of the directory. With `spares` (files made ahead in the same directory, open
 * O_DSYNC), the temp file is the spare and its creation is off this call's path.
 *
 * Each step is a round trip through the libuv thread pool, and on a small file those round trips cost as
 * much as the syncs, so there are as few as the order allows: the temp file is opened O_DSYNC (its write is
 * durable when it returns: no separate fsync), the directory is opened alongside it, chmod runs alongside
 * the write, the temp file's close alongside the rename, and the directory's close is not waited for.
 * The order that matters is kept: the content is durable before the rename, and the rename is durable
 * before this resolves.
 */
export async function writeFileAtomic(
  path: string,
  data: string | Buffer,
  spares?: SpareFiles,
): Promise<void> {
  const dir = dirname(path);
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let tmp: TempFile | undefined;
  let d: FileHandle | undefined;
  try {
    await settleAll([
      (spares ? spares.take() : freshTemp(path)).then((t) => {
        tmp = t;
      }),
      open(dir, 'r').then((fh) => {
        d = fh;
      }),
    ]);
    const { path: tmpPath, handle: file } = tmp!;
    try {
      // A spare was chmodded when it was made.
      await settleAll([spares ? Promise.resolve() : file.chmod(0o600), writeAll(file, bytes)]);
    } catch (e) {
      await file.close();
      await unlink(tmpPath).catch(noop);
      throw e;
    }
    // The content is on disk: a failing close cannot lose it, so only the rename decides the outcome.
    const [, renamed] = await Promise.allSettled([file.close(), rename(tmpPath, path)]);
    if (renamed.status === 'rejected') {
      await unlink(tmpPath).catch(noop);
      throw renamed.reason;
    }
    await d!.sync();
  } catch (e) {
    // A failed open of the directory: the temp file may exist and is of no use.
    if (tmp && !d) {
      await tmp.handle.close().catch(noop);
      await unlink(tmp.path).catch(noop);
    }
    await d?.close().catch(noop);
    throw e;
  }
  // Durable already; the caller need not wait for the directory's descriptor to be closed.
  void d!.close().catch(noop);
}

// A new temp-file name for `path`: `.NAME.<hex>.tmp` beside it (what removeTempFiles looks for).
function tempNameFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
}

/** Spare temp files for writeFileAtomic(`path`, …): made ahead beside it, open O_DSYNC as it needs them. */
export function sparesFor(path: string): SpareFiles {
  return new SpareFiles(() => tempNameFor(path), constants.O_WRONLY | constants.O_DSYNC);
}

/** Removes the temp files of `path` that a crash left behind (an interrupted write, or a spare). */
export async function removeTempFiles(path: string): Promise<void> {
  const prefix = `.${basename(path)}.`;
  for (const f of await readdir(dirname(path))) {
    if (f.startsWith(prefix) && f.endsWith('.tmp')) await rm(join(dirname(path), f), { force: true });
  }
}

// A temp file made now (the caller chmods it alongside its write).
async function freshTemp(path: string): Promise<TempFile> {
  const tmpPath = tempNameFor(path);
  return { path: tmpPath, handle: await open(tmpPath, CREATE_DSYNC, 0o600) };
}

async function writeAll(fh: FileHandle, bytes: Buffer): Promise<void> {
  for (let off = 0; off < bytes.length; ) {
    const { bytesWritten } = await fh.write(bytes, off, bytes.length - off, off);
    off += bytesWritten;
  }
}
