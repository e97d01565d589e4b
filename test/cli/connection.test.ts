import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { UsageError } from '../../src/cli/client/args.js';
import { normalizeUrl, resolvePassword } from '../../src/cli/client/connection.js';

describe('normalizeUrl', () => {
  const cases: [string, string][] = [
    ['http://127.0.0.1:18700/targetrpc', 'http://127.0.0.1:18700/targetrpc'],
    ['localhost', 'http://localhost:18700/targetrpc'],
    ['storage.example.com:9000', 'http://storage.example.com:9000/targetrpc'],
    ['https://array.example', 'https://array.example:18700/targetrpc'],
    ['https://array.example:443', 'https://array.example/targetrpc'],
    ['http://array.example:80/', 'http://array.example/targetrpc'],
    ['HTTPS://Array.Example:8443/rpc', 'https://array.example:8443/rpc'],
    ['[::1]', 'http://[::1]:18700/targetrpc'],
    ['[::1]:1234', 'http://[::1]:1234/targetrpc'],
    ['  10.0.0.5  ', 'http://10.0.0.5:18700/targetrpc'],
  ];
  for (const [input, want] of cases) {
    it(`${input} → ${want}`, () => {
      assert.equal(normalizeUrl(input).toString(), want);
    });
  }

  it('keeps an explicit default port as the port to use', () => {
    assert.equal(normalizeUrl('https://h:443').port, '');
    assert.equal(normalizeUrl('https://h').port, '18700');
  });

  it('refuses other schemes, empty input and credentials in the URL', () => {
    for (const bad of ['', 'ftp://h', 'http://u:p@h', 'http://[bad']) {
      assert.throws(() => normalizeUrl(bad), UsageError, bad);
    }
  });
});

describe('resolvePassword', () => {
  it('takes --password as is', async () => {
    assert.equal(await resolvePassword({ password: 'a:b c\n' }), 'a:b c\n');
  });

  it('reads a file, dropping one trailing newline', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'targetd-cli-'));
    try {
      await writeFile(join(dir, 'pw'), 'secret: with colon \n');
      assert.equal(await resolvePassword({ passwordFile: join(dir, 'pw') }), 'secret: with colon ');
      await writeFile(join(dir, 'crlf'), 'pw\r\n\r\n');
      assert.equal(await resolvePassword({ passwordFile: join(dir, 'crlf') }), 'pw\r\n');
      await assert.rejects(
        resolvePassword({ passwordFile: join(dir, 'missing') }),
        /cannot read password file/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses no password and two passwords', async () => {
    await assert.rejects(resolvePassword({}), /no password/);
    await assert.rejects(resolvePassword({ password: 'a', passwordFile: '/x' }), /not both/);
  });
});
