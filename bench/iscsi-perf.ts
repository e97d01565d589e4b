/**
 * iSCSI data-path benchmark: our built-in target beside tgt, on one shared backing file (iscsi-notes §4).
 *
 *   node --import tsx bench/iscsi-perf.ts [--runs 3] [--seconds 10] [--only tgt|builtin] [--counts N1M,N4K]
 *     [--workloads rr4k-qd32,rr4k-qd1,sr1m-qd8,sw1m-qd8,sw4k-qd32,rr4k-qd32-hd]
 *
 * The file is the data file of a 1 GiB volume created through the API in the daemon's pool, filled once from
 * /dev/urandom, and tgt's LUN points at that very file, so both targets serve the same bytes from the same page
 * cache. Runs alternate tgt, ours, tgt, ours…; each table cell is the median of --runs runs. Target CPU is the
 * utime+stime the target process (tgtd, or the daemon) used during the run. The client tools compete with the
 * targets for the same CPUs, which is why CPU seconds are shown beside throughput.
 *
 * Write workloads (qemu-img bench) change the shared file; both targets get the same writes, so that is fair.
 * Needs a built daemon (`npm run build`), tgt, libiscsi-bin, qemu-utils and qemu-block-extra.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type Builtin, shortReason, startBuiltin } from '../scripts/iscsi/builtin.js';
import { cpuSeconds, run } from '../scripts/iscsi/proc.js';
import { Tgtd, waitForPort } from '../scripts/iscsi/tgt.js';

const MiB = 1024 * 1024;
const VOL_BYTES = 1024 * MiB;
const TARGET_IQN = 'iqn.2024-01.org.targetd.test:perf';
const INITIATOR = 'iqn.2024-01.org.targetd.test:init1';

type TargetName = 'tgt' | 'builtin';

interface Workload {
  id: string;
  label: string;
  /** Bytes per request, to turn IOPS into MiB/s. */
  bytes: number;
  /** Which number the table shows. */
  unit: 'IOPS' | 'MiB/s';
  headerDigest?: boolean;
  perf?: string[];
  qemu?: { depth: number; size: string; calibrationCount: number };
}

const WORKLOADS: Workload[] = [
  {
    id: 'rr4k-qd32',
    label: '4 KiB random read QD32',
    bytes: 4096,
    unit: 'IOPS',
    perf: ['-m', '32', '-b', '8', '-r'],
  },
  {
    id: 'rr4k-qd1',
    label: '4 KiB random read QD1',
    bytes: 4096,
    unit: 'IOPS',
    perf: ['-m', '1', '-b', '8', '-r'],
  },
  { id: 'sr1m-qd8', label: '1 MiB seq read QD8', bytes: MiB, unit: 'MiB/s', perf: ['-m', '8', '-b', '2048'] },
  {
    id: 'sw1m-qd8',
    label: '1 MiB seq write QD8',
    bytes: MiB,
    unit: 'MiB/s',
    qemu: { depth: 8, size: '1M', calibrationCount: 500 },
  },
  {
    id: 'sw4k-qd32',
    label: '4 KiB seq write QD32',
    bytes: 4096,
    unit: 'IOPS',
    qemu: { depth: 32, size: '4k', calibrationCount: 20_000 },
  },
  {
    id: 'rr4k-qd32-hd',
    label: '4 KiB random read QD32, HeaderDigest',
    bytes: 4096,
    unit: 'IOPS',
    headerDigest: true,
    perf: ['-m', '32', '-b', '8', '-r'],
  },
];

interface Target {
  name: TargetName;
  port: number;
  lun: number;
  pid: number;
  /** Makes the target accept (or stop offering) HeaderDigest=CRC32C for the sessions that follow. */
  setHeaderDigest(on: boolean): Promise<void>;
}

interface Sample {
  target: TargetName;
  iops: number;
  mibs: number;
  wallS: number;
  cpuS: number;
  error?: string;
}

interface Opts {
  runs: number;
  seconds: number;
  only?: TargetName;
  counts?: [number, number];
  /** Workload ids to run (default all). */
  workloads: Workload[];
}

function parseOpts(): Opts {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '10' },
      only: { type: 'string' },
      counts: { type: 'string' },
      workloads: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(
      'usage: node --import tsx bench/iscsi-perf.ts [--runs 3] [--seconds 10] [--only tgt|builtin] [--counts N1M,N4K] [--workloads id,id…]',
    );
    process.exit(0);
  }
  const runs = Number(values.runs);
  const seconds = Number(values.seconds);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs: a positive integer, not ${values.runs}`);
  if (!Number.isInteger(seconds) || seconds < 1)
    throw new Error(`--seconds: a positive integer, not ${values.seconds}`);
  if (values.only !== undefined && values.only !== 'tgt' && values.only !== 'builtin') {
    throw new Error(`--only: tgt or builtin, not ${values.only}`);
  }
  let counts: [number, number] | undefined;
  if (values.counts) {
    const c = values.counts.split(',').map(Number);
    if (c.length !== 2 || !c.every((n) => Number.isInteger(n) && n > 0)) {
      throw new Error('--counts: two positive integers, "N1M,N4K"');
    }
    counts = [c[0], c[1]];
  }
  let workloads = WORKLOADS;
  if (values.workloads) {
    const ids = values.workloads.split(',');
    const unknown = ids.filter((id) => !WORKLOADS.some((w) => w.id === id));
    if (unknown.length) {
      throw new Error(
        `--workloads: unknown ${unknown.join(', ')} (known: ${WORKLOADS.map((w) => w.id).join(', ')})`,
      );
    }
    workloads = WORKLOADS.filter((w) => ids.includes(w.id));
  }
  return { runs, seconds, only: values.only as TargetName | undefined, counts, workloads };
}

function perfUrl(t: Target, digest: boolean): string {
  return `iscsi://127.0.0.1:${t.port}/${TARGET_IQN}/${t.lun}${digest ? '?header_digest=crc32c' : ''}`;
}

/**
 * qemu's iSCSI driver takes its initiator name from options, not from the URL, and without one it logs in as
 * iqn.2008-11.org.linux-kvm, which neither target's ACL admits; hence --image-opts rather than a plain URL.
 */
function qemuImageOpts(t: Target): string {
  return [
    'driver=raw',
    'file.driver=iscsi',
    'file.transport=tcp',
    `file.portal=127.0.0.1:${t.port}`,
    `file.target=${TARGET_IQN}`,
    `file.lun=${t.lun}`,
    `file.initiator-name=${INITIATOR}`,
  ].join(',');
}

async function runOnce(w: Workload, t: Target, seconds: number, count: number): Promise<Sample> {
  await t.setHeaderDigest(!!w.headerDigest);
  const base = { target: t.name, iops: Number.NaN, mibs: Number.NaN, wallS: 0, cpuS: 0 };
  const cpu0 = cpuSeconds(t.pid);
  const t0 = performance.now();
  let iops: number;
  let detail: string;
  if (w.perf) {
    // LIBISCSI_DEBUG=6 logs the target's login answers (and nothing per I/O): libiscsi quietly accepts
    // HeaderDigest=None when it asked for CRC32C, so the digest row has to prove what was negotiated.
    const r = await run(
      'iscsi-perf',
      ['-i', INITIATOR, ...w.perf, '-t', String(seconds), perfUrl(t, !!w.headerDigest)],
      seconds * 3_000 + 30_000,
      { LIBISCSI_DEBUG: '6' },
    );
    // Progress lines are redrawn with \r; the summary is the last "iops average".
    const out = `${r.stdout}\n${r.stderr}`.replace(/\r/g, '\n');
    const all = [...out.matchAll(/iops average (\d+(?:\.\d+)?) \(/g)];
    const digest = [...out.matchAll(/TargetLoginReply: HeaderDigest=(\S+)/g)].pop()?.[1] ?? 'None';
    detail = out.trim().split('\n').slice(-3).join(' | ');
    iops = all.length && r.code === 0 ? Number(all[all.length - 1][1]) : Number.NaN;
    if (digest !== (w.headerDigest ? 'CRC32C' : 'None')) {
      detail = `the target negotiated HeaderDigest=${digest}`;
      iops = Number.NaN;
    }
  } else {
    const q = w.qemu!;
    const args = ['bench', '-t', 'none', '-w', '-c', String(count), '-d', String(q.depth), '-s', q.size];
    const r = await run('qemu-img', [...args, '--image-opts', qemuImageOpts(t)], seconds * 10_000 + 60_000);
    const m = /Run completed in (\d+(?:\.\d+)?) seconds/.exec(r.stdout);
    detail = `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-2).join(' | ');
    iops = m && r.code === 0 ? count / Number(m[1]) : Number.NaN;
  }
  const sample: Sample = {
    ...base,
    iops,
    mibs: (iops * w.bytes) / MiB,
    wallS: (performance.now() - t0) / 1000,
    cpuS: cpuSeconds(t.pid) - cpu0,
  };
  if (Number.isNaN(iops)) sample.error = detail;
  return sample;
}

const median = (xs: number[]): number => {
  const v = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

function fmt(w: Workload, s: { iops: number; mibs: number }): string {
  if (Number.isNaN(s.iops)) return 'error';
  if (w.unit === 'MiB/s') return `${s.mibs.toFixed(0)} MiB/s`;
  return s.iops >= 10_000 ? `${(s.iops / 1000).toFixed(1)}k IOPS` : `${s.iops.toFixed(0)} IOPS`;
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows
    .map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | '))
    .join('\n');
}

async function main(): Promise<number> {
  const opts = parseOpts();
  const dir = await mkdtemp(join(tmpdir(), 'targetd-perf-'));
  let tgt: Tgtd | undefined;
  let daemon: Builtin | undefined;
  let oursNote = '';
  const targets: Target[] = [];
  let keepDir = true;
  try {
    // The volume (and so the shared file) always comes from the API; without a built-in target the daemon runs
    // with the `none` backend just to own the pool.
    if (opts.only !== 'tgt') {
      const r = await startBuiltin(TARGET_IQN);
      if (r.ok) daemon = r.builtin;
      else if (r.unavailable) oursNote = `builtin: not available (${shortReason(r.reason)})`;
      else throw new Error(`the daemon did not start: ${r.reason}`);
    } else {
      oursNote = 'builtin: not measured (--only tgt)';
    }
    const oursUp = daemon !== undefined;
    if (opts.only === 'builtin' && !oursUp) {
      console.log(`nothing to measure: ${oursNote}`);
      keepDir = false;
      return 0;
    }
    if (!daemon) {
      const r = await startBuiltin(TARGET_IQN, 'none');
      if (!r.ok) throw new Error(`the daemon did not start: ${r.reason}`);
      daemon = r.builtin;
    }
    await daemon.daemon.call('vol_create', { pool: 'pool1', name: 'perf', size: VOL_BYTES });
    const file = daemon.volFile('perf');
    if ((await stat(file)).size !== VOL_BYTES) throw new Error(`${file} is not ${VOL_BYTES} bytes`);
    console.error(`filling ${file} from /dev/urandom…`);
    const dd = await run(
      'dd',
      ['if=/dev/urandom', `of=${file}`, 'bs=1M', 'count=1024', 'conv=notrunc', 'status=none'],
      600_000,
    );
    if (dd.code !== 0) throw new Error(`dd: ${dd.stderr}`);

    if (opts.only !== 'builtin') {
      tgt = await Tgtd.start(join(dir, 'tgtd.log'));
      await tgt.newTarget(1, TARGET_IQN);
      await tgt.newLun(1, 1, file);
      await tgt.bindInitiatorName(1, INITIATOR);
      const t = tgt;
      let digest = false;
      targets.push({
        name: 'tgt',
        port: t.port,
        lun: 1,
        pid: t.pid,
        async setHeaderDigest(on) {
          if (on === digest) return;
          await t.setTargetParam(1, 'HeaderDigest', on ? 'CRC32C,None' : 'None');
          digest = on;
        },
      });
    }
    if (oursUp) {
      // Exported after the fill, so the target opens a file whose contents are final.
      await daemon.daemon.call('export_create', {
        pool: 'pool1',
        vol: 'perf',
        initiator_wwn: INITIATOR,
        lun: 0,
      });
      const d = daemon;
      let digest = false;
      const ours: Target = {
        name: 'builtin',
        port: d.port,
        lun: 0,
        // A restart (below) gives the daemon a new PID.
        get pid() {
          return d.daemon.pid;
        },
        // libiscsi 1.19 offers HeaderDigest=None,CRC32C whatever the URL says, and RFC 7143 lets the initiator's
        // first choice win, so our target has to require CRC32C: a restart with iscsi_header_digest changed.
        async setHeaderDigest(on) {
          if (on === digest) return;
          d.daemon.config.iscsi_header_digest = on ? 'required' : 'optional';
          await d.daemon.restart();
          await waitForPort(d.port, 10_000);
          digest = on;
          // The restarted daemon's JIT is cold again: the same short warm-up as at the start.
          await runOnce({ ...WORKLOADS[0]!, headerDigest: on }, ours, 2, 0);
        },
      };
      targets.push(ours);
    }

    // A short warm-up per target: sessions, page cache and, for ours, the JIT.
    for (const t of targets) await runOnce(WORKLOADS[0], t, 2, 0);

    const samples = new Map<string, Sample[]>();
    const counts = new Map<string, number>();
    for (const w of opts.workloads) {
      let count = 0;
      if (w.qemu) {
        const fixed = opts.counts?.[w.qemu.size === '1M' ? 0 : 1];
        if (fixed) count = fixed;
        else {
          // One fixed amount of work per workload for both targets, sized on the first target to last ~--seconds.
          const c = await runOnce(w, targets[0], opts.seconds, w.qemu.calibrationCount);
          if (Number.isNaN(c.iops)) throw new Error(`calibrating ${w.id} on ${targets[0].name}: ${c.error}`);
          count = Math.max(w.qemu.calibrationCount, Math.round(c.iops * opts.seconds));
        }
        counts.set(w.id, count);
      }
      const list: Sample[] = [];
      for (let i = 0; i < opts.runs; i++) {
        for (const t of targets) {
          const s = await runOnce(w, t, opts.seconds, count);
          list.push(s);
          console.error(
            `${w.id} ${t.name} #${i + 1}: ${fmt(w, s)}, CPU ${s.cpuS.toFixed(2)} s${s.error ? ` (${s.error})` : ''}`,
          );
        }
      }
      samples.set(w.id, list);
    }

    console.log(
      `\niSCSI data path, ABAB, median of ${opts.runs} run(s) × ~${opts.seconds} s; 1 GiB file pre-filled from /dev/urandom;` +
        ` client and targets share ${cpus().length} CPUs (${cpus()[0]?.model.trim()})`,
    );
    if (oursNote) console.log(oursNote);
    const rows: string[][] = [
      ['workload', 'tgt median', 'ours median', 'ours/tgt', 'tgt CPU s', 'ours CPU s'],
    ];
    const med = (id: string, name: TargetName) => {
      const s = samples.get(id)!.filter((x) => x.target === name);
      if (s.length === 0) return undefined;
      return {
        iops: median(s.map((x) => x.iops)),
        mibs: median(s.map((x) => x.mibs)),
        cpuS: median(s.map((x) => x.cpuS)),
      };
    };
    for (const w of opts.workloads) {
      const a = med(w.id, 'tgt');
      const b = med(w.id, 'builtin');
      const tool = w.perf ? 'iscsi-perf' : `qemu-img bench -c ${counts.get(w.id)}`;
      rows.push([
        `${w.label} (${tool})`,
        a ? fmt(w, a) : 'n/a',
        b ? fmt(w, b) : 'n/a',
        a && b && a.iops > 0 ? `${(b.iops / a.iops).toFixed(2)}×` : 'n/a',
        a ? a.cpuS.toFixed(2) : 'n/a',
        b ? b.cpuS.toFixed(2) : 'n/a',
      ]);
    }
    console.log(table(rows));

    const cost = (name: TargetName) => {
      const plain = med('rr4k-qd32', name);
      const hd = med('rr4k-qd32-hd', name);
      if (!plain || !hd) return 'n/a';
      const pct = (hd.iops / plain.iops - 1) * 100;
      return `${pct >= 0 ? '+' : ''}${pct.toFixed(1)}% IOPS (${fmt(WORKLOADS[0], plain)} → ${fmt(WORKLOADS[0], hd)}), CPU ${plain.cpuS.toFixed(2)} → ${hd.cpuS.toFixed(2)} s`;
    };
    console.log(
      `\nHeaderDigest=CRC32C vs none, 4 KiB random read QD32: tgt ${cost('tgt')}; ours ${cost('builtin')}`,
    );

    console.log('\nraw runs (in the order they ran):');
    let failed = false;
    for (const w of opts.workloads) {
      for (const s of samples.get(w.id)!) {
        const cores = s.wallS > 0 ? s.cpuS / s.wallS : 0;
        const err = s.error ? `  ERROR: ${s.error}` : '';
        failed ||= !!s.error;
        console.log(
          `  ${w.id.padEnd(13)} ${s.target.padEnd(8)} ${fmt(w, s).padStart(12)}  ${s.iops.toFixed(0).padStart(6)} IOPS` +
            `  ${s.mibs.toFixed(1).padStart(7)} MiB/s  wall ${s.wallS.toFixed(1)} s  CPU ${s.cpuS.toFixed(2)} s (${cores.toFixed(2)} core)${err}`,
        );
      }
    }
    keepDir = false;
    return failed ? 1 : 0;
  } finally {
    await tgt?.stop();
    await daemon?.dispose();
    // Kept after a failure: it holds tgtd.log.
    if (keepDir) console.error(`logs kept in ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  }
}

main().then(
  (rc) => process.exit(rc),
  (e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(2);
  },
);
