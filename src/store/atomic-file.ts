import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** fsyncs a directory so a rename inside it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const h = await open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/**
 * Replaces `path` with `data` so that a crash at any instant leaves either the old or the new content:
 * temp file created 0600 (explicit chmod too, so umask cannot widen it), fsync, rename, fsync of the directory.
 */
export async function writeFileAtomic(path: string, data: string | Buffer): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const h = await open(tmp, 'wx', 0o600);
  try {
    await h.chmod(0o600);
    await h.writeFile(data);
    await h.sync();
  } catch (e) {
    await h.close();
    await unlink(tmp).catch(() => {});
    throw e;
  }
  await h.close();
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  await fsyncDir(dir);
}
