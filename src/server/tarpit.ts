/** Per-address record of failed logins still being delayed; bounded in size. */
export class Tarpit {
  // Insertion order doubles as age order, so the oldest entry is the first one.
  private readonly until = new Map<string, number>();

  constructor(
    readonly delayMs: number,
    private readonly maxEntries = 10_000,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** True while a failed attempt from `address` is still waiting out its delay. */
  busy(address: string): boolean {
    const until = this.until.get(address);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.until.delete(address);
    return false;
  }

  /** Records a failed attempt from `address`; returns a token for `release`. */
  enter(address: string): number {
    const until = this.now() + this.delayMs;
    this.until.delete(address);
    if (this.until.size >= this.maxEntries) this.prune();
    this.until.set(address, until);
    return until;
  }

  /** Ends the delay entered with `token`, unless a later attempt replaced it. */
  release(address: string, token: number): void {
    if (this.until.get(address) === token) this.until.delete(address);
  }

  /** Number of addresses currently tracked. */
  get size(): number {
    return this.until.size;
  }

  private prune(): void {
    const now = this.now();
    for (const [address, until] of this.until) if (until <= now) this.until.delete(address);
    // Still full (a flood from many addresses): forget the oldest. That address can then
    // start a new delay instead of getting 503, which costs it the same 2 s.
    while (this.until.size >= this.maxEntries) {
      const oldest = this.until.keys().next().value;
      if (oldest === undefined) break;
      this.until.delete(oldest);
    }
  }
}
