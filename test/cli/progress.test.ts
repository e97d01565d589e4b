import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProgressReporter } from '../../src/cli/client/progress.js';

function sink(isTTY: boolean) {
  const chunks: string[] = [];
  return { chunks, stream: { isTTY, columns: 60, write: (s: string) => chunks.push(s) } };
}

describe('ProgressReporter', () => {
  it('prints a line per 10 % step when not on a terminal', () => {
    const { chunks, stream } = sink(false);
    const p = new ProgressReporter('copy', stream);
    for (const pct of [0, 3, 9, 10, 15, 47, 47, 100]) p.update(pct);
    p.finish(true);
    assert.deepEqual(chunks.join('').split('\n').filter(Boolean), [
      'copy: 0%',
      'copy: 10%',
      'copy: 40%',
      'copy: 100%',
    ]);
  });

  it('completes to 100 % on success only', () => {
    const ok = sink(false);
    const p = new ProgressReporter('c', ok.stream);
    p.update(55);
    p.finish(true);
    assert.deepEqual(ok.chunks, ['c: 50%\n', 'c: 100%\n']);
    const bad = sink(false);
    const q = new ProgressReporter('c', bad.stream);
    q.update(55);
    q.finish(false);
    assert.deepEqual(bad.chunks, ['c: 50%\n']);
  });

  it('redraws one bar in place on a terminal and ends the line', () => {
    const { chunks, stream } = sink(true);
    const p = new ProgressReporter('copy', stream);
    p.update(0);
    p.update(50);
    p.finish(true);
    assert.equal(chunks.length, 4);
    const ERASE = '\r\u001b[K';
    for (const c of chunks.slice(0, 3)) {
      assert.ok(c.startsWith(ERASE), JSON.stringify(c));
      assert.match(c.slice(ERASE.length), /^copy \[[#-]+\] +\d+%$/);
    }
    assert.match(chunks[1]!, /\] {2}50%$/);
    assert.match(chunks[2]!, /\[#+\] 100%$/);
    assert.equal(chunks[3], '\n');
  });

  it('clamps odd percentages', () => {
    const { chunks, stream } = sink(false);
    const p = new ProgressReporter('x', stream);
    p.update(-5);
    p.update(250);
    assert.deepEqual(chunks, ['x: 0%\n', 'x: 100%\n']);
  });
});
