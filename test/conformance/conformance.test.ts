import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { ROOT } from '../helpers/daemon.js';

// libiscsi's conformance suite against our target and tgt, side by side; fails when a test that passed
// before (test/conformance/expected-builtin.json) no longer passes, or when any new failure appears.
test('iscsi-test-cu -d -t ALL: no regression against expected-builtin.json', {
  timeout: 20 * 60 * 1000,
}, async () => {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'scripts/iscsi/conformance.ts', '--target', 'both', '--check'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout.on('data', (b) => {
    out += b;
  });
  child.stderr.on('data', (b) => {
    out += b;
  });
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  // The table goes to the test log so a CI reader sees ours beside tgt.
  console.log(out.trimEnd());
  assert.equal(code, 0, `conformance check failed:\n${out}`);
  assert.match(out, /--check against test\/conformance\/expected-builtin\.json: ok/);
});
