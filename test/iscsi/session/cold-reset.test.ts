// TARGET COLD RESET ends the sessions it reaches and only those: the issuer's own and those of initiators
// that share an LU with it. LUN masking makes one target many disjoint ones, so an initiator that cannot see
// another's volumes cannot knock its sessions off either (before: every session of the target ended).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LogicalUnit } from '../../../src/iscsi/lu/index.js';
import { ScsiTarget } from '../../../src/iscsi/scsi/index.js';
import { IscsiTarget } from '../../../src/iscsi/session/index.js';
import { MemoryBackingStore } from '../fuzz/harness.js';
import { INIT, INIT2, TARGET, TestInitiator } from './helpers.js';

const INIT3 = 'iqn.2024-01.test:host3';

test('a cold reset ends the sessions sharing an LU with the issuer and leaves the others working', async () => {
  const scsi = new ScsiTarget({ targetName: TARGET });
  const lu = (id: string) =>
    new LogicalUnit({
      backing: new MemoryBackingStore(1 << 20),
      uuid: `6a1f0000-0000-4000-8000-00000000000${id}`,
    });
  const shared = lu('a');
  const apart = lu('b');
  scsi.setLunMap(INIT, new Map([[0, shared]]));
  scsi.setLunMap(INIT2, new Map([[3, shared]]));
  scsi.setLunMap(INIT3, new Map([[0, apart]]));
  const target = new IscsiTarget({ targetName: TARGET, scsi, limits: { nopIntervalMs: 0 } });
  target.setAccess([INIT, INIT2, INIT3].map((n) => [n, { allowed: true, auth: null }]));

  const login = async (name: string, isid: string) => {
    const ini = new TestInitiator(target);
    const rsp = await ini.login({ name, isid: Buffer.from(isid, 'hex') });
    assert.equal(rsp.opcode === 0x23 && rsp.statusClass, 0, `${name} logs in`);
    return ini;
  };
  const a = await login(INIT, '400000000001');
  const aSecond = await login(INIT, '400000000002'); // the issuer's other session
  const b = await login(INIT2, '400000000003');
  const c = await login(INIT3, '400000000004');

  a.tmf(7); // TARGET COLD RESET
  const rsp = await a.expect((p) => p.opcode === 0x22);
  assert.equal(rsp.opcode === 0x22 && rsp.response, 0, 'function complete');
  await a.settle(20);

  assert.ok(a.transport.ended || a.transport.destroyed, 'the issuer is logged out');
  assert.ok(aSecond.transport.ended || aSecond.transport.destroyed, "the issuer's other session ends");
  assert.ok(b.transport.ended || b.transport.destroyed, 'an initiator sharing the LU is logged out');
  assert.ok(!c.transport.ended && !c.transport.destroyed, 'an initiator that shares nothing stays');

  // C still works: its first command gets the POWER ON unit attention of its new nexus, then TUR passes.
  const tur = async () => {
    const itt = c.command(Buffer.alloc(6));
    const r = await c.expect((p) => p.opcode === 0x21 && p.itt === itt);
    return r.opcode === 0x21 ? r.status : -1;
  };
  let status = await tur();
  if (status === 2) status = await tur();
  assert.equal(status, 0);
});
