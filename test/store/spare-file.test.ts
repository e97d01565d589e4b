// Temp files made ahead of need: the state store and the file pool take them instead of creating one on
// the caller's path; nothing made ahead may outlive a close, be readable by others, or survive a restart.
import assert from 'node:assert/strict';
import { closeSync, writeSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { failedStep } from '../../src/native/index.js';
import { FilePool } from '../../src/pools/file/file-pool.js';
import { runWithSpares, SpareFiles } from '../../src/store/spare-file.js';
import { StateStore } from '../../src/store/state-store.js';
import { tempDir } from '../pools/helpers.js';

let root: string;
let oldMask: number;
beforeEach(async () => {
  root = await tempDir('targetd-spare-');
  oldMask = process.umask(0);
});
afterEach(async () => {
  process.umask(oldMask);
  await fsp.rm(root, { recursive: true, force: true });
});

const chap = (pass: string) => ({ in_user: 'u', in_pass: pass, out_user: null, out_pass: null });
const mode = async (p: string) => (await fsp.stat(p)).mode & 0o777;
const tmpFiles = async (dir: string) => (await fsp.readdir(dir)).filter((f) => f.endsWith('.tmp')).sort();

describe('SpareFiles', () => {
  it('makes the next spare inside the job that uses the current one, 0600 under umask 000', async () => {
    let n = 0;
    const spares = new SpareFiles(() => path.join(root, `s${n++}`));
    const first = await spares.take(); // none ready: made now
    assert.equal(first.path, path.join(root, 's0'));
    assert.equal(await mode(first.path), 0o600);
    await runWithSpares(
      [
        { op: 'pwrite', fd: first.fd, data: Buffer.from('x') },
        { op: 'close', fd: first.fd },
      ],
      spares,
    );
    assert.equal(await fsp.readFile(first.path, 'utf8'), 'x');
    // The job made s1; it is ready, so no further step is handed out.
    assert.equal(spares.ahead(), undefined);
    const second = await spares.take();
    assert.equal(second.path, path.join(root, 's1'));
    assert.equal(await mode(second.path), 0o600);
    assert.equal((await fsp.stat(second.path)).size, 0);
    writeSync(second.fd, 'y');
    closeSync(second.fd);
    assert.deepEqual((await fsp.readdir(root)).sort(), ['s0', 's1']);
  });

  it('hands out one spare step at a time while a job is making one', async () => {
    let n = 0;
    const spares = new SpareFiles(() => path.join(root, `s${n++}`));
    const step = spares.ahead();
    assert.ok(step);
    assert.equal(spares.ahead(), undefined, 'one is being made');
    spares.settle(step, -1); // it could not be made
    assert.ok(spares.ahead(), 'free to try again');
  });

  it("a failed job removes the spare it made and counts the failed step within the caller's steps", async () => {
    let n = 0;
    const spares = new SpareFiles(() => path.join(root, `s${n++}`));
    await assert.rejects(
      runWithSpares(
        [
          { op: 'absent', path: root },
          { op: 'unlink', path: path.join(root, 'never') },
        ],
        spares,
      ),
      (err: Error) => {
        assert.equal(failedStep(err), 0);
        assert.equal((err as NodeJS.ErrnoException).code, 'EEXIST');
        return true;
      },
    );
    assert.deepEqual(await fsp.readdir(root), []);
    // Nothing ready: take makes one now.
    const f = await spares.take();
    assert.equal(f.path, path.join(root, 's1'));
    closeSync(f.fd);
  });

  it('a spare that cannot be made does not fail the job', async () => {
    let n = 0;
    const dir = path.join(root, 'later');
    const spares = new SpareFiles(() => path.join(dir, `s${n++}`));
    const marker = path.join(root, 'marker');
    await fsp.writeFile(marker, '');
    await runWithSpares([{ op: 'unlink', path: marker }], spares); // the directory does not exist yet
    await assert.rejects(fsp.stat(marker), { code: 'ENOENT' });
    await fsp.mkdir(dir);
    const f = await spares.take();
    assert.equal(path.dirname(f.path), dir);
    closeSync(f.fd);
  });

  it('dispose removes the spare and keeps none until resume', async () => {
    let n = 0;
    const spares = new SpareFiles(() => path.join(root, `s${n++}`));
    await runWithSpares([{ op: 'absent', path: path.join(root, 'x') }], spares);
    assert.deepEqual(await fsp.readdir(root), ['s0']);
    await spares.dispose();
    assert.deepEqual(await fsp.readdir(root), []);
    assert.equal(spares.ahead(), undefined);
    spares.resume();
    await runWithSpares([{ op: 'absent', path: path.join(root, 'x') }], spares);
    const f = await spares.take();
    assert.equal(f.path, path.join(root, 's1'));
    closeSync(f.fd);
  });
});

describe('StateStore with a spare temp file', () => {
  it('saves through the spare, keeps every file 0600, and removes the spare on close', async () => {
    const dir = path.join(root, 'state');
    const store = new StateStore(dir);
    const s = await store.open();
    for (let i = 0; i < 3; i++) {
      s.auth[`iqn.2024-01.test:h${i}`] = chap(`secret-${i}`);
      await store.save(structuredClone(s));
      // The save's own job made the next save's temp file.
      const spare = await tmpFiles(dir);
      assert.equal(spare.length, 1, `one spare after save ${i}: ${spare}`);
      assert.equal(await mode(path.join(dir, spare[0])), 0o600);
      assert.equal((await fsp.stat(path.join(dir, spare[0]))).size, 0);
      assert.equal(await mode(store.file), 0o600);
      const onDisk = JSON.parse(await fsp.readFile(store.file, 'utf8'));
      assert.equal(onDisk.auth[`iqn.2024-01.test:h${i}`].in_pass, `secret-${i}`);
    }
    await store.close();
    assert.deepEqual(await tmpFiles(dir), []);
  });

  it('a restart removes temp files a crash left behind and keeps the state', async () => {
    const dir = path.join(root, 'state');
    const store = new StateStore(dir);
    const s = await store.open();
    s.auth['iqn.2024-01.test:kept'] = chap('p');
    await store.save(s);
    await store.close();
    // What a kill -9 leaves: the spare, and a half-written save.
    await fsp.writeFile(path.join(dir, '.state.json.aaaaaaaaaaaa.tmp'), '');
    await fsp.writeFile(path.join(dir, '.state.json.bbbbbbbbbbbb.tmp'), '{"version": 1, "expo');
    const again = new StateStore(dir);
    const loaded = await again.open();
    assert.deepEqual(await tmpFiles(dir), []);
    assert.equal(loaded.auth['iqn.2024-01.test:kept']?.in_pass, 'p');
    await again.close();
  });
});

describe('FilePool with spare temp files', () => {
  it('creates volumes from spares, 0600, and leaves tmp/ empty after close', async () => {
    const dir = path.join(root, 'pool');
    const pool = new FilePool({ name: 'p', path: dir, bootId: () => 'b' });
    await pool.open();
    const tmp = path.join(dir, '.targetd', 'tmp');
    for (let i = 0; i < 3; i++) {
      const v = await pool.create(`v${i}`, 5000);
      assert.equal(v.size, 8192);
      const files = (await fsp.readdir(dir)).filter((f) => f.startsWith(`v${i}.`));
      assert.equal(files.length, 1);
      assert.equal((await fsp.stat(path.join(dir, files[0]))).size, 8192);
      assert.equal(await mode(path.join(dir, files[0])), 0o600);
      assert.equal(await mode(path.join(dir, '.targetd', 'vols', `v${i}.json`)), 0o600);
    }
    assert.deepEqual((await fsp.readdir(tmp)).map((f) => path.extname(f)).sort(), ['.json', '.vol']);
    assert.deepEqual(
      (await pool.list()).map((v) => v.name),
      ['v0', 'v1', 'v2'],
    );
    await pool.close();
    assert.deepEqual(await fsp.readdir(tmp), []);
    // Reopened, it makes spares again.
    await pool.open();
    await pool.create('v3', 4096);
    assert.equal((await fsp.readdir(tmp)).length, 2);
    await pool.close();
    assert.deepEqual(await fsp.readdir(tmp), []);
  });
});
