// Captures golden libvirt RPC packets from the real libvirtd of the test host
// into test/fixtures/libvirt/golden-packets.json, for the codec's unit tests
// (test/unit/libvirt-golden.test.ts): the codec must decode what a real
// libvirtd sends, not only what our own fake encodes.
//
// Run as root on the test host (libvirtd up, guest built):
//   npx tsx test/host/capture-golden-packets.ts
// It puts a recording unix-socket proxy between our client and libvirtd, boots
// a cooperative and a rejecting guest, and drives: a plain call and its reply,
// an error reply (lookup of an unknown UUID), a DIMM attach (device-added), a
// detach the guest completes (device-removed), a detach the guest rejects
// (error reply + device-removal-failed), and a destroy (lifecycle).

import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LibvirtClient, MONOLITHIC_SOCKET_PATH } from '../../src/libvirt/client.js';
import { type Packet, PacketParser } from '../../src/libvirt/packet.js';
import { ProcName } from '../../src/libvirt/protocol.js';
import { DomainAffect } from '../../src/libvirt/types.js';
import { destroyAllGuests, startGuest } from '../helpers/guest.js';
import { dimmXml } from './domain-xml.js';

const OUT = resolve(dirname(fileURLToPath(import.meta.url)), '../fixtures/libvirt/golden-packets.json');
const UPSTREAM = process.env.VMHOST_LIBVIRT_SOCKET ?? MONOLITHIC_SOCKET_PATH;

interface Recorded {
  dir: 'call' | 'answer';
  proc: string;
  type: number;
  status: number;
  hex: string;
}

const recorded: Recorded[] = [];

function tee(dir: Recorded['dir'], from: Socket, to: Socket): void {
  const parser = new PacketParser();
  from.on('data', (chunk: Buffer) => {
    to.write(chunk);
    for (const p of parser.push(chunk)) record(dir, p);
  });
  from.on('close', () => to.destroy());
}

function record(dir: Recorded['dir'], p: Packet): void {
  recorded.push({
    dir,
    proc: ProcName[p.header.proc] ?? `proc-${p.header.proc}`,
    type: p.header.type,
    status: p.header.status,
    hex: Buffer.from(p.data).toString('hex'),
  });
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'vmhost-golden-'));
  const proxyPath = join(dir, 'libvirt-sock');
  const proxy = createServer((down) => {
    const up = createConnection(UPSTREAM);
    tee('call', down, up);
    tee('answer', up, down);
  });
  proxy.listen(proxyPath);
  await once(proxy, 'listening');

  const coop = await startGuest({ kind: 'cooperative', namePrefix: 'golden' });
  const rej = await startGuest({ kind: 'rejecting', namePrefix: 'golden' });
  const client = await LibvirtClient.connect({ socketPath: proxyPath });
  const event = (name: 'deviceAdded' | 'deviceRemoved' | 'deviceRemovalFailed' | 'lifecycle') =>
    new Promise<void>((r) => client.once(name, () => r()));
  try {
    await client.getLibVersion();
    await client.lookupByUUID('00000000-0000-4000-8000-000000000000').catch(() => undefined);
    const dom = await client.lookupByUUID(coop.uuid);
    const added = event('deviceAdded');
    await client.attachDeviceFlags(dom, dimmXml(128, 'ua-golden0'), DomainAffect.LIVE);
    await added;
    await coop.waitForMemTotal((kib) => kib > 0);
    const removed = event('deviceRemoved');
    await client.detachDeviceFlags(dom, dimmXml(128, 'ua-golden0'), DomainAffect.LIVE);
    await removed;

    const rdom = await client.lookupByUUID(rej.uuid);
    await client.attachDeviceFlags(rdom, dimmXml(128, 'ua-golden1'), DomainAffect.LIVE);
    await rej.waitForConsole(/PINNED/, 60_000);
    const failed = event('deviceRemovalFailed');
    await client
      .detachDeviceFlags(rdom, dimmXml(128, 'ua-golden1'), DomainAffect.LIVE)
      .catch(() => undefined);
    await failed;

    const stopped = event('lifecycle');
    await client.destroy(dom);
    await stopped;
  } finally {
    await client.close();
    await destroyAllGuests();
    proxy.close();
    await rm(dir, { recursive: true, force: true });
  }

  // One packet of each kind the unit test needs, the first seen.
  const pick = (dir: Recorded['dir'], proc: string, status = 0): Recorded => {
    const p = recorded.find((r) => r.dir === dir && r.proc === proc && r.status === status);
    if (!p) throw new Error(`no ${dir} ${proc} status ${status} captured`);
    return p;
  };
  const golden = {
    capturedWith: `libvirtd ${await libvirtdVersion()}`,
    coop: { name: coop.name, uuid: coop.uuid },
    rejecting: { name: rej.name, uuid: rej.uuid },
    packets: {
      getLibVersionCall: pick('call', 'CONNECT_GET_LIB_VERSION'),
      getLibVersionReply: pick('answer', 'CONNECT_GET_LIB_VERSION'),
      lookupErrorReply: pick('answer', 'DOMAIN_LOOKUP_BY_UUID', 1),
      attachCall: pick('call', 'DOMAIN_ATTACH_DEVICE_FLAGS'),
      detachRejectedReply: pick('answer', 'DOMAIN_DETACH_DEVICE_FLAGS', 1),
      deviceAddedEvent: pick('answer', 'DOMAIN_EVENT_CALLBACK_DEVICE_ADDED'),
      deviceRemovedEvent: pick('answer', 'DOMAIN_EVENT_CALLBACK_DEVICE_REMOVED'),
      deviceRemovalFailedEvent: pick('answer', 'DOMAIN_EVENT_CALLBACK_DEVICE_REMOVAL_FAILED'),
      lifecycleEvent: recorded
        .filter((r) => r.dir === 'answer' && r.proc === 'DOMAIN_EVENT_CALLBACK_LIFECYCLE')
        .at(-1),
    },
  };
  await writeFile(OUT, `${JSON.stringify(golden, null, 2)}\n`);
  console.log(`wrote ${Object.keys(golden.packets).length} golden packets to ${OUT}`);
}

async function libvirtdVersion(): Promise<string> {
  const client = await LibvirtClient.connect({ socketPath: UPSTREAM });
  try {
    const v = await client.getLibVersion();
    return `${Math.floor(v / 1_000_000)}.${Math.floor(v / 1000) % 1000}.${v % 1000}`;
  } finally {
    await client.close();
  }
}

main().catch(async (err: unknown) => {
  console.error(err);
  await destroyAllGuests();
  process.exit(1);
});
