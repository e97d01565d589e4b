interface Held {
  start: number;
  end: number;
  /** Created only when someone has to wait for this range (rare): most writes never overlap. */
  released: Promise<void> | undefined;
  resolve: (() => void) | undefined;
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
      blocker.released ??= new Promise<void>((resolve) => {
        blocker.resolve = resolve;
      });
      await blocker.released;
    }
    return this.take(start, end);
  }

  /**
   * Takes [start, end) at once if nothing overlaps it (the release function), else undefined: the write hot
   * path, which thus needs no promise or microtask turn for an uncontended range.
   */
  tryAcquire(start: number, end: number): (() => void) | undefined {
    return this.overlapping(start, end) ? undefined : this.take(start, end);
  }

  /** Number of ranges currently held (for tests and diagnostics). */
  get size(): number {
    return this.held.size;
  }

  private take(start: number, end: number): () => void {
    const entry: Held = { start, end, released: undefined, resolve: undefined };
    this.held.add(entry);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.held.delete(entry);
      entry.resolve?.();
    };
  }

  private overlapping(start: number, end: number): Held | undefined {
    for (const h of this.held) {
      if (h.start < end && start < h.end) return h;
    }
    return undefined;
  }
}
