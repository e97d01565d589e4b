import { randomBytes } from 'node:crypto';
import { type FileHandle, open, readdir, rm, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { createTemp, type FsStep, failedStep, fsSteps } from '../native/index.js';
import { closeFd, runWithSpares, SpareFiles } from './spare-file.js';

const noop = (): void => {};

/**
 * Replaces `path` with `data` so that a crash at any instant leaves either the old or the new content:
 * temp file created 0600 (exactly, whatever the umask), its content made durable, rename, fsync of the
 * directory. The temp file is opened O_DSYNC, so its write is durable when it returns, and everything after
 * its creation is one native job (see fsSteps). For a file replaced often, {@link AtomicFile} also keeps
 * the directory open and the temp file made ahead.
 */
export async function writeFileAtomic(path: string, data: string | Buffer): Promise<void> {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const tmp = tempNameFor(path);
  const [made, opened] = await Promise.allSettled([createTemp(tmp, true), open(dirname(path), 'r')]);
  if (made.status === 'rejected' || opened.status === 'rejected') {
    if (made.status === 'fulfilled') {
      closeFd(made.value);
      await unlink(tmp).catch(noop);
    }
    if (opened.status === 'fulfilled') await opened.value.close().catch(noop);
    throw made.status === 'rejected' ? made.reason : (opened as PromiseRejectedResult).reason;
  }
  const dir = opened.value;
  try {
    await replaceSteps(made.value, tmp, path, bytes, { fd: dir.fd });
  } finally {
    await dir.close().catch(noop);
  }
}

/**
 * Thrown when the new content did replace the file but the directory's fsync failed: the file holds the
 * new content, which a crash may still undo.
 */
export class NotDurableError extends Error {
  constructor(
    readonly path: string,
    cause: unknown,
  ) {
    super(`${path} was replaced but could not be made durable: ${(cause as Error).message}`, { cause });
    this.name = 'NotDurableError';
  }
}

/** How replaceSteps reaches the directory: its open descriptor, and optionally its spares and a guard. */
interface ReplaceDir {
  fd: number;
  spares?: SpareFiles;
  // Checked first: the path must still name the directory open as `fd`.
  guardPath?: string;
}

// The durable part of an atomic replace, as one native job (which also makes the next spare of the
// directory's spares): write the O_DSYNC temp file `fd` (at `tmp`), close it, rename it over `path`, fsync
// the directory. On failure the temp file is gone.
async function replaceSteps(
  fd: number,
  tmp: string,
  path: string,
  bytes: Buffer,
  dir: ReplaceDir,
): Promise<void> {
  const guard: FsStep[] =
    dir.guardPath === undefined ? [] : [{ op: 'same', fd: dir.fd, path: dir.guardPath }];
  const steps: FsStep[] = [
    ...guard,
    { op: 'pwrite', fd, data: bytes },
    { op: 'close', fd },
    { op: 'rename', from: tmp, to: path },
    { op: 'fsync', fd: dir.fd },
  ];
  try {
    if (dir.spares) await runWithSpares(steps, dir.spares);
    else await fsSteps(steps);
  } catch (e) {
    const at = failedStep(e);
    // Not a step's failure: the job never ran, so neither did its close.
    if (at < 0) closeFd(fd);
    if (at === steps.length - 1) throw new NotDurableError(path, e);
    // Only the directory's fsync comes after the rename: the temp file is still there.
    await unlink(tmp).catch(noop);
    if (at === 0 && guard.length > 0) {
      throw new Error(
        `${dir.guardPath} was removed or replaced since it was opened; not writing ${basename(path)} there ` +
          `(restart to use the new directory): ${(e as Error).message}`,
      );
    }
    throw e;
  }
}

/**
 * One file replaced again and again with the same guarantee as writeFileAtomic (the state file). Its
 * directory stays open and each replacement is a single thread-pool job: make the next temp file (open
 * O_DSYNC, mode 0600), write the current one (durable when the write returns), close it, rename it over the
 * file, fsync the directory. On this machine's disk the thread round trips of the step-by-step version
 * cost as much as the two flushes themselves.
 */
export class AtomicFile {
  private dir: FileHandle | undefined;
  private readonly spares: SpareFiles;

  constructor(readonly path: string) {
    this.spares = sparesFor(path);
  }

  /** Removes temp files a crash left beside the file and opens its directory; call before write. */
  async open(): Promise<void> {
    await removeTempFiles(this.path);
    this.dir = await open(dirname(this.path), 'r');
    this.spares.resume();
  }

  /**
   * Replaces the file's content with `data`, durably. On failure the file holds the old content, except
   * after a NotDurableError (the new content, not known to be durable). Refuses to write when the
   * directory was removed or replaced since open (another process may own the new one).
   */
  async write(data: string | Buffer): Promise<void> {
    const dir = this.dir;
    if (!dir) throw new Error(`${this.path}: write before open`);
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const tmp = await this.spares.take();
    await replaceSteps(tmp.fd, tmp.path, this.path, bytes, {
      fd: dir.fd,
      spares: this.spares,
      guardPath: dirname(this.path),
    });
  }

  /** Removes the spare and closes the directory. */
  async close(): Promise<void> {
    await this.spares.dispose();
    const dir = this.dir;
    this.dir = undefined;
    await dir?.close();
  }
}

// A new temp-file name for `path`: `.NAME.<hex>.tmp` beside it (what removeTempFiles looks for).
function tempNameFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
}

/** Spare temp files for an AtomicFile at `path`: made ahead beside it, open O_DSYNC as its writes need. */
function sparesFor(path: string): SpareFiles {
  return new SpareFiles(() => tempNameFor(path), true);
}

/** Removes the temp files of `path` that a crash left behind (an interrupted write, or a spare). */
export async function removeTempFiles(path: string): Promise<void> {
  const prefix = `.${basename(path)}.`;
  for (const f of await readdir(dirname(path))) {
    // Recursive: whatever has a temp file's name here is ours, even a directory.
    if (f.startsWith(prefix) && f.endsWith('.tmp')) {
      await rm(join(dirname(path), f), { recursive: true, force: true });
    }
  }
}
