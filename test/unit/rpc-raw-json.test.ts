// A handler may answer with its result already serialised (RawJson: the VM
// stats cache). Over WebSocket (single and batch) and STOMP the client must
// get exactly what answering the value itself gives.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { statsJson, statsListResult } from '../../src/api/stats-json.js';
import type { MethodSpec } from '../../src/rpc/method.js';
import { RawJson, stringifyReply } from '../../src/rpc/raw-json.js';
import type { RpcServer } from '../../src/rpc/server.js';
import type { VmStats } from '../../src/virt/types.js';
import { statsDimm } from '../helpers/sample-data.js';
import { EngineStompClient } from '../helpers/stomp-client.js';
import { LogCapture, startServer, TestClient } from './rpc/helpers.js';

const value = { list: [1, 'two', { three: null }], text: 'é"\\\n</script>' };

const methods: MethodSpec[] = [
  {
    name: 'Raw.get',
    summary: 'the value, pre-serialised',
    params: { type: 'object', properties: {}, additionalProperties: false },
    result: {},
    readOnly: true,
    handler: async () => new RawJson<typeof value>(JSON.stringify(value)),
  },
  {
    name: 'Plain.get',
    summary: 'the value',
    params: { type: 'object', properties: {}, additionalProperties: false },
    result: {},
    readOnly: true,
    handler: async () => value,
  },
];

describe('RawJson results', () => {
  const logs = new LogCapture('info');
  let server: RpcServer;

  beforeAll(async () => {
    server = await startServer({ logger: logs.logger, methods });
  });
  afterAll(async () => {
    await server.close({ drainMs: 100 });
  });

  it('reach a WebSocket client as the value would, alone and in a batch', async () => {
    const c = await TestClient.connect(server.url());
    const raw = await c.call('Raw.get');
    const plain = await c.call('Plain.get');
    expect(raw.result).toEqual(value);
    expect(raw.result).toEqual(plain.result);
    c.ws.send(
      JSON.stringify([
        { jsonrpc: '2.0', id: 'r1', method: 'Raw.get' },
        { jsonrpc: '2.0', id: 2, method: 'Plain.get' },
        { jsonrpc: '2.0', id: 'r3', method: 'No.such' },
      ]),
    );
    const batch = (await c.nextOther()) as { id: unknown; result?: unknown; error?: { code: number } }[];
    const byId = new Map(batch.map((r) => [r.id, r]));
    expect(byId.get('r1')?.result).toEqual(value);
    expect(byId.get(2)?.result).toEqual(value);
    expect(byId.get('r3')?.error?.code).toBe(-32601);
    await c.close();
  });

  it('reach a STOMP client as the value would', async () => {
    const engine = await EngineStompClient.connect(server.address().port);
    expect((await engine.call('Raw.get')).result).toEqual(value);
    await engine.close();
  });

  it('stringifyReply equals JSON.stringify for any reply whose result is given raw', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.integer()), fc.jsonValue(), (id, v) => {
        const expected = JSON.stringify({ jsonrpc: '2.0', id, result: v });
        expect(stringifyReply({ jsonrpc: '2.0', id, result: new RawJson(JSON.stringify(v)) })).toBe(expected);
        expect(stringifyReply([{ jsonrpc: '2.0', id, result: new RawJson(JSON.stringify(v)) }])).toBe(
          `[${expected}]`,
        );
      }),
      { numRuns: 500 },
    );
  });

  it('stringifyReply equals JSON.stringify for any plain reply: results, errors, null ids', () => {
    const id = fc.oneof(fc.string(), fc.integer(), fc.constant(null));
    const reply = fc.oneof(
      fc.record({ jsonrpc: fc.constant('2.0' as const), id, result: fc.jsonValue() }),
      fc.record({
        jsonrpc: fc.constant('2.0' as const),
        id,
        error: fc.record({ code: fc.integer(), message: fc.string(), data: fc.jsonValue() }),
      }),
    );
    fc.assert(
      fc.property(reply, fc.array(reply, { minLength: 1, maxLength: 3 }), (r, batch) => {
        expect(stringifyReply(r)).toBe(JSON.stringify(r));
        expect(stringifyReply(batch)).toBe(JSON.stringify(batch));
      }),
      { numRuns: 500 },
    );
    // A result that serialises to nothing (undefined, a function) is dropped as JSON.stringify drops it.
    expect(stringifyReply({ jsonrpc: '2.0', id: 1, result: undefined })).toBe('{"jsonrpc":"2.0","id":1}');
    const withToJson = { toJSON: () => 'x' };
    expect(stringifyReply({ jsonrpc: '2.0', id: 1, result: withToJson })).toBe(
      JSON.stringify({ jsonrpc: '2.0', id: 1, result: withToJson }),
    );
  });
});

describe('statsJson', () => {
  const stats = (memSize: number): VmStats =>
    Object.freeze({
      vmId: 'v',
      vmName: 'vm',
      status: 'Up',
      memSize,
      memGuaranteedSize: memSize,
      hash: 'h',
      balloonActive: false,
      memoryDevices: [statsDimm('ua-a')],
    });

  it('is the JSON of the stats, serialised once per stats object', () => {
    const a = stats(1152);
    expect(statsJson(a)).toBe(JSON.stringify(a));
    expect(statsJson(a)).toBe(statsJson(a));
    const b = stats(1024);
    expect(JSON.parse(statsListResult([a, b]).text)).toEqual([a, b]);
    expect(statsListResult([]).text).toBe('[]');
  });
});
