import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Status } from '../../scripts/iscsi/cu-parse.js';
import {
  checkAgainst,
  type Expected,
  loadExpected,
  mergeExpected,
  serializeExpected,
} from '../../scripts/iscsi/expected.js';

const here = dirname(fileURLToPath(import.meta.url));

function exp(
  tests: Record<string, Status>,
  failures = Object.keys(tests).filter((n) => tests[n] === 'FAIL'),
) {
  return { target: 'builtin', tool: 't', counts: { PASS: 0, FAIL: 0, SKIP: 0 }, failures, tests } as Expected;
}

test('--check: a PASS that stops passing is a regression, whatever it became', () => {
  const e = exp({ 'A.a': 'PASS', 'A.b': 'PASS' });
  const r = checkAgainst({ 'A.a': 'SKIP', 'A.b': 'FAIL' }, e, true);
  assert.deepEqual(r.errors, ['A.a: was PASS, now SKIP', 'A.b: was PASS, now FAIL']);
});

test('--check: a failure not in `failures` is a regression, even for a test that used to be skipped or is new', () => {
  const e = exp({ 'A.a': 'SKIP' });
  const r = checkAgainst({ 'A.a': 'FAIL', 'A.new': 'FAIL' }, e, false);
  assert.equal(r.errors.length, 2);
});

test('--check: expected failures may keep failing; fixes and new passes are notes', () => {
  const e = exp({ 'A.a': 'FAIL', 'A.b': 'FAIL', 'A.c': 'SKIP' });
  const r = checkAgainst({ 'A.a': 'FAIL', 'A.b': 'PASS', 'A.c': 'PASS', 'A.d': 'PASS' }, e, true);
  assert.deepEqual(r.errors, []);
  assert.equal(r.notes.length, 2);
  assert.deepEqual(r.unknown, ['A.d: PASS']);
});

test('--check: a full run must run every expected test; a filtered one need not', () => {
  const e = exp({ 'A.a': 'PASS', 'B.b': 'PASS' });
  assert.deepEqual(checkAgainst({ 'A.a': 'PASS' }, e, true).errors, ['B.b: expected, but it did not run']);
  assert.deepEqual(checkAgainst({ 'A.a': 'PASS' }, e, false).errors, []);
});

test('--update: reports added and removed failures; a partial run keeps the other tests', () => {
  const old = exp({ 'A.a': 'FAIL', 'B.b': 'PASS', 'C.c': 'SKIP' });
  const m = mergeExpected(old, { 'A.a': 'PASS', 'B.b': 'FAIL' }, false, 'builtin', 't');
  assert.deepEqual(m.added, ['B.b']);
  assert.deepEqual(m.removed, ['A.a']);
  assert.deepEqual(m.expected.tests, { 'A.a': 'PASS', 'B.b': 'FAIL', 'C.c': 'SKIP' });
  assert.deepEqual(m.expected.counts, { PASS: 1, FAIL: 1, SKIP: 1 });

  const full = mergeExpected(old, { 'A.a': 'PASS' }, true, 'builtin', 't');
  assert.deepEqual(full.expected.tests, { 'A.a': 'PASS' });
});

test('the stored expected files are consistent: failures are exactly the FAIL entries, counts match', () => {
  for (const t of ['tgt', 'builtin']) {
    const e = loadExpected(join(here, `expected-${t}.json`));
    assert.ok(e, `expected-${t}.json exists`);
    const fails = Object.keys(e.tests)
      .filter((n) => e.tests[n] === 'FAIL')
      .sort();
    assert.deepEqual(e.failures, fails, t);
    assert.deepEqual(mergeExpected(undefined, e.tests, true, e.target, e.tool).expected.counts, e.counts, t);
  }
});

test('serializeExpected keeps short arrays on one line and long ones expanded (as biome formats JSON)', () => {
  const short = serializeExpected(exp({ 'A.a': 'FAIL' }));
  assert.match(short, /\n {2}"failures": \["A\.a"\],\n/);
  const long = serializeExpected(
    exp(
      {},
      Array.from({ length: 8 }, (_, i) => `Suite${i}.SomeLongTestName`),
    ),
  );
  assert.match(long, /\n {2}"failures": \[\n {4}"Suite0\.SomeLongTestName",\n/);
  assert.equal(serializeExpected(exp({})).includes('"tests": {}'), true);
});
