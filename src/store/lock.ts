import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { flock } from '../native/index.js';

/** Raised when another daemon already holds the state directory. */
export class LockHeldError extends Error {}

/**
 * Holds an exclusive flock on `<dir>/lock` for the life of the process. The kernel drops it when the process
 * dies (even by kill -9), so no stale-lock cleanup is needed.
 */
export async function lockStateDir(path: string): Promise<FileHandle> {
  const h = await open(path, 'a+', 0o600);
  try {
    flock(h.fd, true, true);
  } catch (e) {
    await h.close();
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EWOULDBLOCK' || code === 'EAGAIN') {
      throw new LockHeldError(`state directory is in use by another targetd (lock ${path} is held)`);
    }
    throw e;
  }
  await h.truncate(0);
  await h.write(`${process.pid}\n`, 0);
  return h;
}
