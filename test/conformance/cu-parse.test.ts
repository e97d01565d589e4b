import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  closingLine,
  countStatuses,
  crossCheck,
  groupSkips,
  parseCuOutput,
  statusMap,
  suitesStartingWith,
} from '../../scripts/iscsi/cu-parse.js';

// Real `iscsi-test-cu -d -t ALL` output from tgt 1.0.85, cut down to 11 suites (see README.md).
const fixture = readFileSync(
  join(dirname(fileURLToPath(import.meta.url)), 'fixtures/tgt-ALL-d.trimmed.txt'),
  'utf8',
);

test('the tgt fixture classifies into the counts CUnit reports', () => {
  const run = parseCuOutput(fixture);
  assert.deepEqual(run.counts, { PASS: 35, FAIL: 7, SKIP: 16 });
  assert.deepEqual(run.summary, { total: 58, ran: 58, passed: 51, failed: 7, inactive: 0 });
  assert.deepEqual(crossCheck(run), []);
  assert.equal(closingLine(run.counts), '35 passed, 7 failed, 16 skipped');
});

test('FAIL comes from CUnit markers: "...FAILED" on the Test line and a bare "FAILED" line', () => {
  const s = statusMap(parseCuOutput(fixture));
  assert.equal(s['iSCSIdatasn.iSCSIDataSnInvalid'], 'FAIL'); // `Test: iSCSIDataSnInvalid ...FAILED`
  assert.equal(s['GetLBAStatus.BeyondEol'], 'FAIL'); // message, then `FAILED` on its own line
  assert.equal(s['Reserve6.2Initiators'], 'FAIL'); // many narrative lines before the marker
  assert.deepEqual(
    Object.keys(s).filter((n) => s[n] === 'FAIL'),
    [
      'GetLBAStatus.BeyondEol',
      'ProutReserve.OwnershipEA',
      'ProutReserve.OwnershipWE',
      'ProutReserve.OwnershipEARO',
      'ProutReserve.OwnershipWERO',
      'Reserve6.2Initiators',
      'iSCSIdatasn.iSCSIDataSnInvalid',
    ],
  );
});

test('a [FAILED] message CUnit did not count is a late failure, not a FAIL', () => {
  const run = parseCuOutput(fixture);
  const s = statusMap(run);
  assert.equal(s['Reserve6.LUNReset'], 'PASS'); // `...passed    [FAILED] PRIN …` (teardown)
  assert.equal(s['WriteSame10.UnmapVPD'], 'PASS');
  assert.deepEqual(run.lateFailures, ['Reserve6.LUNReset', 'WriteSame10.UnmapVPD']);
});

test('skips are CUnit passes that logged [SKIPPED]; reasons group them', () => {
  const run = parseCuOutput(fixture);
  const s = statusMap(run);
  assert.equal(s['CompareAndWrite.Simple'], 'SKIP');
  assert.equal(s['Reserve6.TargetColdReset'], 'SKIP'); // reason line followed by a blank line
  assert.equal(s['ModeSense6.Control'], 'PASS'); // a [WARNING] is not a skip
  assert.deepEqual(groupSkips(run).slice(0, 3), [
    [
      'Logical unit is fully provisioned. Skipping test',
      [
        'CompareAndWrite.InvalidDataOutSize',
        'GetLBAStatus.UnmapSingle',
        'WriteSame10.Unmap',
        'WriteSame10.UnmapUnaligned',
        'WriteSame10.UnmapUntilEnd',
        'WriteSame10.InvalidDataOutSize',
      ],
    ],
    [
      'COMPAREANDWRITE is not implemented.',
      [
        'CompareAndWrite.Simple',
        'CompareAndWrite.DpoFua',
        'CompareAndWrite.Miscompare',
        'CompareAndWrite.Unwritten',
      ],
    ],
    [
      'Multipath unavailable. Skipping test',
      [
        'MultipathIO.Simple',
        'MultipathIO.Reset',
        'MultipathIO.CompareAndWrite',
        'MultipathIO.CompareAndWriteAsync',
      ],
    ],
  ]);
});

test('the iSCSI family is the suites named iSCSI*', () => {
  const run = parseCuOutput(fixture);
  const fam = suitesStartingWith(run, 'iSCSI');
  assert.deepEqual([...new Set(fam.map((t) => t.suite))], ['iSCSIcmdsn', 'iSCSIdatasn', 'iSCSITMF']);
  assert.deepEqual(countStatuses(fam), { PASS: 4, FAIL: 1, SKIP: 0 });
});

test('CRLF output parses the same', () => {
  assert.deepEqual(
    statusMap(parseCuOutput(fixture.replace(/\n/g, '\r\n'))),
    statusMap(parseCuOutput(fixture)),
  );
});

test('crossCheck reports a missing summary and disagreements with CUnit', () => {
  const cut = fixture.slice(0, fixture.indexOf('Run Summary'));
  assert.match(crossCheck(parseCuOutput(cut)).join('\n'), /no CUnit Run Summary/);

  const lying = fixture.replace(/tests {5}58 {5}58 {5}51 {6}7/, 'tests     58     58     52      6');
  const problems = crossCheck(parseCuOutput(lying));
  assert.equal(problems.length, 2);
  assert.match(problems[0], /CUnit passed 52/);
  assert.match(problems[1], /CUnit failed 6/);
});

test('lines after the Run Summary are not part of the last test', () => {
  const text = [
    'Suite: S',
    '  Test: A ...passed',
    'Run Summary:    Type  Total    Ran Passed Failed Inactive',
    '               tests      1      1      1      0        0',
    'FAILED',
    '[SKIPPED] noise',
  ].join('\n');
  const run = parseCuOutput(text);
  assert.deepEqual(statusMap(run), { 'S.A': 'PASS' });
  assert.deepEqual(crossCheck(run), []);
});

test('a login failure (no tests at all) is flagged, not read as a clean run', () => {
  const run = parseCuOutput('Failed to login to target: Target not found\n');
  assert.equal(run.tests.length, 0);
  assert.notDeepEqual(crossCheck(run), []);
});
