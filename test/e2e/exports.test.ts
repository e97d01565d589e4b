import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type DaemonHandle, startDaemon } from '../helpers/daemon.js';

const I1 = 'iqn.2024-01.test.host:one';
const I2 = 'iqn.2024-01.test.host:two';
const I3 = 'iqn.2024-01.test.host:three';

interface ExportRow {
  initiator_wwn: string;
  lun: number;
  pool: string;
  vol_name: string;
  vol_size: number;
  vol_uuid: string;
  vol: string;
}

describe('exports, initiators and access groups over the API', () => {
  let d: DaemonHandle;
  before(async () => {
    d = await startDaemon({ umask: 0 });
    for (const name of ['v1', 'v2', 'v3']) await d.call('vol_create', { pool: 'pool1', name, size: 1 << 20 });
  });
  after(async () => {
    await d.dispose();
  });

  const exports = () => d.call<ExportRow[]>('export_list');
  const state = async () => JSON.parse(await readFile(join(d.dir, 'state', 'state.json'), 'utf8'));

  test('export_create / export_list (both dialects) / export_destroy', async () => {
    await d.call('export_create', { pool: 'pool1', vol: 'v1', initiator_wwn: I1, lun: 0 });
    const rows = await exports();
    assert.equal(rows.length, 1);
    const v1 = (
      await d.call<{ name: string; uuid: string; size: number }[]>('vol_list', { pool: 'pool1' })
    ).find((v) => v.name === 'v1')!;
    assert.deepEqual(rows[0], {
      initiator_wwn: I1,
      lun: 0,
      pool: 'pool1',
      vol_name: 'v1',
      vol_size: v1.size,
      vol_uuid: v1.uuid,
      vol: 'v1',
    });
    // identical export again: success, no change
    await d.call('export_create', { pool: 'pool1', vol: 'v1', initiator_wwn: I1, lun: 0 });
    assert.equal((await exports()).length, 1);
    // an exported volume cannot be destroyed
    assert.equal(await d.errorCode('vol_destroy', { pool: 'pool1', name: 'v1' }), -303);
    await d.call('export_destroy', { pool: 'pool1', vol: 'v1', initiator_wwn: I1 });
    assert.equal(await d.errorCode('export_destroy', { pool: 'pool1', vol: 'v1', initiator_wwn: I1 }), -151);
    assert.deepEqual(await exports(), []);
  });

  test('IQNs compare case-insensitively and come back lower-cased', async () => {
    await d.call('export_create', {
      pool: 'pool1',
      vol: 'v1',
      initiator_wwn: 'IQN.2024-01.Test.Host:MiXed',
      lun: 3,
    });
    assert.equal((await exports())[0].initiator_wwn, 'iqn.2024-01.test.host:mixed');
    await d.call('export_destroy', {
      pool: 'pool1',
      vol: 'v1',
      initiator_wwn: 'iqn.2024-01.test.host:MIXED',
    });
    assert.deepEqual(await exports(), []);
  });

  test('a LUN collision leaves nothing behind and the volume can still be destroyed', async () => {
    await d.call('vol_create', { pool: 'pool1', name: 'clash', size: 4096 });
    await d.call('export_create', { pool: 'pool1', vol: 'v1', initiator_wwn: I1, lun: 5 });
    const before = await state();
    assert.equal(
      await d.errorCode('export_create', { pool: 'pool1', vol: 'clash', initiator_wwn: I1, lun: 5 }),
      -32602,
    );
    assert.deepEqual(await state(), before);
    assert.deepEqual(
      (await exports()).map((e) => [e.vol, e.lun]),
      [['v1', 5]],
    );
    await d.call('vol_destroy', { pool: 'pool1', name: 'clash' });
    await d.call('export_destroy', { pool: 'pool1', vol: 'v1', initiator_wwn: I1 });
  });

  test('export errors: -110, -103, -151, bad LUN and bad initiator names', async () => {
    assert.equal(
      await d.errorCode('export_create', { pool: 'nope', vol: 'v1', initiator_wwn: I1, lun: 0 }),
      -110,
    );
    assert.equal(
      await d.errorCode('export_create', { pool: 'pool1', vol: 'zz', initiator_wwn: I1, lun: 0 }),
      -103,
    );
    assert.equal(await d.errorCode('export_destroy', { pool: 'pool1', vol: 'v2', initiator_wwn: I2 }), -151);
    for (const lun of [-1, 256, 1.5, '1', null]) {
      assert.equal(
        await d.errorCode('export_create', { pool: 'pool1', vol: 'v1', initiator_wwn: I1, lun }),
        -32602,
      );
    }
    for (const wwn of ['', 'foo', 'iqn.', 'iqn.2024-13.x:y', 'eui.123', 'naa.xyz', 'iqn.2024-01.x y']) {
      assert.equal(
        await d.errorCode('export_create', { pool: 'pool1', vol: 'v1', initiator_wwn: wwn, lun: 0 }),
        -32602,
      );
    }
    await d.call('export_create', {
      pool: 'pool1',
      vol: 'v1',
      initiator_wwn: 'eui.0123456789abcdef',
      lun: 255,
    });
    await d.call('export_destroy', { pool: 'pool1', vol: 'v1', initiator_wwn: 'eui.0123456789ABCDEF' });
    assert.deepEqual(await exports(), []);
  });

  test('CHAP set before any export stays in force after later exports; secrets never leave 0600 files', async () => {
    await d.call('initiator_set_auth', {
      initiator_wwn: I3,
      in_user: 'user3',
      in_pass: 'secret-in-123',
      out_user: 'tgt3',
      out_pass: 'secret-out-456',
    });
    assert.deepEqual(await d.call('initiator_list'), [{ init_id: I3, init_type: 'iscsi' }]);
    await d.call('export_create', { pool: 'pool1', vol: 'v2', initiator_wwn: I3, lun: 0 });
    await d.call('export_create', { pool: 'pool1', vol: 'v3', initiator_wwn: I3, lun: 1 });
    await d.call('export_destroy', { pool: 'pool1', vol: 'v3', initiator_wwn: I3 });
    assert.deepEqual((await state()).auth[I3], {
      in_user: 'user3',
      in_pass: 'secret-in-123',
      out_user: 'tgt3',
      out_pass: 'secret-out-456',
    });
    await d.restart();
    assert.equal((await state()).auth[I3].in_user, 'user3');
    // the daemon runs under umask 000: its files must still be private
    assert.equal((await stat(join(d.dir, 'state', 'state.json'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(d.dir, 'state'))).mode & 0o077, 0);
    assert.ok(!d.stderr.includes('secret-in-123'), 'secret in logs');
    // null / "" turn a direction off
    await d.call('initiator_set_auth', {
      initiator_wwn: I3,
      in_user: 'user3',
      in_pass: 'secret-in-123',
      out_user: '',
      out_pass: null,
    });
    assert.equal((await state()).auth[I3].out_user, null);
    assert.equal(
      await d.errorCode('initiator_set_auth', {
        initiator_wwn: I3,
        in_user: null,
        in_pass: null,
        out_user: 'a',
        out_pass: 'b',
      }),
      -32602,
    );
    await d.call('initiator_set_auth', {
      initiator_wwn: I3,
      in_user: null,
      in_pass: null,
      out_user: null,
      out_pass: null,
    });
    assert.equal((await state()).auth[I3], undefined);
    await d.call('export_destroy', { pool: 'pool1', vol: 'v2', initiator_wwn: I3 });
  });

  test('access groups: create, members, maps, LUN picking, conflicts', async () => {
    assert.deepEqual(await d.call('access_group_list'), []);
    assert.deepEqual(await d.call('access_group_map_list'), []);
    await d.call('access_group_create', { ag_name: 'g1', init_id: I1, init_type: 'iscsi' });
    assert.equal(
      await d.errorCode('access_group_create', { ag_name: 'g1', init_id: I2, init_type: 'iscsi' }),
      -50,
    );
    assert.equal(
      await d.errorCode('access_group_create', { ag_name: 'g2', init_id: I1, init_type: 'iscsi' }),
      -52,
    );
    assert.equal(
      await d.errorCode('access_group_create', { ag_name: 'g2', init_id: I2, init_type: 'fc' }),
      -32602,
    );
    await d.call('access_group_init_add', { ag_name: 'g1', init_id: I2, init_type: 'iscsi' });
    await d.call('access_group_init_add', { ag_name: 'g1', init_id: I2, init_type: 'iscsi' });
    assert.deepEqual(await d.call('access_group_list'), [
      { name: 'g1', init_ids: [I1, I2], init_type: 'iscsi' },
    ]);
    // a group member cannot get direct exports
    assert.equal(
      await d.errorCode('export_create', { pool: 'pool1', vol: 'v1', initiator_wwn: I1, lun: 0 }),
      -52,
    );

    await d.call('access_group_map_create', { pool_name: 'pool1', vol_name: 'v1', ag_name: 'g1' });
    await d.call('access_group_map_create', {
      pool_name: 'pool1',
      vol_name: 'v2',
      ag_name: 'g1',
      h_lun_id: 7,
    });
    await d.call('access_group_map_create', { pool_name: 'pool1', vol_name: 'v3', ag_name: 'g1' });
    assert.deepEqual(await d.call('access_group_map_list'), [
      { ag_name: 'g1', h_lun_id: 0, pool_name: 'pool1', vol_name: 'v1' },
      { ag_name: 'g1', h_lun_id: 7, pool_name: 'pool1', vol_name: 'v2' },
      { ag_name: 'g1', h_lun_id: 1, pool_name: 'pool1', vol_name: 'v3' },
    ]);
    // maps appear in export_list once per member
    const rows = await exports();
    assert.equal(rows.length, 6);
    assert.deepEqual(
      rows.filter((r) => r.vol === 'v2').map((r) => [r.initiator_wwn, r.lun]),
      [
        [I1, 7],
        [I2, 7],
      ],
    );
    assert.equal(await d.errorCode('vol_destroy', { pool: 'pool1', name: 'v2' }), -303);
    assert.equal(
      await d.errorCode('access_group_map_create', { pool_name: 'pool1', vol_name: 'v1', ag_name: 'nope' }),
      -200,
    );
    assert.equal(
      await d.errorCode('access_group_map_create', { pool_name: 'nope', vol_name: 'v1', ag_name: 'g1' }),
      -110,
    );
    assert.equal(
      await d.errorCode('access_group_map_create', { pool_name: 'pool1', vol_name: 'zz', ag_name: 'g1' }),
      -103,
    );
    assert.deepEqual(await d.call('initiator_list', { standalone_only: 'True' }), []);
    assert.equal((await d.call<unknown[]>('initiator_list', { standalone_only: false })).length, 2);

    await d.call('access_group_map_destroy', { pool_name: 'pool1', vol_name: 'v2', ag_name: 'g1' });
    await d.call('access_group_init_del', { ag_name: 'g1', init_id: I1, init_type: 'iscsi' });
    await d.call('access_group_init_del', { ag_name: 'g1', init_id: I1, init_type: 'iscsi' });
    assert.equal((await exports()).length, 2);
    // removing the last member removes the group and its maps
    await d.call('access_group_init_del', { ag_name: 'g1', init_id: I2, init_type: 'iscsi' });
    assert.deepEqual(await d.call('access_group_list'), []);
    assert.deepEqual(await d.call('access_group_map_list'), []);
    await d.call('access_group_destroy', { ag_name: 'g1' });
  });

  test('-1000 when a group has no free LUN', async () => {
    await d.call('access_group_create', { ag_name: 'full', init_id: I3, init_type: 'iscsi' });
    for (let i = 0; i < 256; i++) await d.call('vol_create', { pool: 'pool1', name: `f${i}`, size: 4096 });
    for (let i = 0; i < 256; i++) {
      await d.call('access_group_map_create', { pool_name: 'pool1', vol_name: `f${i}`, ag_name: 'full' });
    }
    await d.call('vol_create', { pool: 'pool1', name: 'f256', size: 4096 });
    assert.equal(
      await d.errorCode('access_group_map_create', { pool_name: 'pool1', vol_name: 'f256', ag_name: 'full' }),
      -1000,
    );
    await d.call('access_group_destroy', { ag_name: 'full' });
    assert.deepEqual(await d.call('access_group_map_list'), []);
    for (let i = 0; i <= 256; i++) await d.call('vol_destroy', { pool: 'pool1', name: `f${i}` });
  });

  test('a second daemon on the same state_dir is refused', async () => {
    const { spawnSync } = await import('node:child_process');
    const { MAIN } = await import('../helpers/daemon.js');
    const r = spawnSync(process.execPath, [MAIN, 'serve', '--config', d.configPath], {
      encoding: 'utf8',
      timeout: 15000,
    });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /in use by another targetd/);
    assert.equal((await exports()).length, 0);
  });
});
