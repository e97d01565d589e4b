import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConnectionWarnLimiter, TargetWarnLimiter } from '../../../src/iscsi/session/warn-limiter.js';

function recorder() {
  const lines: { level: 'debug' | 'info' | 'warn'; obj: object; msg: string }[] = [];
  const logger = {
    debug: (obj: object, msg: string) => lines.push({ level: 'debug', obj, msg }),
    info: (obj: object, msg: string) => lines.push({ level: 'info', obj, msg }),
    warn: (obj: object, msg: string) => lines.push({ level: 'warn', obj, msg }),
  };
  return { lines, logger, warns: () => lines.filter((l) => l.level === 'warn') };
}

describe('warning limits', () => {
  test('a connection logs its first warnings, demotes the rest and sums them up at close', () => {
    const r = recorder();
    const target = new TargetWarnLimiter(r.logger, 1000);
    const conn = new ConnectionWarnLimiter(target, r.logger.debug, 3);
    for (let i = 0; i < 10; i++) conn.warn({ i }, 'Data-Out for an unknown task: rejected');
    conn.warn({}, 'invalid iSCSI PDU rejected');
    assert.equal(r.warns().length, 3);
    assert.equal(r.lines.filter((l) => l.level === 'debug').length, 8, 'nothing is lost, only demoted');
    conn.summary({ conn: 7 });
    const last = r.warns().at(-1)!;
    assert.equal(last.msg, 'further warnings on this connection were logged at debug level');
    assert.deepEqual(last.obj, {
      conn: 7,
      demoted: { 'Data-Out for an unknown task: rejected': 7, 'invalid iSCSI PDU rejected': 1 },
    });
    conn.summary({ conn: 7 });
    assert.equal(r.warns().length, 4, 'the summary is given once');
  });

  test('a quiet connection gives no summary', () => {
    const r = recorder();
    const conn = new ConnectionWarnLimiter(new TargetWarnLimiter(r.logger), r.logger.debug);
    conn.warn({}, 'one');
    conn.summary({});
    assert.equal(r.warns().length, 1);
  });

  test('the target-wide rate holds across connections and reports what it demoted', () => {
    const r = recorder();
    let now = 10_000;
    const target = new TargetWarnLimiter(r.logger, 5, () => now);
    // Many connections, each within its own share, together over the target's rate.
    for (let c = 0; c < 4; c++) {
      const conn = new ConnectionWarnLimiter(target, r.logger.debug, 3);
      for (let i = 0; i < 3; i++) conn.warn({ c, i }, 'malformed iSCSI PDU: dropping the connection');
    }
    assert.equal(r.warns().length, 5);
    now += 1000;
    target.warn({}, 'next second');
    const w = r.warns();
    assert.equal(w.at(-2)!.msg, 'iSCSI warnings over the rate limit were logged at debug level');
    assert.deepEqual(w.at(-2)!.obj, { demoted: { 'malformed iSCSI PDU: dropping the connection': 7 } });
    assert.equal(w.at(-1)!.msg, 'next second');
  });
});
