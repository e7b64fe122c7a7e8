// Parses libvirt domain XML (live or inactive) into the few facts we use.

import { findOurElement, metadataFromElement, type VmMetadata } from './metadata.js';
import { ATTR, asArray, attr, child, isObj, makeReader, text, toKiB } from './xml-common.js';

export interface ParsedDimm {
  /** null for an inactive definition without aliases. */
  alias: string | null;
  sizeKiB: number;
  /** MiB, floored. */
  size: number;
  node: number;
  slot: number | null;
  base: string | null;
}

/** A virtio-mem device (model='virtio-mem'): resized by changing `requested`, in `block` steps. */
export interface ParsedVirtioMem {
  /** null for an inactive definition without aliases. */
  alias: string | null;
  node: number;
  /** Maximum size. */
  sizeKiB: number;
  blockKiB: number;
  requestedKiB: number;
  /** What the guest has plugged (live XML only; an inactive definition: requested). */
  currentKiB: number;
  /** MiB, floored: size, block, requested, current. */
  size: number;
  block: number;
  requested: number;
  current: number;
  /** The device's `<address>` attributes (PCI), as libvirt gave them; null when absent. */
  address: Readonly<Record<string, string>> | null;
}

export interface NumaCell {
  id: number;
  memoryKiB: number;
}

export interface ParsedDomain {
  name: string;
  uuid: string;
  /**
   * libvirt's <memory>: initial memory plus memory devices, counting a
   * virtio-mem device at its maximum size (what <maxMemory> limits).
   */
  memoryKiB: number;
  /**
   * The guest's memory, MiB, floored: initial memory + DIMMs + each virtio-mem
   * device's current size (not its maximum).
   */
  memory: number;
  currentMemoryKiB: number | null;
  maxMemoryKiB: number | null;
  /** Memory device slots (<maxMemory slots>), 0 when hot plug is impossible. */
  slots: number;
  numaCells: NumaCell[];
  /** model='dimm' devices only; other memory device models are never unplugged by us. */
  dimms: ParsedDimm[];
  virtioMem: ParsedVirtioMem[];
  /** A <memballoon> whose model is not 'none'. */
  balloonActive: boolean;
  /**
   * The domain has the QEMU guest agent's channel (`org.qemu.guest_agent.0`).
   * Without it libvirt refuses every agent command, so nobody asks.
   */
  guestAgent: boolean;
  /** Our namespace's metadata, null when absent. */
  metadata: VmMetadata | null;
}

const reader = makeReader([
  'domain.devices.memory',
  'domain.devices.memballoon',
  'domain.devices.channel',
  'domain.cpu.numa.cell',
]);

const AGENT_CHANNEL = 'org.qemu.guest_agent.0';

function int(v: string | undefined, what: string): number {
  if (v === undefined || !/^\s*\d+\s*$/.test(v)) throw new Error(`domain XML: bad or missing ${what}`);
  return Number(v);
}

export function kibToMiB(kib: number): number {
  return Math.floor(kib / 1024);
}

function sizeOf(el: unknown, what: string): number {
  const t = text(el);
  if (t === undefined) throw new Error(`domain XML: missing ${what}`);
  return toKiB(t, attr(el, 'unit'));
}

export function parseDomainXml(xml: string): ParsedDomain {
  const doc = reader.parse(xml);
  const dom = child(doc, 'domain');
  if (!isObj(dom)) throw new Error('domain XML: no <domain> element');
  const name = text(dom.name);
  const uuid = text(dom.uuid);
  if (!name || !uuid) throw new Error('domain XML: missing <name> or <uuid>');

  const memoryKiB = sizeOf(dom.memory, '<memory>');
  const currentMemoryKiB =
    dom.currentMemory === undefined ? null : sizeOf(dom.currentMemory, '<currentMemory>');
  const maxMemoryKiB = dom.maxMemory === undefined ? null : sizeOf(dom.maxMemory, '<maxMemory>');
  const slotsAttr = attr(dom.maxMemory, 'slots');
  const slots = slotsAttr === undefined ? 0 : int(slotsAttr, 'maxMemory slots');

  const numaCells: NumaCell[] = [];
  for (const c of asArray(child(child(dom.cpu, 'numa'), 'cell'))) {
    const mem = attr(c, 'memory');
    numaCells.push({
      id: int(attr(c, 'id') ?? String(numaCells.length), 'cell id'),
      memoryKiB: mem === undefined ? 0 : toKiB(mem, attr(c, 'unit')),
    });
  }

  const dimms: ParsedDimm[] = [];
  const virtioMem: ParsedVirtioMem[] = [];
  for (const m of asArray(child(dom.devices, 'memory'))) {
    if (attr(m, 'model') === 'virtio-mem') {
      virtioMem.push(parseVirtioMem(m));
      continue;
    }
    if (attr(m, 'model') !== 'dimm') continue;
    const target = child(m, 'target');
    const sizeKiB = sizeOf(child(target, 'size'), 'dimm target size');
    const address = child(m, 'address');
    const slot = attr(address, 'slot');
    dimms.push({
      alias: attr(child(m, 'alias'), 'name') ?? null,
      sizeKiB,
      size: kibToMiB(sizeKiB),
      node: int(text(child(target, 'node')) ?? '0', 'dimm target node'),
      slot: slot === undefined ? null : int(slot, 'dimm slot'),
      base: attr(address, 'base') ?? null,
    });
  }

  const actualKiB = guestKiB(memoryKiB, virtioMem);

  const balloonActive = asArray(child(dom.devices, 'memballoon')).some((b) => attr(b, 'model') !== 'none');
  const ours = findOurElement(dom.metadata);
  const guestAgent = asArray(child(dom.devices, 'channel')).some(
    (c) => attr(child(c, 'target'), 'name') === AGENT_CHANNEL,
  );

  return {
    name,
    uuid: uuid.toLowerCase(),
    memoryKiB,
    memory: kibToMiB(actualKiB),
    currentMemoryKiB,
    maxMemoryKiB,
    slots,
    numaCells,
    dimms,
    virtioMem,
    balloonActive,
    guestAgent,
    metadata: ours === undefined ? null : metadataFromElement(ours),
  };
}

/** The guest's memory: libvirt counts a virtio-mem device's maximum in <memory>, the guest has only its current size. */
function guestKiB(memoryKiB: number, virtioMem: readonly ParsedVirtioMem[]): number {
  return Math.max(
    0,
    virtioMem.reduce((kib, v) => kib - v.sizeKiB + v.currentKiB, memoryKiB),
  );
}

/**
 * The domain as libvirt has it once a DIMM left: libvirt's device-removed
 * event comes after it took the device out of the live definition and
 * lowered <memory> by its size (qemuDomainRemoveMemoryDevice), so the
 * re-read would show exactly this. Unknown alias: the same domain.
 */
export function withoutDimm(dom: ParsedDomain, alias: string): ParsedDomain {
  const gone = dom.dimms.find((d) => d.alias === alias);
  if (!gone) return dom;
  const memoryKiB = dom.memoryKiB - gone.sizeKiB;
  return {
    ...dom,
    memoryKiB,
    memory: kibToMiB(guestKiB(memoryKiB, dom.virtioMem)),
    dimms: dom.dimms.filter((d) => d !== gone),
  };
}

function parseVirtioMem(m: unknown): ParsedVirtioMem {
  const target = child(m, 'target');
  const sizeKiB = sizeOf(child(target, 'size'), 'virtio-mem target size');
  const blockKiB = sizeOf(child(target, 'block'), 'virtio-mem target block');
  const req = child(target, 'requested');
  const requestedKiB = req === undefined ? 0 : sizeOf(req, 'virtio-mem target requested');
  const cur = child(target, 'current');
  const currentKiB = cur === undefined ? requestedKiB : sizeOf(cur, 'virtio-mem target current');
  const address = child(m, 'address');
  let addr: Record<string, string> | null = null;
  if (isObj(address)) {
    addr = {};
    for (const [k, v] of Object.entries(address)) {
      if (k.startsWith(ATTR) && typeof v === 'string') addr[k.slice(ATTR.length)] = v;
    }
  }
  return {
    alias: attr(child(m, 'alias'), 'name') ?? null,
    node: int(text(child(target, 'node')) ?? '0', 'virtio-mem target node'),
    sizeKiB,
    blockKiB,
    requestedKiB,
    currentKiB,
    size: kibToMiB(sizeKiB),
    block: kibToMiB(blockKiB),
    requested: kibToMiB(requestedKiB),
    current: kibToMiB(currentKiB),
    address: addr,
  };
}
