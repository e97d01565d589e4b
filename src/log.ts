import { type Logger, pino } from 'pino';

export type { Logger };

/** The daemon's structured logger: one JSON object a line on stderr. */
export function createLogger(level = 'info'): Logger {
  return pino({ level, base: { name: 'targetd' } }, pino.destination({ dest: 2, sync: true }));
}

/** A logger that drops everything, for library code run outside the daemon. */
export const silentLogger: Logger = pino({ level: 'silent' });
