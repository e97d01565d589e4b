import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  ChapTargetAuth,
  chapDigestSize,
  chapResponse,
  decodeBinary,
  encodeBinary,
} from '../../../src/iscsi/login/index.js';

const fixed = (n: number) => Buffer.alloc(n, 0x11);

describe('CHAP primitives', () => {
  test('binary values: 0x hex (any case, odd digits), 0b base64, rejects the rest', () => {
    assert.deepEqual(decodeBinary('0x0aFF'), Buffer.from([0x0a, 0xff]));
    assert.deepEqual(decodeBinary('0XABC'), Buffer.from([0x0a, 0xbc]));
    assert.deepEqual(decodeBinary('0bAQID'), Buffer.from([1, 2, 3]));
    assert.deepEqual(decodeBinary('0BAQI='), Buffer.from([1, 2]));
    for (const bad of ['', '0x', '0b', '1234', '0xZZ', '0bA', '0b!!!!', 'abcdef']) {
      assert.equal(decodeBinary(bad), undefined, bad);
    }
    assert.equal(encodeBinary(Buffer.from([0, 0xab])), '0x00ab');
  });

  test('responses are H(id ‖ secret ‖ challenge) for MD5, SHA-1, SHA-256, SHA3-256', () => {
    const ch = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    for (const [alg, name, size] of [
      [5, 'md5', 16],
      [6, 'sha1', 20],
      [7, 'sha256', 32],
      [8, 'sha3-256', 32],
    ] as const) {
      const want = createHash(name)
        .update(Buffer.concat([Buffer.of(7), Buffer.from('s3cret'), ch]))
        .digest();
      assert.ok(chapResponse(alg, 7, 's3cret', ch).equals(want), name);
      assert.equal(chapDigestSize(alg), size);
    }
    assert.equal(chapDigestSize(9), undefined);
    assert.throws(() => chapResponse(9, 0, 'x', ch), RangeError);
  });
});

describe('ChapTargetAuth', () => {
  const secrets = { user: 'u', secret: 'initiatorsecret', targetUser: 't', targetSecret: 'targetsecret12' };

  test('happy path with SHA3-256 and mutual answer', () => {
    const auth = new ChapTargetAuth(secrets, { random: fixed });
    const c = auth.step(new Map([['CHAP_A', '8']]));
    assert.equal(c.status, 'continue');
    if (c.status !== 'continue') return;
    assert.deepEqual(c.responses, [
      ['CHAP_A', '8'],
      ['CHAP_I', '17'],
      ['CHAP_C', `0x${'11'.repeat(32)}`],
    ]);
    assert.equal(auth.started, true);
    const r = chapResponse(8, 17, 'initiatorsecret', fixed(32));
    const done = auth.step(
      new Map([
        ['CHAP_N', 'u'],
        ['CHAP_R', encodeBinary(r)],
        ['CHAP_I', '0x2'],
        ['CHAP_C', '0b3q2+7w=='],
      ]),
    );
    assert.equal(done.status, 'done');
    if (done.status !== 'done') return;
    assert.equal(done.mutual, true);
    assert.equal(done.algorithm, 8);
    assert.deepEqual(done.responses, [
      ['CHAP_N', 't'],
      ['CHAP_R', encodeBinary(chapResponse(8, 2, 'targetsecret12', Buffer.from('3q2+7w==', 'base64')))],
    ]);
    assert.equal(auth.done, true);
    assert.equal(auth.step(new Map([['CHAP_A', '5']])).status, 'failed');
  });

  test('an empty step waits; response keys before the challenge fail; a second CHAP_A fails', () => {
    const auth = new ChapTargetAuth(secrets, { random: fixed });
    assert.deepEqual(auth.step(new Map()), { status: 'continue', responses: [] });
    assert.equal(new ChapTargetAuth(secrets).step(new Map([['CHAP_R', '0x00']])).status, 'failed');
    auth.step(new Map([['CHAP_A', '5']]));
    assert.deepEqual(auth.step(new Map()), { status: 'continue', responses: [] });
    assert.equal(auth.step(new Map([['CHAP_A', '5']])).status, 'failed');
  });

  test('mutual needs both CHAP_I and CHAP_C, a valid identifier, and a sane challenge', () => {
    for (const extra of [
      [['CHAP_I', '1']],
      [['CHAP_C', '0x0102']],
      [
        ['CHAP_I', '256'],
        ['CHAP_C', '0x0102'],
      ],
      [
        ['CHAP_I', '1'],
        ['CHAP_C', `0x${'ab'.repeat(1025)}`],
      ],
      [
        ['CHAP_I', '1'],
        ['CHAP_C', 'zz'],
      ],
    ] as Array<Array<[string, string]>>) {
      const auth = new ChapTargetAuth(secrets, { random: fixed });
      auth.step(new Map([['CHAP_A', '5']]));
      const r = chapResponse(5, 17, 'initiatorsecret', fixed(16));
      const step = auth.step(new Map([['CHAP_N', 'u'], ['CHAP_R', encodeBinary(r)], ...extra]));
      assert.equal(step.status, 'failed', JSON.stringify(extra));
    }
  });
});
