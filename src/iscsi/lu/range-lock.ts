interface Held {
  start: number;
  end: number;
  released: Promise<void>;
}

/**
 * Exclusive locks over block ranges [start, end). Writers take one so that COMPARE AND WRITE (and the other
 * read-modify-write commands) see no overlapping write between their read and their write; disjoint ranges
 * never wait for each other.
 */
export class RangeLock {
  private readonly held = new Set<Held>();

  /** Waits until no held range overlaps [start, end), takes it, and returns the release function. */
  async acquire(start: number, end: number): Promise<() => void> {
    for (;;) {
      const blocker = this.overlapping(start, end);
      if (!blocker) break;
      await blocker.released;
    }
    let release!: () => void;
    const entry: Held = {
      start,
      end,
      released: new Promise<void>((resolve) => {
        release = resolve;
      }),
    };
    this.held.add(entry);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.held.delete(entry);
      release();
    };
  }

  /** Number of ranges currently held (for tests and diagnostics). */
  get size(): number {
    return this.held.size;
  }

  private overlapping(start: number, end: number): Held | undefined {
    for (const h of this.held) {
      if (h.start < end && start < h.end) return h;
    }
    return undefined;
  }
}
