/** The part of a stream progress output needs; tests pass a fake. */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/**
 * Progress of a background operation on stderr: a redrawn bar on a terminal, otherwise one line each time
 * another 10 % is reached (logs and pipes get a readable record instead of carriage returns).
 */
export class ProgressReporter {
  private lastDecade = -1;
  private drawn = false;

  constructor(
    private readonly label: string,
    private readonly stream: ProgressStream,
  ) {}

  /** Shows `percent` (clamped to 0–100). */
  update(percent: number): void {
    const pct = Math.max(0, Math.min(100, Math.floor(percent)));
    if (this.stream.isTTY) {
      this.draw(pct);
      return;
    }
    const decade = Math.floor(pct / 10) * 10;
    if (decade > this.lastDecade) {
      this.lastDecade = decade;
      this.stream.write(`${this.label}: ${decade}%\n`);
    }
  }

  /** Ends the display: at 100 % on success, left where it was on failure. */
  finish(ok: boolean): void {
    if (ok) this.update(100);
    if (this.drawn) this.stream.write('\n');
    this.drawn = false;
  }

  private draw(pct: number): void {
    const columns = this.stream.columns ?? 80;
    const barWidth = Math.max(10, Math.min(40, columns - this.label.length - 10));
    const filled = Math.round((pct / 100) * barWidth);
    const bar = `${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}`;
    // \r plus erase-to-end-of-line redraws in place without leaving remnants of a longer earlier line.
    this.stream.write(`\r\x1b[K${this.label} [${bar}] ${String(pct).padStart(3)}%`);
    this.drawn = true;
  }
}
