// STOMP 1.2 on the JSON-RPC listener, driven by @stomp/stompjs (not ours)
// and by raw frames: detection beside HTTP/WebSocket on the same port,
// requests and replies the engine's way, events on jms.queue.events with
// sequence numbers, heart-beat negotiation and enforcement, ERROR-then-close
// for what is malformed or not allowed, limits, flow id in the log.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RpcServer } from '../../src/rpc/server.js';
import {
  CONNECT,
  EngineStompClient,
  EVENTS,
  RawStomp,
  REQUESTS,
  RESPONSES,
} from '../helpers/stomp-client.js';
import { LogCapture, startServer, TestClient, testMethods } from './rpc/helpers.js';

describe('STOMP on the rpc listener', () => {
  const logs = new LogCapture('debug');
  const handle = testMethods();
  let server: RpcServer;
  let port: number;

  beforeAll(async () => {
    server = await startServer({
      logger: logs.logger,
      methods: handle.methods,
      limits: { maxStompSubscriptions: 4, maxStompHeaders: 16, maxPayloadBytes: 64 * 1024 },
    });
    port = server.address().port;
  });
  afterAll(async () => {
    await server.close({ drainMs: 200 });
  });

  it('answers a JSON-RPC request sent the engine way, beside a WebSocket client on the same port', async () => {
    const engine = await EngineStompClient.connect(port);
    expect(engine.connected.headers.version).toBe('1.2');
    const ws = await TestClient.connect(server.url());
    const [viaStomp, viaWs] = await Promise.all([
      engine.call('Echo.add', { a: 2, b: 3 }),
      ws.call('Echo.add', { a: 4, b: 5 }),
    ]);
    expect(viaStomp.result).toBe(5);
    expect(viaWs.result).toBe(9);
    const res = await fetch(`http://127.0.0.1:${port}/jsonrpc`);
    expect(res.status).toBe(426);
    await ws.close();
    await engine.close();
  });

  it('applies the same validation: bad params get -32602 naming the field, and never reach the handler', async () => {
    const engine = await EngineStompClient.connect(port);
    const before = handle.calls.length;
    const r = await engine.call('VM.hotplugMemory', { vmID: 'x', memory: { size: 'big', node: 0 } });
    expect(r.error?.code).toBe(-32602);
    expect(r.error?.data?.field).toBe('params.memory.size');
    const nf = await engine.call('No.such');
    expect(nf.error?.code).toBe(-32601);
    expect(handle.calls.length).toBe(before);
    await engine.close();
  });

  it('logs the engine flow id (ovirtCorrelationId) on the request line', async () => {
    const engine = await EngineStompClient.connect(port);
    const r = await engine.call('Echo.add', { a: 1, b: 1 }, { flowId: 'flow-4711' });
    expect(r.result).toBe(2);
    const line = await logs.waitFor(
      (l) => l.msg === 'rpc call' && l.method === 'Echo.add' && l.flowId === 'flow-4711',
    );
    expect(line.transport).toBe('stomp');
    await engine.close();
  });

  it('replies to the reply-to destination the request named', async () => {
    const engine = await EngineStompClient.connect(port, { replyTo: 'jms.topic.vdsm_responses.engine-2' });
    const r = await engine.call('Echo.add', { a: 7, b: 1 }, { replyTo: 'jms.topic.vdsm_responses.engine-2' });
    expect(r.result).toBe(8);
    await engine.close();
  });

  it('delivers notifications to jms.queue.events subscribers, numbered, with the boot id', async () => {
    const a = await EngineStompClient.connect(port, { subscribeEvents: true });
    const b = await EngineStompClient.connect(port, { subscribeEvents: true });
    const ws = await TestClient.connect(server.url());
    // A round trip on each makes sure its SUBSCRIBE was processed.
    await Promise.all([a.call('Host.ping'), b.call('Host.ping')]);
    server.notify('|virt|VM_status|vm-1', { 'vm-1': { status: 'Up' }, notify_time: 1 });
    server.notify('|virt|device_removed|vm-1', { alias: 'ua-1', memSize: 1024, late: false }, { hold: true });
    const [ea, eb] = await Promise.all([a.waitEvents(2), b.waitEvents(2)]);
    await ws.waitNotifications(2);
    for (const evs of [ea, eb]) {
      expect(evs.map((e) => e.method)).toEqual(['|virt|VM_status|vm-1', '|virt|device_removed|vm-1']);
      expect(evs[1]?.seq).toBe((evs[0]?.seq ?? 0) + 1);
      expect(evs[0]?.headers.destination).toBe(EVENTS);
      expect(evs[0]?.headers['content-type']).toBe('application/json');
      expect(evs[0]?.headers.seq).toBe(String(evs[0]?.seq));
      expect(evs[0]?.headers['boot-id']).toBe(evs[0]?.bootId);
    }
    const raw = ws.other;
    expect(raw).toEqual([]);
    await Promise.all([a.close(), b.close(), ws.close()]);
  });

  it('negotiates heart-beats as VDSM does: non-zero raised to 1000 ms, the pair swapped', async () => {
    const cases: [string, string][] = [
      ['0,0', '0,0'],
      ['500,200', '1000,1000'],
      ['5000,0', '0,5000'],
      ['0,3000', '3000,0'],
    ];
    for (const [asked, answered] of cases) {
      const raw = await RawStomp.connect(port);
      raw.send(CONNECT(`accept-version:1.1,1.2\nheart-beat:${asked}\n`));
      const m = await raw.waitFor(/CONNECTED\n([^\0]*)\n\n\0/);
      expect(m[1]).toContain('version:1.2');
      expect(m[1]).toContain(`heart-beat:${answered}`);
      raw.destroy();
    }
  });

  it('sends heart-beats when the client asks for them, and closes a client that stops sending its own', async () => {
    const raw = await RawStomp.connect(port);
    raw.send(CONNECT('accept-version:1.2\nheart-beat:1000,1000\n'));
    await raw.waitFor(/CONNECTED[^\0]*\0/);
    // The server's heart-beat: a bare EOL after the CONNECTED frame.
    await raw.waitFor(/\0\n/);
    // We promised one every second and send none: ERROR, then the server closes.
    await raw.waitFor(/ERROR\n[^\0]*message:heart-beat missed/);
    await raw.whenClosed();
    await logs.waitFor((l) => l.msg === 'stomp: client heart-beat missed; closing');
  });

  it('keeps a client that sends its heart-beats', async () => {
    const raw = await RawStomp.connect(port);
    raw.send(CONNECT('accept-version:1.2\nheart-beat:1000,0\n'));
    await raw.waitFor(/CONNECTED[^\0]*\0/);
    for (let i = 0; i < 3; i++) {
      // Each round trip takes a while on the server side; the EOLs keep the session alive meanwhile.
      raw.send('\n');
      raw.send(
        `SEND\ndestination:${REQUESTS}\nreply-to:r\n\n{"jsonrpc":"2.0","id":${i},"method":"Host.ping"}\0`,
      );
    }
    raw.send(`SUBSCRIBE\nid:s\ndestination:r\nreceipt:sub\n\n\0`);
    await raw.waitFor(/RECEIPT\nreceipt-id:sub/);
    expect(raw.text).not.toContain('ERROR');
    raw.destroy();
  });

  const refusals: [string, string, RegExp][] = [
    ['a frame before CONNECT', `SEND\ndestination:${REQUESTS}\n\n{}\0`, /expected CONNECT, got SEND/],
    [
      'a STOMP version other than 1.2',
      CONNECT('accept-version:1.0,1.1\n'),
      /unsupported STOMP version[^\0]*/,
    ],
    ['a malformed heart-beat', CONNECT('accept-version:1.2\nheart-beat:fast\n'), /malformed heart-beat/],
    [
      'an unknown command',
      'CONNECT\naccept-version:1.2\n\n\0LAUNCH\n\n\0',
      /malformed frame: unknown command/,
    ],
    [
      'a bad escape',
      `${CONNECT()}SUBSCRIBE\nid:a\\tb\ndestination:x\n\n\0`,
      /invalid escape sequence \\t in a header/,
    ],
    [
      'SEND to a destination that is not the request queue',
      `${CONNECT()}SEND\ndestination:jms.topic.elsewhere\n\n{}\0`,
      /unknown destination: jms.topic.elsewhere/,
    ],
    [
      'SUBSCRIBE without an id',
      `${CONNECT()}SUBSCRIBE\ndestination:x\n\n\0`,
      /SUBSCRIBE needs the id and destination headers/,
    ],
    [
      'a reused subscription id',
      `${CONNECT()}SUBSCRIBE\nid:1\ndestination:x\n\n\0SUBSCRIBE\nid:1\ndestination:y\n\n\0`,
      /subscription id already in use: 1/,
    ],
    [
      'more subscriptions than allowed',
      `${CONNECT()}${[1, 2, 3, 4, 5].map((i) => `SUBSCRIBE\nid:${i}\ndestination:d${i}\n\n\0`).join('')}`,
      /message:too many subscriptions \(at most 4\)/,
    ],
    [
      'more headers than allowed',
      `${CONNECT()}SEND\n${Array.from({ length: 20 }, (_, i) => `h${i}:v\n`).join('')}\n\0`,
      /malformed frame: more than 16 headers/,
    ],
    [
      'a frame over the size limit',
      `${CONNECT()}SEND\ndestination:${REQUESTS}\n\n${'x'.repeat(70 * 1024)}`,
      /malformed frame: frame larger than 65536 bytes/,
    ],
    [
      'a content-length that lies',
      `${CONNECT()}SEND\ndestination:${REQUESTS}\ncontent-length:2\n\n{}}\0`,
      /malformed frame: frame does not end with NUL/,
    ],
    ['transactions', `${CONNECT()}BEGIN\ntransaction:t\n\n\0`, /command not supported: BEGIN/],
  ];
  for (const [what, frames, error] of refusals) {
    it(`answers ${what} with ERROR, then closes`, async () => {
      const raw = await RawStomp.connect(port);
      raw.send(frames);
      await raw.waitFor(new RegExp(`ERROR\\n[^\\0]*${error.source}`));
      await raw.whenClosed();
    });
  }

  it('answers DISCONNECT with its RECEIPT, then closes', async () => {
    const raw = await RawStomp.connect(port);
    raw.send(`${CONNECT()}DISCONNECT\nreceipt:bye-1\n\n\0`);
    await raw.waitFor(/RECEIPT\nreceipt-id:bye-1\n/);
    await raw.whenClosed();
  });

  it('escapes header values it sends and decodes the ones it gets', async () => {
    const raw = await RawStomp.connect(port);
    // The subscription id holds a colon, a backslash and a newline, escaped.
    raw.send(`${CONNECT()}SUBSCRIBE\nid:a\\cb\\\\c\\nd\ndestination:${RESPONSES}\n\n\0`);
    raw.send(
      `SEND\ndestination:${REQUESTS}\nreply-to:${RESPONSES}\n\n{"jsonrpc":"2.0","id":1,"method":"Host.ping"}\0`,
    );
    const m = await raw.waitFor(/MESSAGE\n([^\0]*)\n\n(\{[^\0]*\})\0/);
    expect(m[1]).toContain('subscription:a\\cb\\\\c\\nd');
    expect(JSON.parse(m[2] ?? '')).toEqual({ jsonrpc: '2.0', id: 1, result: true });
    raw.destroy();
  });

  it('closes a connection that never sends CONNECT within the handshake time', async () => {
    const s = await startServer({ logger: logs.logger, limits: { handshakeTimeoutMs: 300 } });
    const raw = await RawStomp.connect(s.address().port);
    raw.send('CONNECT\naccept-version:1.2\n');
    await raw.waitFor(/ERROR\n[^\0]*message:CONNECT not received in time/);
    await raw.whenClosed();
    await s.close({ drainMs: 100 });
  });

  it('counts STOMP clients against the connection cap shared with the WebSocket', async () => {
    const refused: string[] = [];
    const s = await startServer({
      logger: logs.logger,
      limits: { maxConnections: 1 },
      observer: { refused: (r) => refused.push(r) },
    });
    const first = await EngineStompClient.connect(s.address().port);
    const raw = await RawStomp.connect(s.address().port);
    raw.send(CONNECT());
    await raw.waitFor(/ERROR\n[^\0]*message:too many connections/);
    expect(refused).toEqual(['limits']);
    await expect(TestClient.connect(s.url())).rejects.toThrow(/503/);
    await first.close();
    await s.close({ drainMs: 100 });
  });

  it('refuses new requests while shutting down and tells STOMP clients why it closes', async () => {
    const s = await startServer({ logger: logs.logger, methods: handle.methods });
    const engine = await EngineStompClient.connect(s.address().port);
    const inFlight = engine.call('Test.wait', { key: 'stomp-drain' });
    await handle.gates.whenStarted('stomp-drain');
    const closing = s.close({ drainMs: 5000 });
    const busy = await engine.call('Host.ping');
    expect(busy.error?.code).toBe(-32000);
    handle.gates.open('stomp-drain');
    expect((await inFlight).result).toBe('done stomp-drain');
    await closing;
    await engine.closed();
  });
});
