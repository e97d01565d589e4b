/**
 * The expected-result files in test/conformance/ (expected-<target>.json) and the ratchet --check applies to ours:
 * no test that passed may stop passing, and no test may fail unless it is in `failures`, a list that only shrinks.
 */
import { existsSync, readFileSync } from 'node:fs';
import { type Counts, countStatuses, type Status } from './cu-parse.js';

export interface Expected {
  target: string;
  /** The test tool and version that produced the file; test names and counts change between libiscsi versions. */
  tool: string;
  counts: Counts;
  /** Tests allowed to FAIL. A new entry is a regression somebody accepted, so --update prints every addition. */
  failures: string[];
  tests: Record<string, Status>;
}

export function loadExpected(path: string): Expected | undefined {
  if (!existsSync(path)) return undefined;
  const e = JSON.parse(readFileSync(path, 'utf8')) as Partial<Expected>;
  return {
    target: e.target ?? '',
    tool: e.tool ?? '',
    counts: e.counts ?? { PASS: 0, FAIL: 0, SKIP: 0 },
    failures: e.failures ?? [],
    tests: e.tests ?? {},
  };
}

export interface CheckResult {
  errors: string[];
  notes: string[];
  /** Tests that ran but are not in the expected file, with their status (FAILs among them are also errors). */
  unknown: string[];
}

/**
 * Compares a run (name → status) with the expected file. `fullRun` (filter ALL) also makes a missing expected
 * test an error; a narrower filter selects by family, which the output does not name, so absence proves nothing.
 */
export function checkAgainst(now: Record<string, Status>, exp: Expected, fullRun: boolean): CheckResult {
  const errors: string[] = [];
  const notes: string[] = [];
  const unknown: string[] = [];
  const allowed = new Set(exp.failures);
  for (const [name, st] of Object.entries(now)) {
    const was = exp.tests[name];
    if (was === undefined) unknown.push(`${name}: ${st}`);
    if (was === 'PASS' && st !== 'PASS') errors.push(`${name}: was PASS, now ${st}`);
    else if (st === 'FAIL' && !allowed.has(name)) errors.push(`${name}: FAIL, and not an expected failure`);
    else if (allowed.has(name) && st !== 'FAIL')
      notes.push(`${name}: expected FAIL, now ${st} (--update shrinks the list)`);
    else if (was === 'SKIP' && st === 'PASS') notes.push(`${name}: was SKIP, now PASS`);
  }
  if (fullRun) {
    for (const name of Object.keys(exp.tests))
      if (!(name in now)) errors.push(`${name}: expected, but it did not run`);
  }
  return { errors, notes, unknown };
}

export interface Merged {
  expected: Expected;
  /** Failures the new file allows that the old one did not. */
  added: string[];
  removed: string[];
}

/**
 * The new expected file after a run. A full run replaces the test map (dropping tests that no longer exist); a
 * partial one only refreshes the tests it ran.
 */
export function mergeExpected(
  old: Expected | undefined,
  now: Record<string, Status>,
  fullRun: boolean,
  target: string,
  tool: string,
): Merged {
  const tests = fullRun ? { ...now } : { ...old?.tests, ...now };
  const failures = Object.keys(tests)
    .filter((n) => tests[n] === 'FAIL')
    .sort();
  const before = new Set(old?.failures ?? []);
  return {
    expected: {
      target,
      tool,
      counts: countStatuses(Object.values(tests).map((status) => ({ status }))),
      failures,
      tests,
    },
    added: failures.filter((n) => !before.has(n)),
    removed: [...before].filter((n) => !failures.includes(n)).sort(),
  };
}

/**
 * JSON laid out the way biome formats it (objects expanded, 2-space indent, an array on one line when that line
 * fits in 110 columns), so that a file written by --update leaves `biome check` clean.
 */
export function serializeExpected(e: Expected): string {
  return `${layout(e, '', '')}\n`;
}

function layout(v: unknown, indent: string, prefix: string, trailing = ''): string {
  const inner = `${indent}  `;
  if (Array.isArray(v)) {
    const flat = `[${v.map((x) => JSON.stringify(x)).join(', ')}]`;
    if (v.length === 0 || indent.length + prefix.length + flat.length + trailing.length <= 110) return flat;
    return `[\n${v.map((x, i) => `${inner}${JSON.stringify(x)}${i < v.length - 1 ? ',' : ''}`).join('\n')}\n${indent}]`;
  }
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v);
    if (entries.length === 0) return '{}';
    const lines = entries.map(([k, x], i) => {
      const key = `${JSON.stringify(k)}: `;
      const comma = i < entries.length - 1 ? ',' : '';
      return `${inner}${key}${layout(x, inner, key, comma)}${comma}`;
    });
    return `{\n${lines.join('\n')}\n${indent}}`;
  }
  return JSON.stringify(v);
}
