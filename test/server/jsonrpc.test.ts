import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { post, request, rpc, startServer, type TestServer } from './helpers.js';

let s: TestServer;
before(async () => {
  s = await startServer();
});
after(async () => {
  await s.close();
});
beforeEach(() => {
  s.effects.calls.length = 0;
  s.lines.length = 0;
});

type Reply = { jsonrpc: string; id: unknown; result?: unknown; error?: { code: number; message: string } };

async function call(body: string): Promise<Reply> {
  return (await rpc(s.port, body)).json as Reply;
}

describe('reply envelope', () => {
  test('success: HTTP 200, application/json, exactly jsonrpc/id/result', async () => {
    const a = await post(s.port, request('echo', { text: 'hi' }, '7'));
    assert.equal(a.status, 200);
    assert.equal(a.headers['content-type'], 'application/json');
    const reply = JSON.parse(a.text);
    assert.deepEqual(Object.keys(reply), ['jsonrpc', 'id', 'result']);
    assert.deepEqual(reply, { jsonrpc: '2.0', id: 7, result: { text: 'hi', n: null, remote: '127.0.0.1' } });
  });

  test('void result is "result": null', async () => {
    const { text, json } = await rpc(s.port, request('set_secret', { name: 'a', password: 'x' }, '1'));
    assert.equal(text, '{"jsonrpc":"2.0","id":1,"result":null}');
    assert.deepEqual(Object.keys(json as object), ['jsonrpc', 'id', 'result']);
  });

  test('TargetdError keeps its code and message; exactly jsonrpc/id/error', async () => {
    const a = await post(s.port, request('missing', {}, '"m"'));
    assert.equal(a.status, 200);
    assert.equal(a.headers['content-type'], 'application/json');
    assert.equal(
      a.text,
      '{"jsonrpc":"2.0","id":"m","error":{"code":-103,"message":"volume not found: vol1"}}',
    );
  });

  test('error data is passed along', async () => {
    const reply = await call(request('with_data', {}, '2'));
    assert.deepEqual(reply.error, { code: -50, message: 'name exists', data: { name: 'vol1' } });
  });

  test('any other exception becomes -1 "Name: text"; the stack is logged, not sent', async () => {
    const { text, json } = await rpc(s.port, request('boom', {}, '3'));
    assert.deepEqual(json, { jsonrpc: '2.0', id: 3, error: { code: -1, message: 'TypeError: kaboom' } });
    assert.ok(!text.includes('at '), 'no stack trace in the reply');
    const logged = s.lines.find((l) => l.msg === 'unexpected error in method');
    assert.ok(logged, 'error logged');
    assert.match(JSON.stringify(logged), /kaboom/);
    assert.match(String((logged.err as { stack?: string }).stack), /TypeError: kaboom\n\s+at /);
  });

  test('a thrown non-Error value is -1 too', async () => {
    const reply = await call(request('throw_string', {}, '5'));
    assert.deepEqual(reply.error, { code: -1, message: 'Error: oops' });
  });

  test('error data JSON cannot carry is dropped, the error kept', async () => {
    const reply = await call(request('bad_data', {}, '6'));
    assert.deepEqual(reply, { jsonrpc: '2.0', id: 6, error: { code: -153, message: 'not supported' } });
  });

  test('a result JSON cannot carry is a -1 error, not a dropped connection', async () => {
    const reply = await call(request('bigint', {}, '4'));
    assert.equal(reply.error?.code, -1);
    assert.match(reply.error?.message ?? '', /^TypeError: /);
  });
});

describe('JSON-RPC errors', () => {
  test('parse error: -32700 with id null', async () => {
    for (const body of ['{"jsonrpc":"2.0",', '', 'nonsense', '{"id":1}}', '\ufeff\ufeff{}']) {
      const reply = await call(body);
      assert.equal(reply.id, null, body);
      assert.equal(reply.error?.code, -32700, body);
      assert.deepEqual(Object.keys(reply), ['jsonrpc', 'id', 'error']);
    }
  });

  test('invalid UTF-8 is a parse error', async () => {
    const body = Buffer.concat([
      Buffer.from('{"jsonrpc":"2.0","method":"echo","params":{"text":"'),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('"},"id":1}'),
    ]);
    const a = await post(s.port, body);
    assert.equal(a.status, 200);
    assert.deepEqual(JSON.parse(a.text), {
      jsonrpc: '2.0',
      id: null,
      error: { code: -32700, message: 'parse error: body is not valid UTF-8' },
    });
  });

  test('invalid requests: -32600', async () => {
    const cases: [string, unknown][] = [
      ['1', null],
      ['"x"', null],
      ['null', null],
      ['true', null],
      ['{"method":"echo","id":5}', 5],
      ['{"jsonrpc":"1.0","method":"echo","id":5}', 5],
      ['{"jsonrpc":2.0,"method":"echo","id":5}', 5],
      ['{"jsonrpc":"2.0","id":5}', 5],
      ['{"jsonrpc":"2.0","method":12,"id":"a"}', 'a'],
      ['{"jsonrpc":"2.0","method":null,"id":5}', 5],
      ['{"jsonrpc":"2.0","method":"echo","id":{"a":1}}', null],
      ['{"jsonrpc":"2.0","method":"echo","id":[1]}', null],
      ['{"jsonrpc":"2.0","method":"echo","id":true}', null],
      ['{"jsonrpc":"2.0","method":1}', null],
    ];
    for (const [body, id] of cases) {
      const reply = await call(body);
      assert.equal(reply.error?.code, -32600, body);
      assert.deepEqual(reply.id, id, body);
      assert.deepEqual(Object.keys(reply), ['jsonrpc', 'id', 'error']);
    }
    assert.deepEqual(s.effects.calls, [], 'nothing ran');
  });

  test('unknown method: -32601 with the id', async () => {
    const reply = await call(request('nope', {}, '9'));
    assert.deepEqual(reply, {
      jsonrpc: '2.0',
      id: 9,
      error: { code: -32601, message: 'method not found: nope' },
    });
  });

  test('bad params: -32602 naming the parameter', async () => {
    const cases: [unknown, RegExp][] = [
      [['a'], /positional/],
      [{ text: 'a', bogus: 1 }, /bogus/],
      [{ text: 5 }, /text/],
      [{ name: 'x' }, /password/],
      ['str', /object/],
      [7, /object/],
    ];
    for (const [params, re] of cases) {
      const m = typeof params === 'object' && params !== null && 'name' in params ? 'set_secret' : 'echo';
      const reply = await call(request(m, params, '1'));
      assert.equal(reply.error?.code, -32602, JSON.stringify(params));
      assert.match(reply.error?.message ?? '', re);
    }
  });
});

describe('params forms', () => {
  test('omitted, null, {} and [] all mean no arguments', async () => {
    for (const body of [
      '{"jsonrpc":"2.0","method":"echo","id":1}',
      '{"jsonrpc":"2.0","method":"echo","params":null,"id":1}',
      '{"jsonrpc":"2.0","method":"echo","params":{},"id":1}',
      '{"jsonrpc":"2.0","method":"echo","params":[],"id":1}',
    ]) {
      const reply = await call(body);
      assert.deepEqual(reply.result, { text: null, n: null, remote: '127.0.0.1' }, body);
    }
  });

  test('named params reach the handler', async () => {
    const reply = await call(request('echo', { text: 'x', n: 2 ** 53 }, '1'));
    assert.deepEqual(reply.result, { text: 'x', n: 2 ** 53, remote: '127.0.0.1' });
  });
});

describe('ids are echoed losslessly', () => {
  const echoed = async (idText: string): Promise<string> => {
    const { text } = await rpc(
      s.port,
      `{"jsonrpc":"2.0","method":"set_secret","params":{"name":"a","password":"p"},"id":${idText}}`,
    );
    return text;
  };

  test('numbers come back digit for digit', async () => {
    for (const id of [
      '340282366920938463463374607431768211455',
      '-340282366920938463463374607431768211455',
      '18446744073709551617',
      '0',
      '-0',
      '-42',
      '1.50',
      '1e3',
      '2.5E-7',
      '1e400',
    ]) {
      assert.equal(await echoed(id), `{"jsonrpc":"2.0","id":${id},"result":null}`);
    }
  });

  test('strings stay strings, null stays null', async () => {
    for (const id of [
      '"abc"',
      '""',
      '"340282366920938463463374607431768211455"',
      '"a\\"b"',
      '"\\u00e9t\\u00e9"',
      '"日本"',
      'null',
    ]) {
      const text = await echoed(id);
      assert.equal(text, `{"jsonrpc":"2.0","id":${id},"result":null}`);
      assert.deepEqual(JSON.parse(text).id, JSON.parse(id));
    }
  });

  test('escaped "id" key and duplicate keys behave like JSON.parse', async () => {
    let { text } = await rpc(
      s.port,
      '{"jsonrpc":"2.0","method":"set_secret","params":{"name":"a","password":"p"},"\\u0069d":123456789012345678901234567890}',
    );
    assert.equal(text, '{"jsonrpc":"2.0","id":123456789012345678901234567890,"result":null}');
    ({ text } = await rpc(
      s.port,
      '{"id":1,"jsonrpc":"2.0","method":"set_secret","params":{"name":"a","password":"p"},"id":"second"}',
    ));
    assert.equal(text, '{"jsonrpc":"2.0","id":"second","result":null}');
  });

  test('ids inside params are not mistaken for the request id', async () => {
    const { text } = await rpc(
      s.port,
      '{"jsonrpc":"2.0","method":"echo","params":{"text":"\\"id\\":5"},"id":99999999999999999999}',
    );
    assert.match(text, /^\{"jsonrpc":"2.0","id":99999999999999999999,"result":/);
  });

  test('error replies echo the id too', async () => {
    const { text } = await rpc(s.port, request('missing', {}, '340282366920938463463374607431768211455'));
    assert.match(text, /^\{"jsonrpc":"2.0","id":340282366920938463463374607431768211455,"error":/);
  });
});

describe('notifications', () => {
  test('a request without id runs and gets 204 with no body', async () => {
    const a = await post(s.port, request('echo', { text: 'n' }, undefined));
    assert.equal(a.status, 204);
    assert.equal(a.text, '');
    assert.deepEqual(s.effects.calls, ['echo:n']);
  });

  test('a failing notification still answers nothing', async () => {
    const a = await post(s.port, request('missing', {}, undefined));
    assert.equal(a.status, 204);
    assert.deepEqual(s.effects.calls, ['missing']);
    const b = await post(s.port, request('no_such_method', {}, undefined));
    assert.equal(b.status, 204);
  });

  test('"id": null is a request, not a notification', async () => {
    const reply = await call(request('echo', {}, 'null'));
    assert.equal(reply.id, null);
    assert.ok('result' in reply);
  });
});

describe('batches', () => {
  test('mixed batch: replies in order, notifications omitted, ids lossless', async () => {
    const body = `[
      ${request('echo', { text: 'a' }, '340282366920938463463374607431768211455')},
      ${request('echo', { text: 'b' }, undefined)},
      ${request('missing', {}, '"x"')},
      42,
      ${request('nope', {}, '0')},
      ${request('echo', { text: 'c' }, '1.50')}
    ]\n`;
    const { text, json } = await rpc(s.port, body);
    const replies = json as Reply[];
    assert.equal(replies.length, 5);
    assert.match(text, /^\[\{"jsonrpc":"2.0","id":340282366920938463463374607431768211455,"result":/);
    assert.equal(replies[1]!.id, 'x');
    assert.equal(replies[1]!.error?.code, -103);
    assert.deepEqual(replies[2], {
      jsonrpc: '2.0',
      id: null,
      error: { code: -32600, message: 'request must be an object' },
    });
    assert.equal(replies[3]!.error?.code, -32601);
    assert.equal(replies[3]!.id, 0);
    assert.match(text, /\{"jsonrpc":"2.0","id":1.50,"result":\{"text":"c"/);
    for (const r of replies) assert.equal(Object.keys(r).length, 3);
    assert.deepEqual(s.effects.calls, ['echo:a', 'echo:b', 'missing', 'echo:c']);
  });

  test('elements run one after another, in order', async () => {
    const body = `[${request('slow', { ms: 150 }, '1')},${request('slow', { ms: 1 }, '2')},${request('echo', { text: 'z' }, undefined)}]`;
    const replies = (await rpc(s.port, body)).json as Reply[];
    assert.deepEqual(
      replies.map((r) => r.id),
      [1, 2],
    );
    assert.deepEqual(s.effects.calls, ['slow:150', 'slow:1', 'echo:z']);
  });

  test('a batch of only notifications answers 204', async () => {
    const a = await post(
      s.port,
      `[${request('echo', { text: '1' }, undefined)},${request('echo', { text: '2' }, undefined)}]`,
    );
    assert.equal(a.status, 204);
    assert.equal(a.text, '');
    assert.deepEqual(s.effects.calls, ['echo:1', 'echo:2']);
  });

  test('an empty batch is one -32600 error, not an array', async () => {
    const reply = await call('[]');
    assert.deepEqual(Object.keys(reply), ['jsonrpc', 'id', 'error']);
    assert.equal(reply.id, null);
    assert.equal(reply.error?.code, -32600);
  });

  test('invalid elements each get their own error', async () => {
    const replies = (await rpc(s.port, '[1,"x",[]]')).json as Reply[];
    assert.equal(replies.length, 3);
    for (const r of replies) assert.deepEqual([r.id, r.error?.code], [null, -32600]);
  });
});

describe('logging', () => {
  test('one info line per mutating call, secrets redacted', async () => {
    await call(request('set_secret', { name: 'vol1', password: 'hunter2' }, '1'));
    await call(request('missing', {}, '2'));
    await call(request('echo', { text: 'not logged' }, '3'));
    await call(request('set_secret', { name: 'vol1' }, '4'));
    const calls = s.lines.filter((l) => l.msg === 'rpc call');
    assert.equal(calls.length, 3);
    const [ok, failed, invalid] = calls;
    assert.equal(ok!.level, 30);
    assert.equal(ok!.method, 'set_secret');
    assert.deepEqual(ok!.params, { name: 'vol1', password: '***' });
    assert.equal(ok!.outcome, 'ok');
    assert.equal(typeof ok!.ms, 'number');
    assert.equal(ok!.remote, '127.0.0.1');
    assert.equal(failed!.method, 'missing');
    assert.equal(failed!.outcome, -103);
    assert.equal(invalid!.outcome, -32602);
    assert.ok(!JSON.stringify(s.lines).includes('hunter2'));
  });
});
