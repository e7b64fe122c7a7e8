// The codec against packets captured from the real libvirtd 9.0 of the test
// host (test/host/capture-golden-packets.ts), not against our own encoder:
// a call our client sent and libvirtd accepted, a reply, two error replies,
// and one packet of each event kind we handle.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  bodyReader,
  encodePacket,
  MessageStatus,
  MessageType,
  type Packet,
  PacketParser,
} from '../../src/libvirt/packet.js';
import {
  Proc,
  REMOTE_PROGRAM,
  readDomain,
  readDomainEvent,
  readRemoteError,
  writeDomain,
} from '../../src/libvirt/protocol.js';

interface Golden {
  capturedWith: string;
  coop: { name: string; uuid: string };
  rejecting: { name: string; uuid: string };
  packets: Record<string, { hex: string }>;
}

const golden = JSON.parse(
  readFileSync(new URL('../fixtures/libvirt/golden-packets.json', import.meta.url), 'utf8'),
) as Golden;

function bytes(name: string): Buffer {
  const p = golden.packets[name];
  if (!p) throw new Error(`no golden packet ${name}`);
  return Buffer.from(p.hex, 'hex');
}

function packet(name: string): Packet {
  const got = new PacketParser().push(bytes(name));
  expect(got).toHaveLength(1);
  return got[0]!;
}

describe(`golden packets (${golden.capturedWith})`, () => {
  it('frames every packet, also fed one byte at a time', () => {
    const stream = Buffer.concat(Object.keys(golden.packets).map(bytes));
    const parser = new PacketParser();
    const out: Packet[] = [];
    for (let i = 0; i < stream.length; i++) out.push(...parser.push(stream.subarray(i, i + 1)));
    expect(out).toHaveLength(Object.keys(golden.packets).length);
    expect(out.every((p) => p.header.prog === REMOTE_PROGRAM && p.header.vers === 1)).toBe(true);
    expect(parser.pendingBytes).toBe(0);
  });

  it('encodes a no-argument call byte for byte as libvirtd accepted it', () => {
    const p = packet('getLibVersionCall');
    expect(p.header).toMatchObject({ proc: Proc.CONNECT_GET_LIB_VERSION, type: MessageType.CALL });
    const ours = encodePacket({ ...p.header });
    expect(ours.equals(bytes('getLibVersionCall'))).toBe(true);
  });

  it('encodes an attach call (domain, XML string with padding, flags) byte for byte', () => {
    const p = packet('attachCall');
    const r = bodyReader(p);
    const dom = readDomain(r);
    const xml = r.readString();
    const flags = r.readUint();
    r.expectEnd('attach args');
    expect(dom.uuid).toBe(golden.coop.uuid);
    expect(xml).toContain("<alias name='ua-golden0'/>");
    const ours = encodePacket({ ...p.header }, (w) => {
      writeDomain(w, dom);
      w.writeString(xml);
      w.writeUint(flags);
    });
    expect(ours.equals(bytes('attachCall'))).toBe(true);
  });

  it("decodes a reply's return value", () => {
    const p = packet('getLibVersionReply');
    expect(p.header).toMatchObject({ type: MessageType.REPLY, status: MessageStatus.OK });
    const r = bodyReader(p);
    const version = r.readUhyperNumber();
    r.expectEnd('reply');
    expect(version).toBeGreaterThanOrEqual(9_000_000);
  });

  it('decodes an error reply: no domain (code 42, domain qemu 10) with all its fields', () => {
    const p = packet('lookupErrorReply');
    expect(p.header).toMatchObject({ proc: Proc.DOMAIN_LOOKUP_BY_UUID, status: MessageStatus.ERROR });
    const r = bodyReader(p);
    const e = readRemoteError(r);
    r.expectEnd('error');
    expect(e).toMatchObject({ code: 42, domain: 10, level: 2, dom: null, str3: null, int1: -1, int2: -1 });
    expect(e.message).toMatch(/^Domain not found: no domain with matching uuid '00000000-/);
    expect(e.str1).toBe('Domain not found: %s');
  });

  it("decodes the guest's rejection of a detach (code 9 operation failed)", () => {
    const p = packet('detachRejectedReply');
    expect(p.header).toMatchObject({ proc: Proc.DOMAIN_DETACH_DEVICE_FLAGS, status: MessageStatus.ERROR });
    const r = bodyReader(p);
    const e = readRemoteError(r);
    r.expectEnd('error');
    expect(e).toMatchObject({
      code: 9,
      domain: 10,
      message: 'operation failed: unplug of device was rejected by the guest',
      str2: 'unplug of device was rejected by the guest',
    });
  });

  it.each([
    ['deviceAddedEvent', 'deviceAdded', 'coop', 'memua-golden0'],
    ['deviceRemovedEvent', 'deviceRemoved', 'coop', 'ua-golden0'],
    ['deviceRemovalFailedEvent', 'deviceRemovalFailed', 'rejecting', 'ua-golden1'],
  ] as const)('decodes %s', (name, kind, guest, alias) => {
    const p = packet(name);
    expect(p.header.type).toBe(MessageType.MESSAGE);
    const r = bodyReader(p);
    const ev = readDomainEvent(p.header.proc, r);
    r.expectEnd('event');
    expect(ev).toMatchObject({ kind, alias, domain: { name: golden[guest].name, uuid: golden[guest].uuid } });
    expect(ev?.domain.id).toBeGreaterThan(0);
  });

  it('decodes a lifecycle event: stopped, destroyed', () => {
    const p = packet('lifecycleEvent');
    const r = bodyReader(p);
    const ev = readDomainEvent(p.header.proc, r);
    r.expectEnd('event');
    // VIR_DOMAIN_EVENT_STOPPED (5), VIR_DOMAIN_EVENT_STOPPED_DESTROYED (1); a stopped domain has id -1.
    expect(ev).toMatchObject({
      kind: 'lifecycle',
      event: 5,
      detail: 1,
      domain: { uuid: golden.coop.uuid, id: -1 },
    });
  });
});
