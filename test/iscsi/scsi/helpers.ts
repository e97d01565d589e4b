import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FileBackingStore, type FileOps } from '../../../src/iscsi/lu/backing-store.js';
import { LogicalUnit, type LogicalUnitOptions } from '../../../src/iscsi/lu/logical-unit.js';
import type { PersistedPrState, PrStore } from '../../../src/iscsi/lu/persistent-reservations.js';
import { ScsiTarget } from '../../../src/iscsi/scsi/target.js';
import type { ItNexus, ScsiResult } from '../../../src/iscsi/scsi/types.js';

const run = promisify(execFile);

export const UUID = '3f2504e0-4f89-11d3-9a0c-0305e82c3301';
export const INIT_A = 'iqn.2024-01.test:a';
export const INIT_B = 'iqn.2024-01.test:b';
export const NEXUS_A: ItNexus = { initiator: INIT_A, isid: '023d00000001' };
export const NEXUS_B: ItNexus = { initiator: INIT_B, isid: '023d00000002' };

let pythonOk: boolean | undefined;
// The distribution's interpreter starts several times faster than a version-manager shim on PATH.
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/** Whether python3 is there to stand in for SEEK_DATA/SEEK_HOLE (Node's fs has no lseek whence). */
export async function havePython(): Promise<boolean> {
  if (pythonOk === undefined) {
    pythonOk = await run(PYTHON, ['-c', 'import os; os.SEEK_DATA']).then(
      () => true,
      () => false,
    );
  }
  return pythonOk;
}

/**
 * FileOps for tests: hole punching through the fallocate CLI and SEEK_DATA/SEEK_HOLE through python3,
 * both on the path (the daemon passes the native addon, which works on the descriptor instead).
 */
export function cliFileOps(path: string, seek: boolean): FileOps {
  const lseek = (whence: 'SEEK_DATA' | 'SEEK_HOLE') => async (_fd: number, offset: number) => {
    const script = `import os,sys\nfd=os.open(sys.argv[1],os.O_RDONLY)\ntry:\n print(os.lseek(fd,int(sys.argv[2]),os.${whence}))\nexcept OSError:\n print(-1)`;
    const { stdout } = await run(PYTHON, ['-c', script, path, String(offset)]);
    return Number(stdout.trim());
  };
  return {
    punchHole: async (_fd, offset, length) => {
      await run('fallocate', [
        '--punch-hole',
        '--keep-size',
        '-o',
        String(offset),
        '-l',
        String(length),
        path,
      ]);
    },
    ...(seek ? { seekData: lseek('SEEK_DATA'), seekHole: lseek('SEEK_HOLE') } : {}),
  };
}

/** An in-memory PrStore that records every save. */
export class MemoryPrStore implements PrStore {
  saves: PersistedPrState[] = [];
  constructor(public state?: PersistedPrState) {}
  load(): PersistedPrState | undefined {
    return this.state;
  }
  async save(state: PersistedPrState): Promise<void> {
    this.state = JSON.parse(JSON.stringify(state));
    this.saves.push(this.state!);
  }
}

export interface Fixture {
  dir: string;
  path: string;
  backing: FileBackingStore;
  lu: LogicalUnit;
  target: ScsiTarget;
  cleanup(): Promise<void>;
}

export interface FixtureOptions extends Partial<Omit<LogicalUnitOptions, 'backing'>> {
  size?: number;
  /** Give the store a hole puncher (thin provisioning). */
  thin?: boolean;
  /** Also give it SEEK_DATA/SEEK_HOLE (needs python3). */
  seek?: boolean;
  /** LUN of the LU in both initiators' maps. */
  lun?: number;
}

/** A temp file of `size` bytes behind one LU, mapped at LUN `lun` (default 0) for INIT_A and INIT_B. */
export async function fixture(opts: FixtureOptions = {}): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'targetd-scsi-'));
  const path = join(dir, 'lu.img');
  await truncate(path, 0).catch(() => undefined);
  const { writeFile } = await import('node:fs/promises');
  await writeFile(path, '');
  await truncate(path, opts.size ?? 4 * 1024 * 1024);
  const ops = opts.thin ? cliFileOps(path, opts.seek ?? false) : {};
  const backing = await FileBackingStore.open(path, { readOnly: opts.readOnly ?? false, ops });
  const lu = new LogicalUnit({ uuid: UUID, ...opts, backing });
  const target = new ScsiTarget({ targetName: 'iqn.2024-01.test:target' });
  const map = new Map([[opts.lun ?? 0, lu]]);
  target.setLunMap(INIT_A, map);
  target.setLunMap(INIT_B, map);
  return {
    dir,
    path,
    backing,
    lu,
    target,
    async cleanup() {
      await backing.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Runs a command and returns the result with Data-In joined; clears the POWER ON unit attention first. */
export async function exec(
  t: ScsiTarget,
  nexus: ItNexus,
  lun: number,
  cdb: number[] | Buffer,
  dataOut?: Buffer,
  expected?: number,
): Promise<ScsiResult & { buf: Buffer }> {
  const c = Buffer.isBuffer(cdb) ? cdb : Buffer.from(cdb);
  const res = await t.execute(nexus, lun, c, dataOut, expected ?? (dataOut ? dataOut.length : 65536));
  return { ...res, buf: Buffer.concat(res.data) };
}

/** Sends TEST UNIT READY until it is GOOD (consumes unit attentions). */
export async function clearUas(t: ScsiTarget, nexus: ItNexus, lun = 0): Promise<void> {
  for (let i = 0; i < 20; i++) {
    const r = await t.execute(nexus, lun, Buffer.alloc(6), undefined, 0);
    if (r.status === 0) return;
  }
  throw new Error('unit attentions never cleared');
}

/** [key, asc, ascq] of fixed-format sense data. */
export function senseOf(r: ScsiResult): [number, number, number] {
  if (!r.sense) throw new Error(`no sense (status ${r.status})`);
  return [r.sense[2]! & 0x0f, r.sense[12]!, r.sense[13]!];
}

export function cdb10(op: number, lba: number, blocks: number, flags = 0): number[] {
  return [
    op,
    flags,
    (lba >>> 24) & 0xff,
    (lba >>> 16) & 0xff,
    (lba >>> 8) & 0xff,
    lba & 0xff,
    0,
    blocks >> 8,
    blocks & 0xff,
    0,
  ];
}

export function cdb16(op: number, lba: number, blocks: number, flags = 0): Buffer {
  const b = Buffer.alloc(16);
  b[0] = op;
  b[1] = flags;
  b.writeBigUInt64BE(BigInt(lba), 2);
  b.writeUInt32BE(blocks, 10);
  return b;
}

export function pattern(bytes: number, seed: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}
