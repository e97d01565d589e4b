/** A volume as a pool reports it; `size` is the real (rounded-up) size in bytes. */
export interface VolumeInfo {
  name: string;
  size: number;
  uuid: string;
}

/** Capacity of a pool in bytes; 0 <= free_size <= size. */
export interface PoolStats {
  size: number;
  free_size: number;
}

/** Progress callback for long operations: fraction done in [0, 1]. */
export type ProgressFn = (fraction: number) => void;

/**
 * A block pool: where volumes live. Implementations own the on-disk truth (files, LVs) and must make
 * create/copy atomic: a volume is listed only once complete, even across kill -9.
 * Callers (core/) have already validated names and sizes and serialize mutations per pool.
 */
export interface BlockPool {
  readonly name: string;
  readonly kind: string; // 'file' | 'lvm' …, for logs
  /** Prepare the pool at start-up: create missing dirs, remove anything half-made by a crash. */
  open(): Promise<void>;
  /** Shut down: waits for background work (pending data syncs), then releases the pool. */
  close?(): Promise<void>;
  stats(): Promise<PoolStats>;
  list(): Promise<VolumeInfo[]>;
  get(name: string): Promise<VolumeInfo | undefined>;
  /** Rounds `size` up to the pool's granularity; throws TargetdError -50 on an existing name. */
  create(name: string, size: number): Promise<VolumeInfo>;
  destroy(name: string): Promise<void>;
  /** Grows in place to at least `size` (callers check it is larger). */
  resize(name: string, size: number): Promise<VolumeInfo>;
  /**
   * Copies `src` to a new volume `dst` (optionally grown to `size`). `dst` must not be visible until done;
   * on failure or abort nothing of it remains. Reports progress; honours the abort signal.
   */
  copy(
    src: string,
    dst: string,
    size: number | undefined,
    onProgress: ProgressFn,
    signal: AbortSignal,
  ): Promise<VolumeInfo>;
  /**
   * Resolves once the volume's data is on disk. A pool may list a fresh copy before its data is durable and
   * finish that in the background; callers await this before the volume matters (exported, mapped). Pools
   * that write everything durably before answering omit it.
   */
  whenDurable?(name: string): Promise<void>;
  /** True when a copy of `src` will be near-instant (reflink / snapshot), so it is never answered async. */
  canCloneInstantly(src: string): Promise<boolean>;
  /** Path of the block device or file holding the volume's data, for data-plane backends. */
  dataPath(name: string): string;
}
