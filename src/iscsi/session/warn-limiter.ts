import type { IscsiLogger } from './types.js';

/** Warning lines one connection may log before the rest of its warnings drop to debug level. */
export const WARNINGS_PER_CONNECTION = 20;
/** Warning lines the whole target may log per second; the excess drops to debug and is counted. */
export const WARNINGS_PER_SECOND = 100;

/**
 * Keeps a hostile or broken initiator from flooding the log: every malformed PDU is worth a warning, but a
 * peer can send thousands a second, over many connections. Lines beyond the target-wide rate go out at debug
 * level instead, and the next warning after the second says how many of each were demoted, so nothing goes
 * unnoticed.
 */
export class TargetWarnLimiter {
  private windowStart = 0;
  private used = 0;
  private demoted = new Map<string, number>();

  constructor(
    private readonly logger: IscsiLogger,
    private readonly perSecond = WARNINGS_PER_SECOND,
    private readonly now: () => number = Date.now,
  ) {}

  /** Logs `msg` as a warning if the target's budget allows, else at debug level. */
  warn(obj: object, msg: string): void {
    const t = this.now();
    if (t - this.windowStart >= 1000) {
      if (this.demoted.size > 0) {
        this.logger.warn(
          { demoted: Object.fromEntries(this.demoted) },
          'iSCSI warnings over the rate limit were logged at debug level',
        );
        this.demoted = new Map();
      }
      this.windowStart = t;
      this.used = 0;
    }
    if (this.used < this.perSecond) {
      this.used++;
      this.logger.warn(obj, msg);
    } else {
      this.demoted.set(msg, (this.demoted.get(msg) ?? 0) + 1);
      this.logger.debug(obj, msg);
    }
  }
}

/**
 * One connection's share: its first warnings go to the target limiter, later ones to debug level, counted
 * by message, and {@link summary} reports the counts once when the connection ends.
 */
export class ConnectionWarnLimiter {
  private count = 0;
  private readonly demoted = new Map<string, number>();

  constructor(
    private readonly target: TargetWarnLimiter,
    private readonly debug: (obj: object, msg: string) => void,
    private readonly limit = WARNINGS_PER_CONNECTION,
  ) {}

  /** Logs a warning for this connection, within its share. */
  warn(obj: object, msg: string): void {
    if (this.count < this.limit) {
      this.count++;
      this.target.warn(obj, msg);
      return;
    }
    this.demoted.set(msg, (this.demoted.get(msg) ?? 0) + 1);
    this.debug(obj, msg);
  }

  /** At close: one warning with the counts of what was demoted, if anything was. */
  summary(base: object): void {
    if (this.demoted.size === 0) return;
    const counts = Object.fromEntries(this.demoted);
    this.demoted.clear();
    this.target.warn(
      { ...base, demoted: counts },
      'further warnings on this connection were logged at debug level',
    );
  }
}
