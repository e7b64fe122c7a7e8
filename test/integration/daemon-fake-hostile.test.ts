// Hostile and clumsy clients against the real daemon (a child process) on the
// fake libvirtd (issue 16), with an independent client (`ws`) and raw sockets:
// a cross-site page unplugging a DIMM, idle sockets locking clients out, one
// message multiplying into megabytes of reply and log, notifications that
// change state silently; and a property over random batches. The load tests
// use a fixed number of sockets and messages and stop by themselves. They
// print their figures (the before/after numbers) on one line each.
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { type FakeDaemon, FakeLibvirtd, rssKiB, startOnFake } from '../helpers/fake-daemon.js';
import { replyProblem } from '../helpers/jsonrpc-reply.js';
import { expectRpcError, TestRpcClient } from '../helpers/rpc-client.js';

const MiB = 1024 * 1024;

function portOf(url: string): number {
  return Number(new URL(url).port);
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
}

/** One Host.ping on its own connection's client; resolves with the round trip in ms. */
async function pingMs(c: TestRpcClient): Promise<number> {
  const t0 = performance.now();
  await c.call('Host.ping');
  return performance.now() - t0;
}

describe('a web page cannot drive the API (Origin/Host)', () => {
  let fake: FakeLibvirtd;
  let fd: FakeDaemon;
  let vmId: string;
  beforeAll(async () => {
    fake = await FakeLibvirtd.start();
    vmId = fake.addDomain({ memoryMiB: 1024, dimms: [{ alias: 'ua-page', sizeMiB: 128 }] }).uuid;
    fd = await startOnFake(fake);
  });
  afterAll(async () => {
    await fd.stop();
    await fake.stop();
  });

  it('a WebSocket from Origin evil.example is refused (403) and cannot unplug; REST with a foreign Host is 403', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(fd.daemon.url, {
        headers: { Origin: 'http://evil.example', Host: 'evil.example' },
      });
      ws.once('open', () => {
        // Would-be attack; must never get here.
        ws.send(
          JSON.stringify({
            jsonrpc: '2.0',
            id: 1,
            method: 'VM.hotunplugMemory',
            params: { vmID: vmId, params: { vmId, memory: { size: 128, node: 0, alias: 'ua-page' } } },
          }),
        );
        resolve(101);
      });
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('error', reject);
    });
    expect(status).toBe(403);
    const put = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: portOf(fd.daemon.url),
          method: 'PUT',
          path: `/api/vms/${vmId}`,
          headers: { Host: 'evil.example', 'Content-Type': 'application/xml' },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end('<vm><memory>1073741824</memory></vm>');
    });
    expect(put).toBe(403);
    await fd.daemon.waitForLog((l) => l.msg === 'request refused: origin or host not allowed');
    expect(fake.getDomainState(vmId)?.liveDimms).toEqual(['ua-page']);
  });

  it('notifications to VM.hotunplugMemory and VM.setMemory are refused: no DIMM removed, a warning logged', async () => {
    const c = await TestRpcClient.connect(fd.daemon.url);
    const replies = [
      c.raw(
        JSON.stringify({
          jsonrpc: '2.0',
          method: 'VM.hotunplugMemory',
          params: { vmID: vmId, params: { vmId, memory: { size: 128, node: 0, alias: 'ua-page' } } },
        }),
      ),
    ];
    const first = (await replies[0]) as { id: unknown; error?: { code: number } };
    const second = (await c.raw(
      JSON.stringify({ jsonrpc: '2.0', method: 'VM.setMemory', params: { vmID: vmId, memory: MiB } }),
    )) as { id: unknown; error?: { code: number } };
    for (const r of [first, second]) expect(r).toMatchObject({ id: null, error: { code: -32600 } });
    await fd.daemon.waitForLog(
      (l) => l.msg === 'rpc notification refused: method changes state' && l.method === 'VM.setMemory',
    );
    // Proof by a later call with an id: the DIMM is still there.
    const stats = await c.stats(vmId);
    expect(stats.memoryDevices.map((d) => d.alias)).toContain('ua-page');
    expect(fake.getDomainState(vmId)?.liveDimms).toEqual(['ua-page']);
    await c.close();
  });
});

describe('a typo cannot remove every DIMM (VM.setMemory floor and dry run)', () => {
  let fake: FakeLibvirtd;
  let fd: FakeDaemon;
  let vmId: string;
  const hot = ['ua-h1', 'ua-h2', 'ua-h3', 'ua-h4', 'ua-h5', 'ua-h6', 'ua-h7'];
  beforeAll(async () => {
    fake = await FakeLibvirtd.start();
    // 1024 MiB base + one DIMM present at boot (libvirt's name) + 7 hot-plugged: 2048 MiB.
    vmId = fake.addDomain({
      memoryMiB: 1024,
      dimms: [{ alias: 'dimm0', sizeMiB: 128 }, ...hot.map((alias) => ({ alias, sizeMiB: 128 }))],
    }).uuid;
    fd = await startOnFake(fake);
  });
  afterAll(async () => {
    await fd.stop();
    await fake.stop();
  });

  it('below base + boot-time DIMMs is refused with 85 below-minimum naming the floor; nothing removed', async () => {
    const c = await TestRpcClient.connect(fd.daemon.url);
    const err = await expectRpcError(c.call('VM.setMemory', { vmID: vmId, memory: 1 }));
    expect(err.code).toBe(85);
    expect(err.error.data).toMatchObject({ reason: 'below-minimum', floor: 1152, requested: 0 });
    expect(err.message).toMatch(/minimum of 1152 MiB/);
    // The REST front refuses it too (422), and still nothing changed.
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: portOf(fd.daemon.url),
          method: 'PUT',
          path: `/api/vms/${vmId}`,
          headers: { 'Content-Type': 'application/xml' },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end(`<vm><memory>${1.5 * MiB}</memory></vm>`);
    });
    expect(status).toBe(422);
    expect(fake.getDomainState(vmId)?.liveDimms).toHaveLength(8);
    await c.close();
  });

  it('dryRun answers the plan and changes nothing; the floor itself is reachable', async () => {
    const c = await TestRpcClient.connect(fd.daemon.url);
    const plan = await c.call<{
      dryRun: boolean;
      memSize: number;
      unplugged: { alias: string }[];
      floor: number;
      hotplugged: number;
    }>('VM.setMemory', { vmID: vmId, memory: 1280 * MiB, dryRun: true });
    expect(plan).toMatchObject({ dryRun: true, memSize: 1280, floor: 1152, hotplugged: 896 });
    expect(plan.unplugged).toHaveLength(6);
    expect(fake.getDomainState(vmId)?.liveDimms).toHaveLength(8);
    const done = await c.call<{ memSize: number; unplugged: unknown[] }>('VM.setMemory', {
      vmID: vmId,
      memory: 1152 * MiB,
    });
    expect(done.memSize).toBe(1152);
    expect(done.unplugged).toHaveLength(7);
    expect(fake.getDomainState(vmId)?.liveDimms).toEqual(['dimm0']);
    await c.close();
  });
});

/**
 * `count` idle TCP sockets spread over `addresses` loopback source addresses
 * (127.0.0.2 ...), each reopened when the daemon closes it, at most
 * `reopens` times in all; stop() ends it.
 */
function idleFlood(port: number, count: number, addresses: number, reopens: number) {
  const open = new Set<Socket>();
  let opened = 0;
  let closedByServer = 0;
  let stopped = false;
  let budget = reopens;
  let ready: () => void = () => {};
  const allOpen = new Promise<void>((r) => {
    ready = r;
  });
  const openOne = (slot: number) => {
    const s = connect({ port, host: '127.0.0.1', localAddress: `127.0.0.${2 + (slot % addresses)}` });
    s.on('error', () => {});
    s.once('connect', () => {
      open.add(s);
      if (++opened === count) ready();
    });
    s.once('close', () => {
      open.delete(s);
      if (stopped) return;
      closedByServer++;
      if (budget-- > 0) openOne(slot);
    });
  };
  for (let i = 0; i < count; i++) openOne(i);
  return {
    allOpen,
    get open() {
      return open.size;
    },
    get closedByServer() {
      return closedByServer;
    },
    get reopensLeft() {
      return budget;
    },
    stop() {
      stopped = true;
      for (const s of open) s.destroy();
    },
  };
}

/** A new client: connect, Host.ping, close; resolves with the ms it took, or rejects. */
async function newClientMs(url: string): Promise<number> {
  const t0 = performance.now();
  const c = await TestRpcClient.connect(url, { handshakeTimeout: 30_000 });
  await c.call('Host.ping');
  const ms = performance.now() - t0;
  await c.close();
  return ms;
}

describe('idle sockets do not lock clients out (bounded load on loopback)', () => {
  let fake: FakeLibvirtd;
  let fd: FakeDaemon;
  beforeAll(async () => {
    fake = await FakeLibvirtd.start();
    // Long first-byte and header deadlines: the clients must get in because of
    // the pending-socket accounting, not because idle sockets time out.
    fd = await startOnFake(fake, {
      config: '[limits]\nfirst_byte_timeout = 120\nhandshake_timeout = 120\n',
      logLevel: 'info',
    });
  });
  afterAll(async () => {
    await fd.stop();
    await fake.stop();
  });

  it.each([
    ['110 source addresses', 110],
    ['one source address', 1],
  ])(
    'with 1,100 idle sockets open (%s), 15 new clients in turn all connect and get answers',
    async (_what, addresses) => {
      const flood = idleFlood(portOf(fd.daemon.url), 1100, addresses, 20_000);
      try {
        await flood.allOpen;
        const times: number[] = [];
        for (let i = 0; i < 15; i++) {
          times.push(await newClientMs(fd.daemon.url));
          // Each client got in while the flood was still going (its reopen budget not spent).
          expect(flood.reopensLeft).toBeGreaterThan(0);
        }
        expect(times).toHaveLength(15);
        console.log(
          `idle flood (${addresses} addr): 15/15 clients in, connect+ping p50 ${percentile(times, 50).toFixed(1)} ms, ` +
            `max ${Math.max(...times).toFixed(1)} ms; idle sockets open ${flood.open}, closed by daemon ${flood.closedByServer}`,
        );
      } finally {
        flood.stop();
      }
      await fd.daemon.waitForLog((l) => String(l.msg).startsWith('sockets without a request'));
    },
  );
});

describe('one message does not multiply (bounded load on loopback)', () => {
  let fake: FakeLibvirtd;
  let fd: FakeDaemon;
  beforeAll(async () => {
    fake = await FakeLibvirtd.start();
    fd = await startOnFake(fake, { logLevel: 'info' });
  });
  afterAll(async () => {
    await fd.stop();
    await fake.stop();
  });

  const hugeBatch = `[${Array(500_000).fill('1').join(',')}]`;

  it('a 1 MB batch of 500,000 invalid entries: one small reply, a few log lines, pings answered', async () => {
    expect(hugeBatch.length).toBeLessThan(MiB);
    const attacker = await TestRpcClient.connect(fd.daemon.url);
    const other = await TestRpcClient.connect(fd.daemon.url);
    const linesBefore = fd.daemon.logs.length;
    const rssBefore = rssKiB(fd.daemon.proc.pid ?? 0);
    const replyP = attacker.raw(hugeBatch, 30_000);
    const ping = await pingMs(other);
    const reply = (await replyP) as { id: unknown; error?: { code: number } };
    expect(reply).toMatchObject({ id: null, error: { code: -32600 } });
    const replyBytes = JSON.stringify(reply).length;
    expect(replyBytes).toBeLessThan(1024);
    await other.call('Host.ping');
    const lines = fd.daemon.logs.length - linesBefore;
    expect(lines).toBeLessThan(10);
    const rss = rssKiB(fd.daemon.proc.pid ?? 0);
    console.log(
      `huge batch: reply ${replyBytes} B, ping ${ping.toFixed(1)} ms, log lines ${lines}, RSS ${Math.round(rssBefore / 1024)} -> ${Math.round(rss / 1024)} MiB`,
    );
    await attacker.close();
    await other.close();
  });

  it('four clients that never read, three such messages each: RSS stays bounded, pings answered', async () => {
    const other = await TestRpcClient.connect(fd.daemon.url);
    const rssBefore = rssKiB(fd.daemon.proc.pid ?? 0);
    const readers: WebSocket[] = [];
    for (let i = 0; i < 4; i++) {
      const ws = new WebSocket(fd.daemon.url);
      await new Promise<void>((r, j) => {
        ws.once('open', () => r());
        ws.once('error', j);
      });
      (ws as unknown as { _socket: Socket })._socket.pause();
      readers.push(ws);
    }
    const pings: number[] = [];
    for (let round = 0; round < 3; round++) {
      for (const ws of readers) ws.send(hugeBatch);
      pings.push(await pingMs(other));
    }
    // Each message is handled before the next frame on the same socket: a
    // ping sent after the last one proves all twelve were processed.
    for (const ws of readers) {
      await new Promise<void>((r) =>
        ws.send(JSON.stringify({ jsonrpc: '2.0', method: 'Host.ping' }), () => r()),
      );
    }
    pings.push(await pingMs(other));
    const rss = rssKiB(fd.daemon.proc.pid ?? 0);
    expect(rss - rssBefore).toBeLessThan(200 * 1024);
    console.log(
      `4 non-readers x 3 huge batches: RSS ${Math.round(rssBefore / 1024)} -> ${Math.round(rss / 1024)} MiB, ` +
        `pings max ${Math.max(...pings).toFixed(1)} ms`,
    );
    for (const ws of readers) ws.terminate();
    await other.close();
  });
});

type Entry = { kind: string; value: unknown; answered: boolean; id?: number };

describe('property: random batches always get well-formed replies, and pings stay fast', () => {
  let fake: FakeLibvirtd;
  let fd: FakeDaemon;
  let attacker: TestRpcClient;
  let other: TestRpcClient;
  let baselineMs: number;
  beforeAll(async () => {
    fake = await FakeLibvirtd.start();
    fd = await startOnFake(fake, { logLevel: 'info' });
    attacker = await TestRpcClient.connect(fd.daemon.url);
    other = await TestRpcClient.connect(fd.daemon.url);
    const idle: number[] = [];
    for (let i = 0; i < 10; i++) idle.push(await pingMs(other));
    baselineMs = Math.min(...idle);
  });
  afterAll(async () => {
    await attacker.close();
    await other.close();
    await fd.stop();
    await fake.stop();
  });

  const CODES = new Set([-32700, -32600, -32601, -32602, -32000]);
  let nextId = 1;
  const entry: fc.Arbitrary<() => Entry> = fc.oneof(
    fc.constant(() => ({
      kind: 'ping',
      value: { jsonrpc: '2.0', id: nextId, method: 'Host.ping' },
      answered: true,
      id: nextId++,
    })),
    fc.constant(() => ({
      kind: 'ping-notification',
      value: { jsonrpc: '2.0', method: 'Host.ping' },
      answered: false,
    })),
    fc.constant(() => ({
      kind: 'unknown',
      value: { jsonrpc: '2.0', id: nextId, method: 'No.such' },
      answered: true,
      id: nextId++,
    })),
    fc.constant(() => ({
      kind: 'unknown-notification',
      value: { jsonrpc: '2.0', method: 'No.such' },
      answered: false,
    })),
    fc.constant(() => ({
      kind: 'mutating-notification',
      value: { jsonrpc: '2.0', method: 'VM.hotunplugMemory', params: { vmID: 'x' } },
      answered: true,
    })),
    fc.string({ maxLength: 8_000 }).map((pad) => () => ({
      kind: 'bad-params',
      value: { jsonrpc: '2.0', id: nextId, method: 'VM.setMemory', params: { vmID: pad, memory: 'lots' } },
      answered: true,
      id: nextId++,
    })),
    fc
      .constantFrom<unknown>(1, 'x', null, {}, [], { jsonrpc: '1.0', method: 'Host.ping' })
      .map((v) => () => ({
        kind: 'garbage',
        value: v,
        answered: true,
      })),
  );

  it('holds over random batch sizes (1..150) and entry kinds', async () => {
    const pings: number[] = [];
    await fc.assert(
      fc.asyncProperty(fc.array(entry, { minLength: 1, maxLength: 150 }), async (makers) => {
        const tries: number[] = [];
        // The same batch three times, each followed at once by a ping from
        // the other client: min of the three is the latency the batch causes.
        for (let t = 0; t < 3; t++) {
          const entries = makers.map((m) => m());
          const text = JSON.stringify(entries.map((e) => e.value));
          const expected = entries.filter((e) => e.answered);
          const silent = expected.length === 0 && entries.length <= 64;
          const replyP = attacker.raw(text, 20_000);
          // Nothing to answer: the next message must be the reply to a later call.
          const after = silent ? attacker.call('Host.ping') : undefined;
          tries.push(await pingMs(other));
          const reply = await replyP;
          if (silent) {
            await after;
            expect(reply).toMatchObject({ result: true });
          } else if (entries.length > 64) {
            expect(replyProblem(reply, CODES)).toBeNull();
            expect(reply).toMatchObject({ id: null, error: { code: -32600 } });
          } else {
            expect(Array.isArray(reply)).toBe(true);
            const arr = reply as { id: unknown }[];
            for (const r of arr) expect(replyProblem(r, CODES)).toBeNull();
            expect(arr).toHaveLength(expected.length);
            const ids = arr.map((r) => r.id).filter((id) => id !== null);
            expect(ids.sort()).toEqual(
              expected
                .map((e) => e.id)
                .filter((id) => id !== undefined)
                .sort(),
            );
          }
        }
        pings.push(Math.min(...tries));
        // 100 ms as the issue asks, plus three idle round trips measured in
        // this run, so a slow machine moves the bound with it; min of three
        // tries filters one-off scheduling hiccups, a real block shows in all.
        expect(Math.min(...tries)).toBeLessThan(100 + 3 * baselineMs);
      }),
      { numRuns: 40, seed: 16 },
    );
    console.log(
      `batch property: idle ping ${baselineMs.toFixed(2)} ms; ping after batch (min of 3) p50 ${percentile(pings, 50).toFixed(2)} ms, ` +
        `p99 ${percentile(pings, 99).toFixed(2)} ms, max ${Math.max(...pings).toFixed(2)} ms`,
    );
  });
});
