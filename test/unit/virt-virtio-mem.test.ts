import { XMLParser } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import { readDomainEvent, writeDomainEvent } from '../../src/libvirt/protocol.js';
import { XdrReader, XdrWriter } from '../../src/libvirt/xdr.js';
import { VirtError } from '../../src/virt/errors.js';
import {
  checkRequested,
  type LiveVirtioMem,
  pciAddress,
  resizeXml,
  virtioMemStats,
} from '../../src/virt/virtio-mem.js';

const dev = (over: Partial<LiveVirtioMem> = {}): LiveVirtioMem => ({
  alias: 'ua-vmem0',
  node: 0,
  sizeKiB: 1024 * 1024,
  blockKiB: 2048,
  requestedKiB: 128 * 1024,
  currentKiB: 128 * 1024,
  size: 1024,
  block: 2,
  requested: 128,
  current: 128,
  address: { type: 'pci', domain: '0x0000', bus: '0x00', slot: '0x02', function: '0x0' },
  ...over,
});

function rule(fn: () => void): unknown {
  try {
    fn();
  } catch (e) {
    return e instanceof VirtError ? e.details : e;
  }
  return 'no error';
}

describe('virtio-mem requested-size rules', () => {
  it('accepts block multiples from 0 to the maximum', () => {
    for (const n of [0, 2, 130, 512, 1024])
      expect(rule(() => checkRequested(dev(), n, 'requested'))).toBe('no error');
  });

  it('names the field and the rule it broke', () => {
    expect(rule(() => checkRequested(dev(), 3, 'requested'))).toEqual({
      field: 'requested',
      rule: 'multipleOf',
    });
    expect(rule(() => checkRequested(dev(), 1026, 'requested'))).toEqual({
      field: 'requested',
      rule: 'maximum',
    });
    expect(rule(() => checkRequested(dev(), -2, 'requested'))).toEqual({
      field: 'requested',
      rule: 'minimum',
    });
    expect(rule(() => checkRequested(dev(), 1.5, 'requested'))).toEqual({
      field: 'requested',
      rule: 'integer',
    });
    expect(rule(() => checkRequested(dev({ blockKiB: 4096, block: 4 }), 6, 'memory'))).toEqual({
      field: 'memory',
      rule: 'multipleOf',
    });
  });
});

describe('virtio-mem device XML and stats', () => {
  const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@' });

  it('sends every field libvirt matches on (alias and PCI address) with the new requested size', () => {
    const doc = parser.parse(resizeXml(dev(), 512));
    expect(doc.memory['@model']).toBe('virtio-mem');
    expect(doc.memory.target.requested).toEqual({ '#text': 524288, '@unit': 'KiB' });
    expect(doc.memory.target.size).toEqual({ '#text': 1048576, '@unit': 'KiB' });
    expect(doc.memory.target.block).toEqual({ '#text': 2048, '@unit': 'KiB' });
    expect(doc.memory.alias['@name']).toBe('ua-vmem0');
    expect(doc.memory.address).toEqual({
      '@type': 'pci',
      '@domain': '0x0000',
      '@bus': '0x00',
      '@slot': '0x02',
      '@function': '0x0',
    });
  });

  it('never lets a stray alias or address value shape the XML', () => {
    expect(() => resizeXml(dev({ alias: "ua-x'/><evil/>" }), 2)).toThrow(RangeError);
    expect(() => resizeXml(dev({ address: { type: 'pci', slot: "0x2'/><evil" } }), 2)).toThrow(RangeError);
    expect(() => resizeXml(dev({ address: null }), 2)).toThrow(/no PCI address/);
  });

  it('formats the PCI address; the stats carry the phase they are given', () => {
    expect(pciAddress(dev().address)).toBe('0000:00:02.0');
    expect(pciAddress(null)).toBe('');
    expect(virtioMemStats(dev(), 'plugged')).toEqual({
      model: 'virtio-mem',
      alias: 'ua-vmem0',
      size: 1024,
      node: 0,
      slot: -1,
      base: '',
      state: 'plugged',
      requested: 128,
      current: 128,
      block: 2,
      address: '0000:00:02.0',
    });
    expect(virtioMemStats(dev({ currentKiB: 64 * 1024, current: 64 }), 'resizing').state).toBe('resizing');
  });
});

describe('memory-device size-change event codec', () => {
  it('round-trips {callbackID, dom, alias, size (unsigned hyper, KiB)}', () => {
    const w = new XdrWriter();
    const ev = {
      kind: 'memoryDeviceSizeChange' as const,
      callbackId: 7,
      domain: { name: 'vm', uuid: '6f1c8a52-7c1e-4a8e-9b0e-2f0d8b9b1a11', id: 3 },
      alias: 'ua-vmem0',
      sizeKiB: 5 * 1024 * 1024 * 1024, // 5 TiB: above 2^32
    };
    expect(writeDomainEvent(w, ev)).toBe(438);
    const r = new XdrReader(w.finish());
    expect(readDomainEvent(438, r)).toEqual(ev);
    r.expectEnd();
  });
});
