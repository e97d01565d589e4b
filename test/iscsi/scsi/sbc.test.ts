import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { Op, Status } from '../../../src/iscsi/scsi/constants.js';
import {
  cdb10,
  cdb16,
  clearUas,
  exec,
  type Fixture,
  fixture,
  havePython,
  NEXUS_A,
  pattern,
  senseOf,
} from './helpers.js';

let f: Fixture;
beforeEach(async () => {
  f = await fixture({ thin: true });
  await clearUas(f.target, NEXUS_A);
});
afterEach(async () => {
  await f.cleanup();
});

const BS = 512;
const BLOCKS = 8192;

async function disk(lba: number, blocks: number): Promise<Buffer> {
  return (await readFile(f.path)).subarray(lba * BS, (lba + blocks) * BS);
}

describe('READ / WRITE', () => {
  test('WRITE(10) then READ(6/10/12/16) return the same bytes', async () => {
    const data = pattern(4 * BS, 1);
    const w = await exec(f.target, NEXUS_A, 0, cdb10(Op.WRITE_10, 100, 4), data);
    assert.equal(w.status, Status.GOOD);
    assert.equal(w.transferLength, 4 * BS);
    assert.deepEqual(await disk(100, 4), data);
    const r10 = await exec(f.target, NEXUS_A, 0, cdb10(Op.READ_10, 100, 4));
    assert.deepEqual(r10.buf, data);
    const r6 = await exec(f.target, NEXUS_A, 0, [Op.READ_6, 0, 0, 100, 4, 0]);
    assert.deepEqual(r6.buf, data);
    const r12 = Buffer.alloc(12);
    r12[0] = Op.READ_12;
    r12.writeUInt32BE(100, 2);
    r12.writeUInt32BE(4, 6);
    assert.deepEqual((await exec(f.target, NEXUS_A, 0, r12)).buf, data);
    assert.deepEqual((await exec(f.target, NEXUS_A, 0, cdb16(Op.READ_16, 100, 4))).buf, data);
  });

  test('READ(6) with a zero length reads 256 blocks; others read nothing', async () => {
    const r6 = await exec(f.target, NEXUS_A, 0, [Op.READ_6, 0, 0, 0, 0, 0], undefined, 256 * BS);
    assert.equal(r6.buf.length, 256 * BS);
    const r10 = await exec(f.target, NEXUS_A, 0, cdb10(Op.READ_10, 0, 0));
    assert.equal(r10.status, Status.GOOD);
    assert.equal(r10.buf.length, 0);
  });

  test('out-of-range LBAs are 21/00; protection fields are 24/00; FUA writes still land', async () => {
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, cdb10(Op.READ_10, BLOCKS - 1, 2))),
      [5, 0x21, 0],
    );
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_A, 0, cdb16(Op.READ_16, 2 ** 63, 1))), [5, 0x21, 0]);
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_A, 0, cdb10(Op.READ_10, 0, 1, 0x20))), [5, 0x24, 0]);
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, cdb10(Op.WRITE_10, 0, 1, 0x40), Buffer.alloc(BS))),
      [5, 0x24, 0],
    );
    const fua = await exec(f.target, NEXUS_A, 0, cdb10(Op.WRITE_10, BLOCKS - 1, 1, 0x18), pattern(BS, 9));
    assert.equal(fua.status, Status.GOOD);
    assert.deepEqual(await disk(BLOCKS - 1, 1), pattern(BS, 9));
    assert.equal((await exec(f.target, NEXUS_A, 0, cdb10(Op.READ_10, BLOCKS, 0))).status, Status.GOOD);
  });

  test('transfers above the Block Limits maximum are invalid fields', async () => {
    const g = await fixture({ size: 64 * 1024 * 1024 });
    try {
      await clearUas(g.target, NEXUS_A);
      const r = await exec(g.target, NEXUS_A, 0, cdb16(Op.READ_16, 0, 65537));
      assert.deepEqual(senseOf(r), [5, 0x24, 0]);
    } finally {
      await g.cleanup();
    }
  });

  test('Data-In is cut at the expected length; Data-Out shorter than the CDB writes whole blocks only', async () => {
    await exec(f.target, NEXUS_A, 0, cdb10(Op.WRITE_10, 0, 2), Buffer.alloc(2 * BS, 0x61));
    const r = await exec(f.target, NEXUS_A, 0, cdb10(Op.READ_10, 0, 2), undefined, 700);
    assert.equal(r.buf.length, 700);
    assert.equal(r.dataLength, 700);
    assert.equal(r.transferLength, 2 * BS, 'overflow residual = 1024 - 700');
    const w = await exec(
      f.target,
      NEXUS_A,
      0,
      cdb10(Op.WRITE_10, 0, 2),
      Buffer.alloc(BS + 100, 0x62),
      BS + 100,
    );
    assert.equal(w.status, Status.GOOD);
    assert.equal(w.transferLength, 2 * BS);
    assert.ok((await disk(0, 1)).every((x) => x === 0x62));
    assert.ok(
      (await disk(1, 1)).every((x) => x === 0x61),
      'the partial second block was not written',
    );
  });

  test('read-only LUs refuse writes with 07/27/00 but accept zero-length writes', async () => {
    const ro = await fixture({ readOnly: true });
    try {
      await clearUas(ro.target, NEXUS_A);
      assert.deepEqual(
        senseOf(await exec(ro.target, NEXUS_A, 0, cdb10(Op.WRITE_10, 0, 1), Buffer.alloc(BS))),
        [7, 0x27, 0],
      );
      assert.equal((await exec(ro.target, NEXUS_A, 0, cdb10(Op.WRITE_10, 0, 0))).status, Status.GOOD);
      const ms = await exec(ro.target, NEXUS_A, 0, [Op.MODE_SENSE_6, 8, 0x3f, 0, 255, 0]);
      assert.equal(ms.buf[2]! & 0x80, 0x80, 'WP bit');
    } finally {
      await ro.cleanup();
    }
  });
});

describe('VERIFY / WRITE AND VERIFY / ORWRITE', () => {
  test('VERIFY BYTCHK=1 compares, and a miscompare reports 0E/1D/00 with the byte offset', async () => {
    const data = pattern(2 * BS, 3);
    await exec(f.target, NEXUS_A, 0, cdb10(Op.WRITE_10, 10, 2), data);
    assert.equal(
      (await exec(f.target, NEXUS_A, 0, cdb10(Op.VERIFY_10, 10, 2, 0x02), data)).status,
      Status.GOOD,
    );
    const wrong = Buffer.from(data);
    wrong[BS + 7]! ^= 0xff;
    const r = await exec(f.target, NEXUS_A, 0, cdb10(Op.VERIFY_10, 10, 2, 0x02), wrong);
    assert.deepEqual(senseOf(r), [0x0e, 0x1d, 0]);
    assert.equal(r.sense![0], 0xf0, 'VALID');
    assert.equal(r.sense!.readUInt32BE(3), BS + 7);
    assert.equal(
      (await exec(f.target, NEXUS_A, 0, cdb10(Op.VERIFY_10, 10, 2, 0x00), wrong)).status,
      Status.GOOD,
    );
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, cdb10(Op.VERIFY_10, 10, 2, 0x04))),
      [5, 0x24, 0],
    );
    const short = await exec(f.target, NEXUS_A, 0, cdb10(Op.VERIFY_10, 10, 2, 0x02), data.subarray(0, BS));
    assert.deepEqual(senseOf(short), [5, 0x24, 0], 'never GOOD for data it did not see');
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_A, 0, cdb10(Op.VERIFY_10, BLOCKS, 1))), [5, 0x21, 0]);
  });

  test('VERIFY BYTCHK=11b compares one block against every block of the range', async () => {
    const block = pattern(BS, 4);
    await exec(f.target, NEXUS_A, 0, cdb10(Op.WRITE_10, 20, 3), Buffer.concat([block, block, block]));
    const ok = await exec(f.target, NEXUS_A, 0, cdb16(Op.VERIFY_16, 20, 3, 0x06), block);
    assert.equal(ok.status, Status.GOOD);
    assert.equal(ok.transferLength, BS);
    const bad = await exec(f.target, NEXUS_A, 0, cdb16(Op.VERIFY_16, 20, 4, 0x06), block);
    assert.deepEqual(senseOf(bad), [0x0e, 0x1d, 0]);
  });

  test('WRITE AND VERIFY writes; ORWRITE ORs into the medium', async () => {
    const a = Buffer.alloc(BS, 0x0f);
    assert.equal((await exec(f.target, NEXUS_A, 0, cdb10(Op.WRITE_AND_VERIFY_10, 5, 1, 0x02), a)).status, 0);
    assert.deepEqual(await disk(5, 1), a);
    assert.equal(
      (await exec(f.target, NEXUS_A, 0, cdb16(Op.ORWRITE_16, 5, 1), Buffer.alloc(BS, 0xf0))).status,
      0,
    );
    assert.ok((await disk(5, 1)).every((x) => x === 0xff));
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, cdb16(Op.ORWRITE_16, 5, 1, 0x20), a)),
      [5, 0x24, 0],
    );
  });
});

describe('COMPARE AND WRITE', () => {
  const caw = (lba: number, blocks: number, flags = 0) => {
    const c = cdb16(Op.COMPARE_AND_WRITE, lba, 0, flags);
    c[13] = blocks;
    return c;
  };

  test('writes when the compare matches, reports the first differing byte otherwise', async () => {
    const old = pattern(2 * BS, 5);
    const next = pattern(2 * BS, 6);
    await exec(f.target, NEXUS_A, 0, cdb10(Op.WRITE_10, 40, 2), old);
    const ok = await exec(f.target, NEXUS_A, 0, caw(40, 2), Buffer.concat([old, next]));
    assert.equal(ok.status, Status.GOOD);
    assert.deepEqual(await disk(40, 2), next);
    const stale = await exec(f.target, NEXUS_A, 0, caw(40, 2), Buffer.concat([old, pattern(2 * BS, 7)]));
    assert.deepEqual(senseOf(stale), [0x0e, 0x1d, 0]);
    assert.equal(stale.sense![0]! & 0x80, 0x80);
    let first = 0;
    while (old[first] === next[first]) first++;
    assert.equal(stale.sense!.readUInt32BE(3), first);
    assert.deepEqual(await disk(40, 2), next, 'nothing written on miscompare');
  });

  test('Data-Out must be exactly twice the blocks; length and range limits are enforced', async () => {
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_A, 0, caw(0, 1), Buffer.alloc(BS))), [5, 0x24, 0]);
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, caw(0, 1), Buffer.alloc(3 * BS))),
      [5, 0x24, 0],
    );
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, caw(0, 0), Buffer.alloc(2 * BS))),
      [5, 0x24, 0],
    );
    assert.equal((await exec(f.target, NEXUS_A, 0, caw(0, 0))).status, Status.GOOD);
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, caw(BLOCKS, 1), Buffer.alloc(2 * BS))),
      [5, 0x21, 0],
    );
  });

  test('concurrent COMPARE AND WRITEs on one block are atomic: exactly one of N racers wins', async () => {
    const zero = Buffer.alloc(BS);
    const racers = Array.from({ length: 8 }, (_, i) =>
      exec(f.target, NEXUS_A, 0, caw(77, 1), Buffer.concat([zero, Buffer.alloc(BS, i + 1)])),
    );
    const results = await Promise.all(racers);
    assert.equal(results.filter((r) => r.status === Status.GOOD).length, 1);
    assert.equal(results.filter((r) => r.status === Status.CHECK_CONDITION).length, 7);
  });
});

describe('thin provisioning', () => {
  test('WRITE SAME without UNMAP writes the pattern; with UNMAP punches a hole that reads as zeros', async () => {
    const block = pattern(BS, 8);
    const ws = cdb10(Op.WRITE_SAME_10, 1024, 1024);
    assert.equal((await exec(f.target, NEXUS_A, 0, ws, block)).status, Status.GOOD);
    const written = await disk(1024, 1024);
    for (let i = 0; i < 1024; i++) assert.deepEqual(written.subarray(i * BS, (i + 1) * BS), block);
    const before = (await stat(f.path)).blocks;
    const unmap = await exec(f.target, NEXUS_A, 0, cdb16(Op.WRITE_SAME_16, 1024, 1024, 0x08), block);
    assert.equal(unmap.status, Status.GOOD);
    assert.ok((await disk(1024, 1024)).every((x) => x === 0));
    assert.ok((await stat(f.path)).blocks < before, 'space was given back');
  });

  test('WRITE SAME checks: Data-Out of exactly one block, NDOB, ANCHOR, obsolete bits, range', async () => {
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, cdb10(Op.WRITE_SAME_10, 0, 1, 0x08), Buffer.alloc(256))),
      [5, 0x24, 0],
    );
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, cdb10(Op.WRITE_SAME_10, 0, 1), Buffer.alloc(2 * BS))),
      [5, 0x24, 0],
    );
    assert.equal((await exec(f.target, NEXUS_A, 0, cdb16(Op.WRITE_SAME_16, 0, 8, 0x09))).status, Status.GOOD);
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, cdb10(Op.WRITE_SAME_10, 0, 1, 0x18), Buffer.alloc(BS))),
      [5, 0x24, 0],
    );
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, cdb10(Op.WRITE_SAME_10, 0, 1, 0x02), Buffer.alloc(BS))),
      [5, 0x24, 0],
    );
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, cdb10(Op.WRITE_SAME_10, BLOCKS - 1, 2), Buffer.alloc(BS))),
      [5, 0x21, 0],
    );
  });

  test('WRITE SAME with zero blocks runs to the end of the LU (WSNZ=0), after the range check', async () => {
    await exec(f.target, NEXUS_A, 0, cdb10(Op.WRITE_10, BLOCKS - 2, 2), Buffer.alloc(2 * BS, 0x55));
    const r = await exec(
      f.target,
      NEXUS_A,
      0,
      cdb10(Op.WRITE_SAME_10, BLOCKS - 2, 0, 0x08),
      Buffer.alloc(BS),
    );
    assert.equal(r.status, Status.GOOD);
    assert.ok((await disk(BLOCKS - 2, 2)).every((x) => x === 0));
    const oob = await exec(f.target, NEXUS_A, 0, cdb10(Op.WRITE_SAME_10, BLOCKS + 1, 0), Buffer.alloc(BS));
    assert.deepEqual(senseOf(oob), [5, 0x21, 0]);
  });

  const unmapCdb = (len: number) => [Op.UNMAP, 0, 0, 0, 0, 0, 0, len >> 8, len & 0xff, 0];
  const unmapList = (ranges: [number, number][]) => {
    const p = Buffer.alloc(8 + 16 * ranges.length);
    p.writeUInt16BE(p.length - 2, 0);
    p.writeUInt16BE(16 * ranges.length, 2);
    ranges.forEach(([lba, n], i) => {
      p.writeBigUInt64BE(BigInt(lba), 8 + 16 * i);
      p.writeUInt32BE(n, 16 + 16 * i);
    });
    return p;
  };

  test('UNMAP deallocates every descriptor', async () => {
    await exec(f.target, NEXUS_A, 0, cdb10(Op.WRITE_10, 0, 16), Buffer.alloc(16 * BS, 0x11));
    await exec(f.target, NEXUS_A, 0, cdb10(Op.WRITE_10, 64, 16), Buffer.alloc(16 * BS, 0x22));
    const list = unmapList([
      [0, 16],
      [64, 8],
    ]);
    assert.equal((await exec(f.target, NEXUS_A, 0, unmapCdb(list.length), list)).status, Status.GOOD);
    assert.ok((await disk(0, 16)).every((x) => x === 0));
    assert.ok((await disk(64, 8)).every((x) => x === 0));
    assert.ok((await disk(72, 8)).every((x) => x === 0x22));
  });

  test('UNMAP parameter list errors', async () => {
    assert.equal((await exec(f.target, NEXUS_A, 0, unmapCdb(0))).status, Status.GOOD);
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_A, 0, unmapCdb(6), Buffer.alloc(6))), [5, 0x1a, 0]);
    const oob = unmapList([[BLOCKS - 1, 2]]);
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_A, 0, unmapCdb(oob.length), oob)), [5, 0x21, 0]);
    const many = unmapList(Array.from({ length: 257 }, (_, i) => [i, 1] as [number, number]));
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_A, 0, unmapCdb(many.length), many)), [5, 0x26, 0]);
    const lying = unmapList([[0, 1]]);
    lying.writeUInt16BE(64, 2);
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_A, 0, unmapCdb(lying.length), lying)), [5, 0x1a, 0]);
    const anchor = unmapCdb(24);
    anchor[1] = 1;
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_A, 0, anchor, unmapList([[0, 1]]))), [5, 0x24, 0]);
  });

  test('GET LBA STATUS reports mapped and deallocated extents of a sparse file', async (t) => {
    if (!(await havePython())) return t.skip('python3 is needed to stand in for SEEK_DATA');
    const g = await fixture({ thin: true, seek: true });
    try {
      await clearUas(g.target, NEXUS_A);
      // Blocks 8..15 (one 4 KiB file-system block) get data; the rest of the new file is a hole.
      await exec(g.target, NEXUS_A, 0, cdb10(Op.WRITE_10, 8, 8), Buffer.alloc(8 * BS, 1));
      const gls = (lba: number, alloc = 1024) => {
        const c = cdb16(Op.SERVICE_ACTION_IN_16, lba, alloc);
        c[1] = 0x12;
        return c;
      };
      const r = await exec(g.target, NEXUS_A, 0, gls(0));
      assert.equal(r.status, Status.GOOD);
      const d = (i: number) => [
        Number(r.buf.readBigUInt64BE(8 + 16 * i)),
        r.buf.readUInt32BE(16 + 16 * i),
        r.buf[20 + 16 * i],
      ];
      assert.equal(r.buf.readUInt32BE(0), 4 + 16 * 3);
      assert.deepEqual(d(0), [0, 8, 1]);
      assert.deepEqual(d(1), [8, 8, 0]);
      assert.deepEqual(d(2), [16, BLOCKS - 16, 1]);
      const mid = await exec(g.target, NEXUS_A, 0, gls(10, 24));
      assert.equal(mid.buf.length, 24);
      assert.deepEqual(
        [Number(mid.buf.readBigUInt64BE(8)), mid.buf.readUInt32BE(16), mid.buf[20]],
        [10, 6, 0],
      );
      assert.deepEqual(senseOf(await exec(g.target, NEXUS_A, 0, gls(BLOCKS))), [5, 0x21, 0]);
    } finally {
      await g.cleanup();
    }
  });
});

describe('cache and prefetch', () => {
  test('SYNCHRONIZE CACHE and PRE-FETCH check the range and succeed', async () => {
    assert.equal(
      (await exec(f.target, NEXUS_A, 0, cdb10(Op.SYNCHRONIZE_CACHE_10, 0, 0))).status,
      Status.GOOD,
    );
    assert.equal(
      (await exec(f.target, NEXUS_A, 0, cdb16(Op.SYNCHRONIZE_CACHE_16, 0, 8))).status,
      Status.GOOD,
    );
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, cdb10(Op.SYNCHRONIZE_CACHE_10, BLOCKS, 1))),
      [5, 0x21, 0],
    );
    assert.equal((await exec(f.target, NEXUS_A, 0, cdb10(Op.PRE_FETCH_10, 0, 8, 0x02))).status, Status.GOOD);
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, cdb16(Op.PRE_FETCH_16, BLOCKS, 1))),
      [5, 0x21, 0],
    );
  });

  test('READ DEFECT DATA returns an empty list', async () => {
    const r = await exec(f.target, NEXUS_A, 0, [Op.READ_DEFECT_DATA_10, 0, 0x18, 0, 0, 0, 0, 0, 255, 0]);
    assert.deepEqual([...r.buf], [0, 0x18, 0, 0]);
  });
});

describe('EXTENDED COPY', () => {
  function xcopy(
    segments: { src: number; dst: number; blocks: number; srcLba: number; dstLba: number }[],
    naa: Buffer,
  ) {
    const cscd = Buffer.alloc(32);
    cscd[0] = 0xe4;
    cscd[4] = 0x01;
    cscd[5] = 0x03;
    cscd[7] = 16;
    naa.copy(cscd, 8);
    cscd.writeUIntBE(BS, 29, 3);
    const segs = segments.map((s) => {
      const d = Buffer.alloc(28);
      d[0] = 0x02;
      d.writeUInt16BE(0x18, 2);
      d.writeUInt16BE(s.src, 4);
      d.writeUInt16BE(s.dst, 6);
      d.writeUInt16BE(s.blocks, 10);
      d.writeBigUInt64BE(BigInt(s.srcLba), 12);
      d.writeBigUInt64BE(BigInt(s.dstLba), 20);
      return d;
    });
    const header = Buffer.alloc(16);
    header[0] = 7; // list id
    header.writeUInt16BE(32, 2);
    header.writeUInt32BE(28 * segs.length, 8);
    return Buffer.concat([header, cscd, ...segs]);
  }
  const xcopyCdb = (len: number) => {
    const c = Buffer.alloc(16);
    c[0] = Op.EXTENDED_COPY;
    c.writeUInt32BE(len, 10);
    return c;
  };

  test('copies block ranges within the LU named by its NAA, overlapping ranges included', async () => {
    const data = pattern(300 * BS, 10);
    await exec(f.target, NEXUS_A, 0, cdb10(Op.WRITE_10, 0, 300), data);
    const p = xcopy(
      [
        { src: 0, dst: 0, blocks: 300, srcLba: 0, dstLba: 4000 },
        { src: 0, dst: 0, blocks: 300, srcLba: 0, dstLba: 100 },
      ],
      f.lu.naa,
    );
    const r = await exec(f.target, NEXUS_A, 0, xcopyCdb(p.length), p);
    assert.equal(r.status, Status.GOOD);
    assert.deepEqual(await disk(4000, 300), data);
    assert.deepEqual(await disk(100, 300), data, 'overlapping move copied back to front');
    const status = await exec(
      f.target,
      NEXUS_A,
      0,
      Buffer.from([0x84, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]),
    );
    assert.equal(status.status, Status.GOOD);
    assert.deepEqual([status.buf[4], status.buf.readUInt16BE(5), status.buf[7]], [1, 2, 0xf1]);
    assert.equal(status.buf.readUInt32BE(8), 300);
  });

  test('unknown LUs abort the copy (0A/0D/02) and nothing is written', async () => {
    const p = xcopy([{ src: 0, dst: 0, blocks: 1, srcLba: 0, dstLba: 1 }], Buffer.alloc(16, 0x60));
    assert.deepEqual(senseOf(await exec(f.target, NEXUS_A, 0, xcopyCdb(p.length), p)), [0x0a, 0x0d, 0x02]);
    const beyond = xcopy([{ src: 0, dst: 0, blocks: 2, srcLba: 0, dstLba: BLOCKS - 1 }], f.lu.naa);
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, xcopyCdb(beyond.length), beyond)),
      [0x0a, 0, 0],
    );
    const truncated = xcopy([{ src: 0, dst: 0, blocks: 1, srcLba: 0, dstLba: 1 }], f.lu.naa);
    assert.deepEqual(
      senseOf(await exec(f.target, NEXUS_A, 0, xcopyCdb(truncated.length - 1), truncated)),
      [5, 0x1a, 0],
    );
    assert.equal((await exec(f.target, NEXUS_A, 0, xcopyCdb(0))).status, Status.GOOD);
  });
});
