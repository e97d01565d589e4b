/**
 * The built-in iSCSI target end to end: the real daemon (iscsi_backend: builtin) with volumes created and
 * exported over the API, driven by real initiators (libiscsi's iscsi-ls/iscsi-inq/iscsi-readcapacity16 and
 * qemu-io over libiscsi), plus a small codec-based client where a tool cannot show the detail.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { naaRegisteredExtended } from '../../src/iscsi/lu/index.js';
import type { DaemonHandle } from '../helpers/daemon.js';
import { assertQemuOk, run, runQemuIo, startIscsiDaemon, toolsInstalled } from '../helpers/iscsi-e2e.js';
import { Wire } from '../iscsi/session/wire.js';

const T = 'iqn.2024-01.org.targetd.e2e:target';
const I1 = 'iqn.2024-01.org.targetd.e2e:one';
const I2 = 'iqn.2024-01.org.targetd.e2e:two';
const I3 = 'iqn.2024-01.org.targetd.e2e:three';
const I4 = 'iqn.2024-01.org.targetd.e2e:four';
const I5 = 'iqn.2024-01.org.targetd.e2e:stranger';
const I6 = 'iqn.2024-01.org.targetd.e2e:chap';
const MiB = 1024 * 1024;

const haveTools = await toolsInstalled(['iscsi-ls', 'iscsi-inq', 'iscsi-readcapacity16', 'qemu-io']);

/** LUN numbers iscsi-ls -s reports (once, whatever the number of portals), or null when the target is not listed. */
function lunsOf(out: string): number[] | null {
  if (!out.includes(`Target:${T}`)) return null;
  return [...new Set([...out.matchAll(/^Lun:(\d+)/gm)].map((m) => Number(m[1])))].sort((a, b) => a - b);
}

/** Whether this host can listen on the IPv6 loopback. */
function ipv6Loopback(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(0, '::1', () => s.close(() => resolve(true)));
  });
}

describe('iSCSI end to end: builtin target with libiscsi and qemu initiators', {
  skip: !haveTools && 'libiscsi-bin/qemu-utils missing',
}, () => {
  let d: DaemonHandle;
  let port: number;
  const uuids: Record<string, string> = {};

  const url = (lun: number, auth?: string, query = '') =>
    `iscsi://${auth ? `${auth}@` : ''}127.0.0.1:${port}/${T}/${lun}${query}`;
  const portal = (auth?: string) => `iscsi://${auth ? `${auth}@` : ''}127.0.0.1:${port}`;
  const ls = (ini: string, auth?: string) => run('iscsi-ls', ['-s', '-i', ini, portal(auth)]);
  const inq = (ini: string, lun: number, extra: string[] = [], auth?: string, query = '') =>
    run('iscsi-inq', ['-i', ini, ...extra, url(lun, auth, query)]);
  const capacity = async (ini: string, lun: number): Promise<number> => {
    const r = await run('iscsi-readcapacity16', ['-i', ini, url(lun)]);
    assert.equal(r.code, 0, r.stderr);
    return Number(/Total size:(\d+)/.exec(r.stdout)?.[1]);
  };
  const qemuIo = (ini: string, lun: number, cmds: string[], extra = '') =>
    runQemuIo({ port, target: T, lun, initiator: ini }, cmds, extra);

  before(async () => {
    ({ d, port } = await startIscsiDaemon(T));
    for (const [name, size] of [
      ['v1', 64 * MiB],
      ['v2', 8 * MiB],
      ['v3', 4 * MiB],
      ['v4', 4 * MiB],
      ['vchap', 4 * MiB],
    ] as const) {
      await d.call('vol_create', { pool: 'pool1', name, size });
    }
    for (const v of await d.call<{ name: string; uuid: string }[]>('vol_list', { pool: 'pool1' }))
      uuids[v.name] = v.uuid;
    await d.call('export_create', { pool: 'pool1', vol: 'v1', initiator_wwn: I1, lun: 0 });
  });
  after(async () => {
    await d?.dispose();
  });

  test('the startup log names the portal', () => {
    assert.match(d.stderr, new RegExp(`iSCSI portal listening on 127\\.0\\.0\\.1:${port}`));
  });

  test('discovery shows the target only to exported initiators; others are refused at login (0x0202)', async () => {
    const mine = await ls(I1);
    assert.equal(mine.code, 0, mine.stderr);
    assert.deepEqual(lunsOf(mine.stdout), [0]);
    assert.match(mine.stdout, new RegExp(`Portal:127\\.0\\.0\\.1:${port},1`));
    const other = await ls(I5);
    assert.equal(lunsOf(other.stdout), null, `a stranger sees nothing: ${other.stdout}`);
    const login = await inq(I5, 0);
    assert.notEqual(login.code, 0);
    assert.match(login.stdout + login.stderr, /Authorization failure/);
  });

  test('LUN masking: each initiator and access group member sees exactly its LUNs at their numbers', async () => {
    await d.call('export_create', { pool: 'pool1', vol: 'v2', initiator_wwn: I1, lun: 3 });
    await d.call('export_create', { pool: 'pool1', vol: 'v2', initiator_wwn: I2, lun: 0 });
    await d.call('access_group_create', { ag_name: 'ag1', init_id: I3, init_type: 'iscsi' });
    await d.call('access_group_init_add', { ag_name: 'ag1', init_id: I4, init_type: 'iscsi' });
    await d.call('access_group_map_create', {
      pool_name: 'pool1',
      vol_name: 'v3',
      ag_name: 'ag1',
      h_lun_id: 7,
    });
    const expected: [string, number[] | null][] = [
      [I1, [0, 3]],
      [I2, [0]],
      [I3, [7]],
      [I4, [7]],
      [I5, null],
    ];
    for (const [ini, luns] of expected) {
      const r = await ls(ini);
      assert.deepEqual(lunsOf(r.stdout), luns, `${ini}: ${r.stdout}${r.stderr}`);
    }
    assert.equal(await capacity(I1, 3), 8 * MiB);
    assert.equal(await capacity(I2, 0), 8 * MiB);
    assert.equal(await capacity(I3, 7), 4 * MiB);
    assert.equal(await capacity(I1, 0), 64 * MiB);
  });

  test('INQUIRY: standard data, VPD 0x80 is the volume UUID, VPD 0x83 has the NAA derived from it', async () => {
    const std = await inq(I1, 0);
    assert.equal(std.code, 0, std.stderr);
    assert.match(std.stdout, /Peripheral Device Type:DIRECT_ACCESS/);
    assert.match(std.stdout, /CmdQue:1/);
    const serial = await inq(I1, 0, ['-e', '1', '-c', '128']);
    assert.match(serial.stdout, new RegExp(`Unit Serial Number:\\[${uuids.v1}\\]`));
    const ids = await inq(I1, 3, ['-e', '1', '-c', '131']);
    assert.match(ids.stdout, /Designator Type:\(3\) NAA/);
    // iscsi-inq prints the binary NAA as text, so check its bytes over our own client.
    const w = await Wire.open('127.0.0.1', port);
    try {
      const rsp = await w.login({ initiator: I1, target: T, isid: Buffer.from('400000000e2e', 'hex') });
      assert.ok(rsp.opcode === 0x23 && rsp.statusClass === 0);
      await w.drainUnitAttentions(3);
      const page = await w.command(Buffer.from([0x12, 1, 0x83, 0, 255, 0]), { lun: 3, read: 255 });
      assert.equal(page.status, 0);
      const naa: Buffer[] = [];
      for (let off = 4; off + 4 <= page.data.length; ) {
        const len = page.data[off + 3]!;
        if ((page.data[off + 1]! & 0x0f) === 3 && (page.data[off + 1]! & 0x30) === 0) {
          naa.push(page.data.subarray(off + 4, off + 4 + len));
        }
        off += 4 + len;
      }
      assert.deepEqual(naa, [naaRegisteredExtended(uuids.v2!)]);
      assert.equal(naa[0]![0]! >> 4, 6, 'NAA 6, IEEE Registered Extended');
      await w.logout();
    } finally {
      w.socket.destroy();
    }
  });

  test('qemu-io: write through one session, read back through others (two initiators, one volume)', async () => {
    assertQemuOk(await qemuIo(I1, 0, ['write -P 0xab 0 1M', 'write -P 0x5c 5M 3M']), 'write v1');
    assertQemuOk(
      await qemuIo(I1, 0, ['read -P 0xab 0 1M', 'read -P 0x5c 5M 3M', 'read -P 0 1M 4M']),
      'read v1',
    );
    // v2 is LUN 3 for I1 and LUN 0 for I2.
    assertQemuOk(await qemuIo(I1, 3, ['write -P 0x7e 4096 64k']), 'write v2 as I1');
    const [a, b] = await Promise.all([
      qemuIo(I2, 0, ['read -P 0x7e 4096 64k']),
      qemuIo(I1, 3, ['read -P 0x7e 4096 64k']),
    ]);
    assertQemuOk(a, 'read v2 as I2');
    assertQemuOk(b, 'read v2 as I1 concurrently');
  });

  test('CHAP and mutual CHAP: good secrets log in, bad ones and missing ones do not', async () => {
    await d.call('export_create', { pool: 'pool1', vol: 'vchap', initiator_wwn: I6, lun: 0 });
    await d.call('initiator_set_auth', {
      initiator_wwn: I6,
      in_user: 'chapuser',
      in_pass: 'chapsecret-123',
      out_user: 'targetuser',
      out_pass: 'targetsecret-45',
    });
    const good = 'chapuser%chapsecret-123';
    const mutual = '?target_user=targetuser&target_password=targetsecret-45';
    const r = await inq(I6, 0, [], good);
    assert.equal(r.code, 0, `one-way CHAP: ${r.stdout}${r.stderr}`);
    const m = await inq(I6, 0, [], good, mutual);
    assert.equal(m.code, 0, `mutual CHAP: ${m.stdout}${m.stderr}`);
    const none = await inq(I6, 0);
    assert.notEqual(none.code, 0);
    assert.match(none.stdout + none.stderr, /Authentication failure/);
    const bad = await inq(I6, 0, [], 'chapuser%wrong-secret-1');
    assert.notEqual(bad.code, 0);
    assert.match(bad.stdout + bad.stderr, /Authentication failure/);
    const badMutual = await inq(I6, 0, [], good, '?target_user=targetuser&target_password=not-the-secret');
    assert.notEqual(badMutual.code, 0, 'the initiator rejects a target that does not know the mutual secret');
    // Discovery needs the initiator's CHAP too.
    assert.equal(lunsOf((await ls(I6)).stdout), null);
    assert.deepEqual(lunsOf((await ls(I6, good)).stdout), [0]);
  });

  test('header digests on and off (qemu offers exactly what it is told; the 1.19 tools ignore ?header_digest)', async () => {
    const negotiated = (digest: string) =>
      d.stderr
        .split('\n')
        .filter((l) => l.includes('iSCSI login complete') && l.includes(`"initiator":"${I1}"`))
        .filter((l) => l.includes(`"headerDigest":"${digest}"`)).length;
    const before = negotiated('CRC32C');
    assertQemuOk(
      await qemuIo(
        I1,
        0,
        ['read -P 0xab 0 1M', 'write -P 0x11 2M 256k', 'read -P 0x11 2M 256k'],
        ',header-digest=crc32c',
      ),
      'digests on',
    );
    assert.equal(negotiated('CRC32C'), before + 1, 'the session ran with CRC32C header digests');
    const off = negotiated('None');
    assertQemuOk(await qemuIo(I1, 0, ['read -P 0x11 2M 256k'], ',header-digest=none'), 'digests off');
    assert.equal(negotiated('None'), off + 1);
  });

  test('a connected session sees live export changes: Async Message, then REPORTED LUNS DATA HAS CHANGED', async () => {
    const w = await Wire.open('127.0.0.1', port);
    try {
      const rsp = await w.login({ initiator: I2, target: T, isid: Buffer.from('400000000e2f', 'hex') });
      assert.ok(rsp.opcode === 0x23 && rsp.statusClass === 0);
      await w.drainUnitAttentions(0);
      await d.call('export_create', { pool: 'pool1', vol: 'v4', initiator_wwn: I2, lun: 5 });
      const msg = await w.nextAsync();
      assert.ok(msg, 'an Async Message arrived');
      assert.equal(msg.asyncEvent, 0);
      assert.equal(msg.data.subarray(2 + 12, 2 + 14).toString('hex'), '3f0e');
      assert.deepEqual(await w.drainUnitAttentions(0), ['3f0e']);
      // REPORT LUNS on the same session now lists LUN 5; a new login sees it too.
      const rl = await w.command(Buffer.from([0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]), { read: 256 });
      assert.equal(rl.data.readUInt32BE(0), 16);
      assert.deepEqual(lunsOf((await ls(I2)).stdout), [0, 5]);
      await d.call('export_destroy', { pool: 'pool1', vol: 'v4', initiator_wwn: I2 });
      assert.equal((await w.nextAsync())?.asyncEvent, 0);
      assert.deepEqual(lunsOf((await ls(I2)).stdout), [0]);
      await w.logout();
    } finally {
      w.socket.destroy();
    }
  });

  test('vol_resize: READ CAPACITY shows the new size and a connected session gets CAPACITY DATA HAS CHANGED', async () => {
    const w = await Wire.open('127.0.0.1', port);
    try {
      await w.login({ initiator: I1, target: T, isid: Buffer.from('400000000e30', 'hex') });
      await w.drainUnitAttentions(0);
      await d.call('vol_resize', { pool: 'pool1', name: 'v1', size: 96 * MiB });
      assert.deepEqual(await w.drainUnitAttentions(0), ['2a09']);
      await w.logout();
    } finally {
      w.socket.destroy();
    }
    assert.equal(await capacity(I1, 0), 96 * MiB);
    assertQemuOk(
      await qemuIo(I1, 0, ['write -P 0x42 95M 1M', 'read -P 0x42 95M 1M', 'read -P 0xab 0 1M']),
      'past the old end',
    );
  });

  test('vol_destroy is refused while exported and works right after export_destroy', async () => {
    await d.call('vol_create', { pool: 'pool1', name: 'gone', size: 4 * MiB });
    await d.call('export_create', { pool: 'pool1', vol: 'gone', initiator_wwn: I2, lun: 9 });
    assertQemuOk(await qemuIo(I2, 9, ['write -P 0x33 0 64k']), 'use it once');
    assert.equal(await d.errorCode('vol_destroy', { pool: 'pool1', name: 'gone' }), -303);
    await d.call('export_destroy', { pool: 'pool1', vol: 'gone', initiator_wwn: I2 });
    await d.call('vol_destroy', { pool: 'pool1', name: 'gone' });
    assert.ok(
      !(await d.call<{ name: string }[]>('vol_list', { pool: 'pool1' })).some((v) => v.name === 'gone'),
    );
    assert.deepEqual(lunsOf((await ls(I2)).stdout), [0]);
  });

  test('after a daemon restart every export is back and the data is still there', async () => {
    await d.restart();
    assert.deepEqual(lunsOf((await ls(I1)).stdout), [0, 3]);
    assertQemuOk(await qemuIo(I1, 0, ['read -P 0xab 0 1M', 'read -P 0x42 95M 1M']), 'v1 after restart');
    assertQemuOk(await qemuIo(I2, 0, ['read -P 0x7e 4096 64k']), 'v2 after restart');
    const chap = await inq(I6, 0, [], 'chapuser%chapsecret-123');
    assert.equal(chap.code, 0, 'CHAP credentials survive too');
  });
});

describe('iSCSI end to end over IPv6', { skip: !haveTools && 'libiscsi-bin missing' }, () => {
  test('portals on 127.0.0.1 and ::1: discovery lists both, login and I/O over [::1]', async (t) => {
    if (!(await ipv6Loopback())) {
      t.skip('no IPv6 loopback on this host');
      return;
    }
    const { d, port } = await startIscsiDaemon(T, { portal_addresses: ['127.0.0.1', '::1'] });
    try {
      await d.call('vol_create', { pool: 'pool1', name: 'six', size: 4 * MiB });
      await d.call('export_create', { pool: 'pool1', vol: 'six', initiator_wwn: I1, lun: 2 });
      assert.match(d.stderr, new RegExp(`iSCSI portal listening on \\[::1\\]:${port}`));
      const ls = await run('iscsi-ls', ['-s', '-i', I1, `iscsi://[::1]:${port}`]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.match(ls.stdout, new RegExp(`Portal:\\[::1\\]:${port},1`));
      assert.match(ls.stdout, new RegExp(`Portal:127\\.0\\.0\\.1:${port},1`));
      assert.deepEqual(lunsOf(ls.stdout), [2]);
      const cap = await run('iscsi-readcapacity16', ['-i', I1, `iscsi://[::1]:${port}/${T}/2`]);
      assert.match(cap.stdout, new RegExp(`Total size:${4 * MiB}`));
    } finally {
      await d.dispose();
    }
  });
});

describe('iSCSI end to end: iscsi_header_digest: required', {
  skip: !haveTools && 'libiscsi-bin/qemu-utils missing',
}, () => {
  test("libiscsi's None,CRC32C offer gets CRC32C; a None-only offer is refused at login", async () => {
    const { d, port } = await startIscsiDaemon(T, { iscsi_header_digest: 'required' });
    try {
      await d.call('vol_create', { pool: 'pool1', name: 'hd', size: 4 * MiB });
      await d.call('export_create', { pool: 'pool1', vol: 'hd', initiator_wwn: I1, lun: 0 });
      const url = `iscsi://127.0.0.1:${port}/${T}/0`;
      // libiscsi 1.19 offers HeaderDigest=None,CRC32C whatever the URL says; LIBISCSI_DEBUG shows our answer.
      const inq = await run('iscsi-inq', ['-i', I1, url], 30_000, { ...process.env, LIBISCSI_DEBUG: '6' });
      assert.equal(inq.code, 0, inq.stderr);
      assert.match(inq.stdout + inq.stderr, /TargetLoginReply: HeaderDigest=CRC32C/);
      const logged = (msg: string, what: string) =>
        d.stderr.split('\n').some((l) => l.includes(`"msg":"${msg}"`) && l.includes(what));
      assert.ok(logged('iSCSI login complete', '"headerDigest":"CRC32C"'), d.stderr);
      // qemu offers exactly what it is told: None alone cannot be accepted.
      const lun0 = { port, target: T, lun: 0, initiator: I1 };
      const r = await runQemuIo(lun0, ['read 0 4k'], ',header-digest=none');
      assert.notEqual(r.code, 0, `a None-only login must fail: ${r.stdout}${r.stderr}`);
      assert.ok(logged('iSCSI login failed', 'HeaderDigest=None'), d.stderr);
      // With digests it works through qemu as well.
      assertQemuOk(
        await runQemuIo(lun0, ['write -P 0x5a 0 64k', 'read -P 0x5a 0 64k'], ',header-digest=crc32c'),
        'with header digests',
      );
    } finally {
      await d.dispose();
    }
  });
});
