/**
 * Control-plane benchmark against a real daemon (file pool, no data plane), printing one table:
 *  - create → export → unexport → destroy cycles per second (1 client and 8 clients), and for reference the
 *    same durable steps done synchronously in this process (what the disk allows at the moment)
 *  - vol_list latency with 10 000 volumes in the pool
 *  - vol_copy of a 4 GiB volume holding 256 MiB of data vs `cp --sparse=always` of the same file (ABAB, median of 3)
 * Run: npm run build && node --import tsx bench/control-plane.ts [--only cycles,list,copy] [--clients 1,8]
 *   --only     run only these parts (comma-separated; default all three)
 *   --clients  client counts for the cycles part (default 1,8)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  closeSync,
  constants,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { open, readdir, rm, stat } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type DaemonHandle, startDaemon } from '../test/helpers/daemon.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

const rows: [string, string, string, string][] = [];

const { values: flags } = parseArgs({
  options: { only: { type: 'string' }, clients: { type: 'string' } },
});
const PARTS = ['cycles', 'list', 'copy'];
const only = new Set(flags.only?.split(',').map((s) => s.trim()) ?? PARTS);
for (const p of only)
  if (!PARTS.includes(p)) throw new Error(`--only: unknown part '${p}' (${PARTS.join(', ')})`);
const clientCounts = (flags.clients ?? '1,8').split(',').map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--clients: '${s}' is not a positive integer`);
  return n;
});

/** A keep-alive JSON-RPC client on node:http, as lean as the Python and Go clients real users run. */
function client(d: DaemonHandle, sockets: number): (method: string, params?: object) => Promise<unknown> {
  const agent = new Agent({ keepAlive: true, maxSockets: sockets });
  const auth = `Basic ${Buffer.from(`${d.user}:${d.password}`).toString('base64')}`;
  return (method, params = {}) =>
    new Promise((ok, fail) => {
      const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method, params });
      const req = request(
        d.url,
        {
          method: 'POST',
          agent,
          headers: {
            authorization: auth,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const reply = JSON.parse(Buffer.concat(chunks).toString()) as {
              result?: unknown;
              error?: { message: string };
            };
            if (reply.error) fail(new Error(`${method}: ${reply.error.message}`));
            else ok(reply.result);
          });
        },
      );
      req.on('error', fail);
      req.end(body);
    });
}

async function cycles(d: DaemonHandle, clients: number, seconds: number): Promise<number> {
  const call = client(d, clients);
  let done = 0;
  const end = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let i = 0; Date.now() < end; i++) {
        const name = `cy-${c}-${i}`;
        const iqn = `iqn.2024-01.bench.host:c${c}`;
        await call('vol_create', { pool: 'pool1', name, size: 16 * MiB });
        await call('export_create', { pool: 'pool1', vol: name, initiator_wwn: iqn, lun: 0 });
        await call('export_destroy', { pool: 'pool1', vol: name, initiator_wwn: iqn });
        await call('vol_destroy', { pool: 'pool1', name });
        done++;
      }
    }),
  );
  return done / seconds;
}

async function volFile(d: DaemonHandle, name: string): Promise<string> {
  const f = (await readdir(join(d.dir, 'pool1'))).find((x) => x.startsWith(`${name}.`));
  if (!f) throw new Error(`no file for ${name}`);
  return join(d.dir, 'pool1', f);
}

async function main(): Promise<void> {
  const d = await startDaemon({ config: { async_after: -1, log_level: 'warn' } });
  try {
    // 1. cycles
    for (const clients of only.has('cycles') ? clientCounts : []) {
      await cycles(d, clients, 1); // warm-up
      const rates: number[] = [];
      const floors: number[] = [];
      for (let i = 0; i < 3; i++) {
        // Alternating with the daemon's runs, so both see the disk in the same mood.
        if (clients === 1) floors.push(diskFloor(d.dir, 3));
        rates.push(await cycles(d, clients, 5));
      }
      rows.push([
        `create→export→unexport→destroy, ${clients} client${clients > 1 ? 's' : ''}`,
        `${median(rates).toFixed(0)} cycles/s`,
        '≥ 200 cycles/s',
        median(rates) >= 200 ? 'met' : 'NOT met',
      ]);
      if (clients === 1) {
        rows.push([
          'the same durable steps, synchronous, no daemon (disk floor)',
          `${median(floors).toFixed(0)} cycles/s`,
          '',
          `daemon at ${((100 * median(rates)) / median(floors)).toFixed(0)} %`,
        ]);
      }
    }

    if (only.has('copy')) await copyVsCp(d);
    // Last: deleting its 10 000 volumes keeps this disk's journal busy for a minute or two afterwards.
    if (only.has('list')) await listLatency(d);
  } finally {
    await d.dispose();
  }
  printTable();
}

/**
 * The same durable steps as one create→export→unexport→destroy cycle, done synchronously in this process
 * with no daemon, HTTP or thread pool: how many cycles per second this disk allows right now. Its latency
 * swings with the host's load, so the daemon's figure is read against this one, measured alongside.
 */
function diskFloor(dir: string, seconds: number): number {
  const pool = join(dir, 'floor-pool');
  const vols = join(pool, 'vols');
  const state = join(dir, 'floor-state');
  for (const p of [pool, vols, state]) mkdirSync(p, { recursive: true, mode: 0o700 });
  const [pd, vd, sd] = [pool, vols, state].map((p) => openSync(p, 'r'));
  const meta = Buffer.alloc(130, 0x20);
  const registry = Buffer.alloc(250, 0x20);
  const replace = (n: number) => {
    const tmp = join(state, `.state.${n}.tmp`);
    const fd = openSync(
      tmp,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DSYNC,
      0o600,
    );
    writeSync(fd, registry);
    closeSync(fd);
    renameSync(tmp, join(state, 'state.json'));
    fsyncSync(sd);
  };
  let n = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    const v = join(pool, `v${n}.vol`);
    const m = join(vols, `v${n}.json`);
    const tv = openSync(join(pool, `.v${n}.tmp`), 'wx', 0o600);
    ftruncateSync(tv, 16 * MiB);
    const tm = openSync(join(vols, `.v${n}.tmp`), 'wx', 0o600);
    writeSync(tm, meta);
    renameSync(join(vols, `.v${n}.tmp`), m);
    fsyncSync(tm);
    fsyncSync(vd);
    renameSync(join(pool, `.v${n}.tmp`), v);
    fsyncSync(pd);
    closeSync(tv);
    closeSync(tm);
    replace(2 * n);
    replace(2 * n + 1);
    unlinkSync(v);
    fsyncSync(pd);
    unlinkSync(m);
    n++;
  }
  for (const fd of [pd, vd, sd]) closeSync(fd);
  rmSync(pool, { recursive: true, force: true });
  rmSync(state, { recursive: true, force: true });
  return n / seconds;
}

// 2. vol_list with 10 000 volumes
async function listLatency(d: DaemonHandle): Promise<void> {
  const N = 10000;
  const batch = 50;
  for (let i = 0; i < N; i += batch) {
    await Promise.all(
      Array.from({ length: batch }, (_, j) =>
        d.call('vol_create', { pool: 'pool1', name: `many-${i + j}`, size: MiB }),
      ),
    );
  }
  const lat: number[] = [];
  const call = client(d, 1);
  for (let i = 0; i < 50; i++) {
    const t = performance.now();
    const vols = (await call('vol_list', { pool: 'pool1' })) as unknown[];
    lat.push(performance.now() - t);
    if (vols.length !== N) throw new Error(`expected ${N} volumes, got ${vols.length}`);
  }
  rows.push([
    'vol_list latency, 10 000 volumes',
    `p50 ${median(lat).toFixed(1)} ms, p95 ${pct(lat, 0.95).toFixed(1)} ms`,
    'p50 < 50 ms',
    median(lat) < 50 ? 'met' : 'NOT met',
  ]);
  for (let i = 0; i < N; i += batch) {
    await Promise.all(
      Array.from({ length: batch }, (_, j) =>
        d.call('vol_destroy', { pool: 'pool1', name: `many-${i + j}` }),
      ),
    );
  }
}

// 3. vol_copy vs cp --sparse=always, same source file, alternating
async function copyVsCp(d: DaemonHandle): Promise<void> {
  await d.call('vol_create', { pool: 'pool1', name: 'src', size: 4 * GiB });
  const src = await volFile(d, 'src');
  const h = await open(src, 'r+');
  const chunk = Buffer.alloc(MiB);
  for (let i = 0; i < 256; i++) {
    chunk.fill(i + 1);
    await h.write(chunk, 0, MiB, i * 16 * MiB); // 256 MiB spread over 4 GiB
  }
  await h.sync();
  await h.close();
  const srcBlocks = (await stat(src)).blocks * 512;
  const cpDst = join(d.dir, 'cp-copy.img');
  const ours: number[] = [];
  const theirs: number[] = [];
  const theirsSynced: number[] = [];
  const oursExported: number[] = [];
  let ourAlloc = 0;
  let cpAlloc = 0;
  for (let r = 0; r < 3; r++) {
    let t = performance.now();
    execFileSync('cp', ['--sparse=always', src, cpDst]);
    theirs.push((performance.now() - t) / 1000);
    cpAlloc = (await stat(cpDst)).blocks * 512;
    await rm(cpDst);
    execFileSync('sync');
    // cp at the durability of an exported volume (a copy is synced before it is exported): for reference.
    t = performance.now();
    execFileSync('cp', ['--sparse=always', src, cpDst]);
    execFileSync('sync', [cpDst]);
    theirsSynced.push((performance.now() - t) / 1000);
    await rm(cpDst);
    execFileSync('sync');
    t = performance.now();
    await d.call('vol_copy', { pool: 'pool1', vol_orig: 'src', vol_new: 'dst' });
    ours.push((performance.now() - t) / 1000);
    ourAlloc = (await stat(await volFile(d, 'dst'))).blocks * 512;
    await d.call('vol_destroy', { pool: 'pool1', name: 'dst' });
    // The copy's data is written back in the background; the next run must not pay for it.
    execFileSync('sync');
    // The same copy followed by an export, which waits until the copy's data is durable.
    const iqn = 'iqn.2024-01.bench.host:copy';
    t = performance.now();
    await d.call('vol_copy', { pool: 'pool1', vol_orig: 'src', vol_new: 'dst' });
    await d.call('export_create', { pool: 'pool1', vol: 'dst', initiator_wwn: iqn, lun: 0 });
    oursExported.push((performance.now() - t) / 1000);
    await d.call('export_destroy', { pool: 'pool1', vol: 'dst', initiator_wwn: iqn });
    await d.call('vol_destroy', { pool: 'pool1', name: 'dst' });
    execFileSync('sync');
  }
  await d.call('vol_destroy', { pool: 'pool1', name: 'src' });
  const ratio = median(ours) / median(theirs);
  rows.push([
    'cp --sparse=always, 4 GiB with 256 MiB data',
    `${median(theirs).toFixed(3)} s (dest ${(cpAlloc / MiB).toFixed(0)} MiB on disk)`,
    '',
    '',
  ]);
  rows.push(['cp --sparse=always + sync of the copy', `${median(theirsSynced).toFixed(3)} s`, '', '']);
  rows.push([
    'vol_copy + export_create (waits until the copy is durable)',
    `${median(oursExported).toFixed(3)} s`,
    '',
    `${(median(oursExported) / median(theirsSynced)).toFixed(2)}× cp + sync`,
  ]);
  rows.push([
    'vol_copy, same file (API call, sparse copy, synced in background)',
    `${median(ours).toFixed(3)} s (dest ${(ourAlloc / MiB).toFixed(0)} MiB on disk, source ${(srcBlocks / MiB).toFixed(0)} MiB)`,
    '≤ 1.2× cp, dest ≤ source',
    `${ratio.toFixed(2)}× cp, ${ratio <= 1.2 && ourAlloc <= srcBlocks ? 'met' : 'NOT met'}`,
  ]);
}

function printTable(): void {
  const fs = spawnSync('df', ['--output=fstype', tmpdir()], { encoding: 'utf8' })
    .stdout.split('\n')[1]
    ?.trim();
  const head: [string, string, string, string] = ['benchmark', 'result', 'goal', 'verdict'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  console.log(
    `\ncontrol plane, ${new Date().toISOString().slice(0, 10)}, node ${process.version}, pool on ${fs}`,
  );
  console.log(line(head));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(line(r));
}

await main();
