import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, fstatSync, writeSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  copyFileRange,
  copyRanges,
  createTemp,
  dataExtents,
  failedStep,
  fallocate,
  flock,
  fsSteps,
  preadNowait,
  punchHole,
  seekData,
  seekHole,
} from '../../src/native/index.js';

const MiB = 1024 * 1024;
const ADDON = fileURLToPath(new URL('../../build/Release/targetd_native.node', import.meta.url));

let dir: string;
beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'targetd-native-'));
});
afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

/** A 16 MiB sparse file with data at [4 MiB, 5 MiB) and [10 MiB, 10 MiB + 4 KiB). */
async function sparseFile(name = 'sparse'): Promise<string> {
  const p = path.join(dir, name);
  const fh = await fsp.open(p, 'w+');
  await fh.truncate(16 * MiB);
  await fh.write(Buffer.alloc(MiB, 0xab), 0, MiB, 4 * MiB);
  await fh.write(Buffer.alloc(4096, 0xcd), 0, 4096, 10 * MiB);
  await fh.sync();
  await fh.close();
  return p;
}

describe('native addon', () => {
  it('preadNowait returns cached bytes at once, 0 at EOF, and throws on a bad buffer', async () => {
    const p = path.join(dir, 'cached');
    const content = Buffer.alloc(64 * 1024);
    for (let i = 0; i < content.length; i++) content[i] = (i * 13) & 0xff;
    await fsp.writeFile(p, content);
    const fh = await fsp.open(p, 'r');
    try {
      // Just written, so in the page cache: the whole range comes back synchronously.
      const buf = Buffer.alloc(4096);
      assert.equal(preadNowait(fh.fd, buf, 8192), 4096);
      assert.deepEqual(buf, content.subarray(8192, 12288));
      const tail = Buffer.alloc(4096);
      assert.equal(preadNowait(fh.fd, tail, content.length - 1024), 1024, 'short at the end of the file');
      assert.equal(preadNowait(fh.fd, tail, content.length), 0, 'EOF');
      assert.equal(preadNowait(fh.fd, Buffer.alloc(0), 0), 0);
      assert.equal(
        preadNowait(999_999, buf, 0),
        -1,
        'a bad descriptor is left to the ordinary read to report',
      );
      assert.throws(() => preadNowait(fh.fd, 'x' as unknown as Buffer, 0), /Buffer/);
      assert.throws(() => preadNowait(fh.fd, buf, -1), /offset/);
    } finally {
      await fh.close();
    }
  });

  it('punchHole deallocates blocks and reads back zeros, size unchanged', async () => {
    const p = path.join(dir, 'full');
    await fsp.writeFile(p, Buffer.alloc(4 * MiB, 0x5a));
    const fh = await fsp.open(p, 'r+');
    try {
      await fh.sync();
      const before = await fh.stat();
      await punchHole(fh.fd, MiB, 2 * MiB);
      const after = await fh.stat();
      assert.equal(after.size, 4 * MiB);
      assert.ok(
        before.blocks - after.blocks >= (2 * MiB) / 512,
        `blocks ${before.blocks} -> ${after.blocks}`,
      );
      const { buffer } = await fh.read(Buffer.alloc(2 * MiB), 0, 2 * MiB, MiB);
      assert.ok(buffer.every((b) => b === 0));
      const edge = (await fh.read(Buffer.alloc(1), 0, 1, MiB - 1)).buffer;
      assert.equal(edge[0], 0x5a);
    } finally {
      await fh.close();
    }
  });

  it('fallocate allocates real blocks and grows the file', async () => {
    const fh = await fsp.open(path.join(dir, 'alloc'), 'w+');
    try {
      await fallocate(fh.fd, 0, 8 * MiB);
      const st = await fh.stat();
      assert.equal(st.size, 8 * MiB);
      assert.ok(st.blocks * 512 >= 8 * MiB);
    } finally {
      await fh.close();
    }
  });

  it('seekData / seekHole find the extents and answer -1 past the data', async () => {
    const fh = await fsp.open(await sparseFile(), 'r');
    try {
      assert.equal(await seekData(fh.fd, 0), 4 * MiB);
      assert.equal(await seekHole(fh.fd, 4 * MiB), 5 * MiB);
      assert.equal(await seekData(fh.fd, 5 * MiB), 10 * MiB);
      assert.equal(await seekHole(fh.fd, 10 * MiB), 10 * MiB + 4096);
      assert.equal(await seekData(fh.fd, 10 * MiB + 4096), -1);
      assert.equal(await seekHole(fh.fd, 12 * MiB), 12 * MiB);
      assert.equal(await seekHole(fh.fd, 16 * MiB), -1);
    } finally {
      await fh.close();
    }
  });

  it('dataExtents lists the same extents in batches', async () => {
    const fh = await fsp.open(await sparseFile(), 'r');
    try {
      assert.deepEqual(
        [...(await dataExtents(fh.fd, 0, 100))],
        [4 * MiB, 5 * MiB, 10 * MiB, 10 * MiB + 4096],
      );
      assert.deepEqual([...(await dataExtents(fh.fd, 0, 1))], [4 * MiB, 5 * MiB]);
      assert.deepEqual([...(await dataExtents(fh.fd, 5 * MiB, 1))], [10 * MiB, 10 * MiB + 4096]);
      assert.equal((await dataExtents(fh.fd, 11 * MiB, 10)).length, 0);
      assert.throws(() => dataExtents(fh.fd, 0, 0), { code: 'ERR_OUT_OF_RANGE' });
    } finally {
      await fh.close();
    }
  });

  it('copyFileRange copies bytes in the kernel and stops at end of input', async () => {
    const src = path.join(dir, 'src');
    const data = Buffer.alloc(3 * MiB);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    await fsp.writeFile(src, data);
    const a = await fsp.open(src, 'r');
    const b = await fsp.open(path.join(dir, 'dst'), 'w+');
    try {
      assert.equal(await copyFileRange(a.fd, MiB, b.fd, 0, MiB), MiB);
      assert.equal(await copyFileRange(a.fd, 2 * MiB + 100, b.fd, MiB, MiB), MiB - 100);
      const out = await fsp.readFile(path.join(dir, 'dst'));
      assert.equal(out.length, 2 * MiB - 100);
      assert.ok(out.subarray(0, MiB).equals(data.subarray(MiB, 2 * MiB)));
      assert.ok(out.subarray(MiB).equals(data.subarray(2 * MiB + 100)));
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('copyRanges copies several ranges to the same offsets, leaving holes between', async () => {
    const src = await sparseFile();
    const a = await fsp.open(src, 'r');
    const b = await fsp.open(path.join(dir, 'dst'), 'w+');
    try {
      await b.truncate(16 * MiB);
      const n = await copyRanges(
        a.fd,
        b.fd,
        Float64Array.from([4 * MiB, 5 * MiB, 10 * MiB, 10 * MiB + 4096]),
      );
      assert.equal(n, MiB + 4096);
      await b.sync();
      assert.ok((await fsp.readFile(src)).equals(await fsp.readFile(path.join(dir, 'dst'))));
      assert.deepEqual([...(await dataExtents(b.fd, 0, 10))], [4 * MiB, 5 * MiB, 10 * MiB, 10 * MiB + 4096]);
      assert.throws(() => copyRanges(a.fd, b.fd, Float64Array.from([5, 1])), { code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => copyRanges(a.fd, b.fd, [0, 1] as unknown as Float64Array), {
        code: 'ERR_INVALID_ARG_TYPE',
      });
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('rejects failed syscalls with errno-named errors', async () => {
    const fh = await fsp.open(path.join(dir, 'ro'), 'w+');
    const fd = fh.fd;
    await fh.close();
    await assert.rejects(punchHole(fd, 0, 4096), (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, 'EBADF');
      assert.equal(err.errno, -9);
      assert.equal(err.syscall, 'fallocate');
      assert.match(err.message, /^EBADF: /);
      return true;
    });
    const ro = await fsp.open(path.join(dir, 'ro'), 'r');
    try {
      await assert.rejects(fallocate(ro.fd, 0, 4096), { code: 'EBADF' });
    } finally {
      await ro.close();
    }
  });

  it('throws TypeError synchronously on bad arguments', () => {
    assert.throws(() => punchHole(-1, 0, 1), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
    assert.throws(() => seekData(0, 1.5), { name: 'TypeError' });
    assert.throws(() => seekData(0, 2 ** 54), { name: 'TypeError' });
    assert.throws(() => flock(0, 'yes' as unknown as boolean, true), { name: 'TypeError' });
    const raw = createRequire(import.meta.url)(ADDON) as { copyFileRange: (fd: number) => unknown };
    assert.throws(() => raw.copyFileRange(1), { code: 'ERR_MISSING_ARGS' });
  });

  it('flock conflicts between two open files of one process', async () => {
    const p = path.join(dir, 'lock');
    const a = await fsp.open(p, 'a');
    const b = await fsp.open(p, 'a');
    try {
      flock(a.fd, true, true);
      assert.throws(
        () => flock(b.fd, true, true),
        (err: NodeJS.ErrnoException) => {
          assert.ok(err.code === 'EWOULDBLOCK' || err.code === 'EAGAIN', String(err.code));
          assert.equal(err.syscall, 'flock');
          return true;
        },
      );
      assert.throws(() => flock(b.fd, false, true), { code: 'EAGAIN' });
      await a.close();
      flock(b.fd, true, true);
    } finally {
      await a.close().catch(() => {});
      await b.close();
    }
  });

  it('flock conflicts with another process until it dies', async () => {
    const p = path.join(dir, 'lock');
    const holder = `const m = require(${JSON.stringify(ADDON)}); const fs = require('fs');
      const fd = fs.openSync(${JSON.stringify(p)}, 'a'); m.flock(fd, true, true);
      process.stdout.write('locked\\n'); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['-e', holder], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const [first] = (await once(child.stdout!, 'data')) as [Buffer];
      assert.equal(first.toString().trim(), 'locked');
      const fh = await fsp.open(p, 'a');
      try {
        assert.throws(() => flock(fh.fd, true, true), { code: 'EAGAIN' });
        child.kill('SIGKILL');
        await once(child, 'exit');
        flock(fh.fd, true, true);
      } finally {
        await fh.close();
      }
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await once(child, 'exit');
      }
    }
  });

  it('createTemp makes a new file 0600 whatever the umask, and refuses an existing one', async () => {
    const p = path.join(dir, 'tmp1');
    const old = process.umask(0);
    let fd: number;
    try {
      fd = await createTemp(p, false);
    } finally {
      process.umask(old);
    }
    assert.equal((await fsp.stat(p)).mode & 0o777, 0o600);
    writeSync(fd, 'abc');
    closeSync(fd);
    assert.equal(await fsp.readFile(p, 'utf8'), 'abc');
    await assert.rejects(createTemp(p, true), (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, 'EEXIST');
      assert.equal(err.syscall, 'open');
      assert.equal(err.path, p);
      return true;
    });
    await assert.rejects(createTemp(path.join(dir, 'no', 'such'), false), { code: 'ENOENT' });
    assert.throws(() => createTemp('', false), { name: 'TypeError' });
    assert.throws(() => createTemp('a\0b', false), { name: 'TypeError' });
  });

  it('fsSteps runs its steps in order and reports the failing step', async () => {
    const a = path.join(dir, 'a');
    const b = path.join(dir, 'b');
    const fd = await createTemp(a, true);
    const d = await fsp.open(dir, 'r');
    try {
      await fsSteps([
        { op: 'absent', path: b },
        { op: 'pwrite', fd, data: Buffer.from('hello world') },
        { op: 'pwrite', fd, data: Buffer.from('W'), offset: 6 },
        { op: 'ftruncate', fd, length: 8 },
        { op: 'fdatasync', fd },
        { op: 'rename', from: a, to: b },
        { op: 'fsync', fd: d.fd },
        { op: 'close', fd },
      ]);
      assert.equal(await fsp.readFile(b, 'utf8'), 'hello Wo');
      assert.throws(() => fstatSync(fd), { code: 'EBADF' }, 'closed by the close step');

      // A failure stops the sequence (the unlink after it does not run) but never the closes.
      const fd2 = await createTemp(a, false);
      await assert.rejects(
        fsSteps([
          { op: 'pwrite', fd: fd2, data: Buffer.from('x') },
          { op: 'absent', path: b },
          { op: 'unlink', path: a },
          { op: 'close', fd: fd2 },
        ]),
        (err: NodeJS.ErrnoException) => {
          assert.equal(failedStep(err), 1);
          assert.equal(err.code, 'EEXIST');
          assert.equal(err.syscall, 'lstat');
          assert.equal(err.path, b);
          return true;
        },
      );
      assert.equal(await fsp.readFile(a, 'utf8'), 'x', 'the step after the failure did not run');
      assert.throws(() => fstatSync(fd2), { code: 'EBADF' }, 'closed despite the failure');

      await assert.rejects(
        fsSteps([{ op: 'rename', from: path.join(dir, 'none'), to: b }]),
        (err: NodeJS.ErrnoException) => {
          assert.equal(failedStep(err), 0);
          assert.equal(err.code, 'ENOENT');
          assert.equal(err.syscall, 'rename');
          return true;
        },
      );
      await fsSteps([{ op: 'unlink', path: path.join(dir, 'none'), missingOk: true }]);
      await assert.rejects(fsSteps([{ op: 'unlink', path: path.join(dir, 'none') }]), { code: 'ENOENT' });
      assert.equal(failedStep(new Error('other')), -1);
    } finally {
      await d.close();
    }
  });

  it('fsSteps: same checks that a path still names the directory held open; errors name their paths', async () => {
    const sub = path.join(dir, 'sub');
    await fsp.mkdir(sub);
    const held = await fsp.open(sub, 'r');
    try {
      await fsSteps([{ op: 'same', fd: held.fd, path: sub }]);
      await fsp.rm(sub, { recursive: true });
      await assert.rejects(fsSteps([{ op: 'same', fd: held.fd, path: sub }]), { code: 'ENOENT' });
      await fsp.mkdir(sub);
      await assert.rejects(
        fsSteps([{ op: 'same', fd: held.fd, path: sub }]),
        (err: NodeJS.ErrnoException) => {
          assert.equal(err.code, 'ESTALE');
          assert.equal(failedStep(err), 0);
          assert.ok(err.message.includes(`'${sub}'`), err.message);
          return true;
        },
      );
    } finally {
      await held.close();
    }
    const from = path.join(dir, 'none');
    const to = path.join(dir, 'x');
    await assert.rejects(fsSteps([{ op: 'rename', from, to }]), (err: Error) => {
      assert.equal(err.message, `ENOENT: No such file or directory, rename '${from}' -> '${to}'`);
      return true;
    });
  });

  it('fsSteps refuses malformed steps synchronously, naming the step', () => {
    const bad: unknown[] = [
      [],
      [{ op: 'nope' }],
      [{ op: 'fsync' }],
      [{ op: 'pwrite', fd: 1, data: 'text' }],
      [{ op: 'pwrite', fd: 1, data: Buffer.alloc(1), offset: -1 }],
      [{ op: 'rename', from: 'a' }],
      [{ op: 'unlink', path: 'a', missingOk: 'yes' }],
      Array.from({ length: 65 }, () => ({ op: 'fsync', fd: 1 })),
      'steps',
    ];
    for (const steps of bad) {
      assert.throws(() => fsSteps(steps as never), { name: 'TypeError' }, JSON.stringify(steps));
    }
    assert.throws(
      () => fsSteps([{ op: 'fsync', fd: 0 }, { op: 'rename', from: 'a' } as never]),
      /steps\[1\]\.to/,
    );
  });
});
