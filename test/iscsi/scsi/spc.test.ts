import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { Op, Status } from '../../../src/iscsi/scsi/constants.js';
import { clearUas, exec, type Fixture, fixture, INIT_A, NEXUS_A, NEXUS_B, senseOf, UUID } from './helpers.js';

let f: Fixture;
beforeEach(async () => {
  f = await fixture({ thin: true });
  await clearUas(f.target, NEXUS_A);
});
afterEach(async () => {
  await f.cleanup();
});

const inquiry = (evpd: number, page: number, alloc: number) => [
  Op.INQUIRY,
  evpd,
  page,
  alloc >> 8,
  alloc & 0xff,
  0,
];

describe('INQUIRY', () => {
  test('standard data: SPC-4, HiSup, CmdQue, TPGS, 3PC, identification strings', async () => {
    const r = await exec(f.target, NEXUS_A, 0, inquiry(0, 0, 255));
    assert.equal(r.status, Status.GOOD);
    const b = r.buf;
    assert.equal(b.length, 96);
    assert.equal(b[0], 0x00); // PQ 0, direct access
    assert.equal(b[2], 0x06);
    assert.equal(b[3], 0x12);
    assert.equal(b[4], 91);
    assert.equal(b[5], 0x18);
    assert.equal(b[7], 0x02);
    assert.equal(b.subarray(8, 16).toString(), 'TARGETD ');
    assert.equal(b.subarray(16, 32).toString(), 'targetd volume  ');
    assert.equal(b.readUInt16BE(58 + 6), 0x04c0, 'SBC-3 version descriptor');
    assert.equal(r.transferLength, 96);
  });

  test('respects the allocation length, including zero', async () => {
    const r = await exec(f.target, NEXUS_A, 0, inquiry(0, 0, 36));
    assert.equal(r.buf.length, 36);
    const z = await exec(f.target, NEXUS_A, 0, inquiry(0, 0, 0));
    assert.equal(z.status, Status.GOOD);
    assert.equal(z.buf.length, 0);
    assert.equal(z.transferLength, 0);
  });

  test('page code without EVPD and unknown VPD pages are invalid fields', async () => {
    const r = await exec(f.target, NEXUS_A, 0, inquiry(0, 0x80, 255));
    assert.deepEqual(senseOf(r), [5, 0x24, 0]);
    assert.equal(r.sense![15], 0xc0, 'SKSV, C/D=CDB');
    assert.equal(r.sense!.readUInt16BE(16), 2, 'field pointer at byte 2');
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_A, 0, inquiry(1, 0x99, 255))), [5, 0x24, 0]);
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_A, 0, inquiry(2, 0, 255))), [5, 0x24, 0]);
  });

  test('VPD 0x00 lists the pages in order; 0x80 is the volume UUID', async () => {
    const r = await exec(f.target, NEXUS_A, 0, inquiry(1, 0, 255));
    assert.deepEqual([...r.buf.subarray(4)], [0x00, 0x80, 0x83, 0x8f, 0xb0, 0xb1, 0xb2]);
    const s = await exec(f.target, NEXUS_A, 0, inquiry(1, 0x80, 255));
    assert.equal(s.buf[1], 0x80);
    assert.equal(s.buf.subarray(4).toString(), UUID);
  });

  test('VPD 0x83: NAA 6 as LIO builds it, T10 vendor id, relative port, port group, SCSI names', async () => {
    const r = await exec(f.target, NEXUS_A, 0, inquiry(1, 0x83, 1024));
    const b = r.buf;
    assert.equal(b.readUInt16BE(2), b.length - 4);
    const ds: { codeSet: number; piv: boolean; assoc: number; type: number; value: Buffer }[] = [];
    for (let off = 4; off < b.length; off += 4 + b[off + 3]!) {
      ds.push({
        codeSet: b[off]! & 0x0f,
        piv: (b[off + 1]! & 0x80) !== 0,
        assoc: (b[off + 1]! >> 4) & 3,
        type: b[off + 1]! & 0x0f,
        value: b.subarray(off + 4, off + 4 + b[off + 3]!),
      });
    }
    assert.equal(ds[0]!.type, 3);
    assert.equal(ds[0]!.value.toString('hex'), '60014053f2504e04f8911d39a0c0305e');
    assert.equal(ds[1]!.type, 1);
    assert.equal(ds[1]!.value.toString(), `TARGETD ${UUID}`);
    assert.deepEqual([ds[2]!.type, ds[2]!.assoc, ds[2]!.piv, ds[2]!.value.readUInt16BE(2)], [4, 1, true, 1]);
    assert.deepEqual([ds[3]!.type, ds[3]!.assoc, ds[3]!.value.readUInt16BE(2)], [5, 1, 1]);
    assert.equal(ds[4]!.type, 8);
    assert.match(ds[4]!.value.toString(), /^iqn\.2024-01\.test:target,t,0x0001\0+$/);
    assert.equal(ds[5]!.assoc, 2);
  });

  test('VPD 0xB0/0xB1/0xB2 describe limits, a non-rotating medium and thin provisioning', async () => {
    const bl = (await exec(f.target, NEXUS_A, 0, inquiry(1, 0xb0, 255))).buf;
    assert.equal(bl.readUInt16BE(2), 0x3c);
    assert.equal(bl[5], 255, 'maximum COMPARE AND WRITE length');
    assert.equal(bl.readUInt16BE(6), 8, 'granularity: 4 KiB in 512-byte blocks');
    assert.equal(bl.readUInt32BE(8), 65536, 'maximum transfer length');
    assert.equal(bl.readUInt32BE(20), 1024 * 1024, 'maximum unmap LBA count');
    assert.equal(bl.readUInt32BE(24), 256, 'maximum unmap descriptors');
    assert.equal(bl.readUInt32BE(32), 0x80000000, 'UGAVALID');
    assert.equal(bl.readUInt32BE(44), 0, 'no atomic writes');
    const bdc = (await exec(f.target, NEXUS_A, 0, inquiry(1, 0xb1, 255))).buf;
    assert.equal(bdc.readUInt16BE(4), 1);
    const lbp = (await exec(f.target, NEXUS_A, 0, inquiry(1, 0xb2, 255))).buf;
    assert.equal(lbp[5], 0xe4, 'LBPU, LBPWS, LBPWS10, LBPRZ');
    assert.equal(lbp[6]! & 7, 2, 'thin');
  });

  test('VPD 0xB2 and 0xB0 say "fully provisioned" without a hole puncher', async () => {
    const thick = await fixture();
    try {
      await clearUas(thick.target, NEXUS_A);
      const lbp = (await exec(thick.target, NEXUS_A, 0, inquiry(1, 0xb2, 255))).buf;
      assert.equal(lbp[5], 0);
      const bl = (await exec(thick.target, NEXUS_A, 0, inquiry(1, 0xb0, 255))).buf;
      assert.equal(bl.readUInt32BE(20), 0);
      assert.equal(bl.readUInt32BE(24), 0);
      const unmap = await exec(
        thick.target,
        NEXUS_A,
        0,
        [Op.UNMAP, 0, 0, 0, 0, 0, 0, 0, 24, 0],
        Buffer.alloc(24),
      );
      assert.deepEqual(senseOf(unmap), [5, 0x20, 0]);
    } finally {
      await thick.cleanup();
    }
  });
});

describe('unmapped LUNs and REPORT LUNS', () => {
  test('INQUIRY on an unmapped LUN answers PQ=1 / type 0x1F; other commands get 25/00', async () => {
    const r = await exec(f.target, NEXUS_A, 5, inquiry(0, 0, 36));
    assert.equal(r.status, Status.GOOD);
    assert.equal(r.buf[0], 0x3f);
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_A, 5, [0, 0, 0, 0, 0, 0])), [5, 0x25, 0]);
    const rs = await exec(f.target, NEXUS_A, 5, [Op.REQUEST_SENSE, 0, 0, 0, 18, 0]);
    assert.equal(rs.status, Status.GOOD);
    assert.deepEqual([rs.buf[2], rs.buf[12]], [5, 0x25]);
  });

  test('REPORT LUNS works on LUN 0 even when only LUN 7 is mapped, and lists only our LUNs', async () => {
    const g = await fixture({ lun: 7 });
    try {
      g.target.setLunMap('iqn.other', new Map([[300, g.lu]]));
      const r = await exec(g.target, NEXUS_A, 0, [Op.REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
      assert.equal(r.status, Status.GOOD);
      assert.equal(r.buf.readUInt32BE(0), 8);
      assert.deepEqual([...r.buf.subarray(8, 16)], [0, 7, 0, 0, 0, 0, 0, 0]);
      const other = await exec(g.target, { initiator: 'IQN.OTHER', isid: 1 }, 0, [
        Op.REPORT_LUNS,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
      ]);
      assert.deepEqual([...other.buf.subarray(8, 10)], [0x41, 0x2c], 'flat addressing for LUN 300');
      const wk = await exec(g.target, NEXUS_A, 0, [Op.REPORT_LUNS, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
      assert.equal(wk.buf.readUInt32BE(0), 0);
      assert.deepEqual(
        senseOf(await exec(g.target, NEXUS_A, 0, [Op.REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0])),
        [5, 0x24, 0],
      );
      assert.deepEqual(
        senseOf(await exec(g.target, NEXUS_A, 0, [Op.REPORT_LUNS, 0, 9, 0, 0, 0, 0, 0, 1, 0, 0, 0])),
        [5, 0x24, 0],
      );
      const none = await exec(g.target, { initiator: 'iqn.nobody', isid: 2 }, 0, [
        Op.REPORT_LUNS,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
      ]);
      assert.equal(none.status, Status.GOOD);
      assert.equal(none.buf.readUInt32BE(0), 0);
    } finally {
      await g.cleanup();
    }
  });
});

describe('unit attentions', () => {
  test('a new nexus gets POWER ON (29/00) once per LUN; INQUIRY and REPORT LUNS are exempt', async () => {
    const inq = await exec(f.target, NEXUS_B, 0, inquiry(0, 0, 36));
    assert.equal(inq.status, Status.GOOD);
    const first = await exec(f.target, NEXUS_B, 0, [0, 0, 0, 0, 0, 0]);
    assert.equal(first.status, Status.CHECK_CONDITION);
    assert.deepEqual(senseOf(first), [6, 0x29, 0]);
    assert.equal((await exec(f.target, NEXUS_B, 0, [0, 0, 0, 0, 0, 0])).status, Status.GOOD);
  });

  test('REQUEST SENSE reports and clears a pending unit attention, then NO SENSE', async () => {
    const r = await exec(f.target, NEXUS_B, 0, [Op.REQUEST_SENSE, 0, 0, 0, 252, 0]);
    assert.equal(r.status, Status.GOOD);
    assert.equal(r.buf.length, 18);
    assert.deepEqual([r.buf[0], r.buf[2], r.buf[12], r.buf[13]], [0x70, 6, 0x29, 0]);
    const again = await exec(f.target, NEXUS_B, 0, [Op.REQUEST_SENSE, 0, 0, 0, 252, 0]);
    assert.deepEqual([again.buf[2], again.buf[12]], [0, 0]);
    assert.equal((await exec(f.target, NEXUS_B, 0, [0, 0, 0, 0, 0, 0])).status, Status.GOOD);
  });

  test('a LUN map change gives REPORTED LUNS DATA HAS CHANGED to that initiator only; REPORT LUNS clears it', async () => {
    await clearUas(f.target, NEXUS_B);
    f.target.setLunMap(
      INIT_A,
      new Map([
        [0, f.lu],
        [1, f.lu],
      ]),
    );
    assert.equal((await exec(f.target, NEXUS_B, 0, [0, 0, 0, 0, 0, 0])).status, Status.GOOD);
    const ua = await exec(f.target, NEXUS_A, 0, [0, 0, 0, 0, 0, 0]);
    assert.deepEqual(senseOf(ua), [6, 0x3f, 0x0e]);
    f.target.setLunMap(INIT_A, new Map([[0, f.lu]]));
    await exec(f.target, NEXUS_A, 0, [Op.REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
    assert.equal((await exec(f.target, NEXUS_A, 0, [0, 0, 0, 0, 0, 0])).status, Status.GOOD);
    f.target.setLunMap(INIT_A, new Map([[0, f.lu]]));
    assert.equal(
      (await exec(f.target, NEXUS_A, 0, [0, 0, 0, 0, 0, 0])).status,
      Status.GOOD,
      'no change, no UA',
    );
  });

  test('capacityChanged re-reads the size and reports 2A/09', async () => {
    const { truncate } = await import('node:fs/promises');
    await truncate(f.path, 8 * 1024 * 1024);
    await f.target.capacityChanged(f.lu);
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_A, 0, [0, 0, 0, 0, 0, 0])), [6, 0x2a, 0x09]);
    const rc = await exec(f.target, NEXUS_A, 0, [Op.READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert.equal(rc.buf.readUInt32BE(0), 16383);
  });

  test('a closed nexus starts over with POWER ON', async () => {
    f.target.nexusClosed(NEXUS_A);
    f.target.nexusOpened(NEXUS_A);
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_A, 0, [0, 0, 0, 0, 0, 0])), [6, 0x29, 0]);
  });
});

describe('misc SPC commands', () => {
  test('unknown opcodes are 20/00 and unknown service actions 24/00 at byte 1', async () => {
    const r = await exec(f.target, NEXUS_A, 0, [0xc5, 0, 0, 0, 0, 0]);
    assert.deepEqual(senseOf(r), [5, 0x20, 0]);
    const sa = await exec(f.target, NEXUS_A, 0, Buffer.from([0x9e, 0x1f, ...Buffer.alloc(14)]));
    assert.deepEqual(senseOf(sa), [5, 0x24, 0]);
    assert.equal(sa.sense!.readUInt16BE(16), 1);
  });

  test('the NACA bit is refused (no ACA support)', async () => {
    const r = await exec(f.target, NEXUS_A, 0, [0, 0, 0, 0, 0, 0x04]);
    assert.deepEqual(senseOf(r), [5, 0x24, 0]);
    assert.equal(r.sense!.readUInt16BE(16), 5);
  });

  test('START STOP UNIT and PREVENT ALLOW validate and succeed', async () => {
    assert.equal((await exec(f.target, NEXUS_A, 0, [Op.START_STOP_UNIT, 1, 0, 0, 1, 0])).status, Status.GOOD);
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, [Op.START_STOP_UNIT, 0, 0, 0, 0x40, 0])),
      [5, 0x24, 0],
    );
    assert.equal(
      (await exec(f.target, NEXUS_A, 0, [Op.PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 1, 0])).status,
      0,
    );
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, [Op.PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 4, 0])),
      [5, 0x24, 0],
    );
  });

  test('REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS and REPORT TARGET PORT GROUPS', async () => {
    const tmf = await exec(f.target, NEXUS_A, 0, [Op.MAINTENANCE_IN, 0x0d, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0]);
    assert.equal(tmf.buf[0], 0xda);
    const rtpg = await exec(f.target, NEXUS_A, 0, [Op.MAINTENANCE_IN, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
    assert.equal(rtpg.buf.readUInt32BE(0), 12);
    assert.deepEqual(
      [rtpg.buf[4], rtpg.buf.readUInt16BE(6), rtpg.buf[11], rtpg.buf.readUInt16BE(14)],
      [0x80, 1, 1, 1],
    );
  });
});

describe('REPORT SUPPORTED OPERATION CODES', () => {
  const rsoc = (options: number, op = 0, sa = 0, rctd = false) => [
    Op.MAINTENANCE_IN,
    0x0c,
    (rctd ? 0x80 : 0) | options,
    op,
    sa >> 8,
    sa & 0xff,
    0,
    0,
    0xff,
    0xff,
    0,
    0,
  ];

  test('lists every command once, with SERVACTV exactly for service-action commands', async () => {
    const r = await exec(f.target, NEXUS_A, 0, rsoc(0));
    const len = r.buf.readUInt32BE(0);
    assert.equal(len + 4, r.buf.length);
    const seen = new Set<string>();
    for (let off = 4; off < r.buf.length; off += 8) {
      const op = r.buf[off]!;
      const sa = r.buf.readUInt16BE(off + 2);
      const servactv = (r.buf[off + 5]! & 1) === 1;
      assert.equal(servactv, [0x5e, 0x5f, 0x83, 0x84, 0x9e, 0xa3].includes(op), `op ${op.toString(16)}`);
      if (!servactv) assert.equal(sa, 0);
      seen.add(`${op}/${sa}`);
    }
    assert.ok(seen.has(`${Op.COMPARE_AND_WRITE}/0`));
    assert.ok(seen.has(`${Op.SERVICE_ACTION_IN_16}/${0x12}`));
    assert.ok(!seen.has(`${Op.WRITE_ATOMIC_16}/0`));
  });

  test('RCTD adds a 12-byte timeouts descriptor to each entry', async () => {
    const r = await exec(f.target, NEXUS_A, 0, rsoc(0, 0, 0, true));
    assert.equal((r.buf.length - 4) % 20, 0);
    assert.equal(r.buf[4 + 5]! & 0x02, 0x02);
    assert.equal(r.buf.readUInt16BE(4 + 8), 0x0a);
  });

  test('one command: usage data starts with the opcode; option mismatches are invalid fields', async () => {
    const r = await exec(f.target, NEXUS_A, 0, rsoc(1, Op.READ_10));
    assert.equal(r.buf[1]! & 7, 3);
    assert.equal(r.buf.readUInt16BE(2), 10);
    assert.deepEqual([...r.buf.subarray(4, 14)], [0x28, 0xf8, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0]);
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, rsoc(1, Op.SERVICE_ACTION_IN_16))),
      [5, 0x24, 0],
    );
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_A, 0, rsoc(2, Op.READ_10))), [5, 0x24, 0]);
    const sa = await exec(f.target, NEXUS_A, 0, rsoc(2, Op.SERVICE_ACTION_IN_16, 0x10));
    assert.equal(sa.buf[4], 0x9e);
    const missing = await exec(f.target, NEXUS_A, 0, rsoc(1, 0xc5));
    assert.equal(missing.buf[1]! & 7, 1, 'not supported');
    const withTimeouts = await exec(f.target, NEXUS_A, 0, rsoc(1, Op.INQUIRY, 0, true));
    assert.equal(withTimeouts.buf.length, 4 + 6 + 12);
    assert.equal(withTimeouts.buf[1]! & 0x80, 0x80);
  });
});

describe('MODE SENSE / MODE SELECT', () => {
  const sense6 = (page: number, pc = 0, dbd = false, alloc = 255) => [
    Op.MODE_SENSE_6,
    dbd ? 8 : 0,
    (pc << 6) | page,
    0,
    alloc,
    0,
  ];

  test('all pages with a block descriptor; caching, control and informational exceptions pages', async () => {
    const r = await exec(f.target, NEXUS_A, 0, sense6(0x3f));
    const b = r.buf;
    assert.equal(b[0], b.length - 1);
    assert.equal(b[2], 0x10, 'DPOFUA, not write protected');
    assert.equal(b[3], 8);
    assert.equal(b.readUInt32BE(4), 8192);
    assert.equal(b.readUIntBE(9, 3), 512);
    assert.deepEqual([b[12], b[13], b[14]], [0x08, 18, 0x04], 'caching page, WCE');
    assert.deepEqual([b[32], b[33]], [0x0a, 10]);
    assert.deepEqual([b[44], b[45]], [0x1c, 10]);
    assert.equal(b.length, 56);
  });

  test('DBD, changeable values, saved values, unknown pages, MODE SENSE(10) with LLBAA', async () => {
    const nobd = (await exec(f.target, NEXUS_A, 0, sense6(0x08, 0, true))).buf;
    assert.equal(nobd[3], 0);
    assert.equal(nobd[4], 0x08);
    const ch = (await exec(f.target, NEXUS_A, 0, sense6(0x0a, 1, true))).buf;
    assert.equal(ch[4 + 4], 0x08, 'SWP changeable');
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_A, 0, sense6(0x08, 3))), [5, 0x39, 0]);
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_A, 0, sense6(0x19))), [5, 0x24, 0]);
    const ten = (await exec(f.target, NEXUS_A, 0, [Op.MODE_SENSE_10, 0x10, 0x08, 0, 0, 0, 0, 1, 0, 0])).buf;
    assert.equal(ten.readUInt16BE(0), ten.length - 2);
    assert.equal(ten[4], 1, 'LONGLBA');
    assert.equal(ten.readUInt16BE(6), 16);
    assert.equal(ten.readBigUInt64BE(8), 8192n);
    const short = await exec(f.target, NEXUS_A, 0, sense6(0x3f, 0, false, 4));
    assert.equal(short.buf.length, 4);
    assert.equal(short.transferLength, 4);
  });

  test('MODE SELECT turns SWP on (writes fail 07/27/02, WP bit set) and off; others get 2A/01', async () => {
    await clearUas(f.target, NEXUS_B);
    const page = Buffer.from([0, 0, 0, 0, 0x0a, 10, 0x02, 0x10, 0x08, 0, 0, 0, 0xff, 0xff, 0, 0]);
    const sel = await exec(f.target, NEXUS_A, 0, [Op.MODE_SELECT_6, 0x10, 0, 0, page.length, 0], page);
    assert.equal(sel.status, Status.GOOD);
    const w = await exec(f.target, NEXUS_A, 0, [Op.WRITE_10, 0, 0, 0, 0, 0, 0, 0, 1, 0], Buffer.alloc(512));
    assert.deepEqual(senseOf(w), [7, 0x27, 0x02]);
    const ms = (await exec(f.target, NEXUS_A, 0, sense6(0x0a))).buf;
    assert.equal(ms[2]! & 0x80, 0x80);
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_B, 0, [0, 0, 0, 0, 0, 0])), [6, 0x2a, 0x01]);
    page[8] = 0;
    assert.equal(
      (await exec(f.target, NEXUS_A, 0, [Op.MODE_SELECT_6, 0x10, 0, 0, page.length, 0], page)).status,
      0,
    );
    const ok = await exec(f.target, NEXUS_A, 0, [Op.WRITE_10, 0, 0, 0, 0, 0, 0, 0, 1, 0], Buffer.alloc(512));
    assert.equal(ok.status, Status.GOOD);
  });

  test('MODE SELECT rejects unchangeable bits, SP, bad lengths and foreign block sizes', async () => {
    const bad = Buffer.from([0, 0, 0, 0, 0x0a, 10, 0x06, 0x10, 0, 0, 0, 0, 0xff, 0xff, 0, 0]); // D_SENSE
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, [Op.MODE_SELECT_6, 0x10, 0, 0, 16, 0], bad)),
      [5, 0x26, 0],
    );
    const cache = Buffer.from([0, 0, 0, 0, 0x08, 18, ...Buffer.alloc(18)]);
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, [Op.MODE_SELECT_6, 0x11, 0, 0, 24, 0], cache)),
      [5, 0x24, 0],
    );
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, [Op.MODE_SELECT_6, 0x10, 0, 0, 30, 0], cache)),
      [5, 0x1a, 0],
    );
    assert.equal((await exec(f.target, NEXUS_A, 0, [Op.MODE_SELECT_6, 0x10, 0, 0, 24, 0], cache)).status, 0);
    assert.equal(f.lu.writeCacheEnabled, false, 'WCE cleared');
    const bd = Buffer.from([0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x10, 0]); // block length 4096
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, [Op.MODE_SELECT_6, 0x10, 0, 0, 12, 0], bd)),
      [5, 0x26, 0],
    );
  });
});

describe('READ CAPACITY', () => {
  test('(10) and (16) report size, block length, LBPME/LBPRZ; (16) honours the allocation length', async () => {
    const r10 = await exec(f.target, NEXUS_A, 0, [Op.READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert.deepEqual([r10.buf.readUInt32BE(0), r10.buf.readUInt32BE(4)], [8191, 512]);
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, [Op.READ_CAPACITY_10, 0, 0, 0, 0, 1, 0, 0, 0, 0])),
      [5, 0x24, 0],
    );
    const cdb = Buffer.alloc(16);
    cdb[0] = 0x9e;
    cdb[1] = 0x10;
    cdb[13] = 32;
    const r16 = await exec(f.target, NEXUS_A, 0, cdb);
    assert.equal(r16.buf.readBigUInt64BE(0), 8191n);
    assert.equal(r16.buf.readUInt32BE(8), 512);
    assert.equal(r16.buf[14], 0xc0);
    cdb[13] = 12;
    assert.equal((await exec(f.target, NEXUS_A, 0, cdb)).buf.length, 12);
  });

  test('(10) reports 0xFFFFFFFF when the last LBA does not fit', async () => {
    const big = await fixture({ size: 4096, blockSize: 512 });
    try {
      Object.defineProperty(big.lu, 'capacity', { get: () => 2 ** 33 });
      await clearUas(big.target, NEXUS_A);
      const r = await exec(big.target, NEXUS_A, 0, [Op.READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
      assert.equal(r.buf.readUInt32BE(0), 0xffffffff);
    } finally {
      await big.cleanup();
    }
  });
});

test('the nexus key lower-cases the initiator name and pads the ISID', async () => {
  const { nexusKey } = await import('../../../src/iscsi/scsi/target.js');
  assert.equal(nexusKey({ initiator: 'IQN.X:Y', isid: 0x23d000001n }), 'iqn.x:y,i,0x00023d000001');
  assert.equal(nexusKey({ initiator: 'iqn.x:y', isid: '0x80123456789A' }), 'iqn.x:y,i,0x80123456789a');
  assert.equal(INIT_A, 'iqn.2024-01.test:a');
});
