/**
 * libiscsi conformance, our target beside tgt (iscsi-notes §3).
 *
 *   node --import tsx scripts/iscsi/conformance.ts [--target tgt|builtin|both] [--filter ALL] [--check | --update]
 *        [--verbose] [--timeout MINUTES] [--replay tgt|builtin=OUTPUT.txt]…
 *
 * Runs `iscsi-test-cu -d -i IQN1 -I IQN2 -t FILTER URL` against a private tgtd and/or the real daemon with
 * `iscsi_backend: builtin`, each over a 64 MiB scratch LU both initiator names may use, and classifies every test
 * from the text output (cu-parse.ts). The last line is `N passed, N failed, N skipped` for OUR target, and is
 * printed only when ours ran, so that CI never reads tgt's counts as ours.
 *
 * --check compares ours with test/conformance/expected-builtin.json; --update rewrites the expected file of each
 * target that ran; --verbose adds skips grouped by reason and the failures' messages; --replay reports on an output
 * captured earlier instead of running that target. Needs a built daemon (`npm run build`) for the builtin target.
 * Exit status: 0 ok, 1 a run failed or was unparseable or --check found a regression, 2 bad usage.
 */
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { shortReason, startBuiltin } from './builtin.js';
import {
  type Counts,
  closingLine,
  countStatuses,
  crossCheck,
  groupSkips,
  type ParsedRun,
  parseCuOutput,
  statusMap,
  suitesStartingWith,
} from './cu-parse.js';
import { checkAgainst, type Expected, loadExpected, mergeExpected, serializeExpected } from './expected.js';
import { onAbort, runToFile } from './proc.js';
import { Tgtd } from './tgt.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const EXPECTED_DIR = join(ROOT, 'test/conformance');
const TARGET_IQN = 'iqn.2024-01.org.targetd.test:scratch';
const IQN1 = 'iqn.2024-01.org.targetd.test:init1';
const IQN2 = 'iqn.2024-01.org.targetd.test:init2';
const SCRATCH_BYTES = 64 * 1024 * 1024;
/** tgt's LUN 0 is its controller LU, so its disk is LUN 1; ours maps the volume at LUN 0. */
const LUN = { tgt: 1, builtin: 0 } as const;

type TargetKind = 'tgt' | 'builtin';
const LABEL: Record<TargetKind, string> = { tgt: 'tgt', builtin: 'builtin (ours)' };

type Outcome =
  | {
      kind: 'ran';
      run: ParsedRun;
      wallS: number;
      outFile: string;
      exitCode: number | null;
      problems: string[];
    }
  | { kind: 'unavailable'; reason: string }
  | { kind: 'error'; reason: string };

interface Opts {
  targets: TargetKind[];
  filter: string;
  check: boolean;
  update: boolean;
  verbose: boolean;
  timeoutMs: number;
  /** Saved iscsi-test-cu outputs to report on instead of running a target, by target. */
  replay: Map<TargetKind, string>;
}

function parseOpts(): Opts {
  const { values } = parseArgs({
    options: {
      target: { type: 'string', default: 'both' },
      filter: { type: 'string', default: 'ALL' },
      check: { type: 'boolean', default: false },
      update: { type: 'boolean', default: false },
      verbose: { type: 'boolean', short: 'v', default: false },
      timeout: { type: 'string', default: '15' },
      replay: { type: 'string', multiple: true, default: [] },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(
      'usage: node --import tsx scripts/iscsi/conformance.ts [--target tgt|builtin|both] [--filter ALL]\n' +
        '       [--check | --update] [--verbose] [--timeout MINUTES] [--replay tgt|builtin=OUTPUT.txt]…',
    );
    process.exit(0);
  }
  const t = values.target;
  if (t !== 'tgt' && t !== 'builtin' && t !== 'both')
    throw new Error(`--target: tgt, builtin or both, not ${t}`);
  if (values.check && values.update) throw new Error('--check and --update are exclusive');
  const targets: TargetKind[] = t === 'both' ? ['tgt', 'builtin'] : [t];
  if (values.check && !targets.includes('builtin'))
    throw new Error('--check compares OUR target: use --target builtin or both');
  const replay = new Map<TargetKind, string>();
  for (const r of values.replay) {
    const m = /^(tgt|builtin)=(.+)$/.exec(r);
    if (!m) throw new Error(`--replay: TARGET=FILE with TARGET tgt or builtin, not ${r}`);
    replay.set(m[1] as TargetKind, m[2]);
  }
  const minutes = Number(values.timeout);
  if (!(minutes > 0)) throw new Error(`--timeout: minutes > 0, not ${values.timeout}`);
  return {
    targets,
    filter: values.filter,
    check: values.check,
    update: values.update,
    verbose: values.verbose,
    timeoutMs: minutes * 60_000,
    replay,
  };
}

function libiscsiVersion(): string {
  try {
    // `dpkg-query -W` prints "name<TAB>version".
    const v = execFileSync('dpkg-query', ['-W', 'libiscsi-bin'], { encoding: 'utf8' }).trim().split('\t')[1];
    return `libiscsi-bin ${v || '(version unknown)'}`;
  } catch {
    return 'libiscsi-bin (version unknown)';
  }
}

async function parseFile(outFile: string): Promise<{ run: ParsedRun; problems: string[] }> {
  const run = parseCuOutput(await readFile(outFile, 'utf8'));
  return { run, problems: crossCheck(run) };
}

/** Reports on an output captured earlier (e.g. kept from a CI run) as if the target had just produced it. */
async function replay(outFile: string): Promise<Outcome> {
  const { run, problems } = await parseFile(outFile);
  return { kind: 'ran', run, wallS: Number.NaN, outFile, exitCode: null, problems };
}

async function runSuite(opts: Opts, url: string, outFile: string): Promise<Outcome> {
  const args = ['-d', '-i', IQN1, '-I', IQN2, '-t', opts.filter, url];
  const r = await runToFile('iscsi-test-cu', args, outFile, opts.timeoutMs);
  const { run, problems } = await parseFile(outFile);
  if (r.timedOut) problems.unshift(`iscsi-test-cu killed after the ${opts.timeoutMs / 60_000} min timeout`);
  else if (r.code === null) problems.unshift(`iscsi-test-cu died of ${r.signal}`);
  // Exit status 1 just means CUnit counted a failure, which the table shows anyway.
  else if (r.code > 1) problems.unshift(`iscsi-test-cu exited ${r.code}`);
  return { kind: 'ran', run, wallS: r.ms / 1000, outFile, exitCode: r.code, problems };
}

async function runTgt(opts: Opts, dir: string): Promise<Outcome> {
  const img = join(dir, 'tgt-scratch.img');
  await writeFile(img, '');
  await truncate(img, SCRATCH_BYTES);
  const off = onAbort(() => rmSync(img, { force: true }));
  let tgt: Tgtd | undefined;
  try {
    tgt = await Tgtd.start(join(dir, 'tgtd.log'));
    await tgt.newTarget(1, TARGET_IQN);
    await tgt.newLun(1, LUN.tgt, img);
    await tgt.bindInitiatorName(1, IQN1);
    await tgt.bindInitiatorName(1, IQN2);
    const url = `iscsi://127.0.0.1:${tgt.port}/${TARGET_IQN}/${LUN.tgt}`;
    console.error(`tgt: tgtd pid ${tgt.pid} (control port ${tgt.controlPort}), running ${url}`);
    return await runSuite(opts, url, join(dir, 'tgt.out.txt'));
  } catch (e) {
    return { kind: 'error', reason: e instanceof Error ? e.message : String(e) };
  } finally {
    await tgt?.stop();
    await rm(img, { force: true });
    off();
  }
}

async function runBuiltin(opts: Opts, dir: string): Promise<Outcome> {
  const started = await startBuiltin(TARGET_IQN);
  if (!started.ok) {
    return started.unavailable
      ? { kind: 'unavailable', reason: shortReason(started.reason) }
      : { kind: 'error', reason: `daemon did not start: ${started.reason}` };
  }
  const b = started.builtin;
  try {
    await b.daemon.call('vol_create', { pool: 'pool1', name: 'scratch', size: SCRATCH_BYTES });
    for (const iqn of [IQN1, IQN2]) {
      await b.daemon.call('export_create', {
        pool: 'pool1',
        vol: 'scratch',
        initiator_wwn: iqn,
        lun: LUN.builtin,
      });
    }
    const url = `iscsi://127.0.0.1:${b.port}/${b.targetName}/${LUN.builtin}`;
    console.error(`builtin: daemon pid ${b.daemon.pid}, running ${url}`);
    return await runSuite(opts, url, join(dir, 'builtin.out.txt'));
  } catch (e) {
    return { kind: 'error', reason: e instanceof Error ? e.message : String(e) };
  } finally {
    await b.dispose(join(dir, 'daemon.log'));
  }
}

function expectedPath(t: TargetKind): string {
  return join(EXPECTED_DIR, `expected-${t}.json`);
}

const pad = (s: string | number, n: number) => String(s).padStart(n);

function countsRow(label: string, c: Counts, extra = ''): string {
  const total = c.PASS + c.FAIL + c.SKIP;
  return `${label.padEnd(16)}${pad(c.PASS, 6)}${pad(c.FAIL, 6)}${pad(c.SKIP, 6)}${pad(total, 7)}${extra}`;
}

function refFromFile(): { from: string; tests: Record<string, string> } | undefined {
  const e = loadExpected(expectedPath('tgt'));
  return e && { from: 'tgt (expected-tgt.json)', tests: e.tests };
}

function report(opts: Opts, outcomes: Map<TargetKind, Outcome>, dir: string | undefined): number {
  let rc = 0;
  const where = dir ? `; outputs in ${dir}` : '';
  console.log(`\niscsi-test-cu -d -t ${opts.filter} (${libiscsiVersion()})${where}\n`);
  console.log(
    `${'target'.padEnd(16)}${pad('pass', 6)}${pad('fail', 6)}${pad('skip', 6)}${pad('total', 7)}  CUnit p/f   wall`,
  );
  for (const [t, o] of outcomes) {
    if (o.kind !== 'ran') {
      console.log(
        `${LABEL[t].padEnd(16)}n/a: ${o.kind === 'unavailable' ? 'not available' : 'ERROR'}: ${o.reason}`,
      );
      if (o.kind === 'error') rc = 1;
      continue;
    }
    const s = o.run.summary;
    const cu = s ? `${s.passed}/${s.failed}` : '-';
    console.log(
      countsRow(
        LABEL[t],
        o.run.counts,
        `  ${cu.padEnd(10)}${Number.isNaN(o.wallS) ? 'replayed' : `${o.wallS.toFixed(1)} s`}`,
      ),
    );
  }

  console.log('\niSCSI family (ALL.iSCSI*: the iSCSIcmdsn, iSCSIdatasn, iSCSIResiduals, iSCSITMF suites)');
  for (const [t, o] of outcomes) {
    if (o.kind !== 'ran') console.log(`${LABEL[t].padEnd(16)}n/a`);
    else console.log(countsRow(LABEL[t], countStatuses(suitesStartingWith(o.run, 'iSCSI'))));
  }

  for (const [t, o] of outcomes) {
    if (o.kind !== 'ran') continue;
    for (const p of o.problems) {
      console.log(`\n${LABEL[t]}: PROBLEM: ${p} (see ${o.outFile})`);
      rc = 1;
    }
    if (o.run.lateFailures.length) {
      console.log(
        `\n${LABEL[t]}: [FAILED] logged in tests CUnit still passed (not counted): ${o.run.lateFailures.join(' ')}`,
      );
    }
  }

  const ours = outcomes.get('builtin');
  if (ours?.kind === 'ran') {
    const tgt = outcomes.get('tgt');
    const ref = tgt?.kind === 'ran' ? { from: 'tgt', tests: statusMap(tgt.run) } : refFromFile();
    if (ref) {
      const now = statusMap(ours.run);
      const worse = Object.keys(ref.tests).filter(
        (n) => ref.tests[n] === 'PASS' && n in now && now[n] !== 'PASS',
      );
      const better = Object.keys(now).filter(
        (n) => now[n] === 'PASS' && n in ref.tests && ref.tests[n] !== 'PASS',
      );
      console.log(`\npass on ${ref.from} but not on ours (${worse.length}):`);
      for (const n of worse) console.log(`  ${now[n]}  ${n}`);
      console.log(`pass on ours but not on ${ref.from} (${better.length}):`);
      for (const n of better) console.log(`  ${ref.tests[n]}  ${n}`);
    }
  }

  if (opts.verbose) {
    for (const [t, o] of outcomes) {
      if (o.kind !== 'ran') continue;
      console.log(`\n${LABEL[t]}: skips by reason`);
      for (const [reason, tests] of groupSkips(o.run)) {
        console.log(`  ${pad(tests.length, 3)}  ${reason}`);
        console.log(`         ${tests.join(' ')}`);
      }
      const fails = o.run.tests.filter((x) => x.status === 'FAIL');
      console.log(`${LABEL[t]}: failures (${fails.length})`);
      for (const f of fails) {
        const why =
          f.lines.find((l) => l.includes('[FAILED]'))?.trim() ??
          f.lines.find((l) => /^\s+1\. /.test(l))?.trim();
        console.log(`  ${f.name}${why ? `: ${why}` : ''}`);
      }
    }
  }
  return rc;
}

async function update(opts: Opts, t: TargetKind, run: ParsedRun): Promise<void> {
  const p = expectedPath(t);
  const m = mergeExpected(loadExpected(p), statusMap(run), opts.filter === 'ALL', t, libiscsiVersion());
  await writeFile(p, serializeExpected(m.expected));
  console.log(`\nupdated ${relative(ROOT, p)}`);
  if (m.added.length) {
    console.log(`  ADDED ${m.added.length} expected failure(s), i.e. accepted regressions; review the diff:`);
    for (const n of m.added) console.log(`    + ${n}`);
  }
  if (m.removed.length) {
    console.log(`  removed ${m.removed.length} expected failure(s):`);
    for (const n of m.removed) console.log(`    - ${n}`);
  }
}

async function main(): Promise<number> {
  const opts = parseOpts();
  const live = opts.targets.filter((t) => !opts.replay.has(t));
  // Outputs and logs are kept for inspection; they are small (the scratch image is removed).
  const dir = live.length ? await mkdtemp(join(tmpdir(), 'targetd-conformance-')) : undefined;
  const outcomes = new Map<TargetKind, Outcome>();
  // One after the other: they share two cores, and wall times are only comparable when neither runs alongside.
  for (const t of opts.targets) {
    const saved = opts.replay.get(t);
    if (saved) outcomes.set(t, await replay(saved));
    else outcomes.set(t, t === 'tgt' ? await runTgt(opts, dir!) : await runBuiltin(opts, dir!));
  }

  let rc = report(opts, outcomes, dir);
  const ours = outcomes.get('builtin');

  if (opts.check) {
    if (ours?.kind === 'unavailable') {
      // The builtin target ships now: its absence is a regression, not a reason to skip.
      console.log(`\n--check: FAILED, the builtin target is not available in this build`);
      rc = 1;
    } else if (ours?.kind === 'ran') {
      const exp: Expected = loadExpected(expectedPath('builtin')) ?? {
        target: 'builtin',
        tool: '',
        counts: { PASS: 0, FAIL: 0, SKIP: 0 },
        failures: [],
        tests: {},
      };
      const { errors, notes, unknown } = checkAgainst(statusMap(ours.run), exp, opts.filter === 'ALL');
      console.log(
        `\n--check against ${relative(ROOT, expectedPath('builtin'))}: ${errors.length ? 'FAILED' : 'ok'}`,
      );
      if (unknown.length) {
        console.log(`  ${unknown.length} test(s) not in the expected file (--update records them)`);
        if (opts.verbose) for (const u of unknown) console.log(`    ${u}`);
      }
      for (const n of notes) console.log(`  note: ${n}`);
      for (const e of errors) console.log(`  REGRESSION: ${e}`);
      if (errors.length) rc = 1;
    } else {
      rc = 1;
    }
  }
  if (opts.update) {
    for (const [t, o] of outcomes) {
      if (o.kind !== 'ran') continue;
      // Half-parsed output would write a wrong baseline.
      if (o.problems.length) console.log(`\n--update: not updating ${t}: the run had problems`);
      else await update(opts, t, o.run);
    }
  }

  if (ours?.kind === 'ran') console.log(`\n${closingLine(ours.run.counts)}`);
  return rc;
}

main().then(
  (rc) => process.exit(rc),
  (e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(2);
  },
);
