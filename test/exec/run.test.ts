import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { redactText, run } from '../../src/exec/index.js';
import { TargetdError } from '../../src/rpc/errors.js';

describe('exec.run', () => {
  it('returns stdout, stderr and the exit code', async () => {
    const r = await run(process.execPath, ['-e', 'process.stdout.write("out"); process.stderr.write("err")']);
    assert.deepEqual(r, { stdout: 'out', stderr: 'err', code: 0 });
  });

  it('passes arguments verbatim, never through a shell', async () => {
    const tricky = ['$(touch /tmp/pwned)', '; rm -rf /', '`id`', 'a b', ''];
    const r = await run(process.execPath, [
      '-e',
      'console.log(JSON.stringify(process.argv.slice(1)))',
      ...tricky,
    ]);
    assert.deepEqual(JSON.parse(r.stdout), tricky);
  });

  it('feeds input on stdin', async () => {
    const r = await run('cat', [], { input: 'hello\nworld' });
    assert.equal(r.stdout, 'hello\nworld');
  });

  it('throws -303 with the command and its stderr on a non-zero exit', async () => {
    await assert.rejects(
      run(process.execPath, ['-e', 'console.error("disk on fire"); process.exit(3)']),
      (err: unknown) => {
        assert.ok(err instanceof TargetdError);
        assert.equal(err.code, -303);
        assert.match(err.message, /^\S+ -e .* failed: disk on fire$/);
        return true;
      },
    );
  });

  it('accepts listed exit codes as success', async () => {
    const r = await run(process.execPath, ['-e', 'process.exit(2)'], { okCodes: [0, 2] });
    assert.equal(r.code, 2);
  });

  it('redacts secrets from the command line and stderr', async () => {
    const secret = 's3cr3t:pw';
    await assert.rejects(
      run(
        process.execPath,
        ['-e', 'console.error("bad password " + process.argv[1]); process.exit(1)', secret],
        {
          redact: [secret, ''],
        },
      ),
      (err: TargetdError) => {
        assert.equal(err.code, -303);
        assert.ok(!err.message.includes(secret), err.message);
        assert.match(err.message, /failed: bad password \*\*\*$/);
        return true;
      },
    );
  });

  it('kills the child on timeout', async () => {
    const started = Date.now();
    await assert.rejects(run('sleep', ['30'], { timeoutMs: 200 }), (err: TargetdError) => {
      assert.equal(err.code, -303);
      assert.match(err.message, /^sleep 30 failed: timed out after 200 ms$/);
      return true;
    });
    assert.ok(Date.now() - started < 5000);
  });

  it('reports a command that cannot be spawned', async () => {
    await assert.rejects(run('/nonexistent/tool', ['x']), (err: TargetdError) => {
      assert.equal(err.code, -303);
      assert.match(err.message, /^\/nonexistent\/tool x failed: .*ENOENT/);
      return true;
    });
  });

  it('fails when output exceeds the limit', async () => {
    await assert.rejects(
      run(process.execPath, ['-e', 'process.stdout.write("x".repeat(100000))'], { maxOutputBytes: 1000 }),
      /stdout exceeded 1000 bytes/,
    );
  });

  it('redactText replaces the longest secrets first', () => {
    assert.equal(redactText('user=ab pass=abc', ['ab', 'abc']), 'user=*** pass=***');
    assert.equal(redactText('nothing here', undefined), 'nothing here');
  });
});
