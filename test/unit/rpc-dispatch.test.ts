// JSON-RPC semantics through a real WebSocket: success, batches, every error
// path, validation messages, error mapping, logging and rpc.discover.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RpcServer } from '../../src/rpc/server.js';
import { LogCapture, startServer, TestClient, testMethods } from './rpc/helpers.js';

describe('rpc dispatch over WebSocket', () => {
  const logs = new LogCapture('info');
  const t = testMethods();
  let server: RpcServer;
  let client: TestClient;

  beforeAll(async () => {
    server = await startServer({ logger: logs.logger, methods: t.methods });
    client = await TestClient.connect(server.url());
  });
  afterAll(async () => {
    await client.close();
    await server.close({ drainMs: 100 });
  });

  it('answers a call with its result and logs method, id, connection, duration and outcome', async () => {
    const r = await client.call('Echo.add', { a: 2, b: 40 });
    expect(r).toEqual({ jsonrpc: '2.0', id: r.id, result: 42 });
    const line = await logs.waitFor((l) => l.method === 'Echo.add' && l.id === r.id);
    expect(line).toMatchObject({ outcome: 'ok', conn: expect.stringMatching(/^c\d+$/), msg: 'rpc call' });
    expect(typeof line.durationMs).toBe('number');
    // The handler's own fields ride on the same line.
    expect(line.sum).toBe(42);
  });

  it('logs cheap methods marked logLevel debug only at debug', async () => {
    const r = await client.call('Host.ping');
    expect(r.result).toBe(true);
    expect(logs.find((l) => l.method === 'Host.ping' && l.id === r.id)).toBeUndefined();
  });

  it('answers a batch with one reply per request that has an id', async () => {
    client.ws.send(
      JSON.stringify([
        { jsonrpc: '2.0', id: 'b1', method: 'Echo.add', params: { a: 1, b: 1 } },
        { jsonrpc: '2.0', method: 'Echo.add', params: { a: 5, b: 5 } },
        { jsonrpc: '2.0', id: 'b2', method: 'Nope.nothing' },
        { foo: 1 },
        { jsonrpc: '2.0', id: 'b3', method: 'Echo.add', params: { a: 'x', b: 1 } },
      ]),
    );
    const batch = (await client.nextOther()) as { id: unknown; result?: unknown; error?: { code: number } }[];
    expect(Array.isArray(batch)).toBe(true);
    expect(batch).toHaveLength(4);
    const byId = new Map(batch.map((r) => [r.id, r]));
    expect(byId.get('b1')?.result).toBe(2);
    expect(byId.get('b2')?.error?.code).toBe(-32601);
    expect(byId.get(null)?.error?.code).toBe(-32600);
    expect(byId.get('b3')?.error?.code).toBe(-32602);
  });

  it('an all-notification batch gets no reply; the handlers still run', async () => {
    const before = t.calls.length;
    client.ws.send(JSON.stringify([{ jsonrpc: '2.0', method: 'Echo.add', params: { a: 7, b: 7 } }]));
    const r = await client.call('Echo.add', { a: 0, b: 0 });
    expect(r.result).toBe(0);
    expect(client.other).toHaveLength(0);
    expect(t.calls.slice(before).map((c) => c.params)).toContainEqual({ a: 7, b: 7 });
  });

  it('bad JSON is -32700 with id null', async () => {
    client.ws.send('{"jsonrpc": "2.0", "method": ');
    const r = (await client.nextOther()) as { id: unknown; error: { code: number } };
    expect(r.id).toBeNull();
    expect(r.error.code).toBe(-32700);
  });

  it.each([
    ['not an object', 5],
    ['null', null],
    ['missing jsonrpc', { id: 1, method: 'Echo.add' }],
    ['wrong version', { jsonrpc: '1.0', id: 1, method: 'Echo.add' }],
    ['method not a string', { jsonrpc: '2.0', id: 1, method: 42 }],
    ['id an object', { jsonrpc: '2.0', id: { x: 1 }, method: 'Echo.add' }],
    ['params null', { jsonrpc: '2.0', id: 1, method: 'Echo.add', params: null }],
    ['params a string', { jsonrpc: '2.0', id: 1, method: 'Echo.add', params: 'a=1' }],
    ['empty batch', []],
  ])('invalid request (%s) is -32600', async (_name, msg) => {
    client.ws.send(JSON.stringify(msg));
    const r = (await client.nextOther()) as { error: { code: number; message: string } };
    expect(r.error.code).toBe(-32600);
    expect(r.error.message).toMatch(/invalid request/);
  });

  it('unknown method is -32601 naming the method', async () => {
    const r = await client.call('VM.doesNotExist', {});
    expect(r.error).toMatchObject({ code: -32601, data: { method: 'VM.doesNotExist' } });
    expect(r.error?.message).toContain('VM.doesNotExist');
  });

  it('positional params are -32602', async () => {
    const r = await client.call('Echo.add', [1, 2]);
    expect(r.error).toMatchObject({ code: -32602, data: { field: 'params', rule: 'type' } });
  });

  it.each([
    [{ vmID: 'v', memory: { size: 0, node: 0 } }, 'params.memory.size', 'minimum', 'must be >= 1'],
    [{ vmID: 'v', memory: { size: null, node: 0 } }, 'params.memory.size', 'type', 'must be integer'],
    [
      { vmID: 'v', memory: { size: 99999999999, node: 0 } },
      'params.memory.size',
      'maximum',
      'must be <= 16777216',
    ],
    [{ vmID: 'v', memory: { size: '128', node: 0 } }, 'params.memory.size', 'type', 'must be integer'],
    [{ vmID: 'v', memory: { size: 1.5, node: 0 } }, 'params.memory.size', 'type', 'must be integer'],
    [{ vmID: 'v', memory: { size: 128 } }, 'params.memory.node', 'required', 'is required'],
    [{ memory: { size: 128, node: 0 } }, 'params.vmID', 'required', 'is required'],
    [
      { vmID: 'v', memory: { size: 128, node: 0 }, evil: 1 },
      'params.evil',
      'additionalProperties',
      'is not an allowed property',
    ],
    [
      { vmID: '', memory: { size: 128, node: 0 } },
      'params.vmID',
      'minLength',
      'must NOT have fewer than 1 characters',
    ],
    [{ vmID: 'v', memory: [128, 0] }, 'params.memory', 'type', 'must be object'],
  ])('validation error names field and rule: %j', async (params, field, rule, message) => {
    const before = t.calls.length;
    const r = await client.call('VM.hotplugMemory', params);
    expect(r.error?.code).toBe(-32602);
    expect(r.error?.data).toEqual({ field, rule, message });
    expect(r.error?.message).toBe(`invalid params: ${field} ${message}`);
    expect(t.calls.length).toBe(before);
  });

  it('"huge number" 1e400 parses to Infinity and is refused, not passed on', async () => {
    client.ws.send('{"jsonrpc":"2.0","id":"big","method":"Echo.add","params":{"a":1e400,"b":1}}');
    const r = await client.expect('big');
    expect(r.error?.code).toBe(-32602);
  });

  it('__proto__ and constructor keys are refused and pollute nothing', async () => {
    const before = t.calls.length;
    client.ws.send(
      '{"jsonrpc":"2.0","id":"p1","method":"Echo.add","params":{"a":1,"b":2,"__proto__":{"polluted":true}}}',
    );
    const r = await client.expect('p1');
    expect(r.error).toMatchObject({
      code: -32602,
      data: { field: 'params.__proto__', rule: 'additionalProperties' },
    });
    client.ws.send(
      '{"jsonrpc":"2.0","id":"p2","method":"Echo.add","params":{"a":1,"b":2,"constructor":{"prototype":{"polluted":true}}}}',
    );
    expect((await client.expect('p2')).error?.code).toBe(-32602);
    client.ws.send('{"jsonrpc":"2.0","id":"p3","method":"__proto__","params":{}}');
    expect((await client.expect('p3')).error?.code).toBe(-32601);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(t.calls.length).toBe(before);
  });

  it('an RpcError from a handler is the error object', async () => {
    const r = await client.call('Test.fail', { kind: 'rpc' });
    expect(r.error).toEqual({ code: 85, message: 'guest rejected', data: { reason: 'guest-rejected' } });
    const line = await logs.waitFor((l) => l.method === 'Test.fail' && l.id === r.id);
    expect(line).toMatchObject({ msg: 'rpc call', outcome: 'error', code: 85, opId: 'op-rpc' });
  });

  it('any other throw is code 100 with a correlation id; the stack only in the log', async () => {
    const r = await client.call('Test.fail', { kind: 'crash' });
    expect(r.error?.code).toBe(100);
    expect(r.error?.message).toBe('unexpected error');
    const correlationId = r.error?.data?.correlationId;
    expect(typeof correlationId).toBe('string');
    expect(JSON.stringify(r)).not.toContain('secret internal detail');
    const line = await logs.waitFor((l) => l.correlationId === correlationId && 'err' in l);
    expect(JSON.stringify(line.err)).toContain('secret internal detail');
    expect((line.err as { stack?: string }).stack).toMatch(/at /);
  });

  it('a result JSON cannot carry becomes code 100, not a crash', async () => {
    const r = await client.call('Test.fail', { kind: 'bigint' });
    expect(r.error?.code).toBe(100);
    expect(typeof r.error?.data?.correlationId).toBe('string');
    expect((await client.call('Echo.add', { a: 1, b: 1 })).result).toBe(2);
  });

  it('rpc.discover returns an OpenRPC 1.2 document built from the method specs', async () => {
    const r = await client.call('rpc.discover');
    const doc = r.result as {
      openrpc: string;
      info: { title: string; version: string };
      servers: { url: string }[];
      methods: {
        name: string;
        paramStructure: string;
        params: { name: string; required: boolean; schema: unknown; description?: string }[];
        result: { schema: unknown };
        errors?: unknown[];
      }[];
    };
    expect(doc.openrpc).toMatch(/^1\.2\.\d+$/);
    expect(doc.info).toEqual({ title: 'vmhostd-test', version: '1.0-test' });
    expect(doc.servers[0]?.url).toBe(server.url());
    expect(doc.methods.map((m) => m.name).sort()).toEqual(
      ['Echo.add', 'Host.ping', 'Test.fail', 'Test.wait', 'VM.hotplugMemory'].sort(),
    );
    const add = doc.methods.find((m) => m.name === 'Echo.add');
    expect(add?.paramStructure).toBe('by-name');
    expect(add?.params).toEqual([
      {
        name: 'a',
        required: true,
        description: 'first addend',
        schema: expect.objectContaining({ type: 'integer' }),
      },
      { name: 'b', required: true, schema: expect.objectContaining({ type: 'integer' }) },
    ]);
    expect(add?.result.schema).toEqual({ type: 'integer' });
    expect(add?.errors).toEqual([{ code: 100, message: 'unexpected error' }]);
  });
});

describe('method table', () => {
  it('refuses to start with a schema ajv strict mode rejects, naming the method', async () => {
    const logs = new LogCapture();
    await expect(
      startServer({
        logger: logs.logger,
        methods: [
          {
            name: 'Bad.schema',
            summary: '',
            params: { type: 'object', properties: { a: { type: 'integer', minimun: 1 } } },
            result: {},
            handler: async () => null,
          },
        ],
      }),
    ).rejects.toThrow(/Bad\.schema/);
  });

  it('refuses a method registered twice', async () => {
    const logs = new LogCapture();
    const m = testMethods().methods;
    await expect(startServer({ logger: logs.logger, methods: [...m, m[0]!] })).rejects.toThrow(/twice/);
  });
});
