// The feature page's REST request mapped to VM.setMemory: status codes,
// XML in and out (escaped, DTD-free), body limits, and the same validation
// path as JSON-RPC, through the server's HTTP route hook.
import { Agent, request } from 'node:http';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseStringPromise } from 'xml2js';
import { forceOf, parseVmBody, RestApi, RestFault } from '../../src/api/rest.js';
import { RpcError } from '../../src/rpc/errors.js';
import type { MethodSpec } from '../../src/rpc/method.js';
import type { RpcServer } from '../../src/rpc/server.js';
import { LogCapture, startServer, testMethods } from './rpc/helpers.js';

const MIB = 1024 * 1024;
type SetMemoryParams = { vmID: string; memory: number; guaranteed?: number };

function setMemorySpec(seen: SetMemoryParams[]): MethodSpec {
  const spec: MethodSpec<SetMemoryParams, unknown> = {
    name: 'VM.setMemory',
    summary: 'test double',
    params: {
      type: 'object',
      properties: {
        vmID: { type: 'string', minLength: 1, maxLength: 64 },
        memory: { type: 'integer', minimum: 0, maximum: 17592186044416 },
        guaranteed: { type: 'integer', minimum: 0, maximum: 17592186044416 },
        timeout: { type: 'number', exclusiveMinimum: 0, maximum: 3600 },
      },
      required: ['vmID', 'memory'],
      additionalProperties: false,
    },
    result: { type: 'object' },
    handler: async (p) => {
      seen.push(p);
      switch (p.vmID) {
        case 'missing':
          throw new RpcError(1, 'no such VM', { vmId: p.vmID });
        case 'migrating':
          throw new RpcError(51, 'VM is migrating');
        case 'down':
          throw new RpcError(85, 'VM is not running', { reason: 'not-running' });
        case 'nodev':
          throw new RpcError(85, 'no DIMM can be removed', { reason: 'no-suitable-device' });
        case 'slow':
          throw new RpcError(85, 'guest did not release the DIMM in time', { reason: 'timeout' });
        case 'rejected':
          throw new RpcError(85, 'guest rejected', { reason: 'guest-rejected' });
        case 'boom':
          throw new Error('internal detail <x>');
        case 'bad-result':
          return { nothing: true };
        default:
          return {
            memSize: Math.floor(p.memory / MIB) - 8,
            memGuaranteedSize: Math.floor((p.guaranteed ?? 0) / MIB),
            unplugged: [],
            failed: [],
            skipped: [],
            nextRun: { updated: false, memory: 0, guaranteed: 0 },
          };
      }
    },
  };
  return spec as MethodSpec;
}

interface HttpReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function http(
  port: number,
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = { 'Content-Type': 'application/xml' },
  agent?: Agent,
): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

const PAGE_BODY =
  '<vm><memory>1468006400</memory><memory_policy><guaranteed>943718400</guaranteed></memory_policy></vm>';

describe('REST ?force', () => {
  it('force=true or force=false once; anything else is a 400 naming the rule', () => {
    expect(forceOf('/api/vms/x')).toBe(false);
    expect(forceOf('/api/vms/x?force=true')).toBe(true);
    expect(forceOf('/api/vms/x?force=false')).toBe(false);
    for (const bad of ['?force=1', '?force=', '?force=true&force=true', '?force=TRUE']) {
      const e = (() => {
        try {
          forceOf(`/api/vms/x${bad}`);
        } catch (err) {
          return err;
        }
        return undefined;
      })();
      expect(e, bad).toBeInstanceOf(RestFault);
      expect((e as RestFault).status).toBe(400);
      expect((e as RestFault).detail).toMatch(/force=true or force=false/);
    }
  });
});

describe('REST PUT /api/vms/{vmId}', () => {
  const logs = new LogCapture();
  const seen: SetMemoryParams[] = [];
  let server: RpcServer;
  let port: number;
  /** Server-side sockets the REST route saw, to count their listeners. */
  const sockets = new Set<Socket>();

  beforeAll(async () => {
    const rest = new RestApi();
    server = await startServer({
      logger: logs.logger,
      methods: [...testMethods().methods, setMemorySpec(seen)],
      routes: [
        {
          prefix: rest.prefix,
          handle: (req, res, path, ctx) => {
            sockets.add(req.socket);
            return rest.handle(req, res, path, ctx);
          },
        },
      ],
      limits: { maxBodyBytes: 4096 },
    });
    port = server.address().port;
  });
  afterAll(() => server.close({ drainMs: 100 }));

  it('maps the feature page body verbatim to VM.setMemory and answers a <vm> in bytes', async () => {
    const vmId = '1e9a36b9-4b5f-4b7a-9d55-1c0b3a5d7e21';
    const r = await fetch(`http://127.0.0.1:${port}/api/vms/${vmId}`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/xml' },
      body: `<?xml version="1.0" encoding="UTF-8"?>\n${PAGE_BODY}`,
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^application\/xml/);
    expect(seen.at(-1)).toEqual({ vmID: vmId, memory: 1468006400, guaranteed: 943718400 });
    const doc = await parseStringPromise(await r.text());
    expect(doc.vm.$.id).toBe(vmId);
    expect(doc.vm.memory[0]).toBe(String((1400 - 8) * MIB));
    expect(doc.vm.memory_policy[0].guaranteed[0]).toBe(String(900 * MIB));
  });

  it('memory_policy is optional; text/xml with a charset is accepted', async () => {
    const r = await http(port, 'PUT', '/api/vms/vm-a', '<vm><memory>2147483648</memory></vm>', {
      'Content-Type': 'text/xml; charset=utf-8',
    });
    expect(r.status).toBe(200);
    expect(seen.at(-1)).toEqual({ vmID: 'vm-a', memory: 2147483648 });
  });

  it('escapes everything it echoes: the VM id from the path', async () => {
    const nasty = `a<b>&"c'`;
    const r = await http(port, 'PUT', `/api/vms/${encodeURIComponent(nasty)}`, PAGE_BODY);
    expect(r.status).toBe(200);
    expect(r.body).not.toContain('<b>');
    const doc = await parseStringPromise(r.body);
    expect(doc.vm.$.id).toBe(nasty);
  });

  it.each([
    ['missing', 404, 'no such VM'],
    ['migrating', 409, 'VM is migrating'],
    ['down', 409, 'VM is not running'],
    ['nodev', 422, 'no DIMM can be removed'],
    ['slow', 504, 'guest did not release the DIMM in time'],
    ['rejected', 409, 'guest rejected'],
    ['boom', 500, 'unexpected error'],
    ['bad-result', 500, 'unexpected result from VM.setMemory'],
  ])('API error for %s -> HTTP %i with a <fault>', async (vm, status, reason) => {
    const r = await http(port, 'PUT', `/api/vms/${vm}`, PAGE_BODY);
    expect(r.status).toBe(status);
    const doc = await parseStringPromise(r.body);
    expect(doc.fault.reason[0]).toBe(reason);
    expect(typeof doc.fault.detail[0]).toBe('string');
    expect(r.body).not.toContain('internal detail');
  });

  it('fault detail carries the data.reason and, for crashes, the correlation id', async () => {
    const slow = await parseStringPromise((await http(port, 'PUT', '/api/vms/slow', PAGE_BODY)).body);
    expect(slow.fault.detail[0]).toBe('code 85, reason timeout');
    const boom = await parseStringPromise((await http(port, 'PUT', '/api/vms/boom', PAGE_BODY)).body);
    expect(boom.fault.detail[0]).toMatch(/^code 100, correlation id [0-9a-f-]{36}$/);
  });

  it.each([
    ['wrong content type', '/api/vms/v1', PAGE_BODY, { 'Content-Type': 'application/json' }, /Content-Type/],
    ['no content type', '/api/vms/v1', PAGE_BODY, {}, /Content-Type/],
    ['malformed XML', '/api/vms/v1', '<vm><memory>1</vm>', undefined, /malformed XML/],
    ['not XML', '/api/vms/v1', '{"memory": 1}', undefined, /malformed XML/],
    ['wrong root', '/api/vms/v1', '<host><memory>1</memory></host>', undefined, /<vm>/],
    [
      'no memory',
      '/api/vms/v1',
      '<vm><memory_policy><guaranteed>1</guaranteed></memory_policy></vm>',
      undefined,
      /<memory> is required/,
    ],
    [
      'negative',
      '/api/vms/v1',
      '<vm><memory>-1</memory></vm>',
      undefined,
      /<memory> must be a non-negative integer/,
    ],
    ['fraction', '/api/vms/v1', '<vm><memory>1.5</memory></vm>', undefined, /<memory> must be/],
    ['exponent', '/api/vms/v1', '<vm><memory>1e9</memory></vm>', undefined, /<memory> must be/],
    ['hex', '/api/vms/v1', '<vm><memory>0x10</memory></vm>', undefined, /<memory> must be/],
    [
      'unsafe integer',
      '/api/vms/v1',
      '<vm><memory>9007199254740993</memory></vm>',
      undefined,
      /<memory> is too large/,
    ],
    [
      'huge',
      '/api/vms/v1',
      `<vm><memory>${'9'.repeat(40)}</memory></vm>`,
      undefined,
      /<memory> is too large/,
    ],
    [
      'bad guaranteed',
      '/api/vms/v1',
      '<vm><memory>1</memory><memory_policy><guaranteed>x</guaranteed></memory_policy></vm>',
      undefined,
      /<guaranteed> must be/,
    ],
    [
      'memory twice',
      '/api/vms/v1',
      '<vm><memory>1</memory><memory>2</memory></vm>',
      undefined,
      /<memory> must be/,
    ],
    [
      'unknown element',
      '/api/vms/v1',
      '<vm><memory>1</memory><cpu>2</cpu></vm>',
      undefined,
      /unsupported element <cpu>/,
    ],
    [
      'DTD entity',
      '/api/vms/v1',
      '<!DOCTYPE vm [<!ENTITY x "1024">]><vm><memory>&x;</memory></vm>',
      undefined,
      /DTD/,
    ],
    [
      'external entity',
      '/api/vms/v1',
      '<!DOCTYPE vm [<!ENTITY x SYSTEM "file:///etc/passwd">]><vm><memory>&x;</memory></vm>',
      undefined,
      /DTD/,
    ],
    [
      '__proto__ element',
      '/api/vms/v1',
      '<vm><__proto__><polluted>1</polluted></__proto__><memory>1</memory></vm>',
      undefined,
      /malformed|unsupported/,
    ],
    [
      'schema limit (same validation as JSON-RPC)',
      '/api/vms/v1',
      '<vm><memory>17592186044417</memory></vm>',
      undefined,
      /params\.memory: must be <= 17592186044416 \(rule maximum\)/,
    ],
    [
      'schema limit on guaranteed',
      '/api/vms/v1',
      '<vm><memory>1</memory><memory_policy><guaranteed>9000000000000000</guaranteed></memory_policy></vm>',
      undefined,
      /params\.guaranteed must be <= /,
    ],
    ['bad percent-encoding in id', '/api/vms/%E0%A4%A', PAGE_BODY, undefined, /bad VM id/],
  ])('400 for %s, with a clear message', async (_name, path, body, headers, re) => {
    const before = seen.length;
    const r = await http(port, 'PUT', path, body, headers ?? { 'Content-Type': 'application/xml' });
    expect(r.status).toBe(400);
    const doc = await parseStringPromise(r.body);
    expect(`${doc.fault.reason[0]} ${doc.fault.detail[0]}`).toMatch(re);
    expect(seen.length).toBe(before);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('413 for a body over the cap (declared or streamed)', async () => {
    const big = `<vm><memory>${'1'.repeat(10_000)}</memory></vm>`;
    const r = await http(port, 'PUT', '/api/vms/v1', big);
    expect(r.status).toBe(413);
    const chunked = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          method: 'PUT',
          path: '/api/vms/v1',
          headers: { 'Content-Type': 'application/xml' },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      for (let i = 0; i < 10; i++) req.write('x'.repeat(1000));
      req.end();
    });
    expect(chunked).toBe(413);
    await logs.waitFor((l) => l.status === 413);
  });

  it('405 for other methods on a VM, 404 for other API paths', async () => {
    const get = await http(port, 'GET', '/api/vms/v1');
    expect(get.status).toBe(405);
    expect(get.headers.allow).toBe('PUT');
    expect((await http(port, 'POST', '/api/vms/v1', PAGE_BODY)).status).toBe(405);
    expect((await http(port, 'PUT', '/api/vms', PAGE_BODY)).status).toBe(404);
    expect((await http(port, 'PUT', '/api/vms/v1/devices', PAGE_BODY)).status).toBe(404);
    expect((await http(port, 'PUT', '/api/hosts/1', PAGE_BODY)).status).toBe(404);
    const doc = await parseStringPromise((await http(port, 'PUT', '/api/x', PAGE_BODY)).body);
    expect(doc.fault.reason[0]).toBe('not found');
  });

  it('without the console, other paths are 404 and /jsonrpc over plain HTTP is 426', async () => {
    expect((await http(port, 'GET', '/')).status).toBe(404);
    expect((await http(port, 'PUT', '/apix/vms/v1', PAGE_BODY)).status).toBe(404);
    expect((await http(port, 'GET', '/jsonrpc')).status).toBe(426);
  });

  it('many PUTs on one keep-alive connection leave no listener behind on its socket', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      sockets.clear();
      const first = await http(port, 'PUT', '/api/vms/keepalive', PAGE_BODY, undefined, agent);
      expect(first.status).toBe(200);
      expect(sockets.size).toBe(1);
      const [socket] = [...sockets];
      const baseline = socket?.listenerCount('close') ?? -1;
      for (let i = 0; i < 15; i++) {
        expect((await http(port, 'PUT', '/api/vms/keepalive', PAGE_BODY, undefined, agent)).status).toBe(200);
      }
      expect(sockets.size).toBe(1);
      expect(socket?.listenerCount('close')).toBe(baseline);
      // Node emits the warning on a later tick.
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      agent.destroy();
    }
  });

  it('parseVmBody returns typed params and throws RestFault(400) otherwise', () => {
    expect(parseVmBody('x', PAGE_BODY)).toEqual({ vmID: 'x', memory: 1468006400, guaranteed: 943718400 });
    expect(() => parseVmBody('x', '<vm/>')).toThrow(RestFault);
  });
});
