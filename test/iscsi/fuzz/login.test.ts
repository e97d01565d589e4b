/**
 * Fuzzes the login state machine with thousands of reactive login conversations (see login-gen.ts): the
 * handler never throws nor fails internally, always answers with an encodable response within the login
 * segment bound, ends for good once failed or complete, and completes only for initiators the ACL allows,
 * with CHAP proven when CHAP is configured (Normal and Discovery sessions alike).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LoginHandler, type LoginPolicy, parseText } from '../../../src/iscsi/login/index.js';
import { encodeLoginResponse, LoginStatus } from '../../../src/iscsi/pdu/index.js';
import { chapAnswer } from './corpus.js';
import { CHAP_CREDS, CHAP_INIT, FUZZ_INIT, FUZZ_TARGET, IDS } from './harness.js';
import { LoginScript } from './login-gen.js';
import { announceSeed, fuzzSeed, Rng, scaled } from './prng.js';

function policy(): LoginPolicy {
  const access = new Map([
    [FUZZ_INIT.toLowerCase(), { allowed: true, auth: null }],
    [CHAP_INIT.toLowerCase(), { allowed: true, auth: CHAP_CREDS }],
  ]);
  let tsih = 1;
  return {
    targetName: FUZZ_TARGET,
    targetAlias: 'fuzz',
    portalGroupTag: 1,
    lookupInitiator: (iqn) => access.get(iqn.toLowerCase()),
    discoveryAuth: (iqn) => {
      const a = access.get(iqn.toLowerCase())?.auth ?? null;
      return a?.in_user && a.in_pass ? a : null;
    },
    allocateTsih: () => (tsih = (tsih % 0xffff) + 1),
    sessionExists: (name, _isid, t) => name.toLowerCase() === FUZZ_INIT && t === 3,
  };
}

describe('fuzz: LoginHandler', () => {
  test('reactive login conversations: no throws, no internal errors, the ACL and CHAP hold', () => {
    const seed = fuzzSeed();
    announceSeed('login fuzz', seed);
    const rng = new Rng(seed);
    const iterations = scaled(20000);
    const started = Date.now();
    const outcomes: Record<string, number> = {};
    let requests = 0;
    for (let i = 0; i < iterations; i++) {
      const script = new LoginScript(rng, IDS, { deviate: rng.pick([0, 0.05, 0.15, 0.4]) });
      const handler = new LoginHandler(policy(), {
        params: rng.chance(0.5) ? {} : { maxRecvDataSegmentLength: 8192, firstBurstLength: 8192 },
        ...(rng.chance(0.1) ? { maxTextLength: 4096 } : {}),
        ...(rng.chance(0.1) ? { allowDiscovery: false } : {}),
      });
      let req = script.first();
      let outcome = 'unfinished';
      const ctx = () => `seed ${seed} iteration ${i} step ${script.steps} plan ${script.plan}`;
      for (let s = 0; s < 40; s++) {
        requests++;
        const step = handler.handle({ opcode: 0x03, ...req });
        const r = step.response;
        // Always encodable, never beyond the login segment bound.
        const wire = encodeLoginResponse(r);
        assert.ok((r.data?.length ?? 0) <= 8192, `login response of ${r.data?.length} bytes (${ctx()})`);
        assert.ok(wire.length >= 1);
        // A failure echoes the request's CSG, whatever it was; anything else must name real stages.
        if (step.status !== 'failed') assert.notEqual(r.csg, 2, ctx());
        if (r.transit) assert.notEqual(r.nsg, 2, ctx());
        if (step.status === 'failed') {
          assert.notEqual(r.statusClass, 0, `failed login with status class 0 (${ctx()})`);
          assert.ok(
            !(step.loginStatus === LoginStatus.TargetError && step.reason.startsWith('internal error')),
            `internal error in the login handler: ${step.reason} (${ctx()})`,
          );
          outcome = `failed-${step.loginStatus.toString(16)}`;
          // A failed login stays failed.
          const again = handler.handle({ opcode: 0x03, ...req });
          assert.equal(again.status, 'failed');
          break;
        }
        assert.equal(r.statusClass, 0, ctx());
        if (step.status === 'complete') {
          const v = script.verdict();
          const res = step.result;
          assert.ok(r.transit && r.nsg === 3 && res.tsih > 0 && r.tsih === res.tsih, ctx());
          const name = res.initiatorName.toLowerCase();
          if (res.sessionType === 'Normal') {
            assert.ok(
              name === FUZZ_INIT.toLowerCase() || name === CHAP_INIT.toLowerCase(),
              `ACL bypass: Normal session for ${res.initiatorName} (${ctx()})`,
            );
          }
          if (name === CHAP_INIT.toLowerCase()) {
            assert.notEqual(res.auth, 'None', `CHAP bypass for ${res.initiatorName} (${ctx()})`);
            assert.ok(v.provedChap, `login completed without the right CHAP response (${ctx()})`);
          }
          if (res.auth === 'CHAP-mutual') {
            // Our answer to the initiator's challenge must be right.
            assert.ok(script.expectMutual, ctx());
          }
          outcome = `complete-${res.sessionType}-${res.auth}`;
          const again = handler.handle({ opcode: 0x03, ...req });
          assert.equal(again.status, 'failed', 'nothing after completion');
          break;
        }
        // Our answer to the initiator's mutual CHAP challenge must be right.
        const m = script.expectMutual;
        if (m && !r.continue && r.data && r.data.length > 0) {
          const cr = parseText(r.data).find(([k]) => k === 'CHAP_R')?.[1];
          if (cr !== undefined) {
            assert.equal(
              cr,
              chapAnswer(m.alg, m.id, IDS.targetSecret, m.challenge),
              `mutual CHAP answer (${ctx()})`,
            );
          }
        }
        req = script.next(r);
      }
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    }
    console.log(`# login fuzz: ${iterations} logins, ${requests} requests, ${Date.now() - started} ms`);
    console.log(`# outcomes: ${JSON.stringify(outcomes)}`);
    // The fuzzer must reach every interesting end, or it is not exploring.
    assert.ok(
      Object.keys(outcomes).some((k) => k.startsWith('complete-Normal-CHAP')),
      'some CHAP logins complete',
    );
    assert.ok(
      Object.keys(outcomes).some((k) => k === 'complete-Normal-None'),
      'some open logins complete',
    );
    assert.ok(
      Object.keys(outcomes).some((k) => k === 'failed-201'),
      'some authentication failures',
    );
    assert.ok(
      Object.keys(outcomes).some((k) => k === 'failed-202'),
      'some authorization failures',
    );
  });
});
