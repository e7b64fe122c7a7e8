// The libvirt client against our fake libvirtd: protocol faults, scale and
// timing that a real host cannot produce on demand.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LibvirtConnection } from '../../src/libvirt/connection.js';
import {
  DomainAffect,
  type DomainRef,
  JobOperation,
  JobType,
  LibvirtClient,
  type LibvirtClientEvents,
  type LibvirtClientOptions,
  LibvirtConnectionError,
  LibvirtError,
  LibvirtProtocolError,
  LibvirtTimeoutError,
  LifecycleEvent,
  MetadataType,
} from '../../src/libvirt/index.js';
import { EventIdForKind, Proc } from '../../src/libvirt/protocol.js';
import { FakeLibvirtd, type MalformedKind } from '../fakes/fake-libvirtd.js';

let fake: FakeLibvirtd;
const clients: LibvirtClient[] = [];

beforeEach(async () => {
  fake = await FakeLibvirtd.start();
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await fake.stop();
});

async function connect(opts: Partial<LibvirtClientOptions> = {}): Promise<LibvirtClient> {
  const c = await LibvirtClient.connect({ socketPath: fake.socketPath, ...opts });
  clients.push(c);
  return c;
}

/** Resolves with the first event matching `pred`; rejects after `ms` with a clear message. */
function nextEvent<K extends keyof LibvirtClientEvents>(
  c: LibvirtClient,
  event: K,
  pred: (...args: LibvirtClientEvents[K]) => boolean = () => true,
  ms = 5_000,
): Promise<LibvirtClientEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      c.off(event, listener);
      reject(new Error(`no '${event}' event within ${ms} ms`));
    }, ms);
    const listener = (...args: LibvirtClientEvents[K]) => {
      if (!pred(...args)) return;
      clearTimeout(timer);
      c.off(event, listener);
      resolve(args);
    };
    c.on(event, listener);
  });
}

const dimmXml = (alias: string, sizeMiB = 128) =>
  `<memory model='dimm'><target><size unit='MiB'>${sizeMiB}</size><node>0</node></target><alias name='${alias}'/></memory>`;

describe('libvirt client against the fake libvirtd', () => {
  it('reads job stats: NONE without a job, the operation typed param while an outgoing migration runs', async () => {
    const c = await connect();
    const dom = fake.addDomain({ memoryMiB: 1024 });
    expect(await c.getJobStats(dom)).toEqual({ type: JobType.NONE, params: {} });
    fake.setJob(dom.uuid, JobOperation.MIGRATION_OUT);
    const js = await c.getJobStats(dom);
    expect(js.type).toBe(JobType.UNBOUNDED);
    expect(js.params.operation).toBe(5);
    expect(js.params.time_elapsed).toBe(1234n);
    fake.setJob(dom.uuid, null);
    expect((await c.getJobStats(dom)).type).toBe(JobType.NONE);
    expect(fake.callCount('DOMAIN_GET_JOB_STATS')).toBe(3);
  });

  it('opens, reads versions, lists, looks up, reads XML and metadata', async () => {
    const a = fake.addDomain({ name: 'a', memoryMiB: 1024, dimms: [{ alias: 'ua-1', sizeMiB: 256 }] });
    fake.addDomain({ name: 'b', memoryMiB: 512, running: false, persistent: true });
    const c = await connect();
    expect(c.connected).toBe(true);
    expect(await c.getLibVersion()).toBe(9_000_000);
    expect(await c.getVersion()).toBe(7_002_000);
    expect(await c.getHostname()).toBe('fake-host');
    expect((await c.listAllDomains()).map((d) => d.name).sort()).toEqual(['a', 'b']);
    expect((await c.listAllDomains(1)).map((d) => d.name)).toEqual(['a']);
    const dom = await c.lookupByUUID(a.uuid.toUpperCase());
    expect(dom).toEqual(a);
    const xml = await c.getXMLDesc(dom);
    expect(xml).toContain(`<memory unit='KiB'>${1280 * 1024}</memory>`);
    expect(xml).toContain("<alias name='ua-1'/>");
    expect(xml).toMatch(/<address type='dimm' slot='0' base='0x100000000'\/>/);
    expect(await c.getState(dom)).toEqual({ state: 1, reason: 1 });

    await c.setMetadata(dom, MetadataType.ELEMENT, '<vm guaranteed="900"/>', 'vmhost', 'http://x/vmhost', 0);
    expect(await c.getMetadata(dom, MetadataType.ELEMENT, 'http://x/vmhost', 0)).toBe(
      '<vm guaranteed="900"/>',
    );
    expect(await c.getXMLDesc(dom)).toContain('<vmhost:vm xmlns:vmhost="http://x/vmhost" guaranteed="900"/>');
    await expect(c.getMetadata(dom, MetadataType.ELEMENT, 'http://x/other', 0)).rejects.toMatchObject({
      name: 'LibvirtError',
      code: 80,
    });
    await expect(c.lookupByUUID('00000000-0000-0000-0000-00000000abcd')).rejects.toMatchObject({ code: 42 });
  });

  it('routes interleaved replies and events to the right callers', async () => {
    const quick = fake.addDomain({
      memoryMiB: 1024,
      dimms: [{ alias: 'ua-q', sizeMiB: 128 }],
      eventBeforeReply: true,
    });
    const late = fake.addDomain({
      memoryMiB: 1024,
      dimms: [{ alias: 'ua-l', sizeMiB: 128 }],
      eventDelayMs: 150,
    });
    const slow = fake.addDomain({
      memoryMiB: 1024,
      dimms: [{ alias: 'ua-s', sizeMiB: 128 }],
      unplug: 'silent',
    });
    fake.setUnplugBehaviour(slow.uuid, 'silent', { silentDelayMs: 300 });
    const c = await connect();
    const order: string[] = [];
    c.on('deviceRemoved', (e) => order.push(`event:${e.alias}`));

    const slowDetach = c
      .detachDeviceFlags(slow, dimmXml('ua-s'), DomainAffect.LIVE)
      .then(() => order.push('reply:ua-s'));
    await c.detachDeviceFlags(quick, dimmXml('ua-q'), DomainAffect.LIVE);
    order.push('reply:ua-q');
    const lateEvent = nextEvent(c, 'deviceRemoved', (e) => e.alias === 'ua-l');
    await c.detachDeviceFlags(late, dimmXml('ua-l'), DomainAffect.LIVE);
    order.push('reply:ua-l');
    // Calls issued while the slow detach is blocked still complete.
    const xmls = await Promise.all([c.getXMLDesc(quick), c.getXMLDesc(late)]);
    expect(xmls[0]).not.toContain('ua-q');
    const [ev] = await lateEvent;
    expect(ev.domain).toEqual(late);
    await slowDetach;
    expect(order).toEqual(['event:ua-q', 'reply:ua-q', 'reply:ua-l', 'event:ua-l', 'reply:ua-s']);
    expect(fake.getDomainState(slow.uuid)?.liveDimms).toEqual(['ua-s']);
  });

  it('reports a guest rejection as a failed call plus deviceRemovalFailed', async () => {
    const d = fake.addDomain({ memoryMiB: 1024, dimms: [{ alias: 'ua-r', sizeMiB: 256 }], unplug: 'reject' });
    const c = await connect();
    const failed = nextEvent(c, 'deviceRemovalFailed');
    const err = await c
      .detachDeviceFlags(d, dimmXml('ua-r', 256), DomainAffect.LIVE)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect(err).toMatchObject({ code: 9, message: expect.stringContaining('rejected by the guest') });
    const [ev] = await failed;
    expect(ev).toEqual({ domain: d, alias: 'ua-r' });
  });

  it('emits deviceAdded on attach and lifecycle on destroy', async () => {
    const d = fake.addDomain({ memoryMiB: 1024 });
    const c = await connect();
    const added = nextEvent(c, 'deviceAdded');
    await c.attachDeviceFlags(d, dimmXml('ua-new', 512), DomainAffect.LIVE);
    expect((await added)[0].alias).toBe('memua-new'); // as real libvirt 9 reports a DIMM
    expect(await c.getXMLDesc(d)).toContain(`<memory unit='KiB'>${1536 * 1024}</memory>`);
    const stopped = nextEvent(c, 'lifecycle');
    fake.destroyDomain(d.uuid);
    const [ev] = await stopped;
    expect(ev).toMatchObject({ domain: { uuid: d.uuid }, event: LifecycleEvent.STOPPED });
    await expect(c.getXMLDesc(d)).rejects.toMatchObject({ code: 42 });
  });

  it('keeps 1,000 concurrent calls apart across 5,000 domains', async () => {
    const doms: DomainRef[] = [];
    for (let i = 0; i < 5000; i++) doms.push(fake.addDomain({ name: `vm-${i}`, memoryMiB: 512 + (i % 7) }));
    const c = await connect();
    expect(await c.listAllDomains()).toHaveLength(5000);
    const picked = doms.filter((_, i) => i % 5 === 0);
    expect(picked).toHaveLength(1000);
    const xmls = await Promise.all(picked.map((d) => c.getXMLDesc(d)));
    xmls.forEach((xml, i) => {
      expect(xml).toContain(`<name>${picked[i]!.name}</name>`);
    });
    expect(fake.callCount('DOMAIN_GET_XML_DESC')).toBe(1000);
  });

  it('fails pending calls fast on a dropped connection, reconnects, and events flow again', async () => {
    const d = fake.addDomain({ memoryMiB: 1024, dimms: [{ alias: 'ua-x', sizeMiB: 128 }], unplug: 'silent' });
    fake.setUnplugBehaviour(d.uuid, 'silent', { silentDelayMs: 30_000 });
    const c = await connect({ reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
    const disconnected = nextEvent(c, 'disconnected');
    const reconnected = nextEvent(c, 'reconnected');
    const pending = c.detachDeviceFlags(d, dimmXml('ua-x'), DomainAffect.LIVE).catch((e: unknown) => e);
    // Wait until the fake has the call in hand, then cut the line.
    await waitFor(() => fake.callCount('DOMAIN_DETACH_DEVICE_FLAGS') === 1);
    const t0 = performance.now();
    fake.dropConnections();
    const err = await pending;
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(err).toBeInstanceOf(LibvirtConnectionError);
    expect(String(err)).toMatch(/DOMAIN_DETACH_DEVICE_FLAGS failed/);
    expect((await disconnected)[0]).toBeInstanceOf(LibvirtConnectionError);
    await reconnected;
    expect(c.connected).toBe(true);
    // Every event kind registered once per connection (two connections).
    expect(fake.callCount('CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY')).toBe(
      2 * Object.keys(EventIdForKind).length,
    );
    const removed = nextEvent(c, 'deviceRemoved');
    fake.emitDeviceRemoved(d.uuid, 'ua-x');
    expect((await removed)[0]).toEqual({ domain: d, alias: 'ua-x' });
  });

  it('fails calls fast while libvirtd is away and reconnects when it returns', async () => {
    await fake.stop();
    const dir = mkdtempSync(join(tmpdir(), 'lv-restart-'));
    const path = join(dir, 'libvirt-sock');
    fake = await FakeLibvirtd.start({ socketPath: path });
    const c = await connect({ reconnect: { initialDelayMs: 20, maxDelayMs: 100 } });
    const disconnected = nextEvent(c, 'disconnected');
    await fake.stop();
    await disconnected;
    expect(c.connected).toBe(false);
    await expect(c.getHostname()).rejects.toBeInstanceOf(LibvirtConnectionError);
    // libvirtd comes back on the same socket.
    fake = await FakeLibvirtd.start({ socketPath: path });
    await nextEvent(c, 'reconnected');
    expect(await c.getHostname()).toBe('fake-host');
    rmSync(dir, { recursive: true, force: true });
  });

  it('declares a stalled peer dead through keepalive', async () => {
    const d = fake.addDomain({ memoryMiB: 1024 });
    const c = await connect({ keepaliveIntervalMs: 100, keepaliveCount: 3, reconnect: false });
    // Idle but alive: our pings are answered, so several intervals pass without harm.
    await waitFor(() => fake.callCount('KEEPALIVE_PING') >= 3);
    expect(c.connected).toBe(true);
    const disconnected = nextEvent(c, 'disconnected');
    fake.stall(true);
    const t0 = performance.now();
    const err = await c.getXMLDesc(d).catch((e: unknown) => e);
    const elapsed = performance.now() - t0;
    expect(err).toBeInstanceOf(LibvirtConnectionError);
    expect(String(err)).toMatch(/keepalive/);
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(2_000);
    expect(String((await disconnected)[0])).toMatch(/keepalive/);
    expect(c.connected).toBe(false);
  });

  it('times out a call that gets no reply, and the connection stays usable', async () => {
    const d = fake.addDomain({ memoryMiB: 1024, dimms: [{ alias: 'ua-t', sizeMiB: 128 }], unplug: 'silent' });
    fake.setUnplugBehaviour(d.uuid, 'silent', { silentDelayMs: 1_000 });
    const c = await connect({ callTimeoutMs: 200 });
    await expect(c.detachDeviceFlags(d, dimmXml('ua-t'), DomainAffect.LIVE)).rejects.toBeInstanceOf(
      LibvirtTimeoutError,
    );
    expect(await c.getHostname()).toBe('fake-host');
  });

  // libvirtd 9.0 segfaults when a client leaves while a worker thread is
  // finishing one of its calls (docs/design.md, "libvirtd's close race").
  describe('close() and the calls libvirtd is still working on', () => {
    /** Every packet the client wrote before it read the PING is on the fake's record once 'pong' is. */
    async function roundTrip(wire: string[]): Promise<void> {
      const pongs = wire.filter((w) => w === 'pong').length;
      fake.ping();
      await waitFor(() => wire.filter((w) => w === 'pong').length > pongs);
    }

    it('says goodbye only after libvirtd has answered them', async () => {
      const c = await connect();
      const wire = fake.recordWire();
      const release = fake.holdReplies(['CONNECT_GET_HOSTNAME']);
      const hostname = c.getHostname();
      const closed = c.close();
      await roundTrip(wire);
      expect(wire).not.toContain('call CONNECT_CLOSE');
      release();
      await closed;
      expect(await hostname).toBe('fake-host');
      await waitFor(() => wire.includes('eof'));
      expect(wire.filter((w) => w !== 'pong')).toEqual([
        'call CONNECT_GET_HOSTNAME',
        'reply CONNECT_GET_HOSTNAME',
        'call CONNECT_CLOSE',
        'reply CONNECT_CLOSE',
        'eof',
      ]);
    });

    it('waits for a call its caller gave up on, which libvirtd is still running', async () => {
      const conn = await LibvirtConnection.open({ socketPath: fake.socketPath });
      const wire = fake.recordWire();
      const release = fake.holdReplies(['CONNECT_GET_HOSTNAME']);
      const call = conn.call(Proc.CONNECT_GET_HOSTNAME, undefined, (r) => r.readString(), { timeoutMs: 1 });
      await expect(call).rejects.toBeInstanceOf(LibvirtTimeoutError);
      let drained: boolean | undefined;
      const draining = conn.drain(60_000).then((v) => {
        drained = v;
      });
      await roundTrip(wire);
      expect(drained).toBeUndefined();
      release();
      await draining;
      expect(drained).toBe(true);
      conn.close();
    });

    it('closes anyway when libvirtd does not answer within the drain deadline', async () => {
      const c = await connect({ closeDrainMs: 50, reconnect: false });
      const wire = fake.recordWire();
      fake.holdReplies(['CONNECT_GET_HOSTNAME']);
      const hostname = c.getHostname().catch((e: unknown) => e);
      await c.close();
      expect(await hostname).toBeInstanceOf(LibvirtConnectionError);
      await waitFor(() => wire.includes('eof'));
      expect(wire).toEqual(['call CONNECT_GET_HOSTNAME', 'call CONNECT_CLOSE', 'reply CONNECT_CLOSE', 'eof']);
    });
  });

  const malformed: MalformedKind[] = [
    'length-too-small',
    'truncated-event',
    'bad-type',
    'bad-program',
    'garbage',
  ];
  for (const kind of malformed) {
    it(`closes the connection with a clear error on a malformed packet (${kind}) and recovers`, async () => {
      const d = fake.addDomain({
        memoryMiB: 1024,
        dimms: [{ alias: 'ua-m', sizeMiB: 128 }],
        unplug: 'silent',
      });
      fake.setUnplugBehaviour(d.uuid, 'silent', { silentDelayMs: 30_000 });
      const c = await connect({ reconnect: { initialDelayMs: 20, maxDelayMs: 100 } });
      const disconnected = nextEvent(c, 'disconnected');
      const pending = c.detachDeviceFlags(d, dimmXml('ua-m'), DomainAffect.LIVE).catch((e: unknown) => e);
      await waitFor(() => fake.callCount('DOMAIN_DETACH_DEVICE_FLAGS') === 1);
      fake.sendMalformed(kind);
      const [why] = await disconnected;
      expect(why).toBeInstanceOf(LibvirtProtocolError);
      const err = await pending;
      expect(err).toBeInstanceOf(LibvirtConnectionError);
      expect((err as Error).cause).toBe(why);
      await nextEvent(c, 'reconnected');
      expect(await c.getHostname()).toBe('fake-host');
    });
  }

  it('rejects an oversized packet without buffering it', async () => {
    const c = await connect({ reconnect: false, maxPacketBytes: 1024 * 1024 });
    const disconnected = nextEvent(c, 'disconnected');
    fake.sendOversized();
    const [why] = await disconnected;
    expect(why).toBeInstanceOf(LibvirtProtocolError);
    expect(why.message).toMatch(/exceeds the limit of 1048576 bytes/);
    await expect(c.getHostname()).rejects.toBeInstanceOf(LibvirtConnectionError);
  });

  it('rejects a call whose reply body is truncated', async () => {
    const d = fake.addDomain({ memoryMiB: 1024 });
    const c = await connect({ reconnect: false });
    fake.corruptNextReply();
    await expect(c.getXMLDesc(d)).rejects.toBeInstanceOf(LibvirtProtocolError);
    expect(c.connected).toBe(false);
  });
});

async function waitFor(cond: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
