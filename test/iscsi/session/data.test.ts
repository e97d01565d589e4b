import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DecodedPdu } from '../../../src/iscsi/pdu/index.js';
import { dataResult, type ExecCall, offer, pattern, read10, setup, TUR, write10 } from './helpers.js';

type Of<O extends number> = Extract<DecodedPdu, { opcode: O }>;
const isDataIn = (p: DecodedPdu): p is Of<0x25> => p.opcode === 0x25;
const isResponse = (p: DecodedPdu): p is Of<0x21> => p.opcode === 0x21;
const isR2T = (p: DecodedPdu): p is Of<0x31> => p.opcode === 0x31;

/** Collects the Data-In PDUs of one command up to the one with status (or the SCSI Response). */
async function collectRead(ini: Awaited<ReturnType<typeof setup>>['ini'], itt: number) {
  const dataIns: Of<0x25>[] = [];
  for (;;) {
    const p = await ini.expect((x) => (x.opcode === 0x25 || x.opcode === 0x21) && x.itt === itt);
    if (p.opcode === 0x25) {
      dataIns.push(p);
      if (p.statusPresent) return { dataIns, response: undefined };
    } else if (p.opcode === 0x21) {
      return { dataIns, response: p };
    }
  }
}

describe('session: Data-In', () => {
  test('split at the initiator MaxRecvDataSegmentLength, DataSN/offsets in order, status in the last PDU', async () => {
    const { ini } = await setup();
    const itt = ini.command(read10(0, 40), { read: true, edtl: 40 * 512 });
    const { dataIns, response } = await collectRead(ini, itt);
    assert.equal(response, undefined, 'GOOD status collapses into the last Data-In');
    assert.deepEqual(
      dataIns.map((d) => [d.dataSN, d.bufferOffset, d.data.length]),
      [
        [0, 0, 8192],
        [1, 8192, 8192],
        [2, 16384, 4096],
      ],
    );
    const last = dataIns.at(-1)!;
    assert.equal(last.statusPresent, true);
    assert.equal(last.final, true);
    assert.equal(last.status, 0);
    assert.equal(last.underflow || last.overflow, false);
    assert.deepEqual(Buffer.concat(dataIns.map((d) => d.data)), pattern(40 * 512, 7));
    // StatSN only on the status-bearing PDU; counters on every PDU.
    assert.ok(dataIns.every((d) => d.expCmdSN === 2));
    ini.conn.destroy('done');
  });

  test('F bit at each MaxBurstLength boundary; DataSN keeps counting across bursts', async () => {
    const { ini } = await setup({
      keys: offer({ MaxBurstLength: '16384', FirstBurstLength: '8192', MaxRecvDataSegmentLength: '8192' }),
    });
    const itt = ini.command(read10(0, 80), { read: true, edtl: 80 * 512 });
    const { dataIns } = await collectRead(ini, itt);
    assert.deepEqual(
      dataIns.map((d) => [d.dataSN, d.final, d.statusPresent]),
      [
        [0, false, false],
        [1, true, false],
        [2, false, false],
        [3, true, false],
        [4, true, true],
      ],
    );
    ini.conn.destroy('done');
  });

  test('data spread over several result buffers goes out as views, without copies', async () => {
    const { ini, scsi } = await setup();
    const a = pattern(5000, 1);
    const b = pattern(7000, 2);
    const c = pattern(4384, 3);
    scsi.handler = (call) => dataResult([a, b, c], call.expectedLength);
    const itt = ini.command(read10(0, 32), { read: true, edtl: 16384 });
    const { dataIns } = await collectRead(ini, itt);
    assert.deepEqual(Buffer.concat(dataIns.map((d) => d.data)), Buffer.concat([a, b, c]));
    const written = ini.transport.rawWrites.flat();
    const shares = (buf: Buffer) =>
      written.some((w) => w.buffer === buf.buffer && w.byteOffset >= buf.byteOffset);
    assert.ok(shares(a) && shares(b) && shares(c), 'result buffers reach write() uncopied');
    ini.conn.destroy('done');
  });

  test('CHECK CONDITION: a separate SCSI Response with SenseLength + sense', async () => {
    const { ini, scsi } = await setup();
    const sense = Buffer.alloc(18);
    sense[0] = 0x70;
    sense[2] = 0x05;
    sense[7] = 10;
    sense[12] = 0x21;
    scsi.handler = () => ({ status: 2, sense, data: [], dataLength: 0, transferLength: 0 });
    const itt = ini.command(read10(1 << 30, 1), { read: true, edtl: 512 });
    const { dataIns, response } = await collectRead(ini, itt);
    assert.equal(dataIns.length, 0);
    assert.ok(response);
    assert.equal(response.status, 2);
    assert.equal(response.response, 0);
    assert.equal(response.data.readUInt16BE(0), 18);
    assert.deepEqual(response.data.subarray(2), sense);
    ini.conn.destroy('done');
  });

  test('residuals: overflow and underflow flags and counts (libiscsi iSCSIResiduals cases)', async () => {
    const { ini } = await setup();
    // 1 block with EDTL 0: GOOD, no data, overflow of one block.
    let itt = ini.command(read10(0, 1), { read: true, edtl: 0 });
    let r = await collectRead(ini, itt);
    assert.equal(r.dataIns.length, 0);
    assert.equal(r.response?.overflow, true);
    assert.equal(r.response?.residualCount, 512);
    // 1 block with EDTL 10000: one block of data, underflow 9488.
    itt = ini.command(read10(0, 1), { read: true, edtl: 10000 });
    r = await collectRead(ini, itt);
    assert.equal(
      r.dataIns.reduce((n, d) => n + d.data.length, 0),
      512,
    );
    const last = r.dataIns.at(-1)!;
    assert.equal(last.underflow, true);
    assert.equal(last.residualCount, 10000 - 512);
    // 1 block with EDTL 200: 200 bytes, overflow 312.
    itt = ini.command(read10(0, 1), { read: true, edtl: 200 });
    r = await collectRead(ini, itt);
    assert.equal(
      r.dataIns.reduce((n, d) => n + d.data.length, 0),
      200,
    );
    assert.equal(r.dataIns.at(-1)!.overflow, true);
    assert.equal(r.dataIns.at(-1)!.residualCount, 312);
    // A write of 1 block with EDTL 10000: underflow.
    itt = ini.command(write10(0, 1), { write: true, edtl: 10000, data: Buffer.alloc(8192), final: false });
    ini.dataOut({ itt, dataSN: 0, offset: 8192, data: Buffer.alloc(1808), final: true });
    const w = await ini.expect(isResponse);
    assert.equal(w.itt, itt);
    assert.equal(w.underflow, true);
    assert.equal(w.residualCount, 10000 - 512);
    ini.conn.destroy('done');
  });

  test('READ flagged as a write at the iSCSI level: data is taken, no Data-In is sent, GOOD', async () => {
    const { ini, scsi } = await setup();
    const itt = ini.command(read10(0, 1), { write: true, edtl: 512, data: Buffer.alloc(512, 1) });
    const rsp = await ini.expect(isResponse);
    assert.equal(rsp.itt, itt);
    assert.equal(rsp.status, 0);
    assert.equal(rsp.underflow || rsp.overflow, false);
    assert.equal(scsi.calls.at(-1)!.expectedLength, 0);
    assert.equal(ini.received().filter(isDataIn).length, 0);
    ini.conn.destroy('done');
  });

  test('header and data digests: every PDU verifies, multi-piece Data-In included', async () => {
    const { ini, scsi } = await setup({ digests: { headerDigest: true, dataDigest: true } });
    scsi.handler = (call) => dataResult([pattern(3001, 1), pattern(9000, 2)], call.expectedLength);
    const itt = ini.command(read10(0, 24), { read: true, edtl: 12001 });
    const { dataIns } = await collectRead(ini, itt);
    assert.equal(Buffer.concat(dataIns.map((d) => d.data)).length, 12001);
    assert.equal(ini.conn.negotiated?.headerDigest, 'CRC32C');
    ini.conn.destroy('done');
  });
});

describe('session: Data-Out and R2T', () => {
  test('immediate data covering the whole write: executed at once, no R2T', async () => {
    const { ini, scsi } = await setup();
    const data = pattern(4096, 3);
    const itt = ini.command(write10(8, 8), { write: true, edtl: 4096, data });
    const rsp = await ini.expect(isResponse);
    assert.equal(rsp.itt, itt);
    assert.equal(rsp.status, 0);
    assert.deepEqual(scsi.calls[0]!.dataOut, data);
    assert.equal(ini.take().filter(isR2T).length, 0);
    ini.conn.destroy('done');
  });

  test('immediate data + unsolicited Data-Out up to FirstBurstLength, then R2Ts in MaxBurstLength chunks', async () => {
    const { ini, scsi } = await setup({
      keys: offer({ FirstBurstLength: '16384', MaxBurstLength: '32768', MaxRecvDataSegmentLength: '8192' }),
    });
    const total = 100_000;
    const data = pattern(total, 9);
    // Immediate 8192 (our MRDSL is larger; the initiator chose 8192) + one unsolicited PDU to FirstBurstLength.
    const itt = ini.command(write10(0, 196), {
      write: true,
      edtl: total,
      data: data.subarray(0, 8192),
      final: false,
    });
    ini.dataOut({ itt, dataSN: 0, offset: 8192, data: data.subarray(8192, 16384), final: true });
    let offset = 16384;
    let r2tSN = 0;
    while (offset < total) {
      const r2t = await ini.expect(isR2T);
      assert.equal(r2t.itt, itt);
      assert.equal(r2t.r2tSN, r2tSN++);
      assert.equal(r2t.bufferOffset, offset);
      assert.equal(r2t.desiredDataTransferLength, Math.min(32768, total - offset));
      let sent = 0;
      let dataSN = 0;
      while (sent < r2t.desiredDataTransferLength) {
        const n = Math.min(8192, r2t.desiredDataTransferLength - sent);
        const at = r2t.bufferOffset + sent;
        ini.dataOut({
          itt,
          ttt: r2t.ttt,
          dataSN: dataSN++,
          offset: at,
          data: data.subarray(at, at + n),
          final: sent + n === r2t.desiredDataTransferLength,
        });
        sent += n;
      }
      offset += r2t.desiredDataTransferLength;
    }
    const rsp = await ini.expect(isResponse);
    assert.equal(rsp.itt, itt);
    assert.equal(rsp.status, 0);
    assert.equal(rsp.expDataSN, r2tSN, 'ExpDataSN of a write counts its R2Ts');
    assert.deepEqual(scsi.calls[0]!.dataOut, data);
    ini.conn.destroy('done');
  });

  test('InitialR2T=Yes, no immediate data: everything solicited, MaxOutstandingR2T respected', async () => {
    const { ini, scsi } = await setup({
      keys: offer({ InitialR2T: 'Yes', ImmediateData: 'No', MaxBurstLength: '8192', MaxOutstandingR2T: '1' }),
    });
    const data = pattern(20000, 4);
    const itt = ini.command(write10(0, 40), { write: true, edtl: 20000 });
    const first = await ini.expect(isR2T);
    await ini.settle();
    assert.equal(ini.received().filter(isR2T).length, 0, 'one R2T outstanding at a time');
    assert.equal(first.bufferOffset, 0);
    ini.dataOut({ itt, ttt: first.ttt, dataSN: 0, offset: 0, data: data.subarray(0, 8192), final: true });
    const second = await ini.expect(isR2T);
    assert.equal(second.bufferOffset, 8192);
    ini.dataOut({
      itt,
      ttt: second.ttt,
      dataSN: 0,
      offset: 8192,
      data: data.subarray(8192, 16384),
      final: true,
    });
    const third = await ini.expect(isR2T);
    assert.equal(third.desiredDataTransferLength, 20000 - 16384);
    ini.dataOut({ itt, ttt: third.ttt, dataSN: 0, offset: 16384, data: data.subarray(16384), final: true });
    const rsp = await ini.expect(isResponse);
    assert.equal(rsp.status, 0);
    assert.deepEqual(scsi.calls[0]!.dataOut, data);
    ini.conn.destroy('done');
  });

  for (const [name, sns] of [
    ['two PDUs both DataSN 0', [0, 0]],
    ['DataSN 27', [27]],
    ['DataSN 0xffffffff', [0xffffffff]],
    ['reverse order 1,0', [1, 0]],
  ] as const) {
    test(`invalid DataSN (${name}) fails the command with CHECK CONDITION, not executed`, async () => {
      const { ini, scsi } = await setup({ keys: offer({ ImmediateData: 'No', FirstBurstLength: '65536' }) });
      const len = sns.length * 512;
      const itt = ini.command(write10(100, sns.length), { write: true, edtl: len, final: false });
      sns.forEach((sn, i) => {
        ini.dataOut({
          itt,
          dataSN: sn,
          offset: i * 512,
          data: Buffer.alloc(512),
          final: i === sns.length - 1,
        });
      });
      const rsp = await ini.expect(isResponse);
      assert.equal(rsp.itt, itt);
      assert.equal(rsp.status, 2);
      assert.equal(rsp.data[2 + 2]! & 0x0f, 0x0b, 'ABORTED COMMAND');
      assert.equal(scsi.calls.length, 0);
      // The session goes on.
      const t = ini.command(TUR);
      const ok = await ini.expect(isResponse);
      assert.equal(ok.itt, t);
      assert.equal(ok.status, 0);
      ini.conn.destroy('done');
    });
  }

  test('wrong BufferOffset and too much data fail the command', async () => {
    const { ini, scsi } = await setup({ keys: offer({ ImmediateData: 'No' }) });
    let itt = ini.command(write10(0, 2), { write: true, edtl: 1024, final: false });
    ini.dataOut({ itt, dataSN: 0, offset: 0, data: Buffer.alloc(512) });
    ini.dataOut({ itt, dataSN: 1, offset: 1000, data: Buffer.alloc(512), final: true });
    let rsp = await ini.expect(isResponse);
    assert.equal(rsp.status, 2);
    assert.deepEqual([rsp.data[14], rsp.data[15]], [0x4b, 0x05]);
    itt = ini.command(write10(0, 1), { write: true, edtl: 512, final: false });
    ini.dataOut({ itt, dataSN: 0, offset: 0, data: Buffer.alloc(1024), final: true });
    rsp = await ini.expect(isResponse);
    assert.equal(rsp.status, 2);
    assert.deepEqual([rsp.data[14], rsp.data[15]], [0x4b, 0x02]);
    assert.equal(scsi.calls.length, 0);
    ini.conn.destroy('done');
  });

  test('unsolicited data when InitialR2T=Yes is refused (0C/0C) after the sequence', async () => {
    const { ini } = await setup({ keys: offer({ InitialR2T: 'Yes' }) });
    const itt = ini.command(write10(0, 2), {
      write: true,
      edtl: 1024,
      final: false,
      data: Buffer.alloc(512),
    });
    ini.dataOut({ itt, dataSN: 0, offset: 512, data: Buffer.alloc(512), final: true });
    const rsp = await ini.expect(isResponse);
    assert.equal(rsp.status, 2);
    assert.deepEqual([rsp.data[14], rsp.data[15]], [0x0c, 0x0c]);
    ini.conn.destroy('done');
  });

  test('a Data-Out data digest error: Reject (reason 2) and the command fails with 47/05', async () => {
    const { ini, scsi } = await setup({ digests: { headerDigest: true, dataDigest: true } });
    const itt = ini.command(write10(0, 2), {
      write: true,
      edtl: 1024,
      final: false,
      data: Buffer.alloc(512),
    });
    const before = ini.transport.writes;
    // Corrupt the data byte of a correctly framed Data-Out.
    const { encodeDataOut } = await import('../../../src/iscsi/pdu/index.js');
    const parts = encodeDataOut(
      {
        final: true,
        lun: 0n,
        itt,
        ttt: 0xffffffff,
        expStatSN: 0,
        dataSN: 0,
        bufferOffset: 512,
        data: Buffer.alloc(512),
      },
      { headerDigest: true, dataDigest: true },
    );
    const raw = Buffer.concat(parts);
    raw[60] ^= 0xff;
    ini.send(raw);
    const rej = await ini.expect((p): p is Of<0x3f> => p.opcode === 0x3f);
    assert.equal(rej.reason, 0x02);
    assert.equal(rej.data.readUInt32BE(16), itt, 'the Reject carries the rejected header');
    const rsp = await ini.expect(isResponse);
    assert.equal(rsp.itt, itt);
    assert.deepEqual([rsp.data[2 + 2]! & 0x0f, rsp.data[14], rsp.data[15]], [0x0b, 0x47, 0x05]);
    assert.equal(scsi.calls.length, 0);
    assert.ok(ini.transport.writes > before);
    assert.equal(ini.conn.isClosed, false);
    ini.conn.destroy('done');
  });

  test('a write bigger than maxCommandBytes fails with 0E/03 without buffering', async () => {
    const { ini, scsi } = await setup({ limits: { maxCommandBytes: 65536 } });
    const itt = ini.command(write10(0, 256), {
      write: true,
      edtl: 131072,
      data: Buffer.alloc(8192),
      final: true,
    });
    const rsp = await ini.expect(isResponse);
    assert.equal(rsp.itt, itt);
    assert.deepEqual([rsp.data[2 + 2]! & 0x0f, rsp.data[14], rsp.data[15]], [0x05, 0x0e, 0x03]);
    assert.equal(ini.received().filter(isR2T).length, 0);
    assert.equal(scsi.calls.length, 0);
    ini.conn.destroy('done');
  });

  test('R2T budget: a second large write waits until the first one completes', async () => {
    const { ini, scsi } = await setup({
      limits: { maxSolicitedBytes: 65536 },
      keys: offer({ ImmediateData: 'No', InitialR2T: 'Yes', MaxBurstLength: '65536' }),
    });
    scsi.mode = 'manual';
    const a = ini.command(write10(0, 128), { write: true, edtl: 65536 });
    const b = ini.command(write10(128, 128), { write: true, edtl: 65536 });
    const r2tA = await ini.expect(isR2T);
    assert.equal(r2tA.itt, a);
    await ini.settle();
    assert.equal(ini.received().filter(isR2T).length, 0, 'B waits for budget');
    for (let i = 0; i < 8; i++) {
      ini.dataOut({
        itt: a,
        ttt: r2tA.ttt,
        dataSN: i,
        offset: i * 8192,
        data: Buffer.alloc(8192),
        final: i === 7,
      });
    }
    await ini.settle();
    assert.equal(scsi.calls.length, 1);
    assert.equal(ini.received().filter(isR2T).length, 0, 'still charged while A executes');
    (scsi.calls[0] as ExecCall).resolve({ status: 0, data: [], dataLength: 0, transferLength: 65536 });
    const r2tB = await ini.expect(isR2T);
    assert.equal(r2tB.itt, b);
    ini.conn.destroy('done');
  });
});
