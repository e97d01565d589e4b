/**
 * Parser for the text output of libiscsi's `iscsi-test-cu` (iscsi-notes §3.2).
 *
 * libiscsi reports a skip as `CU_PASS("[SKIPPED] …")`, so CUnit (and its XML) count skips as passes; only the text
 * output tells them apart. Each `  Test: NAME ...` line opens a block that runs until the next test, suite or the
 * Run Summary. A block is FAIL when CUnit printed its FAILED marker (`...FAILED` or a line that is just `FAILED`),
 * SKIP when `[SKIPPED]` appears in it, else PASS. A `[FAILED]` message in a block CUnit did not fail (teardown
 * checks logged after "passed") is collected separately: CUnit does not count it, and neither do we.
 */

export type Status = 'PASS' | 'FAIL' | 'SKIP';

export interface TestResult {
  /** `Suite.Test`, the name used in the expected-*.json files. */
  name: string;
  suite: string;
  status: Status;
  /** Text after the first `[SKIPPED]` of a skipped test, e.g. "COMPAREANDWRITE is not implemented." */
  skipReason?: string;
  /** True when the block has a `[FAILED]` message but CUnit did not fail the test. */
  lateFailure: boolean;
  /** The block's lines, the first being what followed `...` on the Test: line. */
  lines: string[];
}

/** CUnit's `tests` row of the Run Summary. */
export interface CuSummary {
  total: number;
  ran: number;
  passed: number;
  failed: number;
  inactive: number;
}

export interface Counts {
  PASS: number;
  FAIL: number;
  SKIP: number;
}

export interface ParsedRun {
  /** In output order. */
  tests: TestResult[];
  counts: Counts;
  /** Names of tests with a `[FAILED]` message that CUnit still counted as passed. */
  lateFailures: string[];
  /** Absent when the run did not reach its summary (crash, timeout, login failure). */
  summary?: CuSummary;
}

const SUITE = /^Suite: (\S+)/;
const TEST = /^ {2}Test: (\S+) \.\.\.(.*)$/;
const CU_FAILED = /(^|\.\.\.)FAILED\s*$/m;
const SUMMARY_TESTS = /^\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/;

export function countStatuses(tests: Iterable<{ status: Status }>): Counts {
  const c: Counts = { PASS: 0, FAIL: 0, SKIP: 0 };
  for (const t of tests) c[t.status]++;
  return c;
}

export function parseCuOutput(text: string): ParsedRun {
  const blocks: { name: string; suite: string; lines: string[] }[] = [];
  let suite = '';
  let cur: { lines: string[] } | undefined;
  let inSummary = false;
  let summary: CuSummary | undefined;
  for (const line of text.split(/\r?\n/)) {
    const s = SUITE.exec(line);
    if (s || line.startsWith('Run Summary')) {
      cur = undefined;
      inSummary = !s;
      if (s) suite = s[1];
      continue;
    }
    if (inSummary) {
      const m = SUMMARY_TESTS.exec(line);
      if (m) {
        const [total, ran, passed, failed, inactive] = m.slice(1).map(Number);
        summary = { total, ran, passed, failed, inactive };
      }
      continue;
    }
    const t = TEST.exec(line);
    if (t) {
      cur = { lines: [t[2]] };
      blocks.push({ name: `${suite}.${t[1]}`, suite, lines: cur.lines });
      continue;
    }
    cur?.lines.push(line);
  }

  const tests: TestResult[] = blocks.map(({ name, suite, lines }) => {
    const txt = lines.join('\n');
    const status: Status = CU_FAILED.test(txt) ? 'FAIL' : txt.includes('[SKIPPED]') ? 'SKIP' : 'PASS';
    const r: TestResult = {
      name,
      suite,
      status,
      lateFailure: status !== 'FAIL' && txt.includes('[FAILED]'),
      lines,
    };
    if (status === 'SKIP') r.skipReason = skipReason(txt);
    return r;
  });
  return {
    tests,
    counts: countStatuses(tests),
    lateFailures: tests.filter((t) => t.lateFailure).map((t) => t.name),
    summary,
  };
}

function skipReason(txt: string): string {
  const i = txt.indexOf('[SKIPPED]');
  const line = txt.slice(i + '[SKIPPED]'.length).split('\n')[0];
  return line.trim().replace(/\s+/g, ' ') || '(no reason given)';
}

/**
 * Compares our classification with CUnit's own Run Summary (CUnit's passed = our PASS + SKIP); returns the
 * discrepancies, empty when they agree.
 */
export function crossCheck(run: ParsedRun): string[] {
  const { counts: c, summary: s, tests } = run;
  if (!s) return ['no CUnit Run Summary in the output (the run crashed, timed out or never logged in)'];
  const out: string[] = [];
  if (s.ran !== tests.length)
    out.push(`CUnit ran ${s.ran} tests, the parser found ${tests.length} Test: blocks`);
  if (s.passed !== c.PASS + c.SKIP) {
    out.push(`CUnit passed ${s.passed} ≠ parser PASS ${c.PASS} + SKIP ${c.SKIP} = ${c.PASS + c.SKIP}`);
  }
  if (s.failed !== c.FAIL) out.push(`CUnit failed ${s.failed} ≠ parser FAIL ${c.FAIL}`);
  const seen = new Set<string>();
  const dups = tests.filter((t) => seen.size === seen.add(t.name).size).map((t) => t.name);
  if (dups.length) out.push(`duplicate test names: ${dups.join(' ')}`);
  return out;
}

/** The plain closing line CI recognises. Print it once, for our own target only. */
export function closingLine(c: Counts): string {
  return `${c.PASS} passed, ${c.FAIL} failed, ${c.SKIP} skipped`;
}

/** Skipped tests grouped by their `[SKIPPED]` reason, most frequent reason first. */
export function groupSkips(run: ParsedRun): [reason: string, tests: string[]][] {
  const by = new Map<string, string[]>();
  for (const t of run.tests) {
    if (t.status !== 'SKIP') continue;
    const reason = t.skipReason ?? '(no reason given)';
    by.set(reason, [...(by.get(reason) ?? []), t.name]);
  }
  return [...by].sort((a, b) => b[1].length - a[1].length || a[0].localeCompare(b[0]));
}

/**
 * Tests of one family as CUnit output shows them: the output names suites, not families, and libiscsi's iSCSI
 * family is exactly the suites whose names start with "iSCSI" (iSCSIcmdsn, iSCSIdatasn, iSCSIResiduals, iSCSITMF).
 */
export function suitesStartingWith(run: ParsedRun, prefix: string): TestResult[] {
  return run.tests.filter((t) => t.suite.startsWith(prefix));
}

/** name → status, in output order. */
export function statusMap(run: ParsedRun): Record<string, Status> {
  return Object.fromEntries(run.tests.map((t) => [t.name, t.status]));
}
