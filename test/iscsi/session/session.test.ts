import assert from 'node:assert/strict';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { FileBackingStore, LogicalUnit } from '../../../src/iscsi/lu/index.js';
import type { DecodedPdu } from '../../../src/iscsi/pdu/index.js';
import { LoginThrottle } from '../../../src/iscsi/portal/index.js';
import { ScsiTarget } from '../../../src/iscsi/scsi/index.js';
import { IscsiTarget } from '../../../src/iscsi/session/index.js';
import { loginPdu } from '../pdu/fixtures.js';
import {
  INIT,
  INIT2,
  ISID,
  offer,
  pattern,
  read10,
  ScriptedScsi,
  setup,
  TARGET,
  TestInitiator,
  TUR,
  textOf,
  write10,
} from './helpers.js';

type Of<O extends number> = Extract<DecodedPdu, { opcode: O }>;
const is =
  <O extends number>(op: O) =>
  (p: DecodedPdu): p is Of<O> =>
    p.opcode === op;

describe('session: login and discovery', () => {
  test('discovery session: SendTargets=All lists the target only to initiators with access', async () => {
    const { target } = await setup({ login: false });
    target.setAccess([
      [INIT, { allowed: true, auth: null }],
      [INIT2, { allowed: false, auth: null }],
    ]);
    target.setPortals([
      { address: '0.0.0.0', port: 3260, portalGroupTag: 1 },
      { address: '2001:db8::1', port: 3260, portalGroupTag: 1 },
    ]);
    const seen: Record<string, Record<string, string[]>> = {};
    for (const name of [INIT, INIT2, 'iqn.2024-01.test:stranger']) {
      const ini = new TestInitiator(target);
      const rsp = await ini.login({ name, type: 'Discovery' });
      assert.equal(rsp.opcode === 0x23 && rsp.statusClass, 0, `${name} may discover`);
      ini.text([['SendTargets', 'All']]);
      seen[name] = textOf(await ini.expect(is(0x24)));
      ini.conn.destroy('done');
    }
    assert.deepEqual(seen[INIT], {
      TargetName: [TARGET],
      TargetAddress: ['192.0.2.100:3260,1', '[2001:db8::1]:3260,1'],
    });
    assert.deepEqual(seen[INIT2], {});
    assert.deepEqual(seen['iqn.2024-01.test:stranger'], {});
  });

  test('a discovery session cannot run SCSI commands', async () => {
    const { target } = await setup({ login: false });
    const ini = new TestInitiator(target);
    await ini.login({ type: 'Discovery' });
    ini.command(TUR);
    const rej = await ini.expect(is(0x3f));
    assert.equal(rej.reason, 0x04);
    ini.conn.destroy('done');
  });

  test('normal login: unknown initiator 0x0202, wrong target 0x0203, the connection then closes', async () => {
    const { target } = await setup({ login: false });
    let ini = new TestInitiator(target);
    let rsp = await ini.login({ name: 'iqn.2024-01.test:stranger' });
    assert.ok(rsp.opcode === 0x23);
    assert.deepEqual([rsp.statusClass, rsp.statusDetail], [2, 2]);
    await ini.settle();
    assert.equal(ini.transport.ended, true);
    ini = new TestInitiator(target);
    ini.send(
      loginPdu(Buffer.from(`InitiatorName=${INIT}\0TargetName=iqn.2024-01.test:nope\0`), { isid: ISID }),
    );
    rsp = await ini.expect(is(0x23));
    assert.deepEqual([rsp.statusClass, rsp.statusDetail], [2, 3]);
  });

  test('repeated failed logins from one address are answered more and more slowly', async () => {
    const throttle = new LoginThrottle({ freeFailures: 2, baseDelayMs: 60, maxDelayMs: 200 });
    const delays: number[] = [];
    const failure = throttle.failure.bind(throttle);
    throttle.failure = (addr) => {
      const d = failure(addr);
      delays.push(d);
      return d;
    };
    const { target } = await setup({ login: false, target: { throttle } });
    const times: number[] = [];
    for (let i = 0; i < 4; i++) {
      const ini = new TestInitiator(target);
      const t0 = Date.now();
      const rsp = await ini.login({ name: 'iqn.2024-01.test:stranger' });
      assert.ok(rsp.opcode === 0x23 && rsp.statusClass === 2);
      times.push(Date.now() - t0);
    }
    assert.deepEqual(delays, [0, 0, 60, 120]);
    assert.ok(times[2]! >= 55 && times[3]! >= 110, `answers really waited: ${times}`);
  });

  test('session reinstatement: same initiator and ISID closes the old session; another ISID coexists', async () => {
    const { target, scsi, ini } = await setup();
    const other = new TestInitiator(target);
    await other.login({ isid: Buffer.from('400001370002', 'hex') });
    assert.equal(target.liveSessions().length, 2);
    const again = new TestInitiator(target);
    const rsp = await again.login();
    assert.ok(rsp.opcode === 0x23 && rsp.statusClass === 0);
    assert.equal(ini.conn.isClosed, true, 'old session with the same ISID is gone');
    assert.equal(other.conn.isClosed, false);
    assert.equal(target.liveSessions().length, 2);
    // The old nexus was closed before the new one opened, so the SCSI layer keeps the new one.
    assert.deepEqual(
      scsi.closed.map((n) => n.isid),
      ['400001370001'],
    );
    assert.equal(scsi.opened.length, 3);
    again.command(TUR);
    assert.equal((await again.expect(is(0x21))).status, 0);
    other.conn.destroy('done');
    again.conn.destroy('done');
  });

  test('a login naming an existing TSIH takes the session over; an unknown TSIH is refused', async () => {
    const { target, ini } = await setup();
    const tsih = ini.conn.sessionInfo!.tsih;
    const bad = new TestInitiator(target);
    let rsp = await bad.login({ tsih: tsih + 100 });
    assert.ok(rsp.opcode === 0x23);
    assert.deepEqual([rsp.statusClass, rsp.statusDetail], [2, 0x0a]);
    const next = new TestInitiator(target);
    rsp = await next.login({ tsih });
    assert.ok(rsp.opcode === 0x23 && rsp.statusClass === 0 && rsp.tsih === tsih);
    assert.equal(ini.conn.isClosed, true);
    next.conn.destroy('done');
  });

  test('LUN map change: an Async Message (event 0, sense 3F/0E) to that initiator only', async () => {
    const { target, ini } = await setup();
    const other = new TestInitiator(target);
    await other.login({ name: INIT2 });
    target.lunMapChanged(INIT.toUpperCase());
    const msg = await ini.expect(is(0x32));
    assert.equal(msg.asyncEvent, 0);
    assert.equal(msg.data.readUInt16BE(0), 18);
    assert.deepEqual([msg.data[2 + 2]! & 0x0f, msg.data[2 + 12], msg.data[2 + 13]], [6, 0x3f, 0x0e]);
    await other.settle();
    assert.equal(other.take().filter(is(0x32)).length, 0);
    ini.conn.destroy('done');
    other.conn.destroy('done');
  });

  test('access revoked: logout requested (event 1), session dropped after the grace period', async () => {
    const { target, ini } = await setup({ limits: { revokeGraceMs: 40 } });
    target.setAccess([[INIT2, { allowed: true, auth: null }]]);
    const msg = await ini.expect(is(0x32));
    assert.equal(msg.asyncEvent, 1);
    assert.ok((msg.parameter3 ?? 0) >= 1);
    await ini.settle(80);
    assert.equal(ini.conn.isClosed, true);
  });

  test('access restored within the grace period keeps the session', async () => {
    const { target, ini } = await setup({ limits: { revokeGraceMs: 40 } });
    target.setAccess([]);
    await ini.expect(is(0x32));
    target.setAccess([[INIT, { allowed: true, auth: null }]]);
    await ini.settle(80);
    assert.equal(ini.conn.isClosed, false);
    ini.conn.destroy('done');
  });

  test('shutdown: logout requested, executing commands answered, connection closed', async () => {
    const { target, scsi, ini } = await setup();
    scsi.mode = 'manual';
    const itt = ini.command(TUR);
    await ini.settle();
    const done = target.shutdown();
    const msg = await ini.expect(is(0x32));
    assert.equal(msg.asyncEvent, 1);
    scsi.calls[0]!.resolve({ status: 0, data: [], dataLength: 0, transferLength: 0 });
    const rsp = await ini.expect(is(0x21));
    assert.equal(rsp.itt, itt);
    await done;
    assert.equal(ini.conn.isClosed, true);
    // A new connection during shutdown is refused.
    const late = new TestInitiator(target);
    await late.login().catch(() => undefined);
    assert.equal(late.conn.isClosed, true);
  });
});

describe('session over the real SCSI target', () => {
  test('write through R2Ts and read back, unit attention first, two sessions sharing the LU', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'targetd-session-'));
    const path = join(dir, 'lu.img');
    await writeFile(path, '');
    await truncate(path, 8 * 1024 * 1024);
    const backing = await FileBackingStore.open(path);
    const lu = new LogicalUnit({ backing, uuid: '3f2504e0-4f89-11d3-9a0c-0305e82c3301' });
    const scsi = new ScsiTarget({ targetName: TARGET });
    scsi.setLunMap(INIT, new Map([[0, lu]]));
    scsi.setLunMap(INIT2, new Map([[3, lu]]));
    const target = new IscsiTarget({ targetName: TARGET, scsi, limits: { nopIntervalMs: 0 } });
    target.setAccess([
      [INIT, { allowed: true, auth: null }],
      [INIT2, { allowed: true, auth: null }],
    ]);
    try {
      const a = new TestInitiator(target);
      await a.login({ keys: offer({ FirstBurstLength: '8192', MaxBurstLength: '16384' }) });
      // First command to the LU: POWER ON / RESET unit attention.
      a.command(TUR);
      const ua = await a.expect(is(0x21));
      assert.equal(ua.status, 2);
      assert.deepEqual([ua.data[2 + 12], ua.data[2 + 13]], [0x29, 0x00]);
      const data = pattern(100 * 512, 5);
      const itt = a.command(write10(16, 100), {
        write: true,
        edtl: data.length,
        data: data.subarray(0, 8192),
      });
      let offset = 8192;
      while (offset < data.length) {
        const r2t = await a.expect(is(0x31));
        let sent = 0;
        let sn = 0;
        while (sent < r2t.desiredDataTransferLength) {
          const n = Math.min(8192, r2t.desiredDataTransferLength - sent);
          const at = r2t.bufferOffset + sent;
          a.dataOut({
            itt,
            ttt: r2t.ttt,
            dataSN: sn++,
            offset: at,
            data: data.subarray(at, at + n),
            final: sent + n === r2t.desiredDataTransferLength,
          });
          sent += n;
        }
        offset += r2t.desiredDataTransferLength;
      }
      const wr = await a.expect(is(0x21));
      assert.equal(wr.itt, itt);
      assert.equal(wr.status, 0);

      const b = new TestInitiator(target);
      await b.login({ name: INIT2, keys: offer({ MaxRecvDataSegmentLength: '4096' }) });
      b.command(TUR, { lun: 3 });
      await b.expect(is(0x21));
      const ritt = b.command(read10(16, 100), { read: true, edtl: data.length, lun: 3 });
      const chunks: Buffer[] = [];
      for (;;) {
        const p = await b.expect((x) => x.opcode === 0x25 && x.itt === ritt);
        if (p.opcode !== 0x25) continue;
        assert.ok(p.data.length <= 4096);
        chunks.push(p.data);
        if (p.statusPresent) break;
      }
      assert.deepEqual(Buffer.concat(chunks), data);
      a.conn.destroy('done');
      b.conn.destroy('done');
    } finally {
      await backing.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('ScriptedScsi sanity: the nexus carries the initiator name and ISID hex', async () => {
    const scsi = new ScriptedScsi();
    const target = new IscsiTarget({ targetName: TARGET, scsi, limits: { nopIntervalMs: 0 } });
    target.setAccess([[INIT, { allowed: true, auth: null }]]);
    const ini = new TestInitiator(target);
    await ini.login();
    assert.deepEqual(scsi.opened, [{ initiator: INIT, isid: ISID.toString('hex') }]);
    ini.conn.destroy('done');
    assert.equal(scsi.closed.length, 1);
  });
});
