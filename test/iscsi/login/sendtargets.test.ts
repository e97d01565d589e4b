import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  answerTextRequest,
  formatTargetAddress,
  parseText,
  type SendTargetsTarget,
  sendTargetsResponse,
  TextExchange,
} from '../../../src/iscsi/login/index.js';
import { concatPdu, decodePdu, encodeTextResponse } from '../../../src/iscsi/pdu/index.js';

const T1 = 'iqn.2003-01.org.example:storage';
const portals = [
  { address: '192.0.2.10', port: 3260, portalGroupTag: 1 },
  { address: '2001:db8::10', port: 3260, portalGroupTag: 1 },
];
const targets = (visible: boolean): SendTargetsTarget[] => [{ name: T1, portals, visible }];

describe('SendTargets', () => {
  test('TargetAddress formatting: IPv4, IPv6 in brackets, names as given', () => {
    assert.equal(formatTargetAddress(portals[0]!), '192.0.2.10:3260,1');
    assert.equal(formatTargetAddress(portals[1]!), '[2001:db8::10]:3260,1');
    assert.equal(formatTargetAddress({ address: '[::1]', port: 3261, portalGroupTag: 2 }), '[::1]:3261,2');
    assert.equal(
      formatTargetAddress({ address: 'array.example', port: 3260, portalGroupTag: 1 }),
      'array.example:3260,1',
    );
  });

  test('All in a discovery session lists every visible target with its portals', () => {
    assert.deepEqual(sendTargetsResponse('All', { sessionType: 'Discovery', targets: targets(true) }), [
      ['TargetName', T1],
      ['TargetAddress', '192.0.2.10:3260,1'],
      ['TargetAddress', '[2001:db8::10]:3260,1'],
    ]);
  });

  test('the ACL filter: an initiator that may not see the target gets an empty answer', () => {
    assert.deepEqual(sendTargetsResponse('All', { sessionType: 'Discovery', targets: targets(false) }), []);
    assert.deepEqual(sendTargetsResponse(T1, { sessionType: 'Discovery', targets: targets(false) }), []);
  });

  test('by name (case-insensitive), empty in a Normal session, and the invalid combinations', () => {
    assert.equal(
      sendTargetsResponse(T1.toUpperCase(), { sessionType: 'Discovery', targets: targets(true) }).length,
      3,
    );
    assert.deepEqual(
      sendTargetsResponse('iqn.2000-01.com.example:none', {
        sessionType: 'Discovery',
        targets: targets(true),
      }),
      [],
    );
    assert.equal(
      sendTargetsResponse('', { sessionType: 'Normal', sessionTarget: T1, targets: targets(true) }).length,
      3,
    );
    assert.deepEqual(
      sendTargetsResponse('All', { sessionType: 'Normal', sessionTarget: T1, targets: targets(true) }),
      [['SendTargets', 'Reject']],
    );
    assert.deepEqual(sendTargetsResponse('', { sessionType: 'Discovery', targets: targets(true) }), [
      ['SendTargets', 'Reject'],
    ]);
  });

  test('answerTextRequest: SendTargets, MaxRecvDataSegmentLength re-declaration, login-only and unknown keys', () => {
    const ctx = {
      sessionType: 'Discovery' as const,
      targets: targets(true),
      targetMaxRecvDataSegmentLength: 262144,
    };
    const a = answerTextRequest(
      [
        ['SendTargets', 'All'],
        ['MaxRecvDataSegmentLength', '32768'],
        ['MaxBurstLength', '1024'],
        ['X-vendor.thing', '1'],
        ['InitiatorAlias', 'h'],
      ],
      ctx,
    );
    assert.equal(a.initiatorMaxRecvDataSegmentLength, 32768);
    assert.deepEqual(a.responses.slice(3), [
      ['MaxRecvDataSegmentLength', '262144'],
      ['MaxBurstLength', 'Reject'],
      ['X-vendor.thing', 'NotUnderstood'],
    ]);
    assert.deepEqual(answerTextRequest([['MaxRecvDataSegmentLength', '1']], ctx).responses, [
      ['MaxRecvDataSegmentLength', 'Reject'],
    ]);
  });
});

describe('TextExchange continuation', () => {
  const many: SendTargetsTarget[] = Array.from({ length: 20 }, (_, i) => ({
    name: `iqn.2003-01.org.example:target-number-${i}`,
    portals,
    visible: true,
  }));

  test('a long SendTargets answer is split at a small MaxRecvDataSegmentLength and fetched part by part', () => {
    const ex = new TextExchange({ maxSegmentLength: 512 });
    const got = ex.receive({
      itt: 9,
      ttt: 0xffffffff,
      final: true,
      continue: false,
      data: Buffer.from('SendTargets=All\0'),
    });
    assert.equal(got.kind, 'request');
    if (got.kind !== 'request') return;
    assert.deepEqual(got.pairs, [['SendTargets', 'All']]);
    const answer = sendTargetsResponse(got.pairs[0]![1], { sessionType: 'Discovery', targets: many });
    let reply = ex.reply(answer);
    const parts: Buffer[] = [];
    let guard = 0;
    while (reply.continue) {
      assert.equal(reply.final, false);
      assert.notEqual(reply.ttt, 0xffffffff);
      assert.ok(reply.data.length <= 512);
      parts.push(reply.data);
      // The reply goes over the wire as a Text Response.
      const wire = decodePdu(
        concatPdu(encodeTextResponse({ ...reply, itt: 9, statSN: 1, expCmdSN: 1, maxCmdSN: 1 })),
      );
      assert.equal(wire.opcode, 0x24);
      const next = ex.receive({
        itt: 9,
        ttt: reply.ttt,
        final: true,
        continue: false,
        data: Buffer.alloc(0),
      });
      assert.equal(next.kind, 'reply');
      if (next.kind !== 'reply') return;
      reply = next.reply;
      assert.ok(++guard < 100);
    }
    assert.equal(reply.final, true);
    assert.equal(reply.ttt, 0xffffffff);
    parts.push(reply.data);
    assert.ok(parts.length >= 5);
    assert.deepEqual(parseText(Buffer.concat(parts)), answer);
  });

  test('inbound text with C=1 is acknowledged with an empty response carrying our TTT', () => {
    let tag = 100;
    const ex = new TextExchange({ maxSegmentLength: 8192, nextTtt: () => tag++ });
    const a = ex.receive({
      itt: 5,
      ttt: 0xffffffff,
      final: false,
      continue: true,
      data: Buffer.from('SendTarg'),
    });
    assert.deepEqual(a, {
      kind: 'reply',
      reply: { final: false, continue: false, ttt: 100, data: Buffer.alloc(0) },
    });
    const b = ex.receive({ itt: 5, ttt: 100, final: true, continue: false, data: Buffer.from('ets=All\0') });
    assert.equal(b.kind, 'request');
    if (b.kind === 'request') assert.deepEqual(b.pairs, [['SendTargets', 'All']]);
    const r = ex.reply([['SendTargets', 'Reject']]);
    assert.equal(r.final, true);
  });

  test('unknown TTT and text during our continuation are rejected; TTT 0xffffffff restarts', () => {
    const ex = new TextExchange({ maxSegmentLength: 64 });
    assert.equal(ex.receive({ itt: 1, ttt: 1234, final: true, data: Buffer.alloc(0) }).kind, 'reject');
    ex.receive({ itt: 1, ttt: 0xffffffff, final: true, data: Buffer.from('SendTargets=All\0') });
    const first = ex.reply(sendTargetsResponse('All', { sessionType: 'Discovery', targets: many }));
    assert.equal(first.continue, true);
    const bad = ex.receive({ itt: 1, ttt: first.ttt, final: true, data: Buffer.from('A=1\0') });
    assert.equal(bad.kind, 'reject');
    if (bad.kind === 'reject') assert.equal(bad.rejectReason, 0x04);
    const fresh = ex.receive({
      itt: 2,
      ttt: 0xffffffff,
      final: true,
      data: Buffer.from('SendTargets=All\0'),
    });
    assert.equal(fresh.kind, 'request');
    const malformed = ex.receive({ itt: 3, ttt: 0xffffffff, final: true, data: Buffer.from('garbage\0') });
    assert.equal(malformed.kind, 'reject');
  });

  test('a request with F=0 never gets a final response', () => {
    const ex = new TextExchange({ maxSegmentLength: 8192 });
    const got = ex.receive({ itt: 1, ttt: 0xffffffff, final: false, data: Buffer.from('X-a=1\0') });
    assert.equal(got.kind, 'request');
    const r = ex.reply([['X-a', 'NotUnderstood']]);
    assert.equal(r.final, false);
    assert.notEqual(r.ttt, 0xffffffff);
  });
});
