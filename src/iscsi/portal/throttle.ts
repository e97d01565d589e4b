import type { LoginThrottleLike } from '../session/types.js';

export interface LoginThrottleOptions {
  /** Failures per address answered without delay (a typo is not an attack). */
  freeFailures?: number;
  /** Delay of the first slowed failure; doubles with each further one. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Failures older than this are forgotten. */
  windowMs?: number;
  /** Addresses tracked at most; the oldest are forgotten first. */
  maxAddresses?: number;
  now?: () => number;
}

/**
 * Per-address slowdown of failed logins (wrong CHAP secret, unknown initiator): the first few are answered at
 * once, then each further failure within the window waits twice as long, up to a cap. Guessing secrets over
 * many connections from one address therefore gets slow, while one legitimate retry is not affected.
 */
export class LoginThrottle implements LoginThrottleLike {
  private readonly failures = new Map<string, { count: number; last: number }>();
  private readonly free: number;
  private readonly base: number;
  private readonly max: number;
  private readonly window: number;
  private readonly maxAddresses: number;
  private readonly now: () => number;

  constructor(opts: LoginThrottleOptions = {}) {
    this.free = opts.freeFailures ?? 3;
    this.base = opts.baseDelayMs ?? 250;
    this.max = opts.maxDelayMs ?? 4000;
    this.window = opts.windowMs ?? 60_000;
    this.maxAddresses = opts.maxAddresses ?? 4096;
    this.now = opts.now ?? Date.now;
  }

  failure(address: string): number {
    const now = this.now();
    let e = this.failures.get(address);
    if (!e || now - e.last > this.window) e = { count: 0, last: now };
    e.count++;
    e.last = now;
    // Re-inserting keeps the map in last-failure order, so the oldest address is the first key.
    this.failures.delete(address);
    this.failures.set(address, e);
    if (this.failures.size > this.maxAddresses) this.failures.delete(this.failures.keys().next().value!);
    if (e.count <= this.free) return 0;
    return Math.min(this.max, this.base * 2 ** Math.min(16, e.count - this.free - 1));
  }

  success(address: string): void {
    this.failures.delete(address);
  }
}
