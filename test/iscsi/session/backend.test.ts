import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BuiltinExportBackend } from '../../../src/exports/builtin/index.js';
import type { DesiredExports, LunMapping } from '../../../src/exports/types.js';
import type { ItNexus } from '../../../src/iscsi/scsi/index.js';
import { silentLogger } from '../../../src/log.js';

const TARGET = 'iqn.2024-01.test:backend';
const A = 'iqn.2024-01.test:a';
const B = 'iqn.2024-01.test:b';
const NEXUS_A: ItNexus = { initiator: A, isid: '400000000001' };
const NEXUS_B: ItNexus = { initiator: B, isid: '400000000002' };

let dir: string;

async function volume(name: string, size: number): Promise<string> {
  const path = join(dir, `${name}.vol`);
  await writeFile(path, '');
  await truncate(path, size);
  return path;
}

function lun(n: number, vol: string, uuid: string, path: string, size: number): LunMapping {
  return { lun: n, pool: 'p', vol, uuid, size, path };
}

function backend(): BuiltinExportBackend {
  return new BuiltinExportBackend({
    targetName: TARGET,
    portalAddresses: ['127.0.0.1'],
    port: 0,
    stateDir: join(dir, 'state'),
    logger: silentLogger,
  });
}

/** Runs a command until it stops reporting unit attentions; returns the last result's sense triple. */
async function senseAfter(b: BuiltinExportBackend, nexus: ItNexus, n: number): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < 6; i++) {
    const r = await b.scsi.execute(nexus, n, Buffer.alloc(6), undefined, 0);
    if (r.status === 0) return seen;
    seen.push(r.sense!.subarray(12, 14).toString('hex'));
  }
  return seen;
}

describe('builtin export backend', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'targetd-builtin-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('one LU per volume shared by initiators; ACL from the desired state; LUN maps per initiator', async () => {
    const b = backend();
    const p1 = await volume('v1', 1 << 20);
    const p2 = await volume('v2', 2 << 20);
    const desired: DesiredExports = {
      targetName: TARGET,
      initiators: [
        {
          iqn: A,
          luns: [lun(0, 'v1', 'aaaa-1', p1, 1 << 20), lun(5, 'v2', 'bbbb-2', p2, 2 << 20)],
          auth: null,
        },
        { iqn: B, luns: [lun(1, 'v1', 'aaaa-1', p1, 1 << 20)], auth: null },
        {
          iqn: 'iqn.2024-01.test:chap-only',
          luns: [],
          auth: { in_user: 'u', in_pass: 'secretsecret', out_user: null, out_pass: null },
        },
      ],
    };
    await b.apply(desired);
    assert.deepEqual([...b.scsi.lunMap(A).keys()], [0, 5]);
    assert.deepEqual([...b.scsi.lunMap(B).keys()], [1]);
    assert.equal(b.scsi.lunMap(A).get(0), b.scsi.lunMap(B).get(1), 'the LU is shared');
    assert.equal(b.target.lookupInitiator(A.toUpperCase())?.allowed, true);
    assert.equal(b.target.lookupInitiator('iqn.2024-01.test:chap-only')?.allowed, false);
    assert.equal(b.target.lookupInitiator('iqn.2024-01.test:stranger'), undefined);
    assert.deepEqual(b.target.discoveryAuth('iqn.2024-01.test:chap-only')?.in_user, 'u');
    // Applying the same state again changes nothing (no new unit attention beyond POWER ON).
    await b.apply(desired);
    assert.deepEqual(await senseAfter(b, NEXUS_B, 1), ['2900']);
    await b.stop();
  });

  test('map change, growth and re-created volumes: the right unit attentions and a new LU', async () => {
    const b = backend();
    const p1 = await volume('g1', 1 << 20);
    await b.apply({
      targetName: TARGET,
      initiators: [{ iqn: A, luns: [lun(0, 'g1', 'u-1', p1, 1 << 20)], auth: null }],
    });
    assert.deepEqual(await senseAfter(b, NEXUS_A, 0), ['2900']);
    const first = b.scsi.lunMap(A).get(0)!;
    await truncate(p1, 2 << 20);
    await b.apply({
      targetName: TARGET,
      initiators: [{ iqn: A, luns: [lun(0, 'g1', 'u-1', p1, 2 << 20)], auth: null }],
    });
    assert.equal(first.backing.size(), 2 << 20);
    assert.deepEqual(await senseAfter(b, NEXUS_A, 0), ['2a09'], 'CAPACITY DATA HAS CHANGED');
    const p2 = await volume('g2', 1 << 20);
    await b.apply({
      targetName: TARGET,
      initiators: [
        { iqn: A, luns: [lun(0, 'g1', 'u-1', p1, 2 << 20), lun(1, 'g2', 'u-2', p2, 1 << 20)], auth: null },
      ],
    });
    assert.deepEqual(await senseAfter(b, NEXUS_A, 0), ['3f0e'], 'REPORTED LUNS DATA HAS CHANGED');
    // Same name, new UUID: a different LU.
    await b.apply({
      targetName: TARGET,
      initiators: [{ iqn: A, luns: [lun(0, 'g1', 'u-9', p1, 2 << 20)], auth: null }],
    });
    assert.notEqual(b.scsi.lunMap(A).get(0), first);
    await b.stop();
  });

  test('unexport closes the file at once when idle; with I/O in flight isBusy() holds until it ends', async () => {
    const b = backend();
    const p = await volume('busy', 1 << 20);
    const desired = (luns: LunMapping[]): DesiredExports => ({
      targetName: TARGET,
      initiators: [{ iqn: A, luns, auth: null }],
    });
    await b.apply(desired([lun(0, 'busy', 'u-b', p, 1 << 20)]));
    const lu = b.scsi.lunMap(A).get(0)!;
    await senseAfter(b, NEXUS_A, 0);
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const realRead = lu.backing.read.bind(lu.backing);
    lu.backing.read = async (o, l) => {
      await gate;
      return realRead(o, l);
    };
    const read = b.scsi.execute(NEXUS_A, 0, Buffer.from([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), undefined, 512);
    await b.apply(desired([]));
    assert.equal(b.isBusy('p', 'busy'), true);
    release();
    assert.equal((await read).status, 0);
    for (let i = 0; i < 50 && b.isBusy('p', 'busy'); i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(b.isBusy('p', 'busy'), false);
    await assert.rejects(lu.backing.read(0, 512), /closed/);
    await b.stop();
  });

  test('APTPL reservations are written under <state_dir>/builtin and survive a new backend', async () => {
    const p = await volume('pr', 1 << 20);
    const desired: DesiredExports = {
      targetName: TARGET,
      initiators: [
        { iqn: A, luns: [lun(0, 'pr', 'c0ffee00-0000-4000-8000-000000000001', p, 1 << 20)], auth: null },
      ],
    };
    const prout = (sa: number, param: Buffer) => Buffer.from([0x5f, sa, 0, 0, 0, 0, 0, 0, param.length, 0]);
    const register = Buffer.alloc(24);
    register.writeBigUInt64BE(0x1234n, 8);
    register[20] = 1; // APTPL
    let b = backend();
    await b.apply(desired);
    await senseAfter(b, NEXUS_A, 0);
    const r = await b.scsi.execute(NEXUS_A, 0, prout(0, register), register, 0);
    assert.equal(r.status, 0);
    const files = await readdir(join(dir, 'state', 'builtin'));
    assert.deepEqual(files, ['pr-c0ffee00-0000-4000-8000-000000000001.json']);
    assert.match(await readFile(join(dir, 'state', 'builtin', files[0]!), 'utf8'), /0000000000001234/);
    await b.stop();
    b = backend();
    await b.apply(desired);
    await senseAfter(b, NEXUS_A, 0);
    const keys = await b.scsi.execute(
      NEXUS_A,
      0,
      Buffer.from([0x5e, 0, 0, 0, 0, 0, 0, 0, 64, 0]),
      undefined,
      64,
    );
    const data = Buffer.concat(keys.data);
    assert.equal(data.readUInt32BE(4), 8, 'one key registered');
    assert.equal(data.readBigUInt64BE(8), 0x1234n);
    await b.stop();
    // Destroying the volume forgets its reservations (they were left behind before).
    await b.volumeDestroyed('c0ffee00-0000-4000-8000-000000000001');
    assert.deepEqual(await readdir(join(dir, 'state', 'builtin')), []);
    await b.volumeDestroyed('c0ffee00-0000-4000-8000-000000000001'); // nothing left: no error
  });
});
