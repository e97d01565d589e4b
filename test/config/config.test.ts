import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError, validateConfig } from '../../src/config/load.js';
import { MAIN, startDaemon } from '../helpers/daemon.js';

describe('config validation', () => {
  test('defaults follow upstream and ours', () => {
    const { config, warnings } = validateConfig({ password: 'p' }, 't');
    assert.deepEqual(warnings, []);
    assert.equal(config.user, 'admin');
    assert.equal(config.rpc_port, 18700);
    assert.equal(config.rpc_address, '0.0.0.0');
    assert.equal(config.iscsi_port, 3260);
    assert.equal(config.async_after, 10);
    assert.equal(config.ssl, false);
    assert.deepEqual(config.file_pools, []);
  });

  test('a file pool size is bytes or a human size like the CLI takes', () => {
    const sizes: [unknown, number][] = [
      [1073741824, 2 ** 30],
      ['10G', 10 * 2 ** 30],
      ['1.5T', 1.5 * 2 ** 40],
      ['500GB', 500e9],
      ['4096', 4096],
    ];
    for (const [size, bytes] of sizes) {
      const { config } = validateConfig(
        { password: 'p', file_pools: [{ name: 'a', path: '/x', size }] },
        't',
      );
      assert.equal(config.file_pools[0]?.size, bytes, String(size));
    }
  });

  test('a relative pool path is warned about, naming where it resolves', () => {
    const { warnings } = validateConfig({ password: 'p', file_pools: [{ name: 'a', path: 'rel/dir' }] }, 't');
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /pool 'a' has a relative path; it resolves to \/.*rel\/dir/);
    // Siblings with a common prefix are not nested.
    validateConfig(
      {
        password: 'p',
        state_dir: '/srv/st',
        file_pools: [
          { name: 'a', path: '/srv/p' },
          { name: 'b', path: '/srv/p2' },
        ],
      },
      't',
    );
  });

  test('a missing password is refused, naming the key', () => {
    assert.throws(
      () => validateConfig({ user: 'a' }, 'f.yaml'),
      (e: Error) => e instanceof ConfigError && /password/.test(e.message),
    );
  });

  test('bad values name the key and the problem', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ rpc_port: 'x' }, /rpc_port/],
      [{ rpc_port: 70000 }, /rpc_port/],
      [{ async_after: -2 }, /async_after/],
      [{ ssl: 'yes' }, /ssl/],
      [{ file_pools: [{ name: 'a/b', path: '/x' }] }, /file_pools\.0\.name/],
      [{ file_pools: [{ name: 'a' }] }, /file_pools\.0\.path/],
      [
        {
          file_pools: [
            { name: 'a', path: '/x' },
            { name: 'a', path: '/y' },
          ],
        },
        /used twice/,
      ],
      [{ file_pools: [{ name: 'a', path: '/x', size: 0 }] }, /file_pools\.0\.size: must be a positive whole/],
      [
        { file_pools: [{ name: 'a', path: '/x', size: '10X' }] },
        /file_pools\.0\.size: must be a positive whole/,
      ],
      [{ file_pools: [{ name: 'a', path: '/x', size: 1.5 }] }, /file_pools\.0\.size/],
      [{ file_pools: [{ name: 'a', path: '/x', size: '100P' }] }, /file_pools\.0\.size/],
      [{ file_pools: [{ name: 'a', path: '/x', size: true }] }, /file_pools\.0\.size/],
      [
        {
          file_pools: [
            { name: 'a', path: '/x' },
            { name: 'b', path: '/x/y' },
          ],
        },
        /pool 'b' \(\/x\/y\) is inside pool 'a'/,
      ],
      [{ state_dir: '/s', file_pools: [{ name: 'a', path: '/s' }] }, /must not contain each other/],
      [{ state_dir: '/s', file_pools: [{ name: 'a', path: '/s/p' }] }, /must not contain each other/],
      [{ state_dir: '/p/state', file_pools: [{ name: 'a', path: '/p' }] }, /must not contain each other/],
      [{ iscsi_backend: 'scst' }, /iscsi_backend/],
      [{ log_level: 'loud' }, /log_level/],
    ];
    for (const [doc, re] of cases) {
      assert.throws(
        () => validateConfig({ password: 'p', ...doc }, 'f.yaml'),
        (e: Error) => e instanceof ConfigError && re.test(e.message),
        JSON.stringify(doc),
      );
    }
  });

  test('unknown keys are warned about, not fatal', () => {
    const { warnings } = validateConfig({ password: 'p', colour: 'blue' }, 'f.yaml');
    assert.deepEqual(warnings, ["f.yaml: unknown key 'colour' ignored"]);
  });

  test('upstream log levels are accepted', () => {
    assert.equal(validateConfig({ password: 'p', log_level: 'warning' }, 't').config.log_level, 'warn');
  });

  test('serve exits non-zero with the key named', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'targetd-cfg-'));
    try {
      const cfg = join(dir, 'c.yaml');
      await writeFile(cfg, 'user: admin\nrpc_port: 18700\n');
      const r = spawnSync(process.execPath, [MAIN, 'serve', '--config', cfg], {
        encoding: 'utf8',
        timeout: 15000,
      });
      assert.equal(r.status, 2);
      assert.match(r.stderr, /password: is required/);
      await writeFile(cfg, 'password: [unclosed\n');
      const r2 = spawnSync(process.execPath, [MAIN, 'serve', '--config', cfg], {
        encoding: 'utf8',
        timeout: 15000,
      });
      assert.equal(r2.status, 2);
      assert.match(r2.stderr, /not valid YAML/);
      const r3 = spawnSync(process.execPath, [MAIN, 'serve', '--config', join(dir, 'missing.yaml')], {
        encoding: 'utf8',
        timeout: 15000,
      });
      assert.equal(r3.status, 2);
      assert.match(r3.stderr, /cannot read config file/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

async function portFree(port: number): Promise<boolean> {
  return new Promise((ok) => {
    const s = createServer();
    s.once('error', () => ok(false));
    s.listen(port, '127.0.0.1', () => s.close(() => ok(true)));
  });
}

describe('embedded default', () => {
  test('runs without a config file: generated password (0600), one pool, API on 127.0.0.1:18700', async (t) => {
    if (!(await portFree(18700))) {
      t.skip('port 18700 is in use on this machine');
      return;
    }
    const dir = await mkdtemp(join(tmpdir(), 'targetd-embedded-'));
    const child = spawn(process.execPath, [MAIN, 'serve'], {
      env: { ...process.env, TARGETD_DATA_DIR: join(dir, 'data') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (b) => {
      out += b;
    });
    child.stderr.on('data', (b) => {
      err += b;
    });
    try {
      const deadline = Date.now() + 15000;
      while (!out.includes('password:') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const pw = /password: (\S+)/.exec(out)?.[1];
      assert.ok(pw, `no password printed:\n${out}\n${err}`);
      assert.match(out, /http:\/\/127\.0\.0\.1:18700\/targetrpc/);
      assert.match(err, new RegExp(`embedded default: data in ${join(dir, 'data')}`));
      assert.doesNotMatch(err, /"level":[4-6]0/, 'a first start logs no warning or error');
      const file = join(dir, 'data', 'password');
      assert.equal((await readFile(file, 'utf8')).trim(), pw);
      assert.equal((await stat(file)).mode & 0o777, 0o600);
      assert.ok(pw.length >= 20, 'strong password');
      const res = await fetch('http://127.0.0.1:18700/targetrpc', {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`admin:${pw}`).toString('base64')}` },
        body: '{"jsonrpc":"2.0","id":1,"method":"pool_list"}',
      });
      const body = (await res.json()) as { result: { name: string }[] };
      assert.deepEqual(
        body.result.map((p) => p.name),
        ['default'],
      );
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('startup lines with a config file', () => {
  test('say the config, each pool, and how to connect (URL, user, where the password is)', async () => {
    const d = await startDaemon();
    try {
      // The lines travel through a pipe; the daemon may answer its first call before they arrive.
      const deadline = Date.now() + 5000;
      while (!d.stderr.includes('API listening') && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.match(d.stderr, new RegExp(`targetd starting with config ${d.configPath}`));
      assert.match(d.stderr, /"msg":"pool pool1 ready"/);
      const escaped = d.url.replace(/[.]/g, '\\.');
      assert.match(
        d.stderr,
        new RegExp(`API listening on ${escaped} \\(user admin, password from ${d.configPath}\\)`),
      );
      assert.doesNotMatch(d.stderr, new RegExp(d.password), 'the password itself is never logged');
    } finally {
      await d.dispose();
    }
  });
});
