import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type DaemonHandle, startDaemon } from '../helpers/daemon.js';

interface Vol {
  name: string;
  size: number;
  uuid: string;
  UUID: string;
}

const ceil4k = (n: number) => Math.ceil(n / 4096) * 4096;

describe('volumes over the API', () => {
  let d: DaemonHandle;
  before(async () => {
    d = await startDaemon({ config: { async_after: -1 } });
  });
  after(async () => {
    await d.dispose();
  });

  const vol = async (name: string): Promise<Vol | undefined> =>
    (await d.call<Vol[]>('vol_list', { pool: 'pool1' })).find((v) => v.name === name);

  test('pool_list reports both dialects with integer sizes', async () => {
    const pools = await d.call<Record<string, unknown>[]>('pool_list');
    assert.equal(pools.length, 1);
    const p = pools[0];
    assert.equal(p.name, 'pool1');
    assert.equal(p.type, 'block');
    assert.ok(Number.isInteger(p.size) && Number.isInteger(p.free_size));
    assert.ok((p.free_size as number) >= 0 && (p.free_size as number) <= (p.size as number));
    assert.match(p.uuid as string, /^\d+$/);
  });

  // The size matrix: each value across create, resize and copy, against the real rounded size.
  const valid = [1, 511, 512, 1000, 4096, 5000001, 123457, 2 ** 30 + 1];
  const invalid: [string, unknown][] = [
    ['0', 0],
    ['-1', -1],
    ['-4096', -4096],
    ['float 1.5', 1.5],
    ['float 4096.0001', 4096.0001],
    ['string "4096"', '4096'],
    ['string "10G"', '10G'],
    ['null', null],
    ['bool', true],
    ['object', { n: 1 }],
    ['2^63', 2 ** 63],
    ['2^64', 2 ** 64],
    ['1e300', 1e300],
  ];

  for (const size of valid) {
    test(`vol_create size ${size} → rounded to ${ceil4k(size)}`, async () => {
      const name = `sz-${size}`;
      await d.call('vol_create', { pool: 'pool1', name, size });
      const v = await vol(name);
      assert.ok(v, 'listed');
      assert.equal(v.size, ceil4k(size));
      assert.ok(v.size >= size, 'never smaller than asked');
      assert.equal(v.uuid, v.UUID);
      assert.match(v.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      // resize: same size refused, smaller refused, larger by 1 rounds up
      assert.equal(await d.errorCode('vol_resize', { pool: 'pool1', name, size: v.size }), -32602);
      if (v.size > 4096)
        assert.equal(await d.errorCode('vol_resize', { pool: 'pool1', name, size: 4096 }), -32602);
      await d.call('vol_resize', { pool: 'pool1', name, size: v.size + 1 });
      assert.equal((await vol(name))?.size, v.size + 4096);
      // copy with a size: must be larger than the (resized) original
      const grown = v.size + 4096;
      assert.equal(
        await d.errorCode('vol_copy', { pool: 'pool1', vol_orig: name, vol_new: `${name}-c`, size: grown }),
        -32602,
      );
      assert.equal(await vol(`${name}-c`), undefined, 'failed copy leaves nothing');
      await d.call('vol_copy', { pool: 'pool1', vol_orig: name, vol_new: `${name}-c`, size: grown + 1 });
      const c = await vol(`${name}-c`);
      assert.equal(c?.size, grown + 4096);
      assert.notEqual(c?.uuid, v.uuid);
      await d.call('vol_copy', { pool: 'pool1', vol_orig: name, vol_new: `${name}-d` });
      assert.equal((await vol(`${name}-d`))?.size, grown);
      for (const n of [name, `${name}-c`, `${name}-d`])
        await d.call('vol_destroy', { pool: 'pool1', name: n });
    });
  }

  test('2^53 is accepted by the schema but refused by the filesystem with nothing left behind', async () => {
    const code = await d.errorCode('vol_create', { pool: 'pool1', name: 'huge', size: 2 ** 53 });
    assert.equal(code, -32602);
    assert.equal(await vol('huge'), undefined);
    const entries = await readdir(join(d.dir, 'pool1'));
    assert.ok(!entries.some((e) => e.includes('huge')), `leftovers: ${entries}`);
  });

  for (const [label, size] of invalid) {
    test(`size ${label} is refused with -32602 naming 'size' in create, resize and copy`, async () => {
      const res = await d.post(
        JSON.stringify({
          jsonrpc: '2.0',
          id: 7,
          method: 'vol_create',
          params: { pool: 'pool1', name: 'bad', size },
        }),
      );
      assert.equal(res.status, 200);
      const body = (await res.json()) as { error: { code: number; message: string } };
      assert.equal(body.error.code, -32602);
      assert.match(body.error.message, /size/);
      assert.equal(await vol('bad'), undefined);
      await d.call('vol_create', { pool: 'pool1', name: 'base', size: 8192 });
      assert.equal(await d.errorCode('vol_resize', { pool: 'pool1', name: 'base', size }), -32602);
      // vol_copy's size is optional: null there means "not given" (upstream clients send None).
      if (size !== null) {
        assert.equal(
          await d.errorCode('vol_copy', { pool: 'pool1', vol_orig: 'base', vol_new: 'bad', size }),
          -32602,
        );
      }
      assert.equal((await vol('base'))?.size, 8192);
      assert.equal(await vol('bad'), undefined);
      await d.call('vol_destroy', { pool: 'pool1', name: 'base' });
    });
  }

  test('names that try to escape the pool are refused and touch nothing', async () => {
    const before = await readdir(d.dir);
    for (const name of [
      '../x',
      'a/b',
      '',
      'x'.repeat(1000),
      '.',
      '..',
      'a b',
      'é',
      '/etc/passwd',
      'a\u0000b',
    ]) {
      assert.equal(
        await d.errorCode('vol_create', { pool: 'pool1', name, size: 4096 }),
        -32602,
        JSON.stringify(name),
      );
      assert.equal(await d.errorCode('vol_destroy', { pool: 'pool1', name }), -32602);
      assert.equal(await d.errorCode('vol_copy', { pool: 'pool1', vol_orig: name, vol_new: 'ok' }), -32602);
    }
    assert.deepEqual(await readdir(d.dir), before);
    assert.deepEqual(await d.call('vol_list', { pool: 'pool1' }), []);
    // 127 characters is the longest name
    await d.call('vol_create', { pool: 'pool1', name: 'n'.repeat(127), size: 4096 });
    assert.equal(
      await d.errorCode('vol_create', { pool: 'pool1', name: 'n'.repeat(128), size: 4096 }),
      -32602,
    );
    await d.call('vol_destroy', { pool: 'pool1', name: 'n'.repeat(127) });
  });

  test('error codes: unknown pool -110, unknown volume -103, duplicate -50', async () => {
    assert.equal(await d.errorCode('vol_list', { pool: 'nope' }), -110);
    assert.equal(await d.errorCode('vol_create', { pool: 'nope', name: 'a', size: 1 }), -110);
    assert.equal(await d.errorCode('vol_destroy', { pool: 'pool1', name: 'missing' }), -103);
    assert.equal(await d.errorCode('vol_resize', { pool: 'pool1', name: 'missing', size: 8192 }), -103);
    assert.equal(await d.errorCode('vol_copy', { pool: 'pool1', vol_orig: 'missing', vol_new: 'x' }), -103);
    await d.call('vol_create', { pool: 'pool1', name: 'dup', size: 4096 });
    assert.equal(await d.errorCode('vol_create', { pool: 'pool1', name: 'dup', size: 4096 }), -50);
    await d.call('vol_create', { pool: 'pool1', name: 'dup2', size: 4096 });
    assert.equal(await d.errorCode('vol_copy', { pool: 'pool1', vol_orig: 'dup', vol_new: 'dup2' }), -50);
    assert.equal(await d.errorCode('vol_create', { pool: 'pool1', name: 'x' }), -32602);
    assert.equal(await d.errorCode('vol_create', { pool: 'pool1', name: 'x', size: 1, extra: 1 }), -32602);
    await d.call('vol_destroy', { pool: 'pool1', name: 'dup' });
    await d.call('vol_destroy', { pool: 'pool1', name: 'dup2' });
  });

  test('a re-created name gets a new UUID; UUIDs survive a restart', async () => {
    await d.call('vol_create', { pool: 'pool1', name: 'reuse', size: 4096 });
    const u1 = (await vol('reuse'))!.uuid;
    await d.restart();
    assert.equal((await vol('reuse'))?.uuid, u1);
    await d.call('vol_destroy', { pool: 'pool1', name: 'reuse' });
    await d.call('vol_create', { pool: 'pool1', name: 'reuse', size: 4096 });
    assert.notEqual((await vol('reuse'))!.uuid, u1);
    await d.call('vol_destroy', { pool: 'pool1', name: 'reuse' });
  });

  test('volumes are sparse files; the copy is independent of its original', async () => {
    await d.call('vol_create', { pool: 'pool1', name: 'big', size: 1024 ** 3 });
    const files = await readdir(join(d.dir, 'pool1'));
    const f = files.find((x) => x.startsWith('big'));
    assert.ok(f);
    const st = await stat(join(d.dir, 'pool1', f));
    assert.ok(st.blocks * 512 < 1024 * 1024, 'sparse');
    await d.call('vol_copy', { pool: 'pool1', vol_orig: 'big', vol_new: 'big2' });
    await d.call('vol_destroy', { pool: 'pool1', name: 'big' });
    assert.equal((await vol('big2'))?.size, 1024 ** 3);
    await d.call('vol_destroy', { pool: 'pool1', name: 'big2' });
  });
});
