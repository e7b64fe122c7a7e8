// The libvirt client's decoder fuzzed with malformed packets from a fake
// server (the unit tests fuzz the XDR reader on bytes; here whole packets
// arrive on the socket: mutated replies to real calls, mutated events, raw
// garbage). Every call settles with a value or a typed libvirt error, never
// hangs; the client reconnects and works afterwards. Then the same at the
// running daemon (mutated events and garbage; replies are covered above): it
// stays up, keeps answering, and its operations work.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LibvirtClient,
  LibvirtConnectionError,
  LibvirtError,
  LibvirtProtocolError,
  LibvirtTimeoutError,
} from '../../src/libvirt/index.js';
import type { DomainEventMessage } from '../../src/libvirt/protocol.js';
import type { DomainRef } from '../../src/libvirt/types.js';
import { encodeEventPacket } from '../fakes/fake-libvirtd.js';
import { FakeLibvirtd, startOnFake } from '../helpers/fake-daemon.js';
import { TestRpcClient } from '../helpers/rpc-client.js';

const TYPED = [LibvirtError, LibvirtProtocolError, LibvirtConnectionError, LibvirtTimeoutError];

type Mutation =
  | { k: 'flip'; at: number[]; xor: number[] }
  | { k: 'truncate'; to: number; fixLength: boolean }
  | { k: 'length'; value: number }
  | { k: 'append'; bytes: Uint8Array; fixLength: boolean }
  | { k: 'header'; field: number; value: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({
    k: fc.constant('flip' as const),
    at: fc.array(fc.nat(400), { minLength: 1, maxLength: 4 }),
    xor: fc.array(fc.integer({ min: 1, max: 255 }), { minLength: 4, maxLength: 4 }),
  }),
  fc.record({ k: fc.constant('truncate' as const), to: fc.nat(400), fixLength: fc.boolean() }),
  // Length words: too small, off by a little, far too large (over the cap).
  fc.record({
    k: fc.constant('length' as const),
    value: fc.oneof(fc.nat(32), fc.integer({ min: 28, max: 600 }), fc.constant(0xffffffff)),
  }),
  fc.record({
    k: fc.constant('append' as const),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
    fixLength: fc.boolean(),
  }),
  // prog, vers, proc, type, serial, status
  fc.record({ k: fc.constant('header' as const), field: fc.integer({ min: 0, max: 5 }), value: fc.nat() }),
);

function mutate(pkt: Buffer, m: Mutation): Buffer {
  const b = Buffer.from(pkt);
  switch (m.k) {
    case 'flip':
      // Never the length word itself (that is the 'length' mutation).
      m.at.forEach((i, n) => {
        const pos = 4 + (i % Math.max(1, b.length - 4));
        if (pos < b.length) b[pos] = (b[pos] ?? 0) ^ (m.xor[n] ?? 1);
      });
      return b;
    case 'truncate': {
      const out = Buffer.from(b.subarray(0, Math.max(4, Math.min(m.to, b.length - 1))));
      if (m.fixLength) out.writeUInt32BE(out.length, 0);
      return out;
    }
    case 'length':
      b.writeUInt32BE(m.value >>> 0, 0);
      return b;
    case 'append': {
      const out = Buffer.concat([b, Buffer.from(m.bytes)]);
      if (m.fixLength) out.writeUInt32BE(out.length, 0);
      return out;
    }
    case 'header':
      b.writeUInt32BE(m.value >>> 0, 4 + 4 * m.field);
      return b;
  }
}

/** Settles within `ms` (else rejects with a clear message). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
    }),
  ]);
}

describe('libvirt client decoder fuzz (fake server)', () => {
  let fake: FakeLibvirtd;
  let client: LibvirtClient;
  let ref: DomainRef;

  beforeAll(async () => {
    fake = await FakeLibvirtd.start();
    ref = fake.addDomain({ memoryMiB: 1024, dimms: [{ alias: 'ua-z0', sizeMiB: 128 }], name: 'fz-vm' });
    client = await LibvirtClient.connect({
      socketPath: fake.socketPath,
      callTimeoutMs: 1_000,
      keepaliveIntervalMs: 200,
      keepaliveCount: 2,
      reconnect: { initialDelayMs: 5, maxDelayMs: 50 },
    });
  });
  afterAll(async () => {
    await client?.close();
    await fake?.stop();
  });

  it('every call settles with a value or a typed error, and the client recovers (property)', async () => {
    const calls: (() => Promise<unknown>)[] = [
      () => client.getXMLDesc(ref, 0),
      () => client.listAllDomains(0),
      () => client.getState(ref),
      () => client.getHostname(),
      () => client.lookupByUUID(ref.uuid),
    ];
    const tally = { resolved: 0, typedErrors: 0, disconnects: 0 };
    client.on('disconnected', () => tally.disconnects++);
    const fault = fc.record({
      where: fc.constantFrom('reply', 'reply', 'event', 'raw'),
      call: fc.integer({ min: 0, max: calls.length - 1 }),
      m: mutation,
      kind: fc.constantFrom('lifecycle', 'deviceRemoved', 'deviceAdded', 'deviceRemovalFailed'),
      callbackId: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer()),
      raw: fc.uint8Array({ minLength: 1, maxLength: 200 }),
    });

    await fc.assert(
      fc.asyncProperty(fault, async (f) => {
        if (f.where === 'reply') {
          fake.mutateNextReply((pkt) => mutate(pkt, f.m));
          const call = calls[f.call]!;
          try {
            await within(call(), 5_000, 'mutated reply');
            tally.resolved++;
          } catch (err) {
            if (!TYPED.some((T) => err instanceof T)) throw err;
            tally.typedErrors++;
          }
        } else if (f.where === 'event') {
          const ev: DomainEventMessage =
            f.kind === 'lifecycle'
              ? { kind: 'lifecycle', callbackId: f.callbackId, domain: ref, event: 5, detail: 1 }
              : { kind: f.kind, callbackId: f.callbackId, domain: ref, alias: 'ua-z0' };
          fake.sendRaw(mutate(encodeEventPacket(ev), f.m));
        } else {
          fake.sendRaw(Buffer.from(f.raw));
        }
        // Recovery: a plain call works again soon (after a reconnect if the stream was cut,
        // or once keepalive declares a desynchronised stream dead).
        await within(
          (async () => {
            for (;;) {
              try {
                if ((await client.getHostname()) === 'fake-host') return;
              } catch (err) {
                if (!TYPED.some((T) => err instanceof T)) throw err;
                await new Promise<void>((r) => {
                  const done = () => {
                    client.off('reconnected', done);
                    r();
                  };
                  client.on('reconnected', done);
                  if (client.connected) setImmediate(done);
                });
              }
            }
          })(),
          8_000,
          'recovery',
        );
      }),
      { numRuns: 200, interruptAfterTimeLimit: 100_000 },
    );
    console.log(`decoder fuzz: ${JSON.stringify(tally)}`);
    // Events still flow after all that.
    const got = new Promise<string>((r) => client.once('deviceRemoved', (e) => r(e.alias)));
    fake.emitDeviceRemoved(ref.uuid, 'ua-z0');
    expect(await within(got, 5_000, 'event after fuzz')).toBe('ua-z0');
    expect(tally.typedErrors + tally.resolved).toBeGreaterThan(50);
    expect(tally.disconnects).toBeGreaterThan(10);
  });
});

describe('the daemon survives malformed packets from libvirtd', () => {
  it('stays up, answers ping throughout, reconnects and unplugs afterwards', async () => {
    const fake = await FakeLibvirtd.start();
    const a = fake.addDomain({
      memoryMiB: 1024,
      dimms: [
        { alias: 'ua-m0', sizeMiB: 128 },
        { alias: 'ua-m1', sizeMiB: 128 },
      ],
      eventDelayMs: 0,
    }).uuid;
    const fd = await startOnFake(fake, {
      unplugTimeoutS: 5,
      config: '[libvirt]\ncall_timeout = 2\nkeepalive_interval = 1\nkeepalive_count = 1\n',
    });
    const c = await TestRpcClient.connect(fd.daemon.url);
    try {
      const samples = fc.sample(fc.tuple(mutation, fc.uint8Array({ minLength: 1, maxLength: 100 })), {
        numRuns: 40,
        seed: 7,
      });
      let i = 0;
      for (const [m, bytes] of samples) {
        const ev = encodeEventPacket({
          kind: 'deviceRemoved',
          callbackId: 1 + (i % 8),
          domain: { name: 'x', uuid: a, id: 1 },
          alias: 'ua-m0',
        });
        fake.sendRaw(i++ % 3 === 2 ? Buffer.from(bytes) : mutate(ev, m));
        const t0 = performance.now();
        expect(await c.call('Host.ping')).toBe(true);
        expect(performance.now() - t0).toBeLessThan(1_000);
        // Reads come from the cache whatever libvirt is doing.
        await c.call('VM.getStats', { vmID: a });
      }
      expect(fd.daemon.running).toBe(true);
      // Back to a sane stream: the daemon reconnects (if it had to) and unplugs normally.
      const deadline = Date.now() + 20_000;
      let result: unknown;
      for (;;) {
        try {
          result = await c.call('VM.hotunplugMemory', {
            vmID: a,
            params: { vmId: a, memory: { size: 128, node: 0, alias: 'ua-m1' } },
            timeout: 5,
          });
          break;
        } catch (err) {
          if (Date.now() > deadline) throw err;
          const n = fd.daemon.logs.length;
          await fd.daemon.waitForLog(() => fd.daemon.logs.length > n, 2_000).catch(() => undefined);
        }
      }
      expect(result).toMatchObject({ status: 'removed', alias: 'ua-m1' });
      expect(fd.daemon.running).toBe(true);
    } finally {
      await c.close();
      await fd.stop();
      await fake.stop();
    }
  });
});
