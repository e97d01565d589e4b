import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CredentialChecker, parseBasicAuth } from '../../src/server/auth.js';
import { Tarpit } from '../../src/server/tarpit.js';

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

describe('parseBasicAuth', () => {
  test('splits on the first colon only', () => {
    assert.deepEqual(parseBasicAuth(`Basic ${b64('admin:pa:ss')}`), {
      kind: 'ok',
      user: 'admin',
      password: 'pa:ss',
    });
    assert.deepEqual(parseBasicAuth(`Basic ${b64(':')}`), { kind: 'ok', user: '', password: '' });
    assert.deepEqual(parseBasicAuth(`basic ${b64('u:p')}`), { kind: 'ok', user: 'u', password: 'p' });
    assert.deepEqual(parseBasicAuth(`Basic ${b64('ü:€')}`), { kind: 'ok', user: 'ü', password: '€' });
  });

  test('tolerates missing base64 padding', () => {
    assert.deepEqual(parseBasicAuth(`Basic ${b64('u:pw').replace(/=+$/, '')}`), {
      kind: 'ok',
      user: 'u',
      password: 'pw',
    });
  });

  test('missing and malformed headers are reported, never thrown', () => {
    assert.equal(parseBasicAuth(undefined).kind, 'missing');
    assert.equal(parseBasicAuth('').kind, 'missing');
    for (const h of [
      'Basic',
      'Basic ',
      `Bearer ${b64('u:p')}`,
      b64('u:p'),
      'Basic !!!notbase64!!!',
      'Basic a',
      `Basic ${b64('nocolon')}`,
      `Basic ${b64('u:p')} extra`,
    ]) {
      assert.equal(parseBasicAuth(h).kind, 'malformed', h);
    }
  });
});

describe('CredentialChecker', () => {
  test('accepts only the exact pair', () => {
    const c = new CredentialChecker('admin', 'secret');
    assert.equal(c.check('admin', 'secret'), true);
    assert.equal(c.check('admin', 'secret '), false);
    assert.equal(c.check('admin', 'secre'), false);
    assert.equal(c.check('Admin', 'secret'), false);
    assert.equal(c.check('', ''), false);
    assert.equal(c.check('admin', `secret${'x'.repeat(10_000)}`), false);
  });
});

describe('Tarpit', () => {
  test('busy while the delay runs, free after release or expiry', () => {
    let now = 1000;
    const t = new Tarpit(2000, 100, () => now);
    assert.equal(t.busy('a'), false);
    const token = t.enter('a');
    assert.equal(t.busy('a'), true);
    assert.equal(t.busy('b'), false);
    now += 1999;
    assert.equal(t.busy('a'), true);
    now += 1;
    assert.equal(t.busy('a'), false);
    assert.equal(t.size, 0);
    const token2 = t.enter('a');
    t.release('a', token); // stale token: must not end the newer delay
    assert.equal(t.busy('a'), true);
    t.release('a', token2);
    assert.equal(t.busy('a'), false);
  });

  test('stays bounded under a flood from many addresses', () => {
    let now = 0;
    const t = new Tarpit(2000, 50, () => now);
    for (let i = 0; i < 1000; i++) {
      t.enter(`10.0.${i >> 8}.${i & 255}`);
      now += 1;
      assert.ok(t.size <= 50);
    }
    // The newest addresses are still held.
    assert.equal(t.busy('10.0.3.231'), true);
  });
});
