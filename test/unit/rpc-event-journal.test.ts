// Notifications an engine cannot miss: per-boot sequence numbers and boot id,
// outcomes nobody heard replayed to every later client (WebSocket and STOMP),
// resuming after a sequence number exactly once, and the journal's bounds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventJournal } from '../../src/rpc/event-journal.js';
import type { RpcServer } from '../../src/rpc/server.js';
import { EngineStompClient } from '../helpers/stomp-client.js';
import { LogCapture, startServer, TestClient } from './rpc/helpers.js';

describe('event journal', () => {
  it('numbers notifications from 1 per boot and stamps the boot id', () => {
    const a = new EventJournal();
    const b = new EventJournal();
    expect(a.notify('m', { x: 1 })?.seq).toBe(1);
    const e2 = a.notify('m', { x: 2 });
    expect(e2?.seq).toBe(2);
    expect(JSON.parse(e2?.text ?? '')).toEqual({
      jsonrpc: '2.0',
      method: 'm',
      params: { x: 2 },
      seq: 2,
      bootId: a.bootId,
    });
    expect(b.notify('m', {})?.seq).toBe(1);
    expect(a.bootId).not.toBe(b.bootId);
  });

  it('drops what JSON cannot carry without using a sequence number', () => {
    const j = new EventJournal();
    expect(j.notify('bad', { n: 1n })).toBeNull();
    expect(j.notify('good', {})?.seq).toBe(1);
  });

  it('keeps the last maxEntries and nothing older than maxAgeMs, and says when a resume point fell out', () => {
    let now = 1_000_000;
    const j = new EventJournal({ maxEntries: 3, maxAgeMs: 1000, now: () => now });
    for (let i = 0; i < 5; i++) j.notify('m', { i });
    expect(j.page({ since: 0 }).events.map((e) => e.seq)).toEqual([3, 4, 5]);
    expect(j.page({ since: 0 }).gap).toBe(true);
    expect(j.page({ since: 2 }).gap).toBe(false);
    now += 500;
    j.notify('m', { i: 5 });
    now += 600;
    // Entries 3..5 are now older than 1 s; 6 is not.
    expect(j.page({ since: 0 }).events.map((e) => e.seq)).toEqual([6]);
  });

  it('replays unheard held outcomes to every later client, heard ones and plain events to none', () => {
    const j = new EventJournal();
    let listening = 0;
    j.addSink({ listeners: () => listening, deliver: () => {} });
    j.notify('status', {}, {});
    j.notify('removed-1', {}, { hold: true });
    listening = 1;
    j.notify('removed-2', {}, { hold: true });
    listening = 0;
    j.notify('removed-3', {}, { hold: true });
    expect(j.replayFor(undefined).map((e) => e.method)).toEqual(['removed-1', 'removed-3']);
    expect(j.replayFor(undefined).map((e) => e.method)).toEqual(['removed-1', 'removed-3']);
  });

  it('resumes after a sequence number; another boot id means everything this boot kept', () => {
    const j = new EventJournal();
    for (let i = 0; i < 4; i++) j.notify('m', { i });
    expect(j.replayFor({ since: 2, bootId: j.bootId }).map((e) => e.seq)).toEqual([3, 4]);
    expect(j.replayFor({ since: 2 }).map((e) => e.seq)).toEqual([3, 4]);
    expect(
      j.replayFor({ since: 2, bootId: '00000000-0000-4000-8000-000000000000' }).map((e) => e.seq),
    ).toEqual([1, 2, 3, 4]);
    const p = j.page({ since: 3, bootId: '00000000-0000-4000-8000-000000000000' });
    expect(p.bootChanged).toBe(true);
    expect(p.lastSeq).toBe(4);
  });
});

describe('replay over the transports', () => {
  const logs = new LogCapture();
  let server: RpcServer;
  let port: number;

  beforeAll(async () => {
    server = await startServer({ logger: logs.logger });
    port = server.address().port;
  });
  afterAll(async () => {
    await server.close({ drainMs: 100 });
  });

  it('an outcome found while nobody listened reaches every client that comes later, not only the first', async () => {
    server.notify('|virt|device_removed|vm-9', { alias: 'ua-9', memSize: 1024, late: true }, { hold: true });
    // First comer: a short-lived WebSocket client (vmhost-client Host ping).
    const ping = await TestClient.connect(server.url());
    expect((await ping.call('Host.ping')).result).toBe(true);
    await ping.waitNotifications(1);
    await ping.close();
    // Then the engine, over WebSocket and over STOMP: both still hear of it.
    const ws = await TestClient.connect(server.url());
    await ws.waitNotifications(1);
    expect(ws.notifications[0]).toEqual({
      method: '|virt|device_removed|vm-9',
      params: { alias: 'ua-9', memSize: 1024, late: true },
    });
    const engine = await EngineStompClient.connect(port, { subscribeEvents: true });
    const [ev] = await engine.waitEvents(1);
    expect(ev?.method).toBe('|virt|device_removed|vm-9');
    expect(ev?.params).toEqual({ alias: 'ua-9', memSize: 1024, late: true });
    await ws.close();
    await engine.close();
  });

  it('a client resuming with since gets exactly the events it missed, once, then live ones', async () => {
    const first = await EngineStompClient.connect(port, { subscribeEvents: true });
    await first.call('Host.ping');
    const base = first.events.length;
    server.notify('|virt|VM_status|vm-1', { n: 1 });
    const [seen] = (await first.waitEvents(base + 1)).slice(base);
    const lastSeen = seen?.seq ?? -1;
    const bootId = seen?.bootId ?? '';
    // The engine goes away; three events happen while it is gone.
    await first.close();
    server.notify('|virt|VM_status|vm-1', { n: 2 });
    server.notify('|virt|device_removed|vm-1', { alias: 'ua-2', memSize: 1, late: false }, { hold: true });
    server.notify('|virt|VM_status|vm-1', { n: 3 });
    const back = await EngineStompClient.connect(port, {
      subscribeEvents: { since: String(lastSeen), 'boot-id': bootId },
    });
    await back.waitEvents(3);
    await back.call('Host.ping');
    server.notify('|virt|VM_status|vm-1', { n: 4 });
    const got = await back.waitEvents(4);
    expect(got.map((e) => e.seq)).toEqual([lastSeen + 1, lastSeen + 2, lastSeen + 3, lastSeen + 4]);
    expect(got.map((e) => (e.params as { n?: number }).n ?? e.method)).toEqual([
      2,
      '|virt|device_removed|vm-1',
      3,
      4,
    ]);
    await back.close();

    // The same over the WebSocket: /jsonrpc?since=N&bootId=B.
    const ws = await TestClient.connect(`${server.url()}?since=${lastSeen + 2}&bootId=${bootId}`);
    await ws.waitNotifications(2);
    expect((await ws.call('Host.ping')).result).toBe(true);
    expect(ws.notifications.map((n) => (n.params as { n: number }).n)).toEqual([3, 4]);
    await ws.close();
  });

  it('refuses a malformed resume point, naming the rule', async () => {
    const ws = await TestClient.connect(`${server.url()}?since=abc`);
    const closed = await ws.closed();
    expect(closed.code).toBe(1008);
    expect(closed.reason).toMatch(/since must be a sequence number/);
  });
});
