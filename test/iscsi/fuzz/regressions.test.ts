/**
 * Reproducers of what the fuzzers found, kept as regression tests (each failed before its fix).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  encodeText,
  LoginHandler,
  type LoginPolicy,
  type LoginStep,
} from '../../../src/iscsi/login/index.js';
import { LogicalUnit } from '../../../src/iscsi/lu/index.js';
import { encodeNopOut, LoginStatus, PduDecoder } from '../../../src/iscsi/pdu/index.js';
import { ScsiTarget, TaskManagementFunction, TaskManagementResponse } from '../../../src/iscsi/scsi/index.js';
import { GOOD, read10, setup, TUR } from '../session/helpers.js';
import { MemoryBackingStore } from './harness.js';

const TARGET = 'iqn.2024-01.test.fuzz:target';
const INIT = 'iqn.2024-01.test.fuzz:open';

function policy(): LoginPolicy {
  return {
    targetName: TARGET,
    portalGroupTag: 1,
    lookupInitiator: (iqn) => (iqn === INIT ? { allowed: true, auth: null } : undefined),
    discoveryAuth: () => null,
    allocateTsih: () => 1,
  };
}

describe('fuzz regressions', () => {
  // Found by the login fuzzer: TextAssembler's TextFormatError escaped the handler's LoginFailure mapping and
  // was reported as 0x0300 Target Error ("internal error: text longer than … bytes"), which invites a retry.
  test('login text continued beyond the reassembly bound fails with Initiator Error, not Target Error', () => {
    const h = new LoginHandler(policy(), { maxTextLength: 4096 });
    const req = (data: Buffer, cont: boolean) => ({
      opcode: 0x03 as const,
      immediate: true,
      transit: false,
      continue: cont,
      csg: 1,
      nsg: 3,
      versionMax: 0,
      versionMin: 0,
      isid: Buffer.from('400000000001', 'hex'),
      tsih: 0,
      itt: 1,
      cid: 1,
      cmdSN: 1,
      expStatSN: 0,
      data,
    });
    const first = h.handle(req(encodeText([['InitiatorName', INIT]]), true));
    assert.equal(first.status, 'continue');
    let step: LoginStep = first;
    for (let i = 0; i < 3 && step.status === 'continue'; i++)
      step = h.handle(req(Buffer.alloc(2000, 0x41), true));
    assert.equal(step.status, 'failed');
    assert.equal(step.status === 'failed' && step.loginStatus, LoginStatus.InitiatorError);
    assert.equal(step.response.statusClass, 2);
    assert.equal(step.response.statusDetail, 0);
  });

  // Found by the connection fuzzer: TARGET WARM/COLD RESET from one initiator reset every LU of the target,
  // including those only other initiators may reach (their SCSI-2 reservations, software write protect and
  // caching mode were dropped and their commands aborted). RFC 7143 §11.5.1 limits it to the LUs the issuing
  // initiator knows; LUN masking must hold for task management too.
  for (const fn of [TaskManagementFunction.TARGET_WARM_RESET, TaskManagementFunction.TARGET_COLD_RESET]) {
    test(`TMF ${fn === 6 ? 'TARGET WARM RESET' : 'TARGET COLD RESET'} leaves LUs the issuer cannot reach alone`, async () => {
      const scsi = new ScsiTarget({ targetName: TARGET });
      const mine = new LogicalUnit({
        backing: new MemoryBackingStore(1 << 20),
        uuid: '6a1f0000-0000-4000-8000-00000000000a',
      });
      const theirs = new LogicalUnit({
        backing: new MemoryBackingStore(1 << 20),
        uuid: '6a1f0000-0000-4000-8000-00000000000b',
      });
      const a = { initiator: INIT, isid: '400000000001' };
      const b = { initiator: 'iqn.2024-01.test.fuzz:other', isid: '400000000002' };
      scsi.setLunMap(a.initiator, new Map([[0, mine]]));
      scsi.setLunMap(b.initiator, new Map([[0, theirs]]));
      scsi.nexusOpened(a);
      scsi.nexusOpened(b);
      // B: clear POWER ON, then hold a SCSI-2 reservation, write protect and write-through caching.
      await scsi.execute(b, 0, Buffer.alloc(6));
      const reserve = await scsi.execute(b, 0, Buffer.from([0x16, 0, 0, 0, 0, 0]));
      assert.equal(reserve.status, 0);
      theirs.softwareWriteProtect = true;
      theirs.writeCacheEnabled = false;
      const holder = theirs.scsi2Holder;
      assert.ok(holder);

      assert.equal(await scsi.taskManagement(a, fn, 0), TaskManagementResponse.FUNCTION_COMPLETE);

      assert.equal(theirs.scsi2Holder, holder, "B's reservation survives A's reset");
      assert.equal(theirs.softwareWriteProtect, true);
      assert.equal(theirs.writeCacheEnabled, false);
      const tur = await scsi.execute(b, 0, Buffer.alloc(6));
      assert.equal(tur.status, 0, 'B gets no unit attention from a reset of an LU it does not share');
      // A's own LU was reset: A sees the reset's unit attention.
      await scsi.execute(a, 0, Buffer.alloc(6)); // POWER ON
      mine.softwareWriteProtect = true;
      await scsi.taskManagement(a, fn, 0);
      assert.equal(mine.softwareWriteProtect, false, "A's own LU is reset");
      const ua = await scsi.execute(a, 0, Buffer.alloc(6));
      assert.equal(ua.status, 2);
      assert.equal(ua.sense?.[12], 0x29);
    });
  }

  // Found with the slow-sender episodes (a 256 KiB NOP-Out written one byte per TCP segment): the decoder kept
  // every received chunk as its own Buffer, over 100 bytes of overhead per byte held, so one trickled PDU cost
  // the daemon about 33 MiB of RSS. Tiny chunks are now coalesced while buffered.
  test('a PDU trickled one byte at a time is held compactly and still decodes', () => {
    const dec = new PduDecoder({ maxDataSegmentLength: 262144 });
    const data = Buffer.alloc(262144 - 48, 7);
    const pdu = Buffer.concat(
      encodeNopOut({ immediate: true, lun: 0n, itt: 5, ttt: 0xffffffff, cmdSN: 1, expStatSN: 0, data }),
    );
    for (let i = 0; i < pdu.length - 1; i++) dec.push(pdu.subarray(i, i + 1));
    assert.equal(dec.next(), undefined);
    const chunks = (dec as unknown as { chunks: Buffer[] }).chunks.length;
    assert.ok(chunks <= Math.ceil(pdu.length / 512) + 1, `${chunks} chunks held for ${pdu.length - 1} bytes`);
    dec.push(pdu.subarray(pdu.length - 1));
    const out = dec.next();
    assert.equal(out?.opcode, 0x00);
    assert.ok(out?.data.equals(data));
    assert.equal(dec.bufferedBytes, 0);
  });

  // Found by the numbering checks of the connection fuzzer (responses with MaxCmdSN < ExpCmdSN − 1): a command
  // whose CmdSN equalled ExpCmdSN was run even when the window was closed (every slot taken, MaxCmdSN =
  // ExpCmdSN − 1), so the CmdSN window did not bound a session's queue and ExpCmdSN ran past MaxCmdSN.
  // RFC 7143 §4.2.2.1: a non-immediate command outside [ExpCmdSN, MaxCmdSN] is silently ignored.
  test('a command arriving while the CmdSN window is closed is ignored, and runs once resent in the window', async () => {
    const { ini, scsi } = await setup({ limits: { queueDepth: 4 } });
    scsi.mode = 'manual';
    for (let i = 0; i < 4; i++) ini.command(TUR); // CmdSN 1..4: every slot of the window (MaxCmdSN 4)
    await ini.settle();
    assert.equal(scsi.calls.length, 4);
    const itt = ini.command(read10(0, 1), { read: true, edtl: 512 }); // CmdSN 5 = ExpCmdSN > MaxCmdSN
    await ini.settle();
    assert.equal(scsi.calls.length, 4, 'nothing beyond MaxCmdSN runs');
    ini.nop();
    const nopIn = await ini.expect((p) => p.opcode === 0x20);
    assert.ok(nopIn.opcode === 0x20);
    assert.equal(nopIn.expCmdSN, 5);
    assert.equal(nopIn.maxCmdSN, 4, 'the window is still closed');
    scsi.calls[0]!.resolve(GOOD);
    const rsp = await ini.expect((p) => p.opcode === 0x21);
    assert.ok(rsp.opcode === 0x21);
    assert.equal(rsp.maxCmdSN, 5, 'a slot came free');
    ini.command(read10(0, 1), { read: true, edtl: 512, cmdSN: 5, itt });
    await ini.settle();
    assert.equal(scsi.calls.length, 5, 'resent inside the window, it runs');
    for (const c of scsi.calls) if (!c.done) c.resolve(GOOD);
    ini.conn.destroy('done');
  });
});
