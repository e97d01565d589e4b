/** A FIFO async mutex: `run` executes tasks one at a time in call order. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task);
    // The chain must survive a failed task, or one error would wedge every later caller.
    this.tail = result.catch(() => {});
    return result;
  }
}

/** One FIFO mutex per key (e.g. per volume), created on demand and dropped when idle. */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Runs `task` once every earlier task on each of `keys` has finished; keys are taken in sorted order. */
  run<T>(keys: string[], task: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(keys)].sort();
    const waitFor = sorted.map((k) => this.tails.get(k) ?? Promise.resolve());
    const result = Promise.all(waitFor).then(task);
    const tail = result.catch(() => {});
    for (const k of sorted) this.tails.set(k, tail);
    void tail.then(() => {
      for (const k of sorted) if (this.tails.get(k) === tail) this.tails.delete(k);
    });
    return result;
  }
}
