/**
 * vol_copy (FilePool.copy, sparse path) vs `cp --sparse=always` on the same source, side by side.
 *
 *   node --import tsx bench/copy.ts [--dir DIR] [--runs N]
 *
 * The source is a 4 GiB volume holding 256 MiB of data in 64 KiB blocks at scattered offsets. Runs alternate
 * (ours, cp, cp+sync, ours, …) and every run starts after a `sync`, so neither side inherits the other's
 * dirty pages. Reflink is disabled: this measures the sparse data copy, which is what a filesystem without
 * reflink (ext4) gets. FilePool.copy returns once the copy is complete and listed; its data reaches the disk
 * in the background, before anything that depends on it (whenDurable: export, resize, close). The
 * `+ whenDurable` and `cp + sync` rows compare the two at equal durability.
 */
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { run } from '../src/exec/index.js';
import { FilePool } from '../src/pools/file/file-pool.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const VOLUME = 4 * GiB;
const BLOCK = 64 * 1024;
const DATA = 256 * MiB;

const { values } = parseArgs({
  options: { dir: { type: 'string' }, runs: { type: 'string', default: '3' } },
});
const runs = Number(values.runs);
const root = await fsp.mkdtemp(path.join(values.dir ?? os.tmpdir(), 'targetd-bench-copy-'));
const never = new AbortController().signal;

async function allocated(file: string): Promise<number> {
  return (await fsp.stat(file)).blocks * 512;
}

/** Writes DATA bytes of random-ish blocks at distinct pseudo-random BLOCK-aligned offsets. */
async function fill(file: string): Promise<void> {
  let x = 2463534242;
  const rand = (): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  const slots = new Set<number>();
  while (slots.size < DATA / BLOCK) slots.add(rand() % (VOLUME / BLOCK));
  const buf = Buffer.alloc(BLOCK);
  const fh = await fsp.open(file, 'r+');
  for (const s of [...slots].sort((a, b) => a - b)) {
    for (let i = 0; i < BLOCK; i += 4) buf.writeUInt32LE(rand(), i);
    await fh.write(buf, 0, BLOCK, s * BLOCK);
  }
  await fh.sync();
  await fh.close();
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

interface Method {
  name: string;
  once(i: number): Promise<{ secs: number; alloc: number }>;
}

// When the sparse copy reports 1.0 for the first time the data is copied; what follows is the metadata and
// the renames that make the copy atomic.
const dataPhase: number[] = [];

const pool = new FilePool({ name: 'bench', path: path.join(root, 'pool'), reflink: false });
try {
  await pool.open();
  await pool.create('src', VOLUME);
  const src = pool.dataPath('src');
  await fill(src);
  const srcAlloc = await allocated(src);
  const fsType = (await run('findmnt', ['-n', '-o', 'FSTYPE', '-T', root])).stdout.trim();

  const timeCp = async (dst: string, durable: boolean): Promise<{ secs: number; alloc: number }> => {
    const t0 = performance.now();
    await run('cp', ['--sparse=always', src, dst], { timeoutMs: 600_000 });
    if (durable) await run('sync', [dst]);
    const secs = (performance.now() - t0) / 1000;
    const alloc = await allocated(dst);
    await fsp.rm(dst);
    return { secs, alloc };
  };
  const methods: Method[] = [
    {
      name: 'vol_copy (FilePool.copy)',
      async once(i) {
        const t0 = performance.now();
        let copied: number | undefined;
        await pool.copy(
          'src',
          `copy${i}`,
          undefined,
          (f) => {
            if (f === 1) copied ??= performance.now();
          },
          never,
        );
        const secs = (performance.now() - t0) / 1000;
        dataPhase.push(((copied ?? performance.now()) - t0) / 1000);
        const alloc = await allocated(pool.dataPath(`copy${i}`));
        await pool.destroy(`copy${i}`);
        return { secs, alloc };
      },
    },
    {
      name: 'vol_copy + whenDurable',
      async once(i) {
        const t0 = performance.now();
        await pool.copy('src', `dcopy${i}`, undefined, () => {}, never);
        await pool.whenDurable(`dcopy${i}`);
        const secs = (performance.now() - t0) / 1000;
        const alloc = await allocated(pool.dataPath(`dcopy${i}`));
        await pool.destroy(`dcopy${i}`);
        return { secs, alloc };
      },
    },
    { name: 'cp --sparse=always', once: (i) => timeCp(path.join(root, `cp${i}`), false) },
    { name: 'cp --sparse=always + sync', once: (i) => timeCp(path.join(root, `cps${i}`), true) },
  ];

  const results = new Map<string, { secs: number[]; alloc: number[] }>(
    methods.map((m) => [m.name, { secs: [], alloc: [] }]),
  );
  for (let i = 0; i < runs; i++) {
    for (const m of methods) {
      await run('sync', []);
      const r = await m.once(i);
      results.get(m.name)!.secs.push(r.secs);
      results.get(m.name)!.alloc.push(r.alloc);
    }
  }

  const cpMedian = median(results.get('cp --sparse=always')!.secs);
  console.log(
    `\nsource: ${VOLUME / GiB} GiB volume, ${DATA / MiB} MiB of data in ${BLOCK / 1024} KiB blocks at scattered ` +
      `offsets, ${(srcAlloc / MiB).toFixed(1)} MiB allocated; filesystem ${fsType}; ${os.release()}; ` +
      `median of ${runs} alternating runs\n`,
  );
  const rows = methods.map((m) => {
    const r = results.get(m.name)!;
    const secs = median(r.secs);
    const alloc = Math.max(...r.alloc);
    return [
      m.name,
      secs.toFixed(3),
      `${(secs / cpMedian).toFixed(2)}x`,
      `${(alloc / MiB).toFixed(1)} MiB / ${(srcAlloc / MiB).toFixed(1)} MiB (${(alloc / srcAlloc).toFixed(3)})`,
    ];
  });
  const phase = median(dataPhase);
  rows.splice(1, 0, ['  of which data copy', phase.toFixed(3), `${(phase / cpMedian).toFixed(2)}x`, '']);
  const head = ['method', 'median s', 'ratio vs cp', 'dst allocated / src allocated (worst run)'];
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((s, c) => s.padEnd(widths[c]!)).join(' | ')} |`;
  console.log(line(head));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(line(r));
  console.log(
    `\nall runs (s): ${[...results].map(([k, v]) => `${k}: ${v.secs.map((s) => s.toFixed(3)).join(', ')}`).join('; ')}`,
  );
} finally {
  await pool.close();
  await fsp.rm(root, { recursive: true, force: true });
}
