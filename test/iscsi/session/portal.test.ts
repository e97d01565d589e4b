import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, test } from 'node:test';
import { encodeNopOut } from '../../../src/iscsi/pdu/index.js';
import { IscsiPortal, LoginThrottle } from '../../../src/iscsi/portal/index.js';
import { IscsiTarget } from '../../../src/iscsi/session/index.js';
import { INIT, ScriptedScsi, TARGET } from './helpers.js';
import { Wire } from './wire.js';

function makeTarget(): IscsiTarget {
  const t = new IscsiTarget({
    targetName: TARGET,
    scsi: new ScriptedScsi(),
    limits: { nopIntervalMs: 0 },
    throttle: new LoginThrottle(),
  });
  t.setAccess([[INIT, { allowed: true, auth: null }]]);
  return t;
}

describe('portal (TCP)', () => {
  test('listens on IPv4 and IPv6 loopback; login and NOP over real sockets', async () => {
    const target = makeTarget();
    const v6 = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(0, '::1', () => s.close(() => resolve(true)));
    });
    const portal = new IscsiPortal({ addresses: v6 ? ['127.0.0.1', '::1'] : ['127.0.0.1'], port: 0, target });
    const bound = await portal.listen();
    try {
      assert.equal(bound.length, v6 ? 2 : 1);
      for (const b of bound) {
        const w = await Wire.open(b.address, b.port);
        const rsp = await w.login({ initiator: INIT, target: TARGET });
        assert.ok(rsp?.opcode === 0x23 && rsp.statusClass === 0, `login over ${b.address}`);
        w.send(encodeNopOut({ immediate: true, lun: 0n, itt: 7, ttt: 0xffffffff, cmdSN: 1, expStatSN: 0 }));
        const nop = await w.next();
        assert.ok(nop?.opcode === 0x20 && nop.itt === 7);
        w.socket.destroy();
      }
    } finally {
      await portal.close();
    }
  });

  test('connections per address are bounded; a refused socket is closed at once', async () => {
    const target = makeTarget();
    const portal = new IscsiPortal({
      addresses: ['127.0.0.1'],
      port: 0,
      target,
      maxConnectionsPerAddress: 2,
    });
    const [b] = await portal.listen();
    const wires: Wire[] = [];
    try {
      for (let i = 0; i < 3; i++) wires.push(await Wire.open(b!.address, b!.port));
      await wires[2]!.next(500);
      assert.equal(wires[2]!.closed, true);
      assert.equal(wires[0]!.closed, false);
      assert.equal(portal.connectionCount, 2);
    } finally {
      for (const w of wires) w.socket.destroy();
      await portal.close();
    }
  });

  test('close(): listeners stop and sessions are ended', async () => {
    const target = makeTarget();
    const portal = new IscsiPortal({ addresses: ['127.0.0.1'], port: 0, target });
    const [b] = await portal.listen();
    const w = await Wire.open(b!.address, b!.port);
    await w.login({ initiator: INIT, target: TARGET });
    await portal.close();
    for (let i = 0; i < 50 && !w.closed; i++) await w.next(20);
    assert.equal(w.closed, true);
    await assert.rejects(Wire.open(b!.address, b!.port));
  });

  test('a bound port in use is reported', async () => {
    const target = makeTarget();
    const first = new IscsiPortal({ addresses: ['127.0.0.1'], port: 0, target });
    const [b] = await first.listen();
    const second = new IscsiPortal({ addresses: ['127.0.0.1'], port: b!.port, target: makeTarget() });
    await assert.rejects(second.listen(), /EADDRINUSE/);
    await first.close();
  });
});

describe('login throttle', () => {
  test('free failures, then doubling delays up to the cap; success resets; window expiry forgets', () => {
    let now = 0;
    const t = new LoginThrottle({
      freeFailures: 2,
      baseDelayMs: 100,
      maxDelayMs: 350,
      windowMs: 1000,
      now: () => now,
    });
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6].map(() => t.failure('a')),
      [0, 0, 100, 200, 350, 350],
    );
    assert.equal(t.failure('b'), 0, 'per address');
    t.success('a');
    assert.equal(t.failure('a'), 0);
    now = 5000;
    t.failure('b');
    assert.equal(t.failure('b'), 0, 'older failures forgotten');
  });
});
