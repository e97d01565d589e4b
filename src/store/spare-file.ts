import { close } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { createTemp } from '../native/index.js';

const noop = (): void => {};

/** An empty private (0600) temp file, open for writing; `fd` is a raw descriptor its taker closes. */
export interface TempFile {
  path: string;
  fd: number;
}

/** Closes a raw descriptor without waiting for it (nothing to report: Linux frees it either way). */
export function closeFd(fd: number): void {
  close(fd, noop);
}

/**
 * Makes empty 0600 temp files ahead of need. On ext4, creating a file right after an fsync waits for the
 * journal (about 1 ms here, as long as the rest of a small atomic write); a file made in the background
 * between two calls takes that wait off the caller's path. At most one spare exists at a time; whoever
 * owns the directory removes leftovers at startup, since a crash leaves the spare behind.
 *
 * The files are raw descriptors, not FileHandles, so that a caller can close them inside the same native
 * job as its writes and syncs (fsSteps) instead of paying another thread round trip.
 */
export class SpareFiles {
  private next: Promise<TempFile> | undefined;
  private closed = false;

  /** `makePath` names each new file (unique); `dsync` opens them O_DSYNC (each write durable when it returns). */
  constructor(
    private readonly makePath: () => string,
    private readonly dsync = false,
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
    closeFd(f.fd);
    await unlink(f.path).catch(noop);
  }

  private async make(): Promise<TempFile> {
    const path = this.makePath();
    return { path, fd: await createTemp(path, this.dsync) };
  }
}
