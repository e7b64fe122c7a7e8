// Parses libvirt domain XML (live or inactive) into the few facts we use.

import { findOurElement, metadataFromElement, type VmMetadata } from './metadata.js';
import { asArray, attr, child, isObj, makeReader, text, toKiB } from './xml-common.js';

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

export interface NumaCell {
  id: number;
  memoryKiB: number;
}

export interface ParsedDomain {
  name: string;
  uuid: string;
  /** Total memory (<memory>): initial memory plus memory devices. */
  memoryKiB: number;
  /** MiB, floored. */
  memory: number;
  currentMemoryKiB: number | null;
  maxMemoryKiB: number | null;
  /** Memory device slots (<maxMemory slots>), 0 when hot plug is impossible. */
  slots: number;
  numaCells: NumaCell[];
  /** model='dimm' devices only; other memory device models are never unplugged by us. */
  dimms: ParsedDimm[];
  /** A <memballoon> whose model is not 'none'. */
  balloonActive: boolean;
  /** Our namespace's metadata, null when absent. */
  metadata: VmMetadata | null;
}

const reader = makeReader(['domain.devices.memory', 'domain.devices.memballoon', 'domain.cpu.numa.cell']);

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
  for (const m of asArray(child(dom.devices, 'memory'))) {
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

  const balloonActive = asArray(child(dom.devices, 'memballoon')).some((b) => attr(b, 'model') !== 'none');
  const ours = findOurElement(dom.metadata);

  return {
    name,
    uuid: uuid.toLowerCase(),
    memoryKiB,
    memory: kibToMiB(memoryKiB),
    currentMemoryKiB,
    maxMemoryKiB,
    slots,
    numaCells,
    dimms,
    balloonActive,
    metadata: ours === undefined ? null : metadataFromElement(ours),
  };
}
