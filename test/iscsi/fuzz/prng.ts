/**
 * A small seeded PRNG for the fuzzers, so every failure can be replayed: each fuzz test prints its seed, and
 * FUZZ_SEED=<n> runs it again with the same one. FUZZ_SCALE multiplies the iteration counts (e.g. 10 for a
 * long soak, 0.1 for a smoke run).
 */

/** sfc32 (Chris Doty-Humphrey's Small Fast Counter): fast, 128-bit state, good enough statistics for fuzzing. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d = 1;

  constructor(readonly seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = seed >>> 0;
    for (let i = 0; i < 15; i++) this.u32();
  }

  /** A uniformly distributed unsigned 32-bit integer. */
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return n <= 1 ? 0 : Math.floor((this.u32() / 0x1_0000_0000) * n);
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** Picks by weight: [[weight, value], …]. */
  weighted<T>(items: readonly (readonly [number, T])[]): T {
    let total = 0;
    for (const [w] of items) total += w;
    let r = this.u32() / 0x1_0000_0000;
    r *= total;
    for (const [w, v] of items) {
      if (r < w) return v;
      r -= w;
    }
    return items[items.length - 1]![1];
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) b.writeUInt32LE(this.u32(), i);
    for (; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }

  /** Payload bytes: random when short, a repeated byte when long (the content rarely matters, the cost does). */
  payload(n: number): Buffer {
    return n <= 64 || this.chance(0.1) ? this.bytes(n) : Buffer.alloc(n, this.int(256));
  }

  /** A derived generator, so one stream's consumption does not shift another's. */
  fork(): Rng {
    return new Rng(this.u32());
  }
}

/** The seed for this run: FUZZ_SEED when set (decimal or 0x hex), otherwise a fresh random one. */
export function fuzzSeed(): number {
  const env = process.env.FUZZ_SEED;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n)) throw new Error(`FUZZ_SEED must be an integer, got ${env}`);
    return n >>> 0;
  }
  return (Math.random() * 0x1_0000_0000) >>> 0;
}

/** Iteration count scaled by FUZZ_SCALE (default 1), at least 1. */
export function scaled(n: number): number {
  const s = Number(process.env.FUZZ_SCALE ?? '1');
  return Math.max(1, Math.round(n * (Number.isFinite(s) && s > 0 ? s : 1)));
}

/** Logs the seed in a form that can be pasted back. */
export function announceSeed(what: string, seed: number): void {
  console.log(`# ${what}: FUZZ_SEED=${seed}`);
}
