import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { type KeyValue, LoginHandler, type LoginOptions, parseText } from '../../../src/iscsi/login/index.js';
import {
  concatPdu,
  decodePdu,
  encodeLoginResponse,
  LoginStatus,
  PduDecoder,
} from '../../../src/iscsi/pdu/index.js';
import { loginPdu } from '../pdu/fixtures.js';
import {
  asObject,
  chap,
  FakeInitiator,
  INIT,
  ISID,
  LIBISCSI_OFFER,
  makePolicy,
  OPEN_ISCSI_OFFER,
  TARGET,
  type TestPolicy,
} from './helpers.js';

const IDENT: KeyValue[] = [
  ['InitiatorName', INIT],
  ['TargetName', TARGET],
  ['SessionType', 'Normal'],
];

/** Deterministic "random" bytes: 0x5a, 0x5b, … */
function counterRandom(): (n: number) => Buffer {
  let c = 0x5a;
  return (n) => Buffer.from(Array.from({ length: n }, () => c++ & 0xff));
}

function setup(policy: TestPolicy = makePolicy(), opts: LoginOptions = {}) {
  const handler = new LoginHandler(policy, { random: counterRandom(), ...opts });
  const ini = new FakeInitiator((req) => handler.handle(req));
  return { handler, ini, policy };
}

function md5Response(id: number, secret: string, challengeHex: string): string {
  const h = createHash('md5')
    .update(Buffer.of(id))
    .update(secret)
    .update(Buffer.from(challengeHex.replace(/^0x/i, ''), 'hex'))
    .digest('hex');
  return `0x${h.toUpperCase()}`; // libiscsi sends upper case
}

describe('login: no authentication', () => {
  test('libiscsi 1.19: straight to operational, one round trip, exact answer', () => {
    const { ini, policy } = setup();
    const { step, text } = ini.send(1, 3, true, [...IDENT, ...LIBISCSI_OFFER]);
    assert.equal(step.status, 'complete');
    assert.equal(
      text,
      [
        'TargetPortalGroupTag=1',
        'HeaderDigest=None',
        'DataDigest=None',
        'InitialR2T=No',
        'ImmediateData=Yes',
        'MaxBurstLength=262144',
        'FirstBurstLength=262144',
        'DefaultTime2Wait=2',
        'DefaultTime2Retain=0',
        'MaxOutstandingR2T=1',
        'ErrorRecoveryLevel=0',
        'IFMarker=No',
        'OFMarker=No',
        'MaxConnections=1',
        'MaxRecvDataSegmentLength=262144',
        'DataPDUInOrder=Yes',
        'DataSequenceInOrder=Yes',
        'RDMAExtensions=No',
        'InitiatorRecvDataSegmentLength=Irrelevant',
        'TargetRecvDataSegmentLength=Irrelevant',
        '',
      ].join('\0'),
    );
    if (step.status !== 'complete') return;
    const r = step.response;
    assert.equal(r.transit, true);
    assert.equal(r.csg, 1);
    assert.equal(r.nsg, 3);
    assert.equal(r.statusClass, 0);
    assert.equal(r.tsih, 0x100);
    assert.deepEqual(policy.tsihs, [0x100]);
    assert.equal(r.statSN, 0x77, 'first StatSN follows the initiator ExpStatSN');
    assert.equal(r.expCmdSN, 0x1000);
    assert.equal(r.maxCmdSN, 0x1000 + 127);
    assert.equal(r.itt, 0x10);
    assert.ok(r.isid.equals(ISID));

    const res = step.result;
    assert.equal(res.sessionType, 'Normal');
    assert.equal(res.initiatorName, INIT);
    assert.equal(res.targetName, TARGET);
    assert.equal(res.newSession, true);
    assert.equal(res.tsih, 0x100);
    assert.equal(res.cid, 1);
    assert.equal(res.auth, 'None');
    assert.deepEqual(res.digests, { header: false, data: false });
    assert.equal(res.statSN, 0x77);
    assert.equal(res.expCmdSN, 0x1000);
    assert.deepEqual(res.params, {
      headerDigest: 'None',
      dataDigest: 'None',
      initiatorMaxRecvDataSegmentLength: 262144,
      targetMaxRecvDataSegmentLength: 262144,
      maxBurstLength: 262144,
      firstBurstLength: 262144,
      initialR2T: false,
      immediateData: true,
      maxOutstandingR2T: 1,
      dataPDUInOrder: true,
      dataSequenceInOrder: true,
      errorRecoveryLevel: 0,
      maxConnections: 1,
      defaultTime2Wait: 2,
      defaultTime2Retain: 0,
      ifMarker: false,
      ofMarker: false,
    });

    // The response encodes to the expected header bytes.
    const wire = concatPdu(encodeLoginResponse(step.response));
    assert.equal(wire.subarray(0, 4).toString('hex'), '23870000');
    assert.equal(wire.readUIntBE(5, 3), Buffer.byteLength(text));
    const back = decodePdu(wire);
    assert.equal(back.opcode, 0x23);
  });

  test('libiscsi with header_digest=crc32c gets CRC32C and digests in the result', () => {
    const { ini } = setup();
    const offer = LIBISCSI_OFFER.map(([k, v]): KeyValue => (k === 'HeaderDigest' ? [k, 'CRC32C'] : [k, v]));
    const { step, keys } = ini.send(1, 3, true, [...IDENT, ...offer]);
    assert.equal(asObject(keys).HeaderDigest, 'CRC32C');
    assert.equal(step.status, 'complete');
    if (step.status === 'complete') assert.deepEqual(step.result.digests, { header: true, data: false });
  });

  test('open-iscsi: security stage with AuthMethod=None, then operational', () => {
    const { ini } = setup();
    const sec = ini.send(0, 1, true, [...IDENT, ['InitiatorAlias', 'host1'], ['AuthMethod', 'None']]);
    assert.equal(sec.step.status, 'continue');
    assert.equal(sec.text, 'TargetPortalGroupTag=1\0AuthMethod=None\0');
    assert.equal(sec.step.response.transit, true);
    assert.equal(sec.step.response.csg, 0);
    assert.equal(sec.step.response.nsg, 1);
    assert.equal(sec.step.response.tsih, 0, 'TSIH is given only in the final response');

    const op = ini.send(1, 3, true, OPEN_ISCSI_OFFER);
    assert.equal(op.step.status, 'complete');
    assert.equal(op.step.response.statSN, sec.step.response.statSN + 1);
    const o = asObject(op.keys);
    assert.equal(o.MaxBurstLength, '1048576');
    assert.equal(o.FirstBurstLength, '262144');
    assert.equal(o.MaxRecvDataSegmentLength, '262144');
    assert.equal(o.TargetPortalGroupTag, undefined, 'TPGT only in the first response');
    if (op.step.status === 'complete') {
      assert.equal(op.step.result.initiatorAlias, 'host1');
      assert.equal(op.step.result.params.maxBurstLength, 1048576);
    }
  });

  test('security T=1 without AuthMethod is fine when no CHAP is required', () => {
    const { ini } = setup();
    const r = ini.send(0, 1, true, IDENT);
    assert.equal(r.step.status, 'continue');
    assert.equal(r.step.response.transit, true);
  });

  test('security straight to full feature: declarations go into the final response', () => {
    const { ini } = setup();
    const r = ini.send(0, 3, true, [...IDENT, ['AuthMethod', 'None']]);
    assert.equal(r.step.status, 'complete');
    assert.equal(r.text, 'TargetPortalGroupTag=1\0AuthMethod=None\0MaxRecvDataSegmentLength=262144\0');
    if (r.step.status === 'complete')
      assert.equal(r.step.result.params.initiatorMaxRecvDataSegmentLength, 8192);
  });

  test('TargetAlias is declared once when configured; target name matches case-insensitively', () => {
    const policy = makePolicy();
    policy.targetAlias = 'array one';
    const { ini } = setup(policy);
    const r = ini.send(1, 3, true, [
      ['InitiatorName', INIT],
      ['TargetName', TARGET.toUpperCase()],
      ['MaxRecvDataSegmentLength', '8192'],
    ]);
    assert.equal(asObject(r.keys).TargetAlias, 'array one');
    assert.equal(r.step.status, 'complete');
    if (r.step.status === 'complete') assert.equal(r.step.result.targetName, TARGET);
  });

  test('keys irrelevant in a login, vendor keys and unknown keys', () => {
    const { ini } = setup();
    const r = ini.send(1, 3, true, [
      ...IDENT,
      ['SendTargets', 'All'],
      ['TargetPortalGroupTag', '5'],
      ['X-com.example.Fancy', 'Yes'],
      ['Whatever', '1'],
      ['AuthMethod', 'None'],
    ]);
    const o = asObject(r.keys);
    assert.equal(o.SendTargets, 'Irrelevant');
    assert.equal(o.TargetPortalGroupTag, '1', 'our TPGT, not the echo');
    assert.equal(r.keys.filter(([k]) => k === 'TargetPortalGroupTag').length, 1);
    assert.equal(o['X-com.example.Fancy'], 'NotUnderstood');
    assert.equal(o.Whatever, 'NotUnderstood');
    assert.equal(o.AuthMethod, 'Irrelevant');
  });

  test('sequence numbers: StatSN increments per response, ExpCmdSN/MaxCmdSN follow CmdSN and the window', () => {
    const { ini } = setup(makePolicy(), { cmdWindow: 32, initialStatSN: 0xffffffff });
    ini.cmdSN = 0xfffffff0;
    const a = ini.send(0, 1, false, [...IDENT, ['AuthMethod', 'None']]);
    assert.equal(a.step.response.statSN, 0xffffffff);
    assert.equal(a.step.response.maxCmdSN, (0xfffffff0 + 31) >>> 0);
    const b = ini.send(0, 1, true, []);
    assert.equal(b.step.response.statSN, 0);
    const c = ini.send(1, 3, true, OPEN_ISCSI_OFFER);
    assert.equal(c.step.response.statSN, 1);
    assert.equal(c.step.status, 'complete');
    if (c.step.status === 'complete') {
      assert.equal(c.step.result.statSN, 1);
      assert.equal(c.step.result.expCmdSN, 0xfffffff0);
    }
  });
});

describe('login: failures and status codes', () => {
  const cases: Array<[string, KeyValue[], number, Partial<Parameters<FakeInitiator['send']>[4]>?]> = [
    ['missing InitiatorName → 0x0207', [['TargetName', TARGET]], LoginStatus.MissingParameter],
    ['Normal session without TargetName → 0x0207', [['InitiatorName', INIT]], LoginStatus.MissingParameter],
    [
      'unknown target → 0x0203',
      [
        ['InitiatorName', INIT],
        ['TargetName', 'iqn.2000-01.com.example:other'],
      ],
      LoginStatus.TargetNotFound,
    ],
    [
      'initiator not in the ACL → 0x0202',
      [
        ['InitiatorName', 'iqn.1999-01.com.example:stranger'],
        ['TargetName', TARGET],
      ],
      LoginStatus.AuthorizationFailure,
    ],
    [
      'unknown SessionType → 0x0209',
      [...IDENT.slice(0, 2), ['SessionType', 'Weird']],
      LoginStatus.SessionTypeNotSupported,
    ],
    ['unsupported version → 0x0205', IDENT, LoginStatus.UnsupportedVersion, { versionMin: 1, versionMax: 1 }],
    ['TSIH of a session that does not exist → 0x020a', IDENT, LoginStatus.SessionDoesNotExist, { tsih: 9 }],
    ['T and C both set → 0x0200', IDENT, LoginStatus.InitiatorError, { continue: true }],
    ['transition to reserved stage 2 → 0x0200', IDENT, LoginStatus.InitiatorError, { nsg: 2 }],
    ['malformed text → 0x0200', [], LoginStatus.InitiatorError, { data: Buffer.from('NoEqualsSign\0') }],
  ];
  for (const [name, keys, status, extra] of cases) {
    test(name, () => {
      const { ini } = setup();
      const { step } = ini.send(0, 1, true, keys, extra ?? {});
      assert.equal(step.status, 'failed');
      if (step.status !== 'failed') return;
      assert.equal(step.loginStatus, status);
      assert.equal(step.response.statusClass, status >> 8);
      assert.equal(step.response.statusDetail, status & 0xff);
      assert.equal(step.response.transit, false);
      assert.equal(step.response.data?.length ?? 0, 0);
      assert.ok(step.reason.length > 0);
    });
  }

  test('a policy that throws gives 0x0300 target error', () => {
    const policy = makePolicy();
    policy.lookupInitiator = () => {
      throw new Error('store unavailable');
    };
    const { ini } = setup(policy);
    const { step } = ini.send(0, 1, true, IDENT);
    assert.equal(step.status, 'failed');
    if (step.status === 'failed') assert.equal(step.loginStatus, LoginStatus.TargetError);
  });

  test('stage mismatch and changed identity during login → 0x0200', () => {
    const a = setup();
    a.ini.send(0, 1, false, [...IDENT, ['AuthMethod', 'None']]);
    const wrongStage = a.ini.send(1, 3, true, OPEN_ISCSI_OFFER);
    assert.equal(wrongStage.step.status, 'failed');

    const b = setup();
    b.ini.send(0, 1, true, [...IDENT, ['AuthMethod', 'None']]);
    const renamed = b.ini.send(1, 3, true, [['InitiatorName', 'iqn.2000-01.com.example:evil']]);
    assert.equal(renamed.step.status, 'failed');
    if (renamed.step.status === 'failed') assert.equal(renamed.step.loginStatus, LoginStatus.InitiatorError);

    const c = setup();
    c.ini.send(0, 1, false, [...IDENT, ['AuthMethod', 'None']]);
    const isid = c.ini.send(0, 1, true, [], { isid: Buffer.from('400001370001', 'hex') });
    assert.equal(isid.step.status, 'failed');
  });

  test('nothing is accepted after completion or failure', () => {
    const { ini } = setup();
    assert.equal(ini.send(1, 3, true, [...IDENT, ...LIBISCSI_OFFER]).step.status, 'complete');
    const again = ini.send(1, 3, true, LIBISCSI_OFFER);
    assert.equal(again.step.status, 'failed');
    if (again.step.status === 'failed') assert.equal(again.step.loginStatus, LoginStatus.InvalidDuringLogin);
  });

  test('libiscsi re-sends its identity keys in the operational stage: accepted silently', () => {
    const { ini } = setup(makePolicy({ [INIT]: { allowed: true, auth: chap('u', 'secretsecret') } }));
    ini.send(0, 1, true, [...IDENT, ['AuthMethod', 'CHAP,None']]);
    const a = ini.send(0, 1, false, [['CHAP_A', '5']]);
    const o = asObject(a.keys);
    ini.send(0, 1, true, [
      ['CHAP_N', 'u'],
      ['CHAP_R', md5Response(Number(o.CHAP_I), 'secretsecret', o.CHAP_C!)],
    ]);
    const op = ini.send(1, 3, true, [...IDENT, ...LIBISCSI_OFFER]);
    assert.equal(op.step.status, 'complete');
    assert.equal(asObject(op.keys).InitiatorName, undefined);
  });

  test('existing session (TSIH ≠ 0) the policy knows: completes without a new TSIH', () => {
    const policy = makePolicy();
    policy.sessionExists = (iqn, isid, tsih) => iqn === INIT && isid.equals(ISID) && tsih === 0x42;
    const { ini } = setup(policy);
    ini.tsih = 0x42;
    const r = ini.send(1, 3, true, [...IDENT, ...OPEN_ISCSI_OFFER]);
    assert.equal(r.step.status, 'complete');
    assert.equal(r.step.response.tsih, 0x42);
    assert.deepEqual(policy.tsihs, []);
    if (r.step.status === 'complete') assert.equal(r.step.result.newSession, false);
  });

  test('a TSIH allocator out of range fails the login with 0x0302', () => {
    const policy = makePolicy();
    policy.allocateTsih = () => 0;
    const { ini } = setup(policy);
    const r = ini.send(1, 3, true, [...IDENT, ...OPEN_ISCSI_OFFER]);
    assert.equal(r.step.status, 'failed');
    if (r.step.status === 'failed') assert.equal(r.step.loginStatus, LoginStatus.OutOfResources);
  });
});

describe('login: CHAP', () => {
  const creds = chap('alice', 'alicesecret12', 'array', 'targetsecret1');
  const chapPolicy = () => makePolicy({ [INIT]: { allowed: true, auth: creds } });

  /** Runs AuthMethod + CHAP_A; returns the challenge keys. */
  function challenge(ini: FakeInitiator, algorithms = '5') {
    const first = ini.send(0, 1, true, [...IDENT, ['AuthMethod', 'CHAP,None']]);
    assert.equal(first.step.status, 'continue');
    assert.equal(first.text, 'TargetPortalGroupTag=1\0AuthMethod=CHAP\0');
    assert.equal(first.step.response.transit, false, 'no transit before authentication');
    const second = ini.send(0, 1, false, [['CHAP_A', algorithms]]);
    assert.equal(second.step.status, 'continue');
    return asObject(second.keys);
  }

  test('MD5: byte-exact challenge, correct response completes, then operational', () => {
    const { ini } = setup(chapPolicy());
    const c = challenge(ini);
    assert.deepEqual(c, {
      CHAP_A: '5',
      CHAP_I: String(0x5a),
      CHAP_C: '0x5b5c5d5e5f606162636465666768696a',
    });
    const resp = ini.send(0, 1, true, [
      ['CHAP_N', 'alice'],
      ['CHAP_R', md5Response(0x5a, 'alicesecret12', c.CHAP_C!)],
    ]);
    assert.equal(resp.step.status, 'continue');
    assert.equal(resp.step.response.transit, true);
    assert.equal(resp.step.response.nsg, 1);
    assert.equal(resp.text, '');
    const op = ini.send(1, 3, true, OPEN_ISCSI_OFFER);
    assert.equal(op.step.status, 'complete');
    if (op.step.status === 'complete') assert.equal(op.step.result.auth, 'CHAP');
  });

  test('MD5: wrong secret → 0x0201', () => {
    const { ini } = setup(chapPolicy());
    const c = challenge(ini);
    const r = ini.send(0, 1, true, [
      ['CHAP_N', 'alice'],
      ['CHAP_R', md5Response(Number(c.CHAP_I), 'wrongsecret12', c.CHAP_C!)],
    ]);
    assert.equal(r.step.status, 'failed');
    if (r.step.status === 'failed') {
      assert.equal(r.step.loginStatus, LoginStatus.AuthenticationFailure);
      assert.equal(r.step.response.statusClass, 2);
      assert.equal(r.step.response.statusDetail, 1);
    }
  });

  test('wrong CHAP_N, truncated CHAP_R, missing CHAP_R → 0x0201', () => {
    for (const keys of [
      (c: Record<string, string>) => [
        ['CHAP_N', 'mallory'],
        ['CHAP_R', md5Response(Number(c.CHAP_I), 'alicesecret12', c.CHAP_C!)],
      ],
      (c: Record<string, string>) => [
        ['CHAP_N', 'alice'],
        ['CHAP_R', md5Response(Number(c.CHAP_I), 'alicesecret12', c.CHAP_C!).slice(0, 20)],
      ],
      () => [['CHAP_N', 'alice']],
    ] as Array<(c: Record<string, string>) => KeyValue[]>) {
      const { ini } = setup(chapPolicy());
      const c = challenge(ini);
      const r = ini.send(0, 1, true, keys(c));
      assert.equal(r.step.status, 'failed');
      if (r.step.status === 'failed') assert.equal(r.step.loginStatus, LoginStatus.AuthenticationFailure);
    }
  });

  test('base64 (0b) CHAP_R is accepted', () => {
    const { ini } = setup(chapPolicy());
    const c = challenge(ini);
    const raw = Buffer.from(md5Response(Number(c.CHAP_I), 'alicesecret12', c.CHAP_C!).slice(2), 'hex');
    const r = ini.send(0, 1, true, [
      ['CHAP_N', 'alice'],
      ['CHAP_R', `0b${raw.toString('base64')}`],
    ]);
    assert.equal(r.step.status, 'continue');
    assert.equal(r.step.response.transit, true);
  });

  test('SHA-256 when the initiator lists it first; MD5 when it lists MD5 first', () => {
    const a = setup(chapPolicy());
    const c = challenge(a.ini, '7,5');
    assert.equal(c.CHAP_A, '7');
    assert.equal(c.CHAP_C!.length, 2 + 64, '32-byte challenge for SHA-256');
    const r = createHash('sha256')
      .update(Buffer.of(Number(c.CHAP_I)))
      .update('alicesecret12')
      .update(Buffer.from(c.CHAP_C!.slice(2), 'hex'))
      .digest('hex');
    const ok = a.ini.send(0, 1, true, [
      ['CHAP_N', 'alice'],
      ['CHAP_R', `0x${r}`],
    ]);
    assert.equal(ok.step.response.transit, true);

    const b = setup(chapPolicy());
    assert.equal(challenge(b.ini, '5,7').CHAP_A, '5');

    const c2 = setup(chapPolicy(), { chapAlgorithms: [5] });
    assert.equal(challenge(c2.ini, '7,6,5').CHAP_A, '5');
  });

  test('no common algorithm → 0x0201', () => {
    const { ini } = setup(chapPolicy());
    ini.send(0, 1, true, [...IDENT, ['AuthMethod', 'CHAP']]);
    const r = ini.send(0, 1, false, [['CHAP_A', '99,100']]);
    assert.equal(r.step.status, 'failed');
    if (r.step.status === 'failed') assert.equal(r.step.loginStatus, LoginStatus.AuthenticationFailure);
  });

  test('mutual CHAP: target answers with its own name and response', () => {
    const { ini } = setup(chapPolicy());
    const c = challenge(ini);
    const theirChallenge = Buffer.alloc(32, 0xc3);
    const r = ini.send(0, 1, true, [
      ['CHAP_N', 'alice'],
      ['CHAP_R', md5Response(Number(c.CHAP_I), 'alicesecret12', c.CHAP_C!)],
      ['CHAP_I', '77'],
      ['CHAP_C', `0x${theirChallenge.toString('hex')}`],
    ]);
    assert.equal(r.step.status, 'continue');
    assert.equal(r.step.response.transit, true);
    const expected = createHash('md5')
      .update(Buffer.of(77))
      .update('targetsecret1')
      .update(theirChallenge)
      .digest('hex');
    assert.deepEqual(r.keys, [
      ['CHAP_N', 'array'],
      ['CHAP_R', `0x${expected}`],
    ]);
    const op = ini.send(1, 3, true, OPEN_ISCSI_OFFER);
    if (op.step.status === 'complete') assert.equal(op.step.result.auth, 'CHAP-mutual');
    else assert.fail('login did not complete');
  });

  test('mutual CHAP: reflected challenge → 0x0201', () => {
    const { ini } = setup(chapPolicy());
    const c = challenge(ini);
    const r = ini.send(0, 1, true, [
      ['CHAP_N', 'alice'],
      ['CHAP_R', md5Response(Number(c.CHAP_I), 'alicesecret12', c.CHAP_C!)],
      ['CHAP_I', c.CHAP_I!],
      ['CHAP_C', c.CHAP_C!.toUpperCase().replace('0X', '0x')],
    ]);
    assert.equal(r.step.status, 'failed');
    if (r.step.status === 'failed') {
      assert.equal(r.step.loginStatus, LoginStatus.AuthenticationFailure);
      assert.match(r.step.reason, /reflect/);
    }
  });

  test('mutual CHAP without target credentials configured → 0x0201', () => {
    const { ini } = setup(makePolicy({ [INIT]: { allowed: true, auth: chap('alice', 'alicesecret12') } }));
    const c = challenge(ini);
    const r = ini.send(0, 1, true, [
      ['CHAP_N', 'alice'],
      ['CHAP_R', md5Response(Number(c.CHAP_I), 'alicesecret12', c.CHAP_C!)],
      ['CHAP_I', '1'],
      ['CHAP_C', '0x0102030405060708090a0b0c0d0e0f10'],
    ]);
    assert.equal(r.step.status, 'failed');
    if (r.step.status === 'failed') assert.equal(r.step.loginStatus, LoginStatus.AuthenticationFailure);
  });

  test('mutual CHAP with a wrong initiator response fails before we answer anything', () => {
    const { ini } = setup(chapPolicy());
    challenge(ini);
    const r = ini.send(0, 1, true, [
      ['CHAP_N', 'alice'],
      ['CHAP_R', `0x${'00'.repeat(16)}`],
      ['CHAP_I', '1'],
      ['CHAP_C', '0x0102030405060708090a0b0c0d0e0f10'],
    ]);
    assert.equal(r.step.status, 'failed');
    assert.equal(r.text, '');
  });

  test('CHAP configured: None refused, skipping security refused, transit without AuthMethod refused', () => {
    const only = setup(chapPolicy());
    const none = only.ini.send(0, 1, true, [...IDENT, ['AuthMethod', 'None']]);
    assert.equal(none.step.status, 'failed');
    if (none.step.status === 'failed') assert.equal(none.step.loginStatus, LoginStatus.AuthenticationFailure);

    const skip = setup(chapPolicy());
    const op = skip.ini.send(1, 3, true, [...IDENT, ...LIBISCSI_OFFER]);
    assert.equal(op.step.status, 'failed');
    if (op.step.status === 'failed') assert.equal(op.step.loginStatus, LoginStatus.AuthenticationFailure);

    const silent = setup(chapPolicy());
    const t = silent.ini.send(0, 1, true, IDENT);
    assert.equal(t.step.status, 'failed');
    if (t.step.status === 'failed') assert.equal(t.step.loginStatus, LoginStatus.AuthenticationFailure);
  });

  test('no CHAP configured: an initiator offering only CHAP is refused', () => {
    const { ini } = setup();
    const r = ini.send(0, 1, true, [...IDENT, ['AuthMethod', 'CHAP']]);
    assert.equal(r.step.status, 'failed');
    if (r.step.status === 'failed') assert.equal(r.step.loginStatus, LoginStatus.AuthenticationFailure);
  });

  test('CHAP keys out of order → 0x0201; CHAP keys in the operational stage → 0x0200', () => {
    const a = setup(chapPolicy());
    a.ini.send(0, 1, true, [...IDENT, ['AuthMethod', 'CHAP']]);
    const early = a.ini.send(0, 1, true, [
      ['CHAP_N', 'alice'],
      ['CHAP_R', '0x00'],
    ]);
    assert.equal(early.step.status, 'failed');

    const b = setup();
    b.ini.send(0, 1, true, [...IDENT, ['AuthMethod', 'None']]);
    const late = b.ini.send(1, 3, true, [['CHAP_A', '5']]);
    assert.equal(late.step.status, 'failed');
    if (late.step.status === 'failed') assert.equal(late.step.loginStatus, LoginStatus.InitiatorError);
  });

  test('a repeated AuthMethod offer before CHAP starts is answered again', () => {
    const { ini } = setup(chapPolicy());
    ini.send(0, 1, false, [...IDENT, ['AuthMethod', 'CHAP,None']]);
    const again = ini.send(0, 1, false, [['AuthMethod', 'CHAP,None']]);
    assert.equal(again.text, 'AuthMethod=CHAP\0');
  });
});

describe('login: discovery sessions', () => {
  test('no TargetName, no TPGT, session-only keys Irrelevant', () => {
    const { ini } = setup();
    const r = ini.send(1, 3, true, [
      ['InitiatorName', INIT],
      ['SessionType', 'Discovery'],
      ...LIBISCSI_OFFER,
    ]);
    assert.equal(r.step.status, 'complete');
    const o = asObject(r.keys);
    assert.equal(o.TargetPortalGroupTag, undefined);
    for (const k of [
      'InitialR2T',
      'ImmediateData',
      'MaxBurstLength',
      'FirstBurstLength',
      'MaxOutstandingR2T',
    ]) {
      assert.equal(o[k], 'Irrelevant', k);
    }
    assert.equal(o.HeaderDigest, 'None');
    assert.equal(o.MaxRecvDataSegmentLength, '262144');
    if (r.step.status === 'complete') {
      assert.equal(r.step.result.sessionType, 'Discovery');
      assert.equal(r.step.result.targetName, undefined);
    }
  });

  test('unknown initiators may discover (the SendTargets answer is filtered instead)', () => {
    const { ini } = setup(makePolicy({}));
    const r = ini.send(0, 3, true, [
      ['InitiatorName', 'iqn.1999-01.com.example:stranger'],
      ['SessionType', 'Discovery'],
      ['AuthMethod', 'None'],
    ]);
    assert.equal(r.step.status, 'complete');
  });

  test('discovery CHAP is enforced when the policy asks for it', () => {
    const { ini } = setup(makePolicy(undefined, chap('disc', 'discoverysecret')));
    const r = ini.send(0, 1, true, [
      ['InitiatorName', INIT],
      ['SessionType', 'Discovery'],
      ['AuthMethod', 'None'],
    ]);
    assert.equal(r.step.status, 'failed');
  });

  test('discovery can be disabled → 0x0209', () => {
    const { ini } = setup(makePolicy(), { allowDiscovery: false });
    const r = ini.send(0, 1, true, [
      ['InitiatorName', INIT],
      ['SessionType', 'Discovery'],
    ]);
    assert.equal(r.step.status, 'failed');
    if (r.step.status === 'failed') assert.equal(r.step.loginStatus, LoginStatus.SessionTypeNotSupported);
  });
});

describe('login: text continuation', () => {
  test('inbound text split over three PDUs with C=1 is acknowledged with empty responses', () => {
    const { ini } = setup();
    const text = Buffer.from([...IDENT, ...LIBISCSI_OFFER].map(([k, v]) => `${k}=${v}\0`).join(''));
    const parts = [text.subarray(0, 100), text.subarray(100, 333), text.subarray(333)];
    const a = ini.send(1, 0, false, parts[0]!, { continue: true });
    assert.equal(a.step.status, 'continue');
    assert.equal(a.text, '');
    assert.equal(a.step.response.transit, false);
    const b = ini.send(1, 0, false, parts[1]!, { continue: true });
    assert.equal(b.text, '');
    assert.equal(b.step.response.statSN, a.step.response.statSN + 1);
    const c = ini.send(1, 3, true, parts[2]!);
    assert.equal(c.step.status, 'complete');
    assert.equal(asObject(c.keys).MaxRecvDataSegmentLength, '262144');
  });

  test('a response longer than 8192 bytes goes out with C=1 and is fetched with empty requests', () => {
    const { ini } = setup();
    const many: KeyValue[] = Array.from({ length: 400 }, (_, i) => [`X-org.example.key${i}`, 'v']);
    const text = Buffer.from(
      [...IDENT, ...many, ...OPEN_ISCSI_OFFER].map(([k, v]) => `${k}=${v}\0`).join(''),
    );
    // Inbound too: the request itself exceeds 8192 bytes, so it is sent in two parts.
    ini.send(1, 0, false, text.subarray(0, 8192), { continue: true });
    const chunks: Buffer[] = [];
    let r = ini.send(1, 3, true, text.subarray(8192));
    let guard = 0;
    while (r.step.response.continue) {
      assert.equal(r.step.response.transit, false, 'no transit while continuing');
      assert.ok((r.step.response.data?.length ?? 0) <= 8192);
      chunks.push(r.step.response.data!);
      ini.itt++;
      ini.cmdSN++;
      r = ini.send(1, 3, true, []);
      assert.equal(r.step.response.itt, ini.itt, 'each part answers the request that fetched it');
      assert.ok(++guard < 10);
    }
    chunks.push(r.step.response.data!);
    assert.ok(chunks.length >= 2);
    assert.equal(r.step.status, 'complete');
    assert.equal(r.step.response.transit, true);
    const keys = parseText(Buffer.concat(chunks));
    assert.equal(keys.filter(([, v]) => v === 'NotUnderstood').length, 400);
    assert.equal(asObject(keys).MaxBurstLength, '1048576');
  });
});

describe('login: target-originated offers', () => {
  test('a MaxBurstLength below the RFC default is offered and waited for', () => {
    const { ini } = setup(makePolicy(), { params: { maxBurstLength: 65536, firstBurstLength: 32768 } });
    const r = ini.send(1, 3, true, [...IDENT, ['MaxRecvDataSegmentLength', '65536']]);
    assert.equal(r.step.status, 'continue');
    assert.equal(r.step.response.transit, false);
    const o = asObject(r.keys);
    assert.equal(o.MaxBurstLength, '65536');
    assert.equal(o.FirstBurstLength, '32768');
    const done = ini.send(1, 3, true, [
      ['MaxBurstLength', '65536'],
      ['FirstBurstLength', '16384'],
    ]);
    assert.equal(done.step.status, 'complete');
    assert.equal(done.text, '');
    if (done.step.status === 'complete') {
      assert.equal(done.step.result.params.maxBurstLength, 65536);
      assert.equal(done.step.result.params.firstBurstLength, 16384);
    }
  });

  test('an answer violating the result function fails the login with 0x0200', () => {
    const { ini } = setup(makePolicy(), { params: { maxBurstLength: 65536, firstBurstLength: 32768 } });
    ini.send(1, 3, true, IDENT);
    const bad = ini.send(1, 3, true, [
      ['MaxBurstLength', '131072'],
      ['FirstBurstLength', '32768'],
    ]);
    assert.equal(bad.step.status, 'failed');
    if (bad.step.status === 'failed') assert.equal(bad.step.loginStatus, LoginStatus.InitiatorError);
  });

  test('a target requiring header digests offers CRC32C', () => {
    const { ini } = setup(makePolicy(), { params: { headerDigest: ['CRC32C'] } });
    const r = ini.send(1, 3, true, IDENT);
    assert.equal(asObject(r.keys).HeaderDigest, 'CRC32C');
    const done = ini.send(1, 3, true, [['HeaderDigest', 'CRC32C']]);
    assert.equal(done.step.status, 'complete');
    if (done.step.status === 'complete') assert.equal(done.step.result.digests.header, true);
  });
});

describe('login over the wire codec', () => {
  test('bytes in, bytes out: decoder → LoginHandler → encoder, then digests switch on', () => {
    const handler = new LoginHandler(makePolicy());
    const target = new PduDecoder();
    const initiator = new PduDecoder({ role: 'initiator' });
    const wire = loginPdu(
      [
        ...IDENT,
        ...LIBISCSI_OFFER.map(([k, v]): KeyValue => (k === 'HeaderDigest' ? [k, 'CRC32C'] : [k, v])),
      ],
      { isid: ISID, cid: 0, cmdSN: 5 },
    );
    // Delivered in two TCP segments.
    target.push(wire.subarray(0, 61));
    assert.equal(target.next(), undefined);
    target.push(wire.subarray(61));
    const req = target.next();
    assert.equal(req?.opcode, 0x03);
    if (req?.opcode !== 0x03) return;
    const step = handler.handle(req);
    assert.equal(step.status, 'complete');
    if (step.status !== 'complete') return;
    initiator.push(concatPdu(encodeLoginResponse(step.response)));
    const resp = initiator.next();
    assert.equal(resp?.opcode, 0x23);
    if (resp?.opcode !== 0x23) return;
    assert.equal(resp.tsih, step.result.tsih);
    assert.equal(asObject(parseText(resp.data)).HeaderDigest, 'CRC32C');
    target.setDigests(step.result.digests);
    assert.deepEqual(step.result.digests, { header: true, data: false });
  });
});
