import assert from 'node:assert/strict';
import { readSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FileBackingStore } from '../../../src/iscsi/lu/backing-store.js';
import { LogicalUnit, naaRegisteredExtended } from '../../../src/iscsi/lu/logical-unit.js';
import { PersistentReservations, PrType } from '../../../src/iscsi/lu/persistent-reservations.js';
import { RangeLock } from '../../../src/iscsi/lu/range-lock.js';
import { preadNowait } from '../../../src/native/index.js';
import { cliFileOps, havePython, MemoryPrStore } from '../scsi/helpers.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'targetd-lu-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('FileBackingStore', () => {
  test('reads and writes at offsets, single and vectored', async () => {
    const path = join(dir, 'rw.img');
    await writeFile(path, Buffer.alloc(8192));
    const s = await FileBackingStore.open(path);
    try {
      assert.equal(s.size(), 8192);
      await s.write(512, Buffer.from('hello'));
      await s.write(1024, [Buffer.from('ab'), Buffer.alloc(0), Buffer.from('cd')]);
      await s.flush();
      assert.equal((await s.read(512, 5)).toString(), 'hello');
      assert.equal((await s.read(1024, 4)).toString(), 'abcd');
      const disk = await readFile(path);
      assert.equal(disk.subarray(1024, 1028).toString(), 'abcd');
    } finally {
      await s.close();
    }
  });

  test('reads past the end of a shrunken file as zeros and refreshes its size', async () => {
    const path = join(dir, 'short.img');
    await writeFile(path, Buffer.alloc(4096, 0xaa));
    const s = await FileBackingStore.open(path);
    try {
      await truncate(path, 1000);
      const b = await s.read(512, 1024);
      assert.equal(b[0], 0xaa);
      assert.equal(b[487], 0xaa);
      assert.equal(b[488], 0);
      assert.ok(b.subarray(488).every((x) => x === 0));
      assert.equal(await s.refreshSize(), 1000);
      assert.equal(s.size(), 1000);
    } finally {
      await s.close();
    }
  });

  test('preadNowait: small reads use it when it delivers everything, else (and for large ones) the threadpool', async () => {
    const path = join(dir, 'nowait.img');
    const content = Buffer.alloc(256 * 1024);
    for (let i = 0; i < content.length; i++) content[i] = (i * 7) & 0xff;
    await writeFile(path, content);
    let calls = 0;
    let answer: 'all' | 'eagain' | 'short' = 'all';
    const s = await FileBackingStore.open(path, {
      ops: {
        preadNowait: (fd, buf, offset) => {
          calls++;
          if (answer === 'eagain') return -11;
          const n = readSync(fd, buf, 0, answer === 'short' ? buf.length >> 1 : buf.length, offset);
          // A short answer leaves garbage behind the count, which the fallback must overwrite.
          if (answer === 'short') buf.fill(0xee, n);
          return n;
        },
      },
    });
    try {
      const expect = (off: number, len: number) => content.subarray(off, off + len);
      assert.deepEqual(await s.read(4096, 4096), expect(4096, 4096));
      assert.equal(calls, 1);
      answer = 'eagain';
      assert.deepEqual(await s.read(8192, 8192), expect(8192, 8192));
      answer = 'short';
      assert.deepEqual(await s.read(512, 8192), expect(512, 8192));
      assert.equal(calls, 3);
      assert.deepEqual(await s.read(0, 128 * 1024), expect(0, 128 * 1024), 'large: threadpool only');
      assert.equal(calls, 3);
    } finally {
      await s.close();
    }
    await assert.rejects(s.read(0, 512), /closed/);
  });

  test('writes issued in one turn are merged where contiguous and each lands where it was aimed', async () => {
    const path = join(dir, 'merge.img');
    const blocks = 96;
    await writeFile(path, Buffer.alloc(blocks * 4096));
    const s = await FileBackingStore.open(path);
    try {
      const block = (i: number) => Buffer.alloc(4096, (i * 37 + 1) & 0xff);
      // Out of order, with gaps, some as several buffers, one empty: sorting and merging must keep offsets.
      const order = [5, 3, 4, 90, 6, 0, 2, 1, 40, 41, 43, 42, 7];
      const writes = order.map((i) =>
        i % 3 === 0
          ? s.write(i * 4096, [block(i).subarray(0, 1000), Buffer.alloc(0), block(i).subarray(1000)])
          : s.write(i * 4096, block(i)),
      );
      writes.push(s.write(50 * 4096, []));
      await Promise.all(writes);
      const back = await readFile(path);
      for (let i = 0; i < blocks; i++) {
        const want = order.includes(i) ? block(i) : Buffer.alloc(4096);
        assert.deepEqual(back.subarray(i * 4096, (i + 1) * 4096), want, `block ${i}`);
      }
      // A run longer than one writev's buffer limit still lands whole.
      const many = Array.from({ length: 1200 }, (_, i) => s.write(i * 8, Buffer.alloc(8, i & 0xff)));
      await Promise.all(many);
      const again = await readFile(path);
      for (let i = 0; i < 1200; i++)
        assert.ok(again.subarray(i * 8, i * 8 + 8).every((b) => b === (i & 0xff)));
    } finally {
      await s.close();
    }
  });

  test('preadNowait answering -2 (not supported here) is not asked again', async () => {
    const path = join(dir, 'nowait-unsupported.img');
    await writeFile(path, Buffer.alloc(16 * 1024, 0x42));
    let calls = 0;
    const s = await FileBackingStore.open(path, {
      ops: {
        preadNowait: () => {
          calls++;
          return -2;
        },
      },
    });
    try {
      assert.deepEqual(await s.read(0, 4096), Buffer.alloc(4096, 0x42));
      assert.deepEqual(await s.read(4096, 4096), Buffer.alloc(4096, 0x42));
      assert.equal(calls, 1);
    } finally {
      await s.close();
    }
  });

  test('the real addon serves cached reads without the threadpool and falls back past the end', async () => {
    const path = join(dir, 'nowait-real.img');
    const content = Buffer.alloc(32 * 1024);
    for (let i = 0; i < content.length; i++) content[i] = (i * 5) & 0xff;
    await writeFile(path, content);
    const s = await FileBackingStore.open(path, { ops: { preadNowait } });
    try {
      assert.deepEqual(await s.read(4096, 8192), content.subarray(4096, 12288));
      // Past the end: the addon reads short, the ordinary path zero-fills.
      const tail = await s.read(28 * 1024, 8192);
      assert.deepEqual(tail.subarray(0, 4096), content.subarray(28 * 1024));
      assert.ok(tail.subarray(4096).every((b) => b === 0));
    } finally {
      await s.close();
    }
  });

  test('only offers thin-provisioning operations that were injected, and none read-only', async () => {
    const path = join(dir, 'ops.img');
    await writeFile(path, Buffer.alloc(4096));
    const plain = await FileBackingStore.open(path);
    const ro = await FileBackingStore.open(path, { readOnly: true, ops: cliFileOps(path, false) });
    try {
      assert.equal(plain.punchHole, undefined);
      assert.equal(plain.seekData, undefined);
      assert.equal(ro.punchHole, undefined);
      await assert.rejects(ro.write(0, Buffer.alloc(1)));
    } finally {
      await plain.close();
      await ro.close();
    }
  });

  test('punches holes and finds data and holes through the injected ops', async (t) => {
    if (!(await havePython())) return t.skip('python3 is needed to stand in for SEEK_DATA');
    const path = join(dir, 'sparse.img');
    await writeFile(path, Buffer.alloc(1 << 20, 1));
    const s = await FileBackingStore.open(path, { ops: cliFileOps(path, true) });
    try {
      await s.punchHole!(256 * 1024, 512 * 1024);
      assert.ok((await s.read(256 * 1024, 512 * 1024)).every((x) => x === 0));
      assert.equal((await stat(path)).size, 1 << 20);
      assert.equal(await s.seekData!(0), 0);
      assert.equal(await s.seekHole!(0), 256 * 1024);
      assert.equal(await s.seekData!(256 * 1024), 768 * 1024);
    } finally {
      await s.close();
    }
  });
});

describe('naaRegisteredExtended', () => {
  test('packs NAA 6, company id 0x001405 and the first 25 hex digits of the UUID, as LIO does', () => {
    const naa = naaRegisteredExtended('3f2504e0-4f89-11d3-9a0c-0305e82c3301');
    assert.equal(naa.toString('hex'), `6001405${'3f2504e04f8911d39a0c0305e'}`);
    assert.equal(naa.length, 16);
  });

  test('skips non-hex characters and zero-pads short serials', () => {
    assert.equal(naaRegisteredExtended('ab-c').toString('hex'), '6001405abc0000000000000000000000');
    assert.equal(naaRegisteredExtended('ABC', 0x123456).toString('hex'), '6123456abc0000000000000000000000');
  });
});

describe('LogicalUnit', () => {
  test('derives capacity, thin provisioning and write protection from its store and options', async () => {
    const path = join(dir, 'lu.img');
    await writeFile(path, Buffer.alloc(1 << 20));
    const thinStore = await FileBackingStore.open(path, { ops: cliFileOps(path, false) });
    const lu = new LogicalUnit({ backing: thinStore, uuid: 'u', blockSize: 4096 });
    try {
      assert.equal(lu.capacity, 256);
      assert.equal(lu.thin, true);
      assert.equal(lu.writeProtected, false);
      lu.softwareWriteProtect = true;
      assert.equal(lu.writeProtected, true);
      assert.throws(() => new LogicalUnit({ backing: thinStore, uuid: 'u', blockSize: 1000 }), RangeError);
      assert.throws(
        () => new LogicalUnit({ backing: thinStore, uuid: 'u', blockSize: 4096, physicalBlockSize: 512 }),
        RangeError,
      );
    } finally {
      await thinStore.close();
    }
  });
});

describe('LogicalUnit.flush', () => {
  test('coalesces concurrent flushes but never lets a caller share a sync that started before it', async () => {
    let syncs = 0;
    const gates: (() => void)[] = [];
    const backing = {
      size: () => 4096,
      read: async (_o: number, n: number) => Buffer.alloc(n),
      write: async () => undefined,
      flush: () =>
        new Promise<void>((resolve) => {
          syncs++;
          gates.push(resolve);
        }),
      close: async () => undefined,
    };
    const lu = new LogicalUnit({ backing, uuid: 'u' });
    const first = lu.flush();
    const later = [lu.flush(), lu.flush(), lu.flush()];
    assert.equal(syncs, 1);
    let laterDone = false;
    void Promise.all(later).then(() => {
      laterDone = true;
    });
    gates.shift()!();
    await first;
    await new Promise((r) => setImmediate(r));
    assert.equal(laterDone, false, 'they wait for a sync that began after their call');
    assert.equal(syncs, 2);
    gates.shift()!();
    await Promise.all(later);
    assert.equal(syncs, 2);
    const again = lu.flush();
    assert.equal(syncs, 3);
    gates.shift()!();
    await again;
  });
});

describe('PersistentReservations', () => {
  test('conflict rules per reservation type', () => {
    const pr = new PersistentReservations();
    pr.registrations.set('a', 1n);
    pr.registrations.set('b', 2n);
    const cases: [number, boolean, boolean, boolean, boolean][] = [
      // type, registered-b read, registered-b write, stranger read, stranger write (true = conflict)
      [PrType.WRITE_EXCLUSIVE, false, true, false, true],
      [PrType.EXCLUSIVE_ACCESS, true, true, true, true],
      [PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, false, false, false, true],
      [PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY, false, false, true, true],
      [PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS, false, false, false, true],
      [PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS, false, false, true, true],
    ];
    for (const [type, br, bw, sr, sw] of cases) {
      pr.reservation = { holder: 'a', type };
      assert.equal(pr.conflicts('a', 'write'), false, `holder, type ${type}`);
      assert.equal(pr.conflicts('b', 'read'), br, `registrant read, type ${type}`);
      assert.equal(pr.conflicts('b', 'write'), bw, `registrant write, type ${type}`);
      assert.equal(pr.conflicts('c', 'read'), sr, `stranger read, type ${type}`);
      assert.equal(pr.conflicts('c', 'write'), sw, `stranger write, type ${type}`);
    }
  });

  test('persists only with APTPL, and a later APTPL=0 overwrites the saved state', async () => {
    const store = new MemoryPrStore();
    const pr = new PersistentReservations(store);
    pr.registrations.set('a', 0x1234n);
    await pr.commit();
    assert.equal(store.saves.length, 0);
    pr.aptpl = true;
    pr.reservation = { holder: 'a', type: PrType.WRITE_EXCLUSIVE };
    pr.generation = 7;
    await pr.commit();
    assert.deepEqual(store.state, {
      version: 1,
      generation: 7,
      aptpl: true,
      registrations: [{ nexus: 'a', key: '0000000000001234' }],
      reservation: { holder: 'a', type: 1 },
    });
    const restored = new PersistentReservations(store);
    assert.equal(restored.registrations.get('a'), 0x1234n);
    assert.deepEqual(restored.reservation, { holder: 'a', type: 1 });
    assert.equal(restored.generation, 7);
    restored.aptpl = false;
    await restored.commit();
    assert.equal(store.state?.aptpl, false);
    assert.equal(new PersistentReservations(store).registrations.size, 0);
    await restored.commit();
    assert.equal(store.saves.length, 2, 'nothing more to overwrite once APTPL=0 was saved');
  });
});

describe('RangeLock', () => {
  test('serializes overlapping ranges and lets disjoint ones run', async () => {
    const lock = new RangeLock();
    const order: string[] = [];
    const r1 = await lock.acquire(0, 10);
    const disjoint = await lock.acquire(10, 20);
    order.push('disjoint');
    const waiting = lock.acquire(5, 15).then((rel) => {
      order.push('overlap');
      return rel;
    });
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, ['disjoint']);
    r1();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, ['disjoint'], 'still blocked by [10,20)');
    disjoint();
    (await waiting)();
    r1();
    assert.deepEqual(order, ['disjoint', 'overlap']);
    assert.equal(lock.size, 0);
  });
});
