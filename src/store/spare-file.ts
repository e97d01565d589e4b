import { constants } from 'node:fs';
import { type FileHandle, open, unlink } from 'node:fs/promises';

const noop = (): void => {};

/** An empty private temp file, open for writing. */
export interface TempFile {
  path: string;
  handle: FileHandle;
}

/**
 * Makes empty 0600 temp files ahead of need. On ext4, creating a file right after an fsync waits for the
 * journal (about 1 ms here, as long as the rest of a small atomic write); a file made in the background
 * between two calls takes that wait off the caller's path. At most one spare exists at a time; whoever
 * owns the directory removes leftovers at startup, since a crash leaves the spare behind.
 */
export class SpareFiles {
  private next: Promise<TempFile> | undefined;
  private closed = false;

  /** `makePath` names each new file (unique); `flags` are the open flags besides O_CREAT|O_EXCL. */
  constructor(
    private readonly makePath: () => string,
    private readonly flags: number,
  ) {}

  /** A new empty file: the spare when there is one, else one made now. */
  async take(): Promise<TempFile> {
    const ready = this.next;
    this.next = undefined;
    if (ready) {
      try {
        return await ready;
      } catch {
        // The background create failed (full disk, removed directory): try once more, reporting that.
      }
    }
    return this.make();
  }

  /** Starts making the next spare; call once the caller's own durable work is done, so it does not compete. */
  refill(): void {
    if (this.next || this.closed) return;
    const p = this.make();
    p.catch(noop);
    this.next = p;
  }

  /** Allows spares again after dispose (the owner reopened). */
  resume(): void {
    this.closed = false;
  }

  /** Removes the spare, if any; no further spares are made until resume. */
  async dispose(): Promise<void> {
    this.closed = true;
    const ready = this.next;
    this.next = undefined;
    const f = await ready?.catch(() => undefined);
    if (!f) return;
    await f.handle.close().catch(noop);
    await unlink(f.path).catch(noop);
  }

  private async make(): Promise<TempFile> {
    const path = this.makePath();
    const handle = await open(path, this.flags | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      // Exactly 0600 whatever the umask: the file may come to hold secrets.
      await handle.chmod(0o600);
    } catch (e) {
      await handle.close().catch(noop);
      await unlink(path).catch(noop);
      throw e;
    }
    return { path, handle };
  }
}
