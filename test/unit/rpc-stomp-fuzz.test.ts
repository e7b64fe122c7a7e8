// Hostile STOMP input (fast-check): bad escapes, missing NUL, huge headers,
// content-length lies, unknown commands, frames before CONNECT, random bytes.
// Each case on its own connection must end in well-formed server frames (read
// with @stomp/stompjs's parser, not ours), an ERROR only as the last frame and
// followed by the close; the server never crashes, and no handler ever sees
// params its schema refuses.

import { Parser } from '@stomp/stompjs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RpcServer } from '../../src/rpc/server.js';
import { CONNECT, EngineStompClient, RawStomp, REQUESTS } from '../helpers/stomp-client.js';
import { LogCapture, startServer, testMethods } from './rpc/helpers.js';

const COMMANDS = [
  'CONNECT',
  'STOMP',
  'SEND',
  'SUBSCRIBE',
  'UNSUBSCRIBE',
  'ACK',
  'NACK',
  'BEGIN',
  'DISCONNECT',
  'MESSAGE',
  'ERROR',
];

const headerText = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.constantFrom(
    'destination',
    'id',
    'receipt',
    'content-length',
    'reply-to',
    'heart-beat',
    'accept-version',
    'since',
  ),
  fc.constantFrom('a\\tb', 'x\\', '\\c\\n\\r\\\\', 'x:y', '\u0000'),
  fc.nat({ max: 20_000 }).map((n) => 'h'.repeat(n)),
);

const jsonBody = fc.oneof(
  fc.constant('{"jsonrpc":"2.0","id":1,"method":"Host.ping"}'),
  fc
    .record({ size: fc.jsonValue(), node: fc.jsonValue() })
    .map((memory) =>
      JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'VM.hotplugMemory', params: { vmID: 'vm', memory } }),
    ),
  fc.json(),
  fc.string({ maxLength: 200 }),
);

const frame = fc
  .record({
    command: fc.oneof(fc.constantFrom(...COMMANDS), fc.string({ maxLength: 12 })),
    headers: fc.array(fc.tuple(headerText, headerText), { maxLength: 6 }),
    toRequests: fc.boolean(),
    body: jsonBody,
    lengthLie: fc.option(fc.integer({ min: -3, max: 3 })),
    nul: fc.boolean(),
    crlf: fc.boolean(),
  })
  .map((f) => {
    const eol = f.crlf ? '\r\n' : '\n';
    const headers = [...f.headers];
    if (f.toRequests) headers.unshift(['destination', REQUESTS], ['reply-to', 'r']);
    const bodyBytes = Buffer.byteLength(f.body);
    if (f.lengthLie !== null) headers.push(['content-length', String(Math.max(0, bodyBytes + f.lengthLie))]);
    const head = `${f.command}${eol}${headers.map(([k, v]) => `${k}:${v}${eol}`).join('')}${eol}`;
    return `${head}${f.body}${f.nul ? '\0' : ''}`;
  });

const session = fc.record({
  connectFirst: fc.boolean(),
  subscribeReplies: fc.boolean(),
  frames: fc.array(fc.oneof(frame, fc.string({ maxLength: 50 }), fc.constant('\n')), {
    minLength: 1,
    maxLength: 5,
  }),
});

interface Seen {
  command: string;
  headers: Record<string, string>;
}

function parseServerOutput(bytes: Buffer): Seen[] {
  const out: Seen[] = [];
  const p = new Parser(
    (raw) => {
      const headers: Record<string, string> = {};
      for (const [k, v] of raw.headers) if (!(k in headers)) headers[k] = v;
      out.push({ command: raw.command ?? '', headers });
    },
    () => {},
  );
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer;
  p.parseChunk(ab);
  return out;
}

describe('STOMP hostile input', () => {
  const logs = new LogCapture('warn');
  const handle = testMethods();
  let server: RpcServer;
  let port: number;

  beforeAll(async () => {
    server = await startServer({
      logger: logs.logger,
      methods: handle.methods,
      limits: { maxPayloadBytes: 32 * 1024, handshakeTimeoutMs: 2000 },
    });
    port = server.address().port;
  });
  afterAll(async () => {
    await server.close({ drainMs: 200 });
  });

  it('answers every generated session with well-formed frames, ERROR only last and then closed; never crashes', async () => {
    const outcomes = { error: 0, receipt: 0, message: 0 };
    await fc.assert(
      fc.asyncProperty(session, async (s) => {
        const raw = await RawStomp.connect(port);
        const chunks = [
          ...(s.connectFirst ? [CONNECT()] : []),
          ...(s.subscribeReplies && s.connectFirst ? ['SUBSCRIBE\nid:r\ndestination:r\n\n\0'] : []),
          ...s.frames,
        ];
        for (const c of chunks) raw.send(c);
        // A well-formed probe last, then EOF: whatever state the fuzz left, the server must settle.
        raw.send(
          `SEND\ndestination:${REQUESTS}\nreply-to:r\nreceipt:probe\n\n{"jsonrpc":"2.0","id":"p","method":"Host.ping"}\0`,
        );
        raw.socket.end();
        await raw.whenClosed(10_000);
        const frames = parseServerOutput(Buffer.from(raw.text, 'latin1'));
        for (const f of frames) expect(['CONNECTED', 'MESSAGE', 'RECEIPT', 'ERROR']).toContain(f.command);
        const errorAt = frames.findIndex((f) => f.command === 'ERROR');
        if (errorAt !== -1) outcomes.error++;
        if (frames.some((f) => f.command === 'RECEIPT')) outcomes.receipt++;
        if (frames.some((f) => f.command === 'MESSAGE')) outcomes.message++;
        if (errorAt !== -1) expect(errorAt).toBe(frames.length - 1);
        // Nothing but CONNECT opens a session.
        if (!chunks[0]?.startsWith('CONNECT\n') && !chunks[0]?.startsWith('STOMP\n')) {
          expect(frames.some((f) => f.command === 'MESSAGE' || f.command === 'RECEIPT')).toBe(false);
        }
      }),
      { numRuns: 120, seed: 4711 },
    );
    // The generator reaches both outcomes: refusals and sessions that get served.
    expect(outcomes.error).toBeGreaterThan(10);
    expect(outcomes.receipt).toBeGreaterThan(5);
    expect(outcomes.message).toBeGreaterThan(0);
    // Every call that reached a handler passed its schema.
    for (const c of handle.calls) {
      if (c.method !== 'VM.hotplugMemory') continue;
      const p = c.params as { vmID: unknown; memory: { size: unknown; node: unknown } };
      expect(typeof p.vmID).toBe('string');
      expect(Number.isInteger(p.memory.size) && (p.memory.size as number) >= 1).toBe(true);
      expect(Number.isInteger(p.memory.node) && (p.memory.node as number) <= 63).toBe(true);
    }
    // And the listener still serves a well-behaved engine.
    const engine = await EngineStompClient.connect(port);
    expect((await engine.call('Echo.add', { a: 1, b: 2 })).result).toBe(3);
    await engine.close();
    expect(logs.lines.filter((l) => l.level >= 50)).toEqual([]);
  });
});
