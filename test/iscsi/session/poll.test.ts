import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DecodedPdu } from '../../../src/iscsi/pdu/index.js';
import { IscsiTarget, type SessionLimits } from '../../../src/iscsi/session/index.js';
import { INIT, offer, ScriptedScsi, TARGET, TestInitiator } from './helpers.js';

type Of<O extends number> = Extract<DecodedPdu, { opcode: O }>;
const isResponse = (p: DecodedPdu): p is Of<0x21> => p.opcode === 0x21;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function loggedIn(
  limits: Partial<SessionLimits>,
): Promise<{ target: IscsiTarget; ini: TestInitiator }> {
  const target = new IscsiTarget({
    targetName: TARGET,
    scsi: new ScriptedScsi(),
    limits: { nopIntervalMs: 0, ...limits },
  });
  target.setAccess([[INIT, { allowed: true, auth: null }]]);
  const ini = new TestInitiator(target);
  const rsp = await ini.login({ keys: offer() });
  assert.ok(rsp.opcode === 0x23 && rsp.statusClass === 0, 'login');
  return { target, ini };
}

describe('polling after a response', () => {
  test('a response keeps the loop polling for the window, then it sleeps again', async () => {
    const { target, ini } = await loggedIn({ pollAfterResponseMs: 30 });
    await sleep(40);
    assert.equal(target.polling, false, 'idle before the command');
    ini.command(Buffer.alloc(6)); // TEST UNIT READY: one response PDU
    await ini.expect(isResponse);
    assert.equal(target.polling, true, 'polling right after the response');
    await sleep(60);
    assert.equal(target.polling, false, 'stopped once the window passed');
    await target.shutdown();
  });

  test('each response extends the window', async () => {
    const { target, ini } = await loggedIn({ pollAfterResponseMs: 30 });
    for (let i = 0; i < 5; i++) {
      ini.command(Buffer.alloc(6)); // TEST UNIT READY: one response PDU
      await ini.expect(isResponse);
      await sleep(10);
      assert.equal(target.polling, true, `still polling after response ${i + 1}`);
    }
    await sleep(50);
    assert.equal(target.polling, false);
    await target.shutdown();
  });

  test('0 disables it', async () => {
    const { target, ini } = await loggedIn({ pollAfterResponseMs: 0 });
    ini.command(Buffer.alloc(6)); // TEST UNIT READY: one response PDU
    await ini.expect(isResponse);
    assert.equal(target.polling, false);
    await target.shutdown();
  });

  test('shutdown ends the polling at once', async () => {
    const { target, ini } = await loggedIn({ pollAfterResponseMs: 10_000 });
    ini.command(Buffer.alloc(6)); // TEST UNIT READY: one response PDU
    await ini.expect(isResponse);
    assert.equal(target.polling, true);
    await target.shutdown();
    await sleep(5);
    assert.equal(target.polling, false, 'a stopped target must not keep the process busy');
  });
});
