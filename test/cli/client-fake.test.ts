// The client commands against a scripted stand-in daemon: request shapes, the async protocol, output and exit codes.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { Json } from '../../src/cli/client/json.js';
import { freePort } from '../helpers/daemon.js';
import { CLIENT_ONLY, type FakeAnswer, type FakeServer, runCli, startFakeServer } from './helpers.js';

/** Async jobs the fake daemon runs: each async_list poll advances them by one scripted step. */
interface Job {
  steps: [number, number][];
  volume?: string;
}

describe('client commands against a stand-in daemon', () => {
  let fake: FakeServer;
  let dir: string;
  let jobs: Map<number, Job>;
  let volumes: string[];
  let copyAnswer: FakeAnswer;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'targetd-cli-'));
    fake = await startFakeServer((method, params) => {
      const p = params as Record<string, Json>;
      switch (method) {
        case 'vol_copy':
          return copyAnswer;
        case 'async_list': {
          const out: Record<string, Json> = {};
          for (const [id, job] of jobs) {
            const step = job.steps.shift();
            if (!step) {
              jobs.delete(id);
              if (job.volume) volumes.push(job.volume);
              continue;
            }
            out[String(id)] = step;
          }
          return { result: out };
        }
        case 'vol_list':
          return { result: volumes.map((name) => ({ name, size: 1024, uuid: 'u', UUID: 'u' })) };
        case 'echo':
          return { result: p };
        default:
          return { result: method.endsWith('_list') ? [] : null };
      }
    });
  });
  after(async () => {
    await fake.close();
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    fake.calls.length = 0;
    jobs = new Map();
    volumes = ['src'];
    copyAnswer = { result: null };
  });

  const cli = (...args: string[]) => runCli(CLIENT_ONLY, [...args, '--url', fake.url, '--password', 'pw']);
  const sent = (method: string) => fake.calls.filter((c) => c.method === method).map((c) => c.params);

  it('waits for an async copy, printing a line per 10 % on a non-terminal stderr', async () => {
    copyAnswer = { error: { code: 42, message: 'Async operation' } };
    jobs.set(42, {
      steps: [
        [0, 0],
        [0, 35],
        [0, 38],
        [0, 90],
      ],
      volume: 'dst',
    });
    const r = await cli('vol', 'copy', 'pool1', 'src', 'dst', '--size', '2M');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    assert.deepEqual(r.stderr.trim().split('\n'), [
      'copy pool1/src -> dst: 0%',
      'copy pool1/src -> dst: 30%',
      'copy pool1/src -> dst: 90%',
      'copy pool1/src -> dst: 100%',
    ]);
    assert.deepEqual(sent('vol_copy'), [{ pool: 'pool1', vol_orig: 'src', vol_new: 'dst', size: 2097152 }]);
    assert.equal(sent('async_list').length, 5);
    assert.deepEqual(sent('vol_list'), [{ pool: 'pool1' }]);
  });

  it('fails with the negative status of a failed async copy', async () => {
    copyAnswer = { error: { code: 7, message: 'Async operation' } };
    jobs.set(7, {
      steps: [
        [0, 20],
        [-303, 40],
      ],
    });
    const r = await cli('vol', 'copy', 'pool1', 'src', 'dst');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error -303: asynchronous operation 7 failed \(at 40%\)$/m);
    assert.equal(sent('vol_list').length, 0);
  });

  it('does not call a vanished async copy a success when the volume is missing', async () => {
    copyAnswer = { error: { code: 8, message: 'Async operation' } };
    jobs.set(8, { steps: [[0, 50]] });
    const r = await cli('vol', 'copy', 'pool1', 'src', 'dst');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /error: asynchronous copy 8 ended but pool1\/dst does not exist/);
  });

  it('prints the async id with --no-wait and does not poll', async () => {
    copyAnswer = { error: { code: 9, message: 'Async operation' } };
    jobs.set(9, { steps: [[0, 1]] });
    let r = await cli('vol', 'copy', 'pool1', 'src', 'dst', '--no-wait');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '9\n');
    r = await cli('vol', 'copy', 'pool1', 'src', 'dst', '--no-wait', '--json');
    assert.deepEqual(JSON.parse(r.stdout), { async_id: 9 });
    assert.equal(sent('async_list').length, 0);
  });

  it('returns at once from a synchronous copy', async () => {
    const r = await cli('vol', 'copy', 'pool1', 'src', 'dst', '--json');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'null\n');
    assert.equal(sent('async_list').length, 0);
    assert.deepEqual(sent('vol_copy'), [{ pool: 'pool1', vol_orig: 'src', vol_new: 'dst' }]);
  });

  it('call: prints an async id, or waits with --wait', async () => {
    copyAnswer = { error: { code: 5, message: 'Async operation' } };
    let r = await cli('call', 'vol_copy', 'pool=p', 'vol_orig=a', 'vol_new=b');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { async_id: 5 });
    assert.match(r.stderr, /async id 5/);
    jobs.set(5, { steps: [[0, 60]] });
    r = await cli('call', 'vol_copy', 'pool=p', 'vol_orig=a', 'vol_new=b', '--wait');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'null\n');
    assert.match(r.stderr, /60%\n.*100%/s);
  });

  it('call: sends typed params with big integers digit for digit and prints the result', async () => {
    const r = await cli(
      'call',
      'echo',
      'n=12345678901234567890123',
      'size=1.5G',
      'flag=false',
      'name=vol1',
      'obj:={"x":[1,null]}',
    );
    assert.equal(r.code, 0, r.stderr);
    const body = fake.calls.at(-1)!.body;
    assert.match(body, /"n":12345678901234567890123,/);
    assert.match(body, /"size":1610612736,/);
    assert.match(r.stdout, /^ {2}"n": 12345678901234567890123,$/m);
    assert.deepEqual(JSON.parse(r.stdout.replace('12345678901234567890123', '0')), {
      n: 0,
      size: 1610612736,
      flag: false,
      name: 'vol1',
      obj: { x: [1, null] },
    });
  });

  it('call: a malformed argument is a usage error, nothing is sent', async () => {
    const r = await cli('call', 'pool_list', 'oops');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: expected key=value or key:=JSON, got "oops"$/m);
    assert.equal(fake.calls.length, 0);
  });

  it('maps subcommand arguments to the API parameter names', async () => {
    const run = async (...args: string[]) => {
      const r = await cli(...args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      return fake.calls.at(-1)!;
    };
    const iqn = 'iqn.2024-01.com.example:host1';
    const expectations: [string[], string, Json][] = [
      [['vol', 'create', 'p', 'v', '10M'], 'vol_create', { pool: 'p', name: 'v', size: 10485760 }],
      [['vol', 'resize', 'p', 'v', '1GB'], 'vol_resize', { pool: 'p', name: 'v', size: 1e9 }],
      [['vol', 'destroy', 'p', 'v'], 'vol_destroy', { pool: 'p', name: 'v' }],
      [
        ['export', 'create', 'p', 'v', iqn, '3'],
        'export_create',
        { pool: 'p', vol: 'v', initiator_wwn: iqn, lun: 3 },
      ],
      [['export', 'destroy', 'p', 'v', iqn], 'export_destroy', { pool: 'p', vol: 'v', initiator_wwn: iqn }],
      [['initiator', 'list'], 'initiator_list', {}],
      [['initiator', 'list', '--standalone-only'], 'initiator_list', { standalone_only: true }],
      [
        ['initiator', 'set-auth', iqn, '--in-user', 'u', '--in-pass', 'secret-secret'],
        'initiator_set_auth',
        { initiator_wwn: iqn, in_user: 'u', in_pass: 'secret-secret', out_user: null, out_pass: null },
      ],
      [
        ['initiator', 'set-auth', iqn],
        'initiator_set_auth',
        { initiator_wwn: iqn, in_user: null, in_pass: null, out_user: null, out_pass: null },
      ],
      [['ag', 'create', 'g', iqn], 'access_group_create', { ag_name: 'g', init_id: iqn, init_type: 'iscsi' }],
      [['ag', 'destroy', 'g'], 'access_group_destroy', { ag_name: 'g' }],
      [['ag', 'add', 'g', iqn], 'access_group_init_add', { ag_name: 'g', init_id: iqn, init_type: 'iscsi' }],
      [
        ['ag', 'remove', 'g', iqn],
        'access_group_init_del',
        { ag_name: 'g', init_id: iqn, init_type: 'iscsi' },
      ],
      [
        ['ag', 'map', 'create', 'p', 'v', 'g'],
        'access_group_map_create',
        { pool_name: 'p', vol_name: 'v', ag_name: 'g' },
      ],
      [
        ['ag', 'map', 'create', 'p', 'v', 'g', '--lun', '7'],
        'access_group_map_create',
        { pool_name: 'p', vol_name: 'v', ag_name: 'g', h_lun_id: 7 },
      ],
      [
        ['ag', 'map', 'destroy', 'p', 'v', 'g'],
        'access_group_map_destroy',
        { pool_name: 'p', vol_name: 'v', ag_name: 'g' },
      ],
    ];
    for (const [args, method, params] of expectations) {
      const seen = await run(...args);
      assert.equal(seen.method, method, args.join(' '));
      assert.deepEqual(seen.params, params, args.join(' '));
    }
  });

  it('refuses half a CHAP direction and a bad LUN or size before sending', async () => {
    for (const args of [
      ['initiator', 'set-auth', 'iqn.2024-01.com.example:h', '--in-user', 'u'],
      ['export', 'create', 'p', 'v', 'iqn.2024-01.com.example:h', 'x'],
      ['vol', 'create', 'p', 'v', '10X'],
      ['ag', 'map', 'create', 'p', 'v', 'g', '--lun', '1.5'],
    ]) {
      const r = await cli(...args);
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.stderr, /^error: /, args.join(' '));
    }
    assert.equal(fake.calls.length, 0);
  });

  it('warns about a short CHAP secret', async () => {
    const r = await cli(
      'initiator',
      'set-auth',
      'iqn.2024-01.com.example:h',
      '--out-user',
      'u',
      '--out-pass',
      'short',
    );
    assert.equal(r.code, 0);
    assert.match(r.stderr, /warning: --out-pass is shorter than 12 characters/);
  });

  it('takes the connection from the environment, flags first', async () => {
    const pwFile = join(dir, 'pw');
    await writeFile(pwFile, 'pw\n');
    let r = await runCli(CLIENT_ONLY, ['pool', 'list', '--json'], {
      TARGETD_URL: fake.url,
      TARGETD_PASSWORD: 'pw',
    });
    assert.equal(r.code, 0, r.stderr);
    r = await runCli(CLIENT_ONLY, ['pool', 'list'], { TARGETD_URL: fake.url, TARGETD_PASSWORD_FILE: pwFile });
    assert.equal(r.code, 0, r.stderr);
    // A flag beats the environment, also across the two password sources.
    r = await runCli(CLIENT_ONLY, ['pool', 'list', '--password-file', pwFile], {
      TARGETD_URL: fake.url,
      TARGETD_PASSWORD: 'wrong',
    });
    assert.equal(r.code, 0, r.stderr);
    r = await runCli(CLIENT_ONLY, ['pool', 'list', '--url', fake.url], {
      TARGETD_URL: 'http://127.0.0.1:1/',
      TARGETD_PASSWORD: 'pw',
      TARGETD_USER: 'someone',
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /authentication failed for user 'someone'/);
  });

  it('says clearly when authentication fails', async () => {
    const r = await runCli(CLIENT_ONLY, ['pool', 'list', '--url', fake.url, '--password', 'bad']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, `error: authentication failed for user 'admin' at ${fake.url}\n`);
    assert.equal(r.stdout, '');
  });

  it('says clearly when nothing listens at the URL', async () => {
    const port = await freePort();
    const r = await runCli(CLIENT_ONLY, ['pool', 'list', '--url', `127.0.0.1:${port}`, '--password', 'x']);
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      `error: cannot connect to http://127.0.0.1:${port}/targetrpc: connection refused (is targetd running?)\n`,
    );
  });

  it('asks for a password when there is none', async () => {
    const r = await runCli(CLIENT_ONLY, ['pool', 'list', '--url', fake.url]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: no password: use --password/);
  });
});
