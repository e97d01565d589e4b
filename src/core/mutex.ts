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
