import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  DEFAULT_TARGET_PARAMS,
  Negotiator,
  parseNumber,
  RFC_DEFAULTS,
  type SessionType,
  type TargetParams,
  validateTargetParams,
} from '../../../src/iscsi/login/index.js';
import { LIBISCSI_OFFER, OPEN_ISCSI_OFFER } from './helpers.js';

function answer(key: string, value: string, cfg: Partial<TargetParams> = {}, type: SessionType = 'Normal') {
  const n = new Negotiator({ ...DEFAULT_TARGET_PARAMS, ...cfg }, type);
  const out = n.negotiate([[key, value]]);
  assert.equal(out.responses.length, 1, `${key}=${value} gets exactly one answer`);
  return { value: out.responses[0]![1], params: n.params };
}

/** [key, offer, our setting, expected answer] */
type Row = [string, string, Partial<TargetParams>, string];

function table(name: string, rows: Row[]) {
  test(name, () => {
    for (const [key, offer, cfg, expected] of rows) {
      assert.equal(answer(key, offer, cfg).value, expected, `${key}=${offer} with ${JSON.stringify(cfg)}`);
    }
  });
}

describe('negotiation result functions', () => {
  table(
    'min (MaxBurstLength, FirstBurstLength, MaxConnections, MaxOutstandingR2T, DefaultTime2Retain, ERL)',
    [
      ['MaxBurstLength', '262144', {}, '262144'],
      ['MaxBurstLength', '16776192', {}, '1048576'],
      ['MaxBurstLength', '512', {}, '512'],
      ['MaxBurstLength', '0x40000', {}, '262144'],
      ['MaxBurstLength', '511', {}, 'Reject'],
      ['MaxBurstLength', '16777216', {}, 'Reject'],
      ['MaxBurstLength', 'lots', {}, 'Reject'],
      ['MaxBurstLength', '', {}, 'Reject'],
      ['FirstBurstLength', '65536', {}, '65536'],
      ['FirstBurstLength', '1048576', {}, '262144'],
      ['MaxConnections', '8', {}, '1'],
      ['MaxConnections', '0', {}, 'Reject'],
      ['MaxConnections', '65536', {}, 'Reject'],
      ['MaxOutstandingR2T', '16', {}, '1'],
      ['MaxOutstandingR2T', '16', { maxOutstandingR2T: 4 }, '4'],
      ['MaxOutstandingR2T', '2', { maxOutstandingR2T: 4 }, '2'],
      ['DefaultTime2Retain', '20', {}, '0'],
      ['DefaultTime2Retain', '3601', {}, 'Reject'],
      ['ErrorRecoveryLevel', '2', {}, '0'],
      ['ErrorRecoveryLevel', '1', {}, '0'],
      ['ErrorRecoveryLevel', '0', {}, '0'],
      ['ErrorRecoveryLevel', '3', {}, 'Reject'],
    ],
  );

  table('max (DefaultTime2Wait)', [
    ['DefaultTime2Wait', '0', {}, '2'],
    ['DefaultTime2Wait', '2', {}, '2'],
    ['DefaultTime2Wait', '10', {}, '10'],
    ['DefaultTime2Wait', '0', { defaultTime2Wait: 5 }, '5'],
    ['DefaultTime2Wait', '3601', {}, 'Reject'],
  ]);

  table('OR (InitialR2T, DataPDUInOrder, DataSequenceInOrder)', [
    ['InitialR2T', 'No', {}, 'No'],
    ['InitialR2T', 'Yes', {}, 'Yes'],
    ['InitialR2T', 'No', { initialR2T: true }, 'Yes'],
    ['InitialR2T', 'maybe', {}, 'Reject'],
    ['DataPDUInOrder', 'No', {}, 'Yes'],
    ['DataPDUInOrder', 'No', { dataPDUInOrder: false }, 'No'],
    ['DataPDUInOrder', 'Yes', { dataPDUInOrder: false }, 'Yes'],
    ['DataSequenceInOrder', 'No', {}, 'Yes'],
    ['DataSequenceInOrder', 'No', { dataSequenceInOrder: false }, 'No'],
  ]);

  table('AND (ImmediateData, markers, RDMAExtensions)', [
    ['ImmediateData', 'Yes', {}, 'Yes'],
    ['ImmediateData', 'No', {}, 'No'],
    ['ImmediateData', 'Yes', { immediateData: false }, 'No'],
    ['ImmediateData', 'yes', {}, 'Reject'],
    ['IFMarker', 'Yes', {}, 'No'],
    ['OFMarker', 'No', {}, 'No'],
    ['RDMAExtensions', 'Yes', {}, 'No'],
  ]);

  table('list (HeaderDigest, DataDigest, TaskReporting): first of the offer that we support', [
    ['HeaderDigest', 'None,CRC32C', {}, 'None'],
    ['HeaderDigest', 'CRC32C,None', {}, 'CRC32C'],
    ['HeaderDigest', 'CRC32C', {}, 'CRC32C'],
    ['HeaderDigest', 'MD5,CRC32C', {}, 'CRC32C'],
    ['HeaderDigest', 'MD5', {}, 'Reject'],
    ['HeaderDigest', 'CRC32C', { headerDigest: ['None'] }, 'Reject'],
    ['HeaderDigest', 'None,CRC32C', { headerDigest: ['CRC32C'] }, 'CRC32C'],
    ['DataDigest', 'CRC32C,None', {}, 'CRC32C'],
    ['DataDigest', 'None', {}, 'None'],
    ['TaskReporting', 'ResponseFence,RFC3720', {}, 'RFC3720'],
    ['TaskReporting', 'FastAbort', {}, 'Reject'],
  ]);

  table('declarative MaxRecvDataSegmentLength is answered with ours', [
    ['MaxRecvDataSegmentLength', '8192', {}, '262144'],
    ['MaxRecvDataSegmentLength', '262144', { maxRecvDataSegmentLength: 65536 }, '65536'],
    ['MaxRecvDataSegmentLength', '100', {}, 'Reject'],
    ['MaxRecvDataSegmentLength', 'x', {}, 'Reject'],
  ]);

  table('Irrelevant and NotUnderstood', [
    ['IFMarkInt', '2048~8192', {}, 'Irrelevant'],
    ['OFMarkInt', '2048', {}, 'Irrelevant'],
    ['InitiatorRecvDataSegmentLength', '262144', {}, 'Irrelevant'],
    ['X-com.example.Feature', 'Yes', {}, 'NotUnderstood'],
    ['X#org.example.feature', '1', {}, 'NotUnderstood'],
    ['NoSuchKey', '1', {}, 'NotUnderstood'],
    ['iSCSIProtocolLevel', '2', {}, '1'],
    ['iSCSIProtocolLevel', '0', {}, '0'],
    ['iSCSIProtocolLevel', '32', {}, 'Reject'],
  ]);

  test('the initiator declaration is recorded; ours is declared once', () => {
    const n = new Negotiator(DEFAULT_TARGET_PARAMS, 'Normal');
    n.negotiate([['MaxRecvDataSegmentLength', '65536']]);
    assert.equal(n.params.initiatorMaxRecvDataSegmentLength, 65536);
    assert.equal(n.params.targetMaxRecvDataSegmentLength, 262144);
    assert.deepEqual(n.declarations(), []);

    const silent = new Negotiator(DEFAULT_TARGET_PARAMS, 'Normal');
    assert.equal(silent.params.targetMaxRecvDataSegmentLength, 8192, 'RFC default until declared');
    assert.deepEqual(silent.declarations(), [['MaxRecvDataSegmentLength', '262144']]);
    assert.deepEqual(silent.declarations(), []);
    assert.equal(silent.params.initiatorMaxRecvDataSegmentLength, 8192);
  });

  test('FirstBurstLength never exceeds the negotiated MaxBurstLength, whatever the order', () => {
    const n = new Negotiator(DEFAULT_TARGET_PARAMS, 'Normal');
    const out = n.negotiate([
      ['FirstBurstLength', '262144'],
      ['MaxBurstLength', '65536'],
    ]);
    assert.deepEqual(out.responses, [
      ['FirstBurstLength', '65536'],
      ['MaxBurstLength', '65536'],
    ]);
    assert.equal(n.params.firstBurstLength, 65536);
  });

  test('discovery sessions answer session-only keys Irrelevant and keep the rest', () => {
    for (const k of [
      'InitialR2T',
      'ImmediateData',
      'MaxBurstLength',
      'FirstBurstLength',
      'MaxOutstandingR2T',
      'DataPDUInOrder',
      'DataSequenceInOrder',
      'TaskReporting',
    ]) {
      assert.equal(answer(k, k.includes('Length') ? '65536' : 'Yes', {}, 'Discovery').value, 'Irrelevant', k);
    }
    assert.equal(answer('HeaderDigest', 'CRC32C', {}, 'Discovery').value, 'CRC32C');
    assert.equal(answer('MaxRecvDataSegmentLength', '32768', {}, 'Discovery').value, '262144');
    assert.equal(answer('ErrorRecoveryLevel', '0', {}, 'Discovery').value, '0');
  });

  test('exact answers to libiscsi 1.19 and open-iscsi default offers', () => {
    const lib = new Negotiator(DEFAULT_TARGET_PARAMS, 'Normal').negotiate(LIBISCSI_OFFER).responses;
    assert.deepEqual(Object.fromEntries(lib), {
      HeaderDigest: 'None',
      DataDigest: 'None',
      InitialR2T: 'No',
      ImmediateData: 'Yes',
      MaxBurstLength: '262144',
      FirstBurstLength: '262144',
      DefaultTime2Wait: '2',
      DefaultTime2Retain: '0',
      MaxOutstandingR2T: '1',
      ErrorRecoveryLevel: '0',
      IFMarker: 'No',
      OFMarker: 'No',
      MaxConnections: '1',
      MaxRecvDataSegmentLength: '262144',
      DataPDUInOrder: 'Yes',
      DataSequenceInOrder: 'Yes',
      RDMAExtensions: 'No',
      InitiatorRecvDataSegmentLength: 'Irrelevant',
      TargetRecvDataSegmentLength: 'Irrelevant',
    });
    assert.equal(lib.length, LIBISCSI_OFFER.length, 'one answer per key, in order');
    for (const [i, [k]] of lib.entries()) assert.equal(k, LIBISCSI_OFFER[i]![0]);

    const n = new Negotiator(DEFAULT_TARGET_PARAMS, 'Normal');
    const open = Object.fromEntries(n.negotiate(OPEN_ISCSI_OFFER).responses);
    assert.equal(open.MaxBurstLength, '1048576');
    assert.equal(open.FirstBurstLength, '262144');
    assert.equal(open.InitialR2T, 'No');
    assert.equal(open.ImmediateData, 'Yes');
    assert.equal(n.params.maxBurstLength, 1048576);
    assert.equal(n.params.initiatorMaxRecvDataSegmentLength, 262144);
    assert.deepEqual(n.offersNeeded(), [], 'nothing to originate with default settings');
  });

  test('offers are made only where the RFC default breaks our limits, once, and their answers checked', () => {
    const quiet = new Negotiator(DEFAULT_TARGET_PARAMS, 'Normal');
    assert.deepEqual(quiet.offersNeeded(), []);

    const strict = new Negotiator(
      {
        ...DEFAULT_TARGET_PARAMS,
        maxBurstLength: 131072,
        firstBurstLength: 16384,
        immediateData: false,
        initialR2T: true,
        dataDigest: ['CRC32C'],
      },
      'Normal',
    );
    const offers = strict.offersNeeded();
    assert.deepEqual(offers, [
      ['DataDigest', 'CRC32C'],
      ['MaxBurstLength', '131072'],
      ['FirstBurstLength', '16384'],
      ['ImmediateData', 'No'],
    ]);
    assert.equal(strict.awaitingAnswers, true);
    assert.deepEqual(strict.offersNeeded(), [], 'never offered twice');
    const out = strict.negotiate([
      ['DataDigest', 'CRC32C'],
      ['MaxBurstLength', '65536'],
      ['FirstBurstLength', '16384'],
      ['ImmediateData', 'No'],
    ]);
    assert.deepEqual(out, { responses: [] }, 'answers to our offers are not answered again');
    assert.equal(strict.awaitingAnswers, false);
    assert.equal(strict.params.maxBurstLength, 65536);
    assert.equal(strict.params.dataDigest, 'CRC32C');
    assert.equal(strict.params.immediateData, false);
    assert.deepEqual(strict.offersNeeded(), []);

    const bad = new Negotiator({ ...DEFAULT_TARGET_PARAMS, immediateData: false }, 'Normal');
    bad.offersNeeded();
    assert.match(bad.negotiate([['ImmediateData', 'Yes']]).failure ?? '', /ImmediateData/);

    const disc = new Negotiator(
      { ...DEFAULT_TARGET_PARAMS, maxBurstLength: 1024, firstBurstLength: 1024 },
      'Discovery',
    );
    assert.deepEqual(disc.offersNeeded(), [], 'session-only keys are not offered in discovery');
  });

  test('digests required (iscsi_header_digest/iscsi_data_digest: required): CRC32C or no login', () => {
    const neg = (cfg: Partial<TargetParams>) =>
      new Negotiator({ ...DEFAULT_TARGET_PARAMS, ...cfg }, 'Normal');
    const headerRequired: Partial<TargetParams> = { headerDigest: ['CRC32C'] };
    // libiscsi 1.19 offers HeaderDigest=None,CRC32C: optional (the default) takes None, required picks CRC32C.
    const dflt = neg({});
    assert.equal(dflt.negotiate(LIBISCSI_OFFER).failure, undefined);
    assert.equal(dflt.params.headerDigest, 'None');
    const n = neg(headerRequired);
    const out = n.negotiate(LIBISCSI_OFFER);
    assert.equal(out.failure, undefined);
    assert.equal(Object.fromEntries(out.responses).HeaderDigest, 'CRC32C');
    assert.deepEqual([n.params.headerDigest, n.params.dataDigest], ['CRC32C', 'None']);
    // A None-only offer (open-iscsi's defaults) fails the login rather than running without digests.
    assert.match(neg(headerRequired).negotiate(OPEN_ISCSI_OFFER).failure ?? '', /HeaderDigest=None/);
    const dataRequired: Partial<TargetParams> = { dataDigest: ['CRC32C'] };
    assert.match(neg(dataRequired).negotiate(LIBISCSI_OFFER).failure ?? '', /DataDigest=None/);
    const d = neg(dataRequired);
    assert.deepEqual(d.negotiate([['DataDigest', 'None,CRC32C']]), { responses: [['DataDigest', 'CRC32C']] });
    // Not offered at all: the RFC default (None) is unacceptable, so we offer CRC32C, and None is no answer.
    const silent = neg({ ...headerRequired, ...dataRequired });
    assert.deepEqual(
      silent.offersNeeded().filter(([k]) => k.endsWith('Digest')),
      [
        ['HeaderDigest', 'CRC32C'],
        ['DataDigest', 'CRC32C'],
      ],
    );
    assert.match(silent.negotiate([['HeaderDigest', 'None']]).failure ?? '', /HeaderDigest/);
  });

  test('parseNumber: decimal and hex, nothing else', () => {
    assert.equal(parseNumber('0'), 0);
    assert.equal(parseNumber('262144'), 262144);
    assert.equal(parseNumber('0x10'), 16);
    assert.equal(parseNumber('0X1f'), 31);
    for (const bad of ['', '-1', '1e3', ' 1', '0x', '12a', '99999999999999999'])
      assert.equal(parseNumber(bad), undefined, bad);
  });

  test('defaults: valid, and RFC defaults as RFC 7143 §13 lists them', () => {
    validateTargetParams(DEFAULT_TARGET_PARAMS);
    assert.throws(
      () => validateTargetParams({ ...DEFAULT_TARGET_PARAMS, firstBurstLength: 2 << 20 }),
      RangeError,
    );
    assert.throws(
      () => validateTargetParams({ ...DEFAULT_TARGET_PARAMS, errorRecoveryLevel: 1 }),
      RangeError,
    );
    assert.throws(() => validateTargetParams({ ...DEFAULT_TARGET_PARAMS, headerDigest: [] }), RangeError);
    assert.equal(RFC_DEFAULTS.maxBurstLength, 262144);
    assert.equal(RFC_DEFAULTS.firstBurstLength, 65536);
    assert.equal(RFC_DEFAULTS.initialR2T, true);
    assert.equal(RFC_DEFAULTS.defaultTime2Retain, 20);
  });
});
