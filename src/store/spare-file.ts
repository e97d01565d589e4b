import { close } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { createTemp, type FsStep, fsSteps } from '../native/index.js';

const noop = (): void => {};

/** An empty private (0600) temp file, open for writing; `fd` is a raw descriptor its taker closes. */
export interface TempFile {
  path: string;
  fd: number;
}

type SpareStep = Extract<FsStep, { op: 'spare' }>;

/** Closes a raw descriptor without waiting for it (nothing to report: Linux frees it either way). */
export function closeFd(fd: number): void {
  close(fd, noop);
}

/**
 * Empty 0600 temp files made ahead of need, one at a time. The next one is made inside the native job of
 * the call that uses the current one ({@link runWithSpares}), before that job's syncs: a file made then
 * costs a few microseconds and no extra job, where a job of its own costs two wake-ups between threads
 * (tens of microseconds each on this VM), and a file made right after an fsync waits for ext4's journal.
 * Whoever owns the directory removes leftovers at startup, since a crash leaves the spare behind.
 *
 * The files are raw descriptors, not FileHandles, so that a caller can close them inside the same native
 * job as its writes and syncs.
 */
export class SpareFiles {
  private ready: TempFile | undefined;
  // The path a running job is making, so that concurrent callers do not each make one.
  private making: string | undefined;
  private closed = false;

  /** `makePath` names each new file (unique); `dsync` opens them O_DSYNC (each write durable when it returns). */
  constructor(
    private readonly makePath: () => string,
    private readonly dsync = false,
  ) {}

  /** A new empty file: the spare when there is one, else one made now. */
  async take(): Promise<TempFile> {
    const ready = this.ready;
    this.ready = undefined;
    if (ready) return ready;
    const path = this.makePath();
    return { path, fd: await createTemp(path, this.dsync) };
  }

  /** The step that makes the next spare, or undefined when one is ready or being made (or after dispose). */
  ahead(): SpareStep | undefined {
    if (this.ready || this.making !== undefined || this.closed) return undefined;
    this.making = this.makePath();
    return { op: 'spare', path: this.making, dsync: this.dsync };
  }

  /** Keeps what `step` (from ahead) made: `fd`, or -1 when nothing was made. */
  settle(step: SpareStep, fd: number): void {
    if (this.making === step.path) this.making = undefined;
    if (fd < 0) return;
    if (this.ready || this.closed) {
      closeFd(fd);
      void unlink(step.path).catch(noop);
      return;
    }
    this.ready = { path: step.path, fd };
  }

  /** Allows spares again after dispose (the owner reopened). */
  resume(): void {
    this.closed = false;
  }

  /** Removes the spare, if any; no further spares are kept until resume. */
  async dispose(): Promise<void> {
    this.closed = true;
    const ready = this.ready;
    this.ready = undefined;
    if (!ready) return;
    closeFd(ready.fd);
    await unlink(ready.path).catch(noop);
  }
}

/**
 * Runs `steps` as one fsSteps job that first makes the next spare of each of `spares` lacking one. A
 * failure rejects like fsSteps, its `step` counted within `steps`.
 */
export async function runWithSpares(steps: FsStep[], ...spares: SpareFiles[]): Promise<void> {
  const ahead = spares.map((s) => s.ahead());
  const made = ahead.filter((a): a is SpareStep => a !== undefined);
  let fds: number[];
  try {
    fds = await fsSteps([...made, ...steps]);
  } catch (err) {
    // A failed job removes the spares it made.
    spares.forEach((s, i) => {
      const a = ahead[i];
      if (a) s.settle(a, -1);
    });
    const e = err as { step?: unknown };
    if (typeof e.step === 'number') e.step -= made.length;
    throw err;
  }
  let k = 0;
  spares.forEach((s, i) => {
    const a = ahead[i];
    if (a) s.settle(a, fds[k++] ?? -1);
  });
}
