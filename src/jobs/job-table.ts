/** A running async operation as async_list reports it. */
export interface RunningJob {
  id: number;
  pool: string;
  src: string;
  dst: string;
  percent: number;
  abort: AbortController;
  /** Settles when the operation ends (never rejects: failures are recorded, not thrown here). */
  settled: Promise<void>;
}

/** The in-memory table of running async jobs; the durable journal lives in the state file. */
export class JobTable {
  private readonly jobs = new Map<number, RunningJob>();

  add(job: RunningJob): void {
    this.jobs.set(job.id, job);
  }

  remove(id: number): void {
    this.jobs.delete(id);
  }

  get(id: number): RunningJob | undefined {
    return this.jobs.get(id);
  }

  /** The job, if any, that reads or writes volume `vol` of `pool`. */
  findByVolume(pool: string, vol: string): RunningJob | undefined {
    for (const j of this.jobs.values()) if (j.pool === pool && (j.src === vol || j.dst === vol)) return j;
    return undefined;
  }

  all(): RunningJob[] {
    return [...this.jobs.values()];
  }

  /** Aborts every running job and waits for them to wind down (daemon shutdown). */
  async abortAll(): Promise<void> {
    for (const j of this.jobs.values()) j.abort.abort();
    await Promise.all([...this.jobs.values()].map((j) => j.settled));
  }
}
