import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { PrType } from '../../../src/iscsi/lu/persistent-reservations.js';
import {
  Op,
  Status,
  TaskManagementFunction,
  TaskManagementResponse,
} from '../../../src/iscsi/scsi/constants.js';
import { nexusKey } from '../../../src/iscsi/scsi/target.js';
import type { ItNexus } from '../../../src/iscsi/scsi/types.js';
import {
  cdb10,
  clearUas,
  exec,
  type Fixture,
  fixture,
  INIT_A,
  MemoryPrStore,
  NEXUS_A,
  NEXUS_B,
  senseOf,
} from './helpers.js';

let f: Fixture;
let store: MemoryPrStore;
beforeEach(async () => {
  store = new MemoryPrStore();
  f = await fixture({ prStore: store });
  await clearUas(f.target, NEXUS_A);
  await clearUas(f.target, NEXUS_B);
});
afterEach(async () => {
  await f.cleanup();
});

const BS = 512;

function prout(sa: number, type: number, key: bigint, saKey: bigint, flags = 0, length = 24) {
  const cdb = [Op.PERSISTENT_RESERVE_OUT, sa, type, 0, 0, 0, 0, 0, length, 0];
  const p = Buffer.alloc(24);
  p.writeBigUInt64BE(key, 0);
  p.writeBigUInt64BE(saKey, 8);
  p[20] = flags;
  return { cdb, p };
}

async function out(n: ItNexus, sa: number, type: number, key: bigint, saKey: bigint, flags = 0) {
  const { cdb, p } = prout(sa, type, key, saKey, flags);
  return exec(f.target, n, 0, cdb, p);
}

async function prin(n: ItNexus, sa: number, alloc = 1024) {
  return exec(f.target, n, 0, [Op.PERSISTENT_RESERVE_IN, sa, 0, 0, 0, 0, 0, alloc >> 8, alloc & 0xff, 0]);
}

const REGISTER = 0;
const RESERVE = 1;
const RELEASE = 2;
const CLEAR = 3;
const PREEMPT = 4;
const PREEMPT_AND_ABORT = 5;
const REGISTER_AND_IGNORE = 6;

const read = (n: ItNexus) => exec(f.target, n, 0, cdb10(Op.READ_10, 0, 1));
const write = (n: ItNexus) => exec(f.target, n, 0, cdb10(Op.WRITE_10, 0, 1), Buffer.alloc(BS));

async function keys(n: ItNexus): Promise<bigint[]> {
  const r = await prin(n, 0);
  const len = r.buf.readUInt32BE(4);
  return Array.from({ length: len / 8 }, (_, i) => r.buf.readBigUInt64BE(8 + 8 * i));
}

describe('PERSISTENT RESERVE OUT / IN', () => {
  test('REGISTER, READ KEYS, key changes and unregistering; generation counts', async () => {
    assert.equal((await out(NEXUS_A, REGISTER, 0, 0n, 0xaan)).status, Status.GOOD);
    assert.equal((await out(NEXUS_B, REGISTER, 0, 0n, 0xbbn)).status, Status.GOOD);
    assert.deepEqual(await keys(NEXUS_A), [0xaan, 0xbbn]);
    assert.equal(
      (await out(NEXUS_A, REGISTER, 0, 0x99n, 0xccn)).status,
      Status.RESERVATION_CONFLICT,
      'wrong key',
    );
    assert.equal((await out(NEXUS_A, REGISTER, 0, 0xaan, 0xccn)).status, Status.GOOD);
    assert.equal((await out(NEXUS_B, REGISTER_AND_IGNORE, 0, 0n, 0n)).status, Status.GOOD);
    assert.deepEqual(await keys(NEXUS_B), [0xccn]);
    const gen = (await prin(NEXUS_A, 0)).buf.readUInt32BE(0);
    assert.equal(gen, 4);
    const trunc = await prin(NEXUS_A, 0, 8);
    assert.equal(trunc.buf.length, 8);
    assert.equal(trunc.buf.readUInt32BE(4), 8, 'additional length is the full list');
    assert.equal(
      (await out(NEXUS_B, REGISTER, 0, 5n, 6n)).status,
      Status.RESERVATION_CONFLICT,
      'unregistered, key≠0',
    );
  });

  test('RESERVE and READ RESERVATION; a registrant cannot reserve over the holder', async () => {
    await out(NEXUS_A, REGISTER, 0, 0n, 0xan);
    await out(NEXUS_B, REGISTER, 0, 0n, 0xbn);
    assert.equal((await out(NEXUS_A, RESERVE, PrType.WRITE_EXCLUSIVE, 0xan, 0n)).status, Status.GOOD);
    assert.equal(
      (await out(NEXUS_A, RESERVE, PrType.WRITE_EXCLUSIVE, 0xan, 0n)).status,
      Status.GOOD,
      'again',
    );
    assert.equal(
      (await out(NEXUS_B, RESERVE, PrType.WRITE_EXCLUSIVE, 0xbn, 0n)).status,
      Status.RESERVATION_CONFLICT,
    );
    assert.equal(
      (await out(NEXUS_A, RESERVE, PrType.EXCLUSIVE_ACCESS, 0xan, 0n)).status,
      Status.RESERVATION_CONFLICT,
    );
    const rr = await prin(NEXUS_B, 1);
    assert.equal(rr.buf.readUInt32BE(4), 16);
    assert.equal(rr.buf.readBigUInt64BE(8), 0xan);
    assert.equal(rr.buf[21], PrType.WRITE_EXCLUSIVE);
    assert.deepEqual(senseOf(await out(NEXUS_A, RESERVE, 2, 0xan, 0n)), [5, 0x24, 0]);
    assert.deepEqual(senseOf(await out(NEXUS_A, RESERVE, 0x11, 0xan, 0n)), [5, 0x24, 0], 'scope must be LU');
  });

  test('Write Exclusive: others read but not write; Exclusive Access: neither', async () => {
    await out(NEXUS_A, REGISTER, 0, 0n, 1n);
    await out(NEXUS_A, RESERVE, PrType.WRITE_EXCLUSIVE, 1n, 0n);
    assert.equal((await read(NEXUS_B)).status, Status.GOOD);
    assert.equal((await write(NEXUS_B)).status, Status.RESERVATION_CONFLICT);
    assert.equal((await write(NEXUS_A)).status, Status.GOOD);
    assert.equal((await exec(f.target, NEXUS_B, 0, [0, 0, 0, 0, 0, 0])).status, Status.GOOD, 'TUR allowed');
    await out(NEXUS_A, RELEASE, PrType.WRITE_EXCLUSIVE, 1n, 0n);
    await out(NEXUS_A, RESERVE, PrType.EXCLUSIVE_ACCESS, 1n, 0n);
    assert.equal((await read(NEXUS_B)).status, Status.RESERVATION_CONFLICT);
    assert.equal((await exec(f.target, NEXUS_B, 0, [Op.MODE_SENSE_6, 0, 0x3f, 0, 255, 0])).status, 0x18);
    assert.equal((await exec(f.target, NEXUS_B, 0, [Op.INQUIRY, 0, 0, 0, 36, 0])).status, Status.GOOD);
    assert.equal((await prin(NEXUS_B, 0)).status, Status.GOOD);
  });

  test('registrants-only: registrants get access, the holder unregistering releases with 2A/04', async () => {
    await out(NEXUS_A, REGISTER, 0, 0n, 1n);
    await out(NEXUS_B, REGISTER, 0, 0n, 2n);
    await out(NEXUS_A, RESERVE, PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY, 1n, 0n);
    assert.equal((await write(NEXUS_B)).status, Status.GOOD);
    const stranger = { initiator: INIT_A, isid: 99 };
    await clearUas(f.target, stranger);
    assert.equal((await read(stranger)).status, Status.RESERVATION_CONFLICT);
    await out(NEXUS_A, REGISTER, 0, 1n, 0n);
    assert.equal((await prin(NEXUS_A, 1)).buf.readUInt32BE(4), 0, 'released');
    assert.deepEqual(senseOf(await read(NEXUS_B)), [6, 0x2a, 0x04]);
  });

  test('all-registrants: key reads 0, survives the reserver leaving, any registrant may release', async () => {
    await out(NEXUS_A, REGISTER, 0, 0n, 1n);
    await out(NEXUS_B, REGISTER, 0, 0n, 2n);
    await out(NEXUS_A, RESERVE, PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, 1n, 0n);
    const rr = await prin(NEXUS_A, 1);
    assert.equal(rr.buf.readBigUInt64BE(8), 0n);
    await out(NEXUS_A, REGISTER, 0, 1n, 0n);
    assert.equal((await prin(NEXUS_B, 1)).buf[21], PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS);
    assert.equal(
      (await out(NEXUS_B, RELEASE, PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, 2n, 0n)).status,
      Status.GOOD,
    );
    assert.equal((await prin(NEXUS_B, 1)).buf.readUInt32BE(4), 0);
  });

  test('RELEASE with the wrong type is 05/26/04; RELEASE by a non-holder is a no-op', async () => {
    await out(NEXUS_A, REGISTER, 0, 0n, 1n);
    await out(NEXUS_B, REGISTER, 0, 0n, 2n);
    await out(NEXUS_A, RESERVE, PrType.WRITE_EXCLUSIVE, 1n, 0n);
    assert.deepEqual(senseOf(await out(NEXUS_A, RELEASE, PrType.EXCLUSIVE_ACCESS, 1n, 0n)), [5, 0x26, 0x04]);
    assert.equal((await out(NEXUS_B, RELEASE, PrType.WRITE_EXCLUSIVE, 2n, 0n)).status, Status.GOOD);
    assert.equal((await prin(NEXUS_A, 1)).buf.readUInt32BE(4), 16, 'still reserved');
  });

  test('CLEAR drops everything and tells the others 2A/03', async () => {
    await out(NEXUS_A, REGISTER, 0, 0n, 1n);
    await out(NEXUS_B, REGISTER, 0, 0n, 2n);
    await out(NEXUS_A, RESERVE, PrType.EXCLUSIVE_ACCESS, 1n, 0n);
    assert.equal((await out(NEXUS_B, CLEAR, 0, 2n, 0n)).status, Status.GOOD);
    assert.deepEqual(await keys(NEXUS_B), []);
    assert.deepEqual(senseOf(await read(NEXUS_A)), [6, 0x2a, 0x03]);
  });

  test('PREEMPT takes over the reservation and removes the preempted registration (2A/05)', async () => {
    await out(NEXUS_A, REGISTER, 0, 0n, 1n);
    await out(NEXUS_B, REGISTER, 0, 0n, 2n);
    await out(NEXUS_A, RESERVE, PrType.WRITE_EXCLUSIVE, 1n, 0n);
    assert.equal((await out(NEXUS_B, PREEMPT, PrType.EXCLUSIVE_ACCESS, 2n, 1n)).status, Status.GOOD);
    assert.deepEqual(await keys(NEXUS_B), [2n]);
    const rr = await prin(NEXUS_B, 1);
    assert.deepEqual([rr.buf.readBigUInt64BE(8), rr.buf[21]], [2n, PrType.EXCLUSIVE_ACCESS]);
    assert.deepEqual(senseOf(await read(NEXUS_A)), [6, 0x2a, 0x05]);
    assert.equal((await read(NEXUS_A)).status, Status.RESERVATION_CONFLICT);
    assert.equal(
      (await out(NEXUS_B, PREEMPT, 0, 2n, 0x77n)).status,
      Status.RESERVATION_CONFLICT,
      'no such key',
    );
    assert.deepEqual(
      senseOf(await out(NEXUS_B, PREEMPT, 0, 2n, 2n)),
      [5, 0x24, 0],
      'taking over needs a valid type',
    );
  });

  test('PREEMPT without a reservation removes registrations; key 0 is an invalid field', async () => {
    await out(NEXUS_A, REGISTER, 0, 0n, 1n);
    await out(NEXUS_B, REGISTER, 0, 0n, 2n);
    assert.deepEqual(senseOf(await out(NEXUS_B, PREEMPT, 0, 2n, 0n)), [5, 0x26, 0]);
    assert.equal((await out(NEXUS_B, PREEMPT_AND_ABORT, 0, 2n, 1n)).status, Status.GOOD);
    assert.deepEqual(await keys(NEXUS_B), [2n]);
    assert.deepEqual(senseOf(await prin(NEXUS_A, 0)), [6, 0x2a, 0x05]);
  });

  test('READ FULL STATUS and REPORT CAPABILITIES', async () => {
    await out(NEXUS_A, REGISTER, 0, 0n, 1n);
    await out(NEXUS_A, RESERVE, PrType.WRITE_EXCLUSIVE, 1n, 0n);
    const fs = await prin(NEXUS_A, 3);
    assert.equal(fs.buf.readBigUInt64BE(8), 1n);
    assert.equal(fs.buf[8 + 12], 0x03, 'ALL_TG_PT, R_HOLDER');
    assert.equal(fs.buf[8 + 13], PrType.WRITE_EXCLUSIVE);
    const tidLen = fs.buf.readUInt32BE(8 + 20);
    const tid = fs.buf.subarray(8 + 24, 8 + 24 + tidLen);
    assert.equal(tid[0], 0x45);
    assert.equal(tid.subarray(4).toString().replace(/\0+$/, ''), nexusKey(NEXUS_A));
    const caps = await prin(NEXUS_A, 2);
    assert.deepEqual([...caps.buf], [0, 8, 0x15, 0x80, 0xea, 0x01, 0, 0]);
    assert.deepEqual(senseOf(await prin(NEXUS_A, 4)), [5, 0x24, 0]);
  });

  test('parameter list length must be 24; APTPL persists through the PrStore', async () => {
    const { cdb, p } = prout(REGISTER, 0, 0n, 5n, 0, 20);
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_A, 0, cdb, p)), [5, 0x1a, 0]);
    assert.equal((await out(NEXUS_A, REGISTER, 0, 0n, 5n, 0x01)).status, Status.GOOD);
    await out(NEXUS_A, RESERVE, PrType.EXCLUSIVE_ACCESS, 5n, 0n);
    assert.equal(store.state?.aptpl, true);
    assert.deepEqual(store.state?.reservation, { holder: nexusKey(NEXUS_A), type: PrType.EXCLUSIVE_ACCESS });
    const g = await fixture({ prStore: store });
    try {
      await clearUas(g.target, NEXUS_B);
      assert.equal(
        (await exec(g.target, NEXUS_B, 0, cdb10(Op.READ_10, 0, 1))).status,
        Status.RESERVATION_CONFLICT,
      );
      assert.equal((await exec(g.target, NEXUS_A, 0, [0, 0, 0, 0, 0, 0])).status, Status.CHECK_CONDITION);
      assert.equal((await exec(g.target, NEXUS_A, 0, cdb10(Op.READ_10, 0, 1))).status, Status.GOOD);
      assert.equal((await prin(NEXUS_A, 2)).buf[3], 0x81, 'PTPL_A');
    } finally {
      await g.cleanup();
    }
  });

  test('APTPL without a store is an invalid parameter', async () => {
    const g = await fixture();
    try {
      await clearUas(g.target, NEXUS_A);
      const { cdb, p } = prout(REGISTER, 0, 0n, 5n, 0x01);
      assert.deepEqual(senseOf(await exec(g.target, NEXUS_A, 0, cdb, p)), [5, 0x26, 0]);
    } finally {
      await g.cleanup();
    }
  });
});

describe('RESERVE / RELEASE (SCSI-2)', () => {
  const reserve6 = [Op.RESERVE_6, 0, 0, 0, 0, 0];
  const release6 = [Op.RELEASE_6, 0, 0, 0, 0, 0];

  test('the holder has the LU to itself; RELEASE by others is a no-op; logout releases', async () => {
    assert.equal((await exec(f.target, NEXUS_A, 0, reserve6)).status, Status.GOOD);
    assert.equal((await exec(f.target, NEXUS_A, 0, reserve6)).status, Status.GOOD);
    assert.equal((await exec(f.target, NEXUS_B, 0, reserve6)).status, Status.RESERVATION_CONFLICT);
    assert.equal((await exec(f.target, NEXUS_B, 0, release6)).status, Status.GOOD);
    assert.equal((await read(NEXUS_B)).status, Status.RESERVATION_CONFLICT);
    assert.equal((await exec(f.target, NEXUS_B, 0, [0, 0, 0, 0, 0, 0])).status, Status.RESERVATION_CONFLICT);
    assert.equal((await exec(f.target, NEXUS_B, 0, [Op.INQUIRY, 0, 0, 0, 36, 0])).status, Status.GOOD);
    assert.equal((await out(NEXUS_B, REGISTER, 0, 0n, 1n)).status, Status.RESERVATION_CONFLICT);
    assert.equal((await read(NEXUS_A)).status, Status.GOOD);
    f.target.nexusClosed(NEXUS_A);
    assert.equal((await exec(f.target, NEXUS_B, 0, reserve6)).status, Status.GOOD);
    assert.equal(
      (await exec(f.target, NEXUS_B, 0, [Op.RELEASE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0])).status,
      Status.GOOD,
    );
    assert.equal(f.lu.scsi2Holder, null);
  });

  test('RESERVE conflicts with persistent reservations; third-party RESERVE(10) is unsupported', async () => {
    await out(NEXUS_A, REGISTER, 0, 0n, 1n);
    assert.equal((await exec(f.target, NEXUS_B, 0, reserve6)).status, Status.RESERVATION_CONFLICT);
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, [Op.RESERVE_10, 0x10, 0, 0, 0, 0, 0, 0, 0, 0])),
      [5, 0x24, 0],
    );
  });

  test('LUN RESET releases it and reports 29/03 to every nexus', async () => {
    await exec(f.target, NEXUS_A, 0, reserve6);
    const resp = await f.target.taskManagement(NEXUS_A, TaskManagementFunction.LOGICAL_UNIT_RESET, 0);
    assert.equal(resp, TaskManagementResponse.FUNCTION_COMPLETE);
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_B, 0, reserve6)), [6, 0x29, 0x03]);
    assert.equal((await exec(f.target, NEXUS_B, 0, reserve6)).status, Status.GOOD);
    assert.deepEqual(senseOf(await read(NEXUS_A)), [6, 0x29, 0x03]);
    assert.equal(
      await f.target.taskManagement(NEXUS_A, TaskManagementFunction.LOGICAL_UNIT_RESET, 9),
      TaskManagementResponse.LUN_DOES_NOT_EXIST,
    );
  });
});

describe('task management', () => {
  test('ABORT TASK marks the command aborted and answers once it has finished', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const orig = f.backing.write.bind(f.backing);
    f.backing.write = async (off, data) => {
      await gate;
      return orig(off, data);
    };
    const blocker = f.target.execute(
      NEXUS_A,
      0,
      Buffer.from(cdb10(Op.WRITE_10, 0, 1)),
      Buffer.alloc(BS, 1),
      BS,
      {
        taskTag: 42,
      },
    );
    await new Promise((r) => setImmediate(r));
    let answered = false;
    const abort = f.target.taskManagement(NEXUS_A, TaskManagementFunction.ABORT_TASK, 0, 42).then((v) => {
      answered = true;
      return v;
    });
    await new Promise((r) => setImmediate(r));
    assert.equal(answered, false, 'waits for the in-flight write');
    assert.equal(f.target.busy(f.lu), true);
    release();
    assert.equal(await abort, TaskManagementResponse.FUNCTION_COMPLETE);
    assert.equal((await blocker).aborted, true);
    assert.equal(f.target.busy(f.lu), false);
    assert.equal(
      await f.target.taskManagement(NEXUS_A, TaskManagementFunction.ABORT_TASK, 0, 42),
      TaskManagementResponse.TASK_DOES_NOT_EXIST,
    );
  });

  test('an aborted command queued behind a range lock never writes', async () => {
    const release = await f.lu.locks.acquire(0, 1);
    const queued = f.target.execute(
      NEXUS_A,
      0,
      Buffer.from(cdb10(Op.WRITE_10, 0, 1)),
      Buffer.alloc(BS, 9),
      BS,
      {
        taskTag: 7,
      },
    );
    await new Promise((r) => setImmediate(r));
    const abort = f.target.taskManagement(NEXUS_A, TaskManagementFunction.ABORT_TASK_SET, 0);
    release();
    assert.equal(await abort, TaskManagementResponse.FUNCTION_COMPLETE);
    assert.equal((await queued).aborted, true);
    const back = await read(NEXUS_A);
    assert.ok(back.buf.every((x) => x === 0));
  });

  test('CLEAR TASK SET and target resets complete; unknown functions are refused', async () => {
    assert.equal(
      await f.target.taskManagement(NEXUS_A, TaskManagementFunction.CLEAR_TASK_SET, 0),
      TaskManagementResponse.FUNCTION_COMPLETE,
    );
    assert.equal(
      await f.target.taskManagement(NEXUS_A, TaskManagementFunction.TARGET_WARM_RESET, 0),
      TaskManagementResponse.FUNCTION_COMPLETE,
    );
    assert.deepEqual(senseOf(await read(NEXUS_B)), [6, 0x29, 0x02]);
    assert.equal(
      await f.target.taskManagement(NEXUS_A, TaskManagementFunction.TASK_REASSIGN, 0),
      TaskManagementResponse.TASK_REASSIGNMENT_NOT_SUPPORTED,
    );
    assert.equal(
      await f.target.taskManagement(NEXUS_A, TaskManagementFunction.CLEAR_ACA, 0),
      TaskManagementResponse.FUNCTION_NOT_SUPPORTED,
    );
  });

  test('I/O errors from the backing store become MEDIUM ERROR, never a wrong success', async () => {
    f.backing.read = async () => {
      throw Object.assign(new Error('EIO'), { code: 'EIO' });
    };
    assert.deepEqual(senseOf(await read(NEXUS_A)), [3, 0x11, 0]);
    f.backing.write = async () => {
      throw new Error('EIO');
    };
    assert.deepEqual(senseOf(await write(NEXUS_A)), [3, 0x0c, 0]);
  });
});
