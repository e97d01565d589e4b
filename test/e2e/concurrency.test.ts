import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type DaemonHandle, RpcError, startDaemon } from '../helpers/daemon.js';

interface ExportRow {
  initiator_wwn: string;
  lun: number;
  vol: string;
}

describe('many clients at once', () => {
  let d: DaemonHandle;
  before(async () => {
    d = await startDaemon();
  });
  after(async () => {
    await d.dispose();
  });

  test('50 parallel clients creating, exporting and destroying: no duplicates, no losses, no LUN twice', async () => {
    const CLIENTS = 50;
    const ROUNDS = 6;
    const shared = 'iqn.2024-01.test.shared:host';
    const kept = new Set<string>();
    const conflicts = { name: 0, lun: 0 };
    const client = async (c: number) => {
      for (let r = 0; r < ROUNDS; r++) {
        // Every client races for the same few names and LUNs, so the server must serialize correctly.
        const name = `race-${(c + r) % 7}`;
        try {
          await d.call('vol_create', { pool: 'pool1', name, size: 4096 * (1 + (c % 3)) });
        } catch (e) {
          assert.ok(e instanceof RpcError && e.code === -50, String(e));
          conflicts.name++;
        }
        const own = `c${c}-r${r}`;
        await d.call('vol_create', { pool: 'pool1', name: own, size: 8192 });
        try {
          await d.call('export_create', {
            pool: 'pool1',
            vol: own,
            initiator_wwn: shared,
            lun: (c * ROUNDS + r) % 16,
          });
          if (r % 2 === 0) {
            await d.call('export_destroy', { pool: 'pool1', vol: own, initiator_wwn: shared });
            await d.call('vol_destroy', { pool: 'pool1', name: own });
          } else {
            kept.add(own);
          }
        } catch (e) {
          assert.ok(e instanceof RpcError && e.code === -32602, String(e));
          conflicts.lun++;
          await d.call('vol_destroy', { pool: 'pool1', name: own });
        }
        await d.call('vol_list', { pool: 'pool1' });
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));

    const vols = await d.call<{ name: string; uuid: string }[]>('vol_list', { pool: 'pool1' });
    const names = vols.map((v) => v.name);
    assert.equal(new Set(names).size, names.length, 'duplicate volume names');
    assert.equal(new Set(vols.map((v) => v.uuid)).size, vols.length, 'duplicate UUIDs');
    for (let i = 0; i < 7; i++) assert.ok(names.includes(`race-${i}`), `race-${i} lost`);
    const exports = await d.call<ExportRow[]>('export_list');
    const luns = exports.map((e) => e.lun);
    assert.equal(new Set(luns).size, luns.length, 'a LUN was given twice');
    assert.deepEqual(new Set(exports.map((e) => e.vol)), kept, 'lost or extra exports');
    for (const k of kept) assert.ok(names.includes(k), `exported volume ${k} missing`);
    assert.ok(conflicts.name > 0 && conflicts.lun > 0, 'the race never happened');

    // The same state comes back after a restart.
    await d.restart();
    assert.deepEqual(await d.call('export_list'), exports);
    assert.deepEqual(await d.call('vol_list', { pool: 'pool1' }), vols);
  });

  test('reads are not blocked by a running copy', async () => {
    // Covered with a throttled copy in async.test.ts; here: many reads in parallel with mutations.
    const reads = Array.from({ length: 100 }, () => d.call('vol_list', { pool: 'pool1' }));
    const writes = Array.from({ length: 20 }, (_, i) =>
      d.call('vol_create', { pool: 'pool1', name: `p${i}`, size: 4096 }),
    );
    await Promise.all([...reads, ...writes]);
    const names = (await d.call<{ name: string }[]>('vol_list', { pool: 'pool1' })).map((v) => v.name);
    for (let i = 0; i < 20; i++) assert.ok(names.includes(`p${i}`));
  });
});
