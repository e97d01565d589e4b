import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type DecodedPdu,
  encodeNopOut,
  encodeScsiCommand,
  encodeSnackRequest,
  lunField,
} from '../../../src/iscsi/pdu/index.js';
import { loginPdu } from '../pdu/fixtures.js';
import { type ExecCall, GOOD, offer, read10, setup, TUR, textOf, write10 } from './helpers.js';

type Of<O extends number> = Extract<DecodedPdu, { opcode: O }>;
const is =
  <O extends number>(op: O) =>
  (p: DecodedPdu): p is Of<O> =>
    p.opcode === op;

describe('session: CmdSN window', () => {
  test('ExpCmdSN/MaxCmdSN on every response; the window shrinks with outstanding commands', async () => {
    const { ini, scsi } = await setup({ limits: { queueDepth: 8 } });
    scsi.mode = 'manual';
    for (let i = 0; i < 3; i++) ini.command(TUR);
    await ini.settle();
    assert.equal(scsi.calls.length, 3);
    const itt = ini.nop();
    const nopIn = await ini.expect(is(0x20));
    assert.equal(nopIn.itt, itt);
    assert.equal(nopIn.expCmdSN, 4);
    // Login advertised MaxCmdSN = 1 + 8 − 1 = 8; three commands hold slots, so it has not moved.
    assert.equal(nopIn.maxCmdSN, 8);
    for (const c of scsi.calls) c.resolve(GOOD);
    await ini.settle();
    const rsps = ini.take().filter(is(0x21));
    assert.equal(rsps.length, 3);
    assert.equal(rsps.at(-1)!.maxCmdSN, 4 + 8 - 1, 'slots given back as commands complete');
    ini.conn.destroy('done');
  });

  test('CmdSN above MaxCmdSN or below ExpCmdSN is silently ignored, the next good one runs', async () => {
    const { ini, scsi } = await setup({ limits: { queueDepth: 8 } });
    ini.command(TUR, { cmdSN: 1 + 8 }); // MaxCmdSN is 8
    ini.command(TUR, { cmdSN: 0 }); // below ExpCmdSN 1
    await ini.settle();
    assert.equal(scsi.calls.length, 0);
    assert.equal(ini.take().length, 0, 'no reply at all');
    const itt = ini.command(TUR);
    const rsp = await ini.expect(is(0x21));
    assert.equal(rsp.itt, itt);
    assert.equal(rsp.expCmdSN, 2);
    ini.conn.destroy('done');
  });

  test('commands arriving out of CmdSN order run in order; immediate commands bypass the queue', async () => {
    const { ini, scsi } = await setup();
    const b = ini.command(TUR, { cmdSN: 2 });
    const imm = ini.command(read10(0, 1), { read: true, edtl: 512, immediate: true });
    await ini.settle();
    assert.deepEqual(
      scsi.calls.map((c) => c.opts.taskTag),
      [imm],
      'CmdSN 2 waits for 1; the immediate command runs',
    );
    const a = ini.command(TUR, { cmdSN: 1 });
    await ini.settle();
    assert.deepEqual(
      scsi.calls.map((c) => c.opts.taskTag),
      [imm, a, b],
    );
    const last = ini.take().filter(is(0x21)).at(-1)!;
    assert.equal(last.expCmdSN, 3);
    ini.conn.destroy('done');
  });

  test('completions out of order each carry their own ITT and increasing StatSN', async () => {
    const { ini, scsi } = await setup();
    scsi.mode = 'manual';
    const itts = [ini.command(TUR), ini.command(TUR), ini.command(TUR)];
    await ini.settle();
    scsi.calls[2]!.resolve(GOOD);
    scsi.calls[0]!.resolve(GOOD);
    scsi.calls[1]!.resolve(GOOD);
    await ini.settle();
    const rsps = ini.take().filter(is(0x21));
    assert.deepEqual(
      rsps.map((r) => r.itt),
      [itts[2], itts[0], itts[1]],
    );
    assert.ok(rsps[1]!.statSN === rsps[0]!.statSN + 1 && rsps[2]!.statSN === rsps[1]!.statSN + 1);
    ini.conn.destroy('done');
  });
});

describe('session: NOP, text, logout', () => {
  test('NOP-Out ping is echoed with its ITT and data', async () => {
    const { ini } = await setup();
    const itt = ini.nop(Buffer.from('hello, target'));
    const rsp = await ini.expect(is(0x20));
    assert.equal(rsp.itt, itt);
    assert.equal(rsp.ttt, 0xffffffff);
    assert.equal(rsp.data.toString(), 'hello, target');
    ini.conn.destroy('done');
  });

  test('target NOP-In keepalive: answered pings keep the session, silence drops it', async () => {
    const { ini } = await setup({ limits: { nopIntervalMs: 30, nopTimeoutMs: 60 } });
    const ping = await ini.expect(is(0x20));
    assert.equal(ping.itt, 0xffffffff);
    assert.notEqual(ping.ttt, 0xffffffff);
    ini.send(
      encodeNopOut({
        immediate: true,
        lun: 0n,
        itt: 0xffffffff,
        ttt: ping.ttt,
        cmdSN: ini.cmdSN,
        expStatSN: 0,
      }),
    );
    await ini.settle(40);
    assert.equal(ini.conn.isClosed, false);
    await ini.settle(250);
    assert.equal(ini.conn.isClosed, true, 'no answer to the next pings');
    assert.equal(ini.transport.destroyed, true);
  });

  test('SendTargets in a normal session lists our target with the portal the connection came in on', async () => {
    const { ini } = await setup();
    ini.text([['SendTargets', '']]);
    const rsp = await ini.expect(is(0x24));
    assert.equal(rsp.final, true);
    assert.deepEqual(textOf(rsp), {
      TargetName: ['iqn.2024-01.test:target'],
      TargetAddress: ['192.0.2.100:3260,1'],
    });
    ini.conn.destroy('done');
  });

  test('logout: executing commands answer first, then the Logout Response, then the connection ends', async () => {
    const { ini, scsi } = await setup();
    scsi.mode = 'manual';
    const itt = ini.command(TUR);
    await ini.settle();
    const lo = ini.logout();
    await ini.settle();
    assert.equal(ini.take().filter(is(0x26)).length, 0, 'waits for the executing command');
    scsi.calls[0]!.resolve(GOOD);
    const rsp = await ini.expect(is(0x21));
    assert.equal(rsp.itt, itt);
    const out = await ini.expect(is(0x26));
    assert.equal(out.itt, lo);
    assert.equal(out.response, 0);
    await ini.settle();
    assert.equal(ini.transport.ended, true);
    assert.equal(ini.conn.isClosed, true);
    assert.equal(scsi.closed.length, 1, 'I_T nexus closed');
  });

  test('logout for connection recovery is answered "not supported" and the session stays', async () => {
    const { ini } = await setup();
    ini.logout(2);
    const out = await ini.expect(is(0x26));
    assert.equal(out.response, 2);
    assert.equal(ini.conn.isClosed, false);
    ini.conn.destroy('done');
  });
});

describe('session: task management', () => {
  test('ABORT TASK of an executing command: FUNCTION COMPLETE and no response for the command', async () => {
    const { ini, scsi } = await setup();
    scsi.mode = 'manual';
    const itt = ini.command(write10(0, 8), { write: true, edtl: 4096, data: Buffer.alloc(4096) });
    await ini.settle();
    const t = ini.tmf(1, { ref: itt, refCmdSN: 1 });
    const rsp = await ini.expect(is(0x22));
    assert.equal(rsp.itt, t);
    assert.equal(rsp.response, 0);
    scsi.calls[0]!.resolve(GOOD);
    await ini.settle();
    assert.equal(ini.take().filter(is(0x21)).length, 0);
    ini.conn.destroy('done');
  });

  test('ABORT TASK of a completed command: TASK DOES NOT EXIST', async () => {
    const { ini } = await setup();
    const itt = ini.command(TUR);
    await ini.expect(is(0x21));
    ini.tmf(1, { ref: itt, refCmdSN: 1 });
    const rsp = await ini.expect(is(0x22));
    assert.equal(rsp.response, 1);
    ini.conn.destroy('done');
  });

  test('ABORT TASK of a write waiting for Data-Out ends it in the session; late data is dropped', async () => {
    const { ini, scsi } = await setup({ keys: offer({ InitialR2T: 'Yes', ImmediateData: 'No' }) });
    const itt = ini.command(write10(0, 2), { write: true, edtl: 1024 });
    const r2t = await ini.expect(is(0x31));
    ini.tmf(1, { ref: itt, refCmdSN: 1 });
    const rsp = await ini.expect(is(0x22));
    assert.equal(rsp.response, 0);
    ini.dataOut({ itt, ttt: r2t.ttt, dataSN: 0, offset: 0, data: Buffer.alloc(1024), final: true });
    await ini.settle();
    assert.equal(scsi.calls.length, 0);
    assert.deepEqual(
      ini.take().map((p) => p.opcode),
      [],
      'no Reject, no response',
    );
    ini.conn.destroy('done');
  });

  test('LUN RESET ends collecting commands and forwards to the SCSI layer; TASK REASSIGN unsupported', async () => {
    const { ini, scsi } = await setup({ keys: offer({ InitialR2T: 'Yes', ImmediateData: 'No' }) });
    ini.command(write10(0, 2), { write: true, edtl: 1024 });
    await ini.expect(is(0x31));
    ini.tmf(5);
    let rsp = await ini.expect(is(0x22));
    assert.equal(rsp.response, 0);
    assert.deepEqual(
      scsi.tmfs.map((t) => t.fn),
      [5],
    );
    ini.tmf(8, { ref: 1 });
    rsp = await ini.expect(is(0x22));
    assert.equal(rsp.response, 4);
    ini.conn.destroy('done');
  });
});

describe('session: hostile and malformed input', () => {
  test('a PDU other than Login before login ends the connection', async () => {
    const { ini } = await setup({ login: false });
    ini.command(TUR);
    await ini.settle();
    assert.equal(ini.conn.isClosed, true);
    assert.equal(ini.transport.destroyed, true);
  });

  test('a data segment longer than our MaxRecvDataSegmentLength ends the connection', async () => {
    const { ini } = await setup();
    const h = Buffer.concat(
      encodeScsiCommand({
        final: true,
        write: true,
        lun: lunField(0),
        itt: 1,
        expectedDataTransferLength: 0,
        cmdSN: 1,
        expStatSN: 0,
        cdb: write10(0, 1),
      }),
    );
    h[5] = 0x7f; // DataSegmentLength ≈ 8 MiB, far above 262144
    ini.send(h);
    await ini.settle();
    assert.equal(ini.conn.isClosed, true);
  });

  test('garbage bytes before login end the connection without a reply', async () => {
    const { ini } = await setup({ login: false });
    ini.send(Buffer.alloc(48, 0xff));
    await ini.settle();
    assert.equal(ini.conn.isClosed, true);
  });

  test('a header digest mismatch ends the connection', async () => {
    const { ini } = await setup({ digests: { headerDigest: true } });
    const raw = Buffer.concat(
      encodeNopOut(
        { immediate: true, lun: 0n, itt: 5, ttt: 0xffffffff, cmdSN: 1, expStatSN: 0 },
        { headerDigest: true },
      ),
    );
    raw[48] ^= 1;
    ini.send(raw);
    await ini.settle();
    assert.equal(ini.conn.isClosed, true);
  });

  test('unknown opcode, SNACK and a second Login are answered or dropped as the RFC asks', async () => {
    const { ini } = await setup();
    const bad = Buffer.alloc(48);
    bad[0] = 0x1c; // reserved opcode
    bad.writeUInt32BE(0x77, 16);
    ini.send(bad);
    let rej = await ini.expect(is(0x3f));
    assert.equal(rej.reason, 0x04);
    ini.send(
      encodeSnackRequest({
        type: 0,
        lun: 0n,
        itt: 9,
        ttt: 0xffffffff,
        expStatSN: 0,
        begRun: 0,
        runLength: 0,
      }),
    );
    rej = await ini.expect(is(0x3f));
    assert.equal(rej.reason, 0x04);
    assert.equal(ini.conn.isClosed, false);
    ini.send(loginPdu(Buffer.alloc(0), { isid: Buffer.alloc(6) }));
    await ini.settle();
    assert.equal(ini.conn.isClosed, true);
  });

  test('Data-Out for an unknown task is rejected; a duplicate ITT gets Task In Progress', async () => {
    const { ini, scsi } = await setup();
    ini.dataOut({ itt: 0x5555, dataSN: 0, offset: 0, data: Buffer.alloc(512), final: true });
    let rej = await ini.expect(is(0x3f));
    assert.equal(rej.reason, 0x09);
    scsi.mode = 'manual';
    const itt = ini.command(TUR);
    ini.command(TUR, { itt });
    rej = await ini.expect(is(0x3f));
    assert.equal(rej.reason, 0x07);
    ini.conn.destroy('done');
  });

  test('login timeout drops a connection that never completes its login', async () => {
    const { ini } = await setup({ login: false, limits: { loginTimeoutMs: 30 } });
    await ini.settle(80);
    assert.equal(ini.conn.isClosed, true);
  });

  test('admission: a command that would exceed maxPendingBytes waits for the running one', async () => {
    const { ini, scsi } = await setup({ limits: { maxPendingBytes: 100_000 } });
    scsi.mode = 'manual';
    const a = ini.command(read10(0, 128), { read: true, edtl: 65536 });
    const b = ini.command(read10(0, 128), { read: true, edtl: 65536 });
    await ini.settle();
    assert.deepEqual(
      scsi.calls.map((c) => c.opts.taskTag),
      [a],
      'B is queued, not executing',
    );
    scsi.calls[0]!.resolve(scsi.handler(scsi.calls[0] as ExecCall));
    await ini.settle();
    assert.deepEqual(
      scsi.calls.map((c) => c.opts.taskTag),
      [a, b],
    );
    scsi.calls[1]!.resolve(scsi.handler(scsi.calls[1] as ExecCall));
    await ini.settle();
    assert.equal(ini.take().filter((p) => p.opcode === 0x25 && p.statusPresent).length, 2);
    ini.conn.destroy('done');
  });

  test('backpressure: reading pauses while pending I/O exceeds the bound, resumes when it drains', async () => {
    const { ini, scsi } = await setup({ limits: { maxPendingBytes: 100_000 } });
    scsi.mode = 'manual';
    ini.command(read10(0, 256), { read: true, edtl: 131072 });
    await ini.settle();
    assert.equal(ini.transport.paused, true, 'one command larger than the bound still runs, alone');
    assert.equal(scsi.calls.length, 1);
    scsi.calls[0]!.resolve(scsi.handler(scsi.calls[0] as ExecCall));
    await ini.settle();
    assert.equal(ini.transport.paused, false);
    ini.conn.destroy('done');
  });

  test('ABORT TASK of a command queued for admission ends it without a response', async () => {
    const { ini, scsi } = await setup({ limits: { maxPendingBytes: 100_000 } });
    scsi.mode = 'manual';
    ini.command(read10(0, 128), { read: true, edtl: 65536 });
    const b = ini.command(read10(0, 128), { read: true, edtl: 65536 });
    await ini.settle();
    ini.tmf(1, { ref: b, refCmdSN: 2 });
    const rsp = await ini.expect(is(0x22));
    assert.equal(rsp.response, 0);
    scsi.calls[0]!.resolve(scsi.handler(scsi.calls[0] as ExecCall));
    await ini.settle();
    assert.equal(scsi.calls.length, 1, 'the aborted command never ran');
    assert.equal(ini.take().filter((p) => p.opcode === 0x25 && p.statusPresent).length, 1);
    ini.conn.destroy('done');
  });

  test('socket write backpressure: output waits for drained()', async () => {
    const { ini } = await setup();
    ini.transport.writable = false;
    ini.command(read10(0, 64), { read: true, edtl: 32768 });
    ini.command(TUR);
    await ini.settle();
    const writes = ini.transport.writes;
    ini.command(TUR);
    await ini.settle();
    assert.equal(ini.transport.writes, writes, 'nothing written while congested');
    ini.transport.writable = true;
    ini.conn.drained();
    await ini.settle();
    assert.ok(ini.transport.writes > writes);
    assert.equal(
      ini.take().filter((p) => p.opcode === 0x21 || (p.opcode === 0x25 && p.statusPresent)).length,
      3,
    );
    ini.conn.destroy('done');
  });
});
