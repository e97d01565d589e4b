// Disk faults the daemon cannot prevent, injected into the real daemon: an LD_PRELOAD shim (compiled here)
// makes fsync fail with EIO on one directory, and files or directories are changed behind the daemon's back.
// Whatever fails, the client's answer, the daemon's memory and what a restart finds must agree.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type DaemonHandle, RpcError, startDaemon } from '../helpers/daemon.js';

const IQN = 'iqn.2024-01.com.example:faults';
const MiB = 1024 * 1024;

// fsync(fd) fails with EIO, at most COUNT times, while the control file holds "COUNT PATH" and fd is PATH.
// The control file is read on every fsync, so the test can arm and disarm it while the daemon runs.
const SHIM = `
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static char last[4200];
static int used;
int fsync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  const char *ctl = getenv("FAULT_CONTROL");
  char want[4200] = "", self[64], target[4096];
  FILE *f = ctl ? fopen(ctl, "r") : NULL;
  if (f) { size_t n = fread(want, 1, sizeof want - 1, f); want[n] = 0; fclose(f); }
  if (strcmp(want, last) != 0) { strcpy(last, want); used = 0; }
  int count = 0;
  char path[4096] = "";
  if (sscanf(want, "%d %4095s", &count, path) == 2 && used < count) {
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(self, target, sizeof target - 1);
    if (n > 0) {
      target[n] = 0;
      if (strcmp(target, path) == 0) { used++; errno = EIO; return -1; }
    }
  }
  return real(fd);
}
`;

async function codeOf(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RpcError) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error('the call succeeded; an error was expected');
}

describe('disk faults and changes behind the daemon (real daemon, LD_PRELOAD fsync shim)', () => {
  let work: string;
  let shim: string | undefined;
  let control: string;
  let d: DaemonHandle;
  const names = async () =>
    (await d.call<{ name: string }[]>('vol_list', { pool: 'pool1' })).map((v) => v.name);
  const arm = (count: number, path: string) => writeFile(control, `${count} ${path}`);
  const disarm = () => writeFile(control, '');

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'targetd-faults-'));
    control = join(work, 'control');
    await writeFile(control, '');
    const src = join(work, 'shim.c');
    await writeFile(src, SHIM);
    const cc = spawnSync('cc', ['-shared', '-fPIC', '-O1', '-o', join(work, 'shim.so'), src, '-ldl']);
    if (cc.status === 0) shim = join(work, 'shim.so');
    d = await startDaemon({
      env: shim ? { LD_PRELOAD: shim, FAULT_CONTROL: control } : {},
    });
  });
  after(async () => {
    await d?.dispose();
    await rm(work, { recursive: true, force: true });
  });

  test('a state save whose directory fsync fails is undone: not served now, not after a restart', async (t) => {
    if (!shim) return t.skip('no C compiler for the fault shim');
    await d.call('vol_create', { pool: 'pool1', name: 'st1', size: MiB });
    await arm(1, join(d.dir, 'state'));
    const err = await codeOf(
      d.call('export_create', { pool: 'pool1', vol: 'st1', initiator_wwn: IQN, lun: 0 }),
    );
    assert.equal(err.code, -1);
    assert.match(err.message, /could not be made durable.*EIO/);
    await disarm();
    assert.deepEqual(await d.call('export_list'), []);
    const onDisk = JSON.parse(await readFile(join(d.dir, 'state', 'state.json'), 'utf8'));
    assert.deepEqual(onDisk.exports, [], 'the file was put back to the old state');
    await d.restart('SIGKILL');
    assert.deepEqual(await d.call('export_list'), [], 'a restart does not resurrect the failed export');
    // And the registry works on.
    await d.call('export_create', { pool: 'pool1', vol: 'st1', initiator_wwn: IQN, lun: 0 });
    await d.call('export_destroy', { pool: 'pool1', vol: 'st1', initiator_wwn: IQN });
    await d.call('vol_destroy', { pool: 'pool1', name: 'st1' });
  });

  test('a create whose commit cannot be made durable is listed, and its name stays taken', async (t) => {
    if (!shim) return t.skip('no C compiler for the fault shim');
    await names(); // fills the list cache
    await arm(1, join(d.dir, 'pool1'));
    const err = await codeOf(d.call('vol_create', { pool: 'pool1', name: 'half', size: MiB }));
    assert.match(err.message, /created .* but could not be made durable/);
    await disarm();
    assert.ok((await names()).includes('half'), 'listed: it exists');
    assert.equal(await d.errorCode('vol_create', { pool: 'pool1', name: 'half', size: MiB }), -50);
    await d.call('vol_destroy', { pool: 'pool1', name: 'half' });
  });

  test('a destroy whose removal cannot be made durable says so; the volume is gone either way', async (t) => {
    if (!shim) return t.skip('no C compiler for the fault shim');
    await d.call('vol_create', { pool: 'pool1', name: 'gone', size: MiB });
    await arm(1, join(d.dir, 'pool1'));
    const err = await codeOf(d.call('vol_destroy', { pool: 'pool1', name: 'gone' }));
    assert.match(err.message, /removed .* could not be made durable/);
    await disarm();
    assert.ok(!(await names()).includes('gone'));
    assert.equal(await d.errorCode('vol_destroy', { pool: 'pool1', name: 'gone' }), -103);
  });

  test('a volume whose data file was removed behind the daemon can still be destroyed', async () => {
    await d.call('vol_create', { pool: 'pool1', name: 'lost', size: MiB });
    await unlink(join(d.dir, 'pool1', 'lost.vol'));
    await d.call('vol_destroy', { pool: 'pool1', name: 'lost' });
    assert.ok(!(await names()).includes('lost'));
    await d.call('vol_create', { pool: 'pool1', name: 'lost', size: MiB });
    await d.call('vol_destroy', { pool: 'pool1', name: 'lost' });
  });

  test('a state_dir removed and made again is not written to (another daemon may own it now)', async () => {
    await d.call('vol_create', { pool: 'pool1', name: 'sd1', size: MiB });
    const state = join(d.dir, 'state');
    await rm(state, { recursive: true, force: true });
    await mkdir(state, { mode: 0o700 });
    await writeFile(join(state, 'state.json'), '{"someone":"else"}\n');
    const err = await codeOf(
      d.call('export_create', { pool: 'pool1', vol: 'sd1', initiator_wwn: IQN, lun: 0 }),
    );
    assert.match(err.message, /was removed or replaced since it was opened/);
    assert.equal(await readFile(join(state, 'state.json'), 'utf8'), '{"someone":"else"}\n', 'not touched');
    assert.deepEqual(await d.call('export_list'), []);
  });
});
