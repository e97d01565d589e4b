import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FilePool } from '../../src/pools/file/file-pool.js';
import { hashFile, ls, MiB, tempDir, writeScattered } from './helpers.js';

const CHILD = fileURLToPath(new URL('./fixtures/crash-child.ts', import.meta.url));

interface Ev {
  ev: string;
  name?: string;
  uuid?: string;
  size?: number;
  hash?: string;
  f?: number;
}

/** A running crash-child and the events it has reported so far. */
class Child {
  readonly proc: ChildProcess;
  readonly events: Ev[] = [];
  private waiters: Array<() => void> = [];
  private stderr = '';

  constructor(args: string[]) {
    this.proc = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      this.events.push(JSON.parse(line) as Ev);
      for (const w of this.waiters.splice(0)) w();
    });
    this.proc.stderr!.on('data', (b: Buffer) => {
      this.stderr += b.toString();
    });
    this.proc.on('exit', () => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Resolves once an event satisfies `pred`; fails if the child exits first. */
  async waitFor(pred: (e: Ev, i: number) => boolean, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.events.some(pred)) return;
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
        throw new Error(`child exited (${this.proc.exitCode ?? this.proc.signalCode}): ${this.stderr}`);
      }
      if (Date.now() > deadline) throw new Error('timed out waiting for the child');
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100).unref();
      });
    }
  }

  /** SIGKILL (by our own child's PID) and wait until it is gone. */
  async kill(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      const exited = once(this.proc, 'exit');
      this.proc.kill('SIGKILL');
      await exited;
    }
  }
}

let root: string;
let poolDir: string;
const children: Child[] = [];

beforeEach(async () => {
  root = await tempDir('targetd-crash-');
  poolDir = path.join(root, 'pool');
});
afterEach(async () => {
  for (const c of children.splice(0)) await c.kill();
  await fsp.rm(root, { recursive: true, force: true });
});

/** Files a crash left in the temp area, before open() cleans up. */
function leftovers(): Promise<string[]> {
  return ls(path.join(poolDir, '.targetd', 'tmp'));
}

/** Re-opens the pool after a crash and checks the on-disk invariants that hold whatever the instant. */
async function reopenAndCheck(): Promise<FilePool> {
  const pool = new FilePool({ name: 'crash', path: poolDir });
  await pool.open();
  assert.deepEqual(await ls(path.join(poolDir, '.targetd', 'tmp')), [], 'temp leftovers removed');
  const listed = (await pool.list()).map((v) => v.name).sort();
  const metas = (await ls(path.join(poolDir, '.targetd', 'vols'))).map((f) => f.replace(/\.json$/, ''));
  const datas = (await ls(poolDir)).filter((f) => f.endsWith('.vol')).map((f) => f.replace(/\.vol$/, ''));
  assert.deepEqual(metas, listed, 'every metadata file belongs to a listed volume');
  assert.deepEqual(datas, listed, 'every data file belongs to a listed volume');
  return pool;
}

describe('FilePool survives kill -9', () => {
  it('during create / copy / destroy churn, at random instants', async (t) => {
    // name -> what a verified earlier round left: it must survive every later crash unchanged.
    const survivors = new Map<string, { uuid: string; size: number; hash?: string }>();
    const ROUNDS = 8;
    let roundsWithLeftovers = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const child = new Child(['churn', poolDir, `r${round}`]);
      children.push(child);
      const stopAfter = 3 + Math.floor(Math.random() * 40);
      await child.waitFor((_, i) => i >= stopAfter);
      await new Promise((r) => setTimeout(r, Math.random() * 15));
      await child.kill();

      if ((await leftovers()).length > 0) roundsWithLeftovers++;
      const pool = await reopenAndCheck();
      try {
        const byName = new Map((await pool.list()).map((v) => [v.name, v]));
        for (const [name, want] of survivors) {
          const got = byName.get(name);
          assert.ok(got, `${name} from an earlier round is gone`);
          assert.equal(got.uuid, want.uuid);
          assert.equal(got.size, want.size);
          if (want.hash) assert.equal(await hashFile(pool.dataPath(name)), want.hash, `${name} content`);
        }
        // Replay this round's report: complete steps must show, the one cut short may or may not have.
        const model = new Map<string, { state: string; uuid?: string; size?: number; hash?: string }>();
        for (const e of child.events) {
          const name = e.name!;
          switch (e.ev) {
            case 'creating':
            case 'copying':
              model.set(name, {
                state: 'maybe',
                size: e.size,
                hash: e.ev === 'copying' ? e.hash : undefined,
              });
              break;
            case 'created':
            case 'copied':
              model.set(name, { state: 'present', uuid: e.uuid, size: e.size, hash: e.hash });
              break;
            case 'written':
              model.get(name)!.hash = e.hash;
              break;
            case 'destroying':
              model.get(name)!.state = 'maybe';
              break;
            case 'destroyed':
              model.set(name, { state: 'absent' });
              break;
          }
        }
        for (const [name, m] of model) {
          const got = byName.get(name);
          if (m.state === 'present') assert.ok(got, `${name} was reported complete but is not listed`);
          if (m.state === 'absent') assert.equal(got, undefined, `${name} was destroyed but is listed`);
          if (!got) continue;
          if (m.uuid) assert.equal(got.uuid, m.uuid, `${name} uuid`);
          if (m.size && m.state === 'present') assert.equal(got.size, m.size, `${name} size`);
          const st = await fsp.stat(pool.dataPath(name));
          assert.equal(st.size, got.size, `${name} data file size`);
          // A listed copy is a whole copy, even one whose completion the child never got to report.
          if (m.hash) assert.equal(await hashFile(pool.dataPath(name)), m.hash, `${name} content`);
          survivors.set(name, { uuid: got.uuid, size: got.size, hash: m.hash });
        }
        for (const name of byName.keys()) {
          assert.ok(survivors.has(name) || model.has(name), `unexpected volume ${name}`);
        }
      } finally {
        await pool.close();
      }
    }
    assert.ok(survivors.size > 0);
    t.diagnostic(
      `${ROUNDS} kills, ${roundsWithLeftovers} left temp files behind, ${survivors.size} volumes survived`,
    );
  });

  it('during a copy of a big sparse volume', async () => {
    let pool = new FilePool({ name: 'crash', path: poolDir });
    await pool.open();
    const src = await pool.create('big', 2048 * MiB);
    await writeScattered(pool.dataPath('big'), 2048 * MiB, 256, MiB, 9);
    const srcHash = await hashFile(pool.dataPath('big'));
    await pool.close();

    // Kill points: mid-copy (after the first chunk), just after the copy starts, and at random times.
    const plans: Array<(c: Child) => Promise<void>> = [
      (c) => c.waitFor((e) => e.ev === 'progress' && e.f! > 0 && e.f! < 1),
      (c) => c.waitFor((e) => e.ev === 'copying'),
      async (c) => {
        await c.waitFor((e) => e.ev === 'copying');
        await new Promise((r) => setTimeout(r, Math.random() * 400));
      },
      async (c) => {
        await c.waitFor((e) => e.ev === 'copying');
        await new Promise((r) => setTimeout(r, Math.random() * 400));
      },
    ];
    let sawMidCopy = false;
    for (const [i, plan] of plans.entries()) {
      const dst = `copy${i}`;
      const child = new Child(['copy', poolDir, 'big', dst]);
      children.push(child);
      await plan(child);
      await child.kill();
      const finished = child.events.find((e) => e.ev === 'copied');
      const midCopy = child.events.some((e) => e.ev === 'progress' && e.f! > 0 && e.f! < 1) && !finished;
      if (midCopy) {
        sawMidCopy = true;
        assert.equal((await leftovers()).length, 1, 'the half-made copy sits in the temp area');
      }

      pool = await reopenAndCheck();
      try {
        const big = await pool.get('big');
        assert.deepEqual(big, src, 'source intact');
        const copy = await pool.get(dst);
        if (finished) assert.equal(copy?.uuid, finished.uuid);
        if (copy) {
          assert.equal(await hashFile(pool.dataPath(dst)), srcHash, 'a listed copy is complete');
          await pool.destroy(dst);
        }
      } finally {
        await pool.close();
      }
    }
    assert.ok(sawMidCopy, 'at least one kill landed in the middle of the data copy');
    pool = await reopenAndCheck();
    try {
      assert.equal(await hashFile(pool.dataPath('big')), srcHash);
    } finally {
      await pool.close();
    }
  });
});
