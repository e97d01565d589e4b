import type { FileHandle } from 'node:fs/promises';
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AtomicFile, NotDurableError } from './atomic-file.js';
import { lockStateDir } from './lock.js';
import { emptyState, type State, stateSchema } from './state.js';

/** Raised when the state file exists but cannot be trusted; the daemon refuses to start rather than lose exports. */
export class StateCorruptError extends Error {}

/**
 * The state file under `state_dir`: loaded once, then every change is written atomically and durably
 * before the call that made it returns. Holds the directory lock so a second daemon is refused.
 */
export class StateStore {
  private lock: FileHandle | undefined;
  private current: State = emptyState();
  readonly file: string;
  private readonly atomic: AtomicFile;

  constructor(readonly dir: string) {
    this.file = join(dir, 'state.json');
    this.atomic = new AtomicFile(this.file);
  }

  /** Takes the lock and loads the state (a fresh one when there is no file yet). */
  async open(): Promise<State> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    // The directory holds CHAP secrets: keep it private even if it pre-existed.
    await chmod(this.dir, 0o700);
    this.lock = await lockStateDir(join(this.dir, 'lock'));
    // Also removes temp files a crash left behind (an interrupted save, or the spare): never the state itself.
    await this.atomic.open();
    let text: string | undefined;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (text === undefined) {
      this.current = emptyState();
      await this.save(this.current);
    } else {
      let doc: unknown;
      try {
        doc = JSON.parse(text);
      } catch (e) {
        throw new StateCorruptError(
          `state file ${this.file} is not valid JSON (${(e as Error).message}); refusing to start`,
        );
      }
      const r = stateSchema.safeParse(doc);
      if (!r.success) {
        throw new StateCorruptError(
          `state file ${this.file} does not match schema version 1: ${r.error.message}`,
        );
      }
      this.current = r.data;
    }
    return structuredClone(this.current);
  }

  /** The last durably saved state (a copy: callers change it and hand it to save). */
  get(): State {
    return structuredClone(this.current);
  }

  /** A read-only view without copying, for hot read paths. */
  peek(): Readonly<State> {
    return this.current;
  }

  /**
   * Writes `next` durably, then makes it current. On failure the old state stays current, and is what the
   * file holds: a write that replaced the file but could not be made durable is undone.
   */
  async save(next: State): Promise<void> {
    try {
      await this.atomic.write(render(next));
      this.current = next;
    } catch (err) {
      if (!(err instanceof NotDurableError)) throw err;
      // The file holds `next`, which a restart would serve although the caller is told it failed: put
      // the old state back so the file and memory agree.
      try {
        await this.atomic.write(render(this.current));
      } catch (undo) {
        // Still holding `next` (unless the undo itself got as far as its rename): then it is current.
        if (!(undo instanceof NotDurableError)) this.current = next;
      }
      throw err;
    }
  }

  /** Releases the lock. */
  async close(): Promise<void> {
    await this.atomic.close();
    await this.lock?.close();
    this.lock = undefined;
  }
}

function render(state: State): string {
  return `${JSON.stringify(state, null, 1)}\n`;
}
