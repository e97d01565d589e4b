import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { KeyValue } from '../../../src/iscsi/login/index.js';
import type { DecodedPdu } from '../../../src/iscsi/pdu/index.js';
import { IscsiTarget, type SessionLimits } from '../../../src/iscsi/session/index.js';
import {
  type ExecCall,
  INIT,
  offer,
  pattern,
  read10,
  ScriptedScsi,
  TARGET,
  TestInitiator,
  write10,
} from './helpers.js';

type Of<O extends number> = Extract<DecodedPdu, { opcode: O }>;
const isR2T = (p: DecodedPdu): p is Of<0x31> => p.opcode === 0x31;
const isResponse = (p: DecodedPdu): p is Of<0x21> => p.opcode === 0x21;
const isTmfResponse = (p: DecodedPdu): p is Of<0x22> => p.opcode === 0x22;
const isLogoutResponse = (p: DecodedPdu): p is Of<0x26> => p.opcode === 0x26;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Bytes per receive() call: a socket hands over data in chunks, and read backpressure acts between them. */
const CHUNK = 64 * 1024;

/**
 * An initiator behind a socket: what it sends is delivered a chunk per event-loop turn, and nothing is
 * delivered while the target has paused reading, so a pause really holds the initiator back.
 */
class PacedInitiator extends TestInitiator {
  private backlog: Buffer[] = [];
  private pumping = false;
  /** Times the target paused reading. */
  pauses = 0;

  constructor(target: IscsiTarget) {
    super(target);
    const t = this.transport;
    t.pause = () => {
      if (!t.paused) this.pauses++;
      t.paused = true;
    };
    t.resume = () => {
      t.paused = false;
      this.schedule();
    };
  }

  override send(...pdus: (Buffer | Buffer[])[]): void {
    this.backlog.push(Buffer.concat(pdus.flatMap((p) => (Buffer.isBuffer(p) ? [p] : p))));
    this.schedule();
  }

  /** PDUs not yet delivered. */
  get backlogged(): number {
    return this.backlog.length;
  }

  private schedule(): void {
    if (this.pumping) return;
    this.pumping = true;
    setImmediate(() => {
      this.pumping = false;
      let bytes = 0;
      while (this.backlog.length > 0 && bytes < CHUNK && !this.transport.paused && !this.conn.isClosed) {
        const b = this.backlog.shift()!;
        bytes += b.length;
        this.conn.receive(b);
      }
      if (this.backlog.length > 0 && !this.transport.paused && !this.conn.isClosed) this.schedule();
    });
  }
}

interface World {
  target: IscsiTarget;
  scsi: ScriptedScsi;
  /** Highest target-wide total seen after any change. */
  peak: () => number;
}

function world(limits: Partial<SessionLimits>): World {
  const scsi = new ScriptedScsi();
  const target = new IscsiTarget({ targetName: TARGET, scsi, limits: { nopIntervalMs: 0, ...limits } });
  target.setAccess([[INIT, { allowed: true, auth: null }]]);
  let peak = 0;
  const charge = target.charge.bind(target);
  target.charge = (delta: number) => {
    charge(delta);
    if (target.pendingBytes > peak) peak = target.pendingBytes;
    assert.ok(target.pendingBytes >= 0, `target-wide total went negative: ${target.pendingBytes}`);
  };
  return { target, scsi, peak: () => peak };
}

async function connect(
  w: World,
  n: number,
  keys: KeyValue[],
  Kind: typeof TestInitiator = PacedInitiator,
): Promise<TestInitiator> {
  const ini = new Kind(w.target);
  const rsp = await ini.login({ isid: Buffer.from([0x40, 0, 0, 0, 0x10, n]), keys });
  assert.ok(rsp.opcode === 0x23 && rsp.statusClass === 0, 'login');
  return ini;
}

/** Target-wide total once everything settled (executing commands answered, output flushed). */
async function settledTotal(w: World): Promise<number> {
  for (let i = 0; i < 100 && w.target.pendingBytes !== 0; i++) await sleep(2);
  return w.target.pendingBytes;
}

interface WriteCmd {
  lba: number;
  data: Buffer;
}

/**
 * Issues every write at once (immediate data and the unsolicited burst as negotiated), answers R2Ts with
 * Data-Out of `segment` bytes, and returns once every command has its response.
 */
async function writeAll(
  ini: TestInitiator,
  cmds: WriteCmd[],
  o: { immediate: number; firstBurst: number; segment: number },
): Promise<void> {
  const byItt = new Map<number, WriteCmd>();
  for (const c of cmds) {
    const imm = Math.min(o.immediate, c.data.length);
    const unsolicited = Math.min(o.firstBurst, c.data.length);
    const itt = ini.command(write10(c.lba, c.data.length / 512), {
      write: true,
      edtl: c.data.length,
      ...(imm > 0 ? { data: c.data.subarray(0, imm) } : {}),
      final: unsolicited <= imm,
    });
    byItt.set(itt, c);
    let sn = 0;
    for (let off = imm; off < unsolicited; off += o.segment) {
      const end = Math.min(unsolicited, off + o.segment);
      ini.dataOut({
        itt,
        dataSN: sn++,
        offset: off,
        data: c.data.subarray(off, end),
        final: end === unsolicited,
      });
    }
  }
  const done = new Set<number>();
  const deadline = Date.now() + 20_000;
  while (done.size < cmds.length) {
    assert.ok(Date.now() < deadline, `stalled: ${done.size}/${cmds.length} writes done`);
    for (const p of ini.take()) {
      if (isR2T(p)) {
        const c = byItt.get(p.itt)!;
        const end = p.bufferOffset + p.desiredDataTransferLength;
        let sn = 0;
        for (let off = p.bufferOffset; off < end; off += o.segment) {
          const e = Math.min(end, off + o.segment);
          ini.dataOut({
            itt: p.itt,
            ttt: p.ttt,
            dataSN: sn++,
            offset: off,
            data: c.data.subarray(off, e),
            final: e === end,
          });
        }
      } else if (isResponse(p)) {
        assert.equal(p.status, 0, `write ${p.itt} failed`);
        done.add(p.itt);
      }
    }
    await sleep(1);
  }
}

/** Answers executing commands a little later, a few at a time, so that they overlap. */
function autoComplete(scsi: ScriptedScsi): () => void {
  scsi.mode = 'manual';
  const timer = setInterval(() => {
    for (const c of scsi.calls) if (!c.done) c.resolve(scsi.handler(c));
  }, 3);
  return () => clearInterval(timer);
}

describe('session: target-wide memory budget', () => {
  for (const mode of ['solicited', 'immediate'] as const) {
    test(`several connections writing big bursts (${mode} data) stay within the budget and complete`, async () => {
      const budget = 512 * 1024;
      const maxBurst = 65536;
      const firstBurst = 65536;
      const conns = 4;
      const perConn = 8;
      const edtl = 256 * 1024;
      const w = world({ maxTargetPendingBytes: budget });
      const keys =
        mode === 'solicited'
          ? offer({
              InitialR2T: 'Yes',
              ImmediateData: 'No',
              MaxBurstLength: String(maxBurst),
              FirstBurstLength: String(firstBurst),
            })
          : offer({
              InitialR2T: 'No',
              ImmediateData: 'Yes',
              MaxBurstLength: String(maxBurst),
              FirstBurstLength: String(firstBurst),
            });
      const inis: TestInitiator[] = [];
      for (let i = 0; i < conns; i++) inis.push(await connect(w, i, keys));
      const stop = autoComplete(w.scsi);
      const expected = new Map<number, Buffer>();
      try {
        await Promise.all(
          inis.map((ini, i) => {
            const cmds: WriteCmd[] = [];
            for (let k = 0; k < perConn; k++) {
              const lba = (i * perConn + k) * (edtl / 512);
              const data = pattern(edtl, i * 16 + k + 1);
              expected.set(lba, data);
              cmds.push({ lba, data });
            }
            return writeAll(ini, cmds, {
              immediate: mode === 'immediate' ? 8192 : 0,
              firstBurst: mode === 'immediate' ? firstBurst : 0,
              segment: 8192,
            });
          }),
        );
      } finally {
        stop();
      }
      const pauses = inis.reduce((n, ini) => n + (ini as PacedInitiator).pauses, 0);
      // Every write reached the SCSI layer once, with its data intact.
      assert.equal(w.scsi.calls.length, conns * perConn);
      for (const c of w.scsi.calls) {
        const lba = c.cdb.readUInt32BE(2);
        assert.ok(expected.get(lba)!.equals(c.dataOut), `data of the write at LBA ${lba}`);
      }
      // Over the budget only by what each connection may always do: complete one write (its R2T owner), plus
      // (with unsolicited data) the first bursts of the commands it had already sent; a little for queued
      // responses and R2Ts.
      const perConnSlack = edtl + (mode === 'immediate' ? perConn * firstBurst : 0) + 4096;
      assert.ok(
        w.peak() <= budget + conns * perConnSlack,
        `peak ${w.peak()} > ${budget} + ${conns} × ${perConnSlack}`,
      );
      // The budget was actually binding: without it all 8 MiB would have been in at once.
      assert.ok(w.peak() >= budget / 2, `peak ${w.peak()}`);
      console.log(`# ${mode}: peak ${w.peak()} B for a ${budget} B budget, ${pauses} pauses`);
      assert.equal(await settledTotal(w), 0, 'everything released once the writes are done');
      for (const ini of inis) {
        const itt = ini.logout();
        const rsp = await ini.expect(isLogoutResponse);
        assert.equal(rsp.itt, itt);
      }
      await sleep(5);
      assert.equal(w.target.connectionCount, 0);
      assert.equal(w.target.pendingBytes, 0);
      assert.equal(w.target.budgetWaiterCount, 0);
    });
  }

  test('a paused connection resumes when another one frees budget, its own command still executing', async () => {
    const w = world({ maxTargetPendingBytes: 200_000 });
    w.scsi.mode = 'manual';
    const a = await connect(w, 1, offer());
    const b = await connect(w, 2, offer());
    // A: a read whose 80 KiB buffer stays charged while it executes (the test does not answer it).
    a.command(read10(0, 160), { read: true, edtl: 160 * 512 });
    await sleep(5);
    assert.equal(w.scsi.calls.length, 1);
    assert.equal(a.transport.paused, false, 'under the budget');
    // B: a 150 KiB read; the first command of a connection always starts, taking the total over the budget.
    b.command(read10(0, 300), { read: true, edtl: 300 * 512 });
    await sleep(5);
    assert.equal(w.scsi.calls.length, 2);
    assert.equal(w.target.pendingBytes, 460 * 512);
    assert.equal(b.transport.paused, true, 'B holds something and the target is over budget');
    // A's next read arrives (reading pauses only after a chunk): it waits for the budget, and A pauses.
    a.command(read10(0, 1), { read: true, edtl: 512 });
    await sleep(5);
    assert.equal(w.scsi.calls.length, 2, "A's second read waits for the budget");
    assert.equal(a.transport.paused, true, 'A holds something and the target is over budget');
    // A third one is not even read meanwhile.
    a.command(read10(0, 1), { read: true, edtl: 512 });
    await sleep(5);
    assert.equal(w.scsi.calls.length, 2);
    assert.equal((a as PacedInitiator).backlogged, 1);
    assert.ok(w.target.budgetWaiterCount >= 1);
    // B's read completes: the total falls under the low-water mark and the target nudges A, which has
    // seen no event of its own (its first read is still executing).
    const callB = w.scsi.calls[1] as ExecCall;
    callB.resolve(w.scsi.handler(callB));
    await sleep(10);
    assert.equal(a.transport.paused, false, 'A was woken by the target');
    assert.equal(w.scsi.calls.length, 4, "A's queued read started, its next one was read and started");
    assert.equal(w.scsi.calls[0]!.done, false);
    for (const c of w.scsi.calls) if (!c.done) c.resolve(w.scsi.handler(c));
    await sleep(5);
    a.conn.destroy('done');
    b.conn.destroy('done');
    assert.equal(await settledTotal(w), 0);
  });

  test('R2Ts wait for the budget (one burst per connection always goes out) and resume when it frees', async () => {
    const w = world({ maxTargetPendingBytes: 200_000 });
    w.scsi.mode = 'manual';
    const keys = offer({ InitialR2T: 'Yes', ImmediateData: 'No', MaxBurstLength: '65536' });
    const a = await connect(w, 1, keys, TestInitiator);
    const b = await connect(w, 2, keys, TestInitiator);
    // A: a 256 KiB read executing holds 256 KiB: over the budget.
    a.command(read10(0, 512), { read: true, edtl: 512 * 512 });
    await sleep(5);
    // B: two writes. The first gets its R2T (B has nothing solicited), the second waits for the budget.
    const w1 = b.command(write10(0, 128), { write: true, edtl: 65536 });
    const w2 = b.command(write10(128, 128), { write: true, edtl: 65536 });
    const r1 = await b.expect(isR2T);
    assert.equal(r1.itt, w1);
    await sleep(5);
    assert.equal(b.received().filter(isR2T).length, 0, 'no second R2T over the budget');
    // A's read completes: the budget frees and B's second write is solicited without any event on B.
    const callA = w.scsi.calls[0] as ExecCall;
    callA.resolve(w.scsi.handler(callA));
    const r2 = await b.expect(isR2T);
    assert.equal(r2.itt, w2);
    for (const [r, itt] of [
      [r1, w1],
      [r2, w2],
    ] as const) {
      for (let i = 0; i < 8; i++) {
        b.dataOut({ itt, ttt: r.ttt, dataSN: i, offset: i * 8192, data: pattern(8192, i), final: i === 7 });
      }
    }
    await sleep(5);
    for (const c of w.scsi.calls) if (!c.done) c.resolve(w.scsi.handler(c));
    await b.expect((p) => isResponse(p) && p.itt === w1);
    await b.expect((p) => isResponse(p) && p.itt === w2);
    a.conn.destroy('done');
    b.conn.destroy('done');
    assert.equal(await settledTotal(w), 0);
  });

  test('a write larger than maxSolicitedBytes still gets all its R2Ts', async () => {
    const w = world({ maxSolicitedBytes: 65536 });
    const keys = offer({ InitialR2T: 'Yes', ImmediateData: 'No', MaxBurstLength: '65536' });
    const ini = await connect(w, 1, keys, TestInitiator);
    const data = pattern(196608, 9);
    const itt = ini.command(write10(0, 384), { write: true, edtl: data.length });
    for (let burst = 0; burst < 3; burst++) {
      const r2t = await ini.expect(isR2T);
      assert.equal(r2t.bufferOffset, burst * 65536);
      for (let i = 0; i < 8; i++) {
        const off = r2t.bufferOffset + i * 8192;
        ini.dataOut({
          itt,
          ttt: r2t.ttt,
          dataSN: i,
          offset: off,
          data: data.subarray(off, off + 8192),
          final: i === 7,
        });
      }
    }
    const rsp = await ini.expect(isResponse);
    assert.equal(rsp.status, 0);
    assert.ok(w.scsi.calls[0]!.dataOut.equals(data));
    ini.conn.destroy('done');
    assert.equal(await settledTotal(w), 0);
  });

  test('every charge is released: abort, task management, failures, logout and dropped connections', async () => {
    const w = world({ maxTargetPendingBytes: 64 * 1024 * 1024 });
    w.scsi.mode = 'manual';
    const keys = offer({ MaxBurstLength: '65536', FirstBurstLength: '16384' });
    const ini = await connect(w, 1, keys, TestInitiator);
    // Collecting, with immediate data charged and an R2T outstanding: ABORT TASK ends it.
    const t1 = ini.command(write10(0, 256), {
      write: true,
      edtl: 131072,
      data: pattern(8192, 1),
      final: true,
    });
    await ini.expect((p) => isR2T(p) && p.itt === t1);
    assert.equal(w.target.pendingBytes > 8192, true, 'immediate data and the R2T burst are charged');
    ini.tmf(1, { ref: t1, refCmdSN: 1 });
    await ini.expect(isTmfResponse);
    await sleep(2);
    assert.equal(w.target.pendingBytes, 0, 'released by ABORT TASK');
    // Collecting with an unsolicited burst open: LOGICAL UNIT RESET ends it.
    ini.command(write10(0, 64), { write: true, edtl: 32768, data: pattern(4096, 2), final: false });
    await sleep(2);
    assert.equal(w.target.pendingBytes, 4096);
    ini.tmf(5);
    await ini.expect(isTmfResponse);
    await sleep(2);
    assert.equal(w.target.pendingBytes, 0, 'released by LOGICAL UNIT RESET');
    // A failed command (more unsolicited data than FirstBurstLength allows).
    const t3 = ini.command(write10(0, 64), {
      write: true,
      edtl: 32768,
      data: pattern(4096, 3),
      final: false,
    });
    ini.dataOut({ itt: t3, dataSN: 0, offset: 4096, data: pattern(16384, 4), final: true });
    await ini.expect((p) => isResponse(p) && p.itt === t3);
    await sleep(2);
    assert.equal(w.target.pendingBytes, 0, 'released by a failed command');
    // An executing read and a collecting write when the initiator logs out.
    ini.command(read10(0, 16), { read: true, edtl: 8192 });
    ini.command(write10(0, 256), { write: true, edtl: 131072, data: pattern(8192, 5) });
    await sleep(2);
    assert.ok(w.target.pendingBytes > 0);
    const lo = ini.logout();
    await sleep(2);
    for (const c of w.scsi.calls) if (!c.done) c.resolve(w.scsi.handler(c));
    const rsp = await ini.expect(isLogoutResponse);
    assert.equal(rsp.itt, lo);
    assert.equal(await settledTotal(w), 0, 'released by logout');

    // A dropped connection: tasks collecting, queued for admission and executing; unsent output.
    const w2 = world({ maxTargetPendingBytes: 64 * 1024 * 1024, maxPendingBytes: 100_000 });
    w2.scsi.mode = 'manual';
    const d = await connect(w2, 2, keys, TestInitiator);
    d.transport.writable = false;
    d.command(read10(0, 128), { read: true, edtl: 65536 });
    d.command(read10(0, 128), { read: true, edtl: 65536 }); // queued: over maxPendingBytes
    d.command(write10(0, 256), { write: true, edtl: 131072, data: pattern(8192, 6) });
    await sleep(5);
    assert.equal(w2.scsi.calls.length, 1);
    const first = w2.scsi.calls[0] as ExecCall;
    first.resolve(w2.scsi.handler(first));
    await sleep(5);
    assert.ok(w2.target.pendingBytes > 65536, 'output queued behind a congested socket, and more');
    d.conn.destroy('dropped');
    await sleep(2);
    const executing = w2.scsi.calls.filter((c) => !c.done);
    assert.equal(
      w2.target.pendingBytes,
      executing.reduce((n, c) => n + c.expectedLength, 0),
      'only executing commands still hold their buffers',
    );
    for (const c of executing) c.resolve(w2.scsi.handler(c));
    assert.equal(await settledTotal(w2), 0, 'released once the SCSI layer returned');
    assert.equal(w2.target.budgetWaiterCount, 0);
  });

  test('target shutdown releases everything', async () => {
    const w = world({ maxTargetPendingBytes: 64 * 1024 * 1024, drainTimeoutMs: 50 });
    w.scsi.mode = 'manual';
    const inis = [await connect(w, 1, offer(), TestInitiator), await connect(w, 2, offer(), TestInitiator)];
    for (const ini of inis) {
      ini.command(read10(0, 16), { read: true, edtl: 8192 });
      ini.command(write10(0, 256), { write: true, edtl: 131072, data: pattern(8192, 7) });
    }
    await sleep(5);
    assert.ok(w.target.pendingBytes > 0);
    const done = w.target.shutdown();
    await sleep(10);
    for (const c of w.scsi.calls) if (!c.done) c.resolve(w.scsi.handler(c));
    await done;
    assert.equal(await settledTotal(w), 0);
  });
});
