import { XMLParser } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import { sampleGuestSpec } from '../helpers/sample-data.js';
import { dimmXml, domainXml, type GuestDomainSpec, guestCmdline } from '../host/domain-xml.js';

const spec: GuestDomainSpec = sampleGuestSpec;

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@' });
/** Walks parsed XML: at(tree, 'devices', 'serial', 'source', '@path'). */
function at(tree: unknown, ...keys: (string | number)[]): unknown {
  return keys.reduce<unknown>(
    (node, key) =>
      typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[key] : undefined,
    tree,
  );
}
const parse = (xml: string): unknown => at(parser.parse(xml), 'domain');

describe('test-guest domain XML', () => {
  it('is a TCG domain with hotplug prerequisites and no needless devices', () => {
    const d = parse(domainXml(spec));
    expect(at(d, '@type')).toBe('qemu');
    expect(at(d, 'maxMemory')).toMatchObject({ '@slots': '16', '@unit': 'MiB', '#text': 8192 });
    expect(at(d, 'memory', '#text')).toBe(512);
    expect(at(d, 'cpu', 'model', '#text')).toBe('qemu64');
    expect(at(d, 'cpu', 'numa', 'cell')).toMatchObject({ '@id': '0', '@memory': '512' });
    expect(at(d, 'features')).toHaveProperty('acpi');
    expect(at(d, 'devices', 'memballoon', '@model')).toBe('none');
    expect(at(d, 'devices', 'controller')).toMatchObject({ '@type': 'usb', '@model': 'none' });
    expect(at(d, 'devices', 'serial', 'source', '@path')).toBe(spec.consolePath);
    for (const absent of ['disk', 'interface', 'graphics', 'video', 'memory']) {
      expect(at(d, 'devices')).not.toHaveProperty(absent);
    }
  });

  it('counts boot DIMMs in <memory> but not in the NUMA cell', () => {
    const d = parse(domainXml({ ...spec, bootDimmsMiB: [128, 256] }));
    expect(at(d, 'memory', '#text')).toBe(512 + 384);
    expect(at(d, 'cpu', 'numa', 'cell', '@memory')).toBe('512');
    const dimms = at(d, 'devices', 'memory');
    expect(dimms).toHaveLength(2);
    for (const [i, size] of [128, 256].entries()) {
      expect(at(dimms, i, '@model')).toBe('dimm');
      expect(at(dimms, i, 'target', 'size', '#text')).toBe(size);
      expect(at(dimms, i, 'target', 'node')).toBe(0);
    }
  });

  it('escapes every interpolated string', () => {
    const xml = domainXml({ ...spec, name: `a<b>&'"`, consolePath: `/tmp/x'y&z.log` });
    expect(at(parse(xml), 'name')).toBe(`a<b>&'"`);
    expect(xml).not.toContain(`a<b>`);
    expect(xml).toContain(`<source path='/tmp/x&apos;y&amp;z.log'/>`);
  });

  it('rejects impossible sizes', () => {
    expect(() => domainXml({ ...spec, memoryMiB: 0 })).toThrow(/memoryMiB/);
    expect(() => domainXml({ ...spec, memoryMiB: 1.5 })).toThrow(/memoryMiB/);
    expect(() => domainXml({ ...spec, bootDimmsMiB: [8192] })).toThrow(/exceeds maxMemory/);
    expect(() => domainXml({ ...spec, slots: 1, bootDimmsMiB: [128, 128] })).toThrow(/slots/);
    expect(() => dimmXml(-128)).toThrow(/DIMM size/);
  });

  it('gives each kind the kernel command line that makes it behave so', () => {
    expect(guestCmdline('cooperative')).toMatch(/\bmemhp_default_state=online_movable\b/);
    expect(guestCmdline('rejecting')).toMatch(/\bmemhp_default_state=online_kernel\b/);
    expect(guestCmdline('silent')).toMatch(/\bacpi=off\b/);
    for (const kind of ['cooperative', 'rejecting', 'silent'] as const) {
      expect(guestCmdline(kind)).toMatch(/^console=ttyS0 /);
      expect(guestCmdline(kind)).toContain(`vmhost.kind=${kind}`);
    }
  });

  it('builds a DIMM device for node 0 with an optional escaped alias', () => {
    const m = at(parser.parse(dimmXml(256, "ua-x'1")), 'memory');
    expect(at(m, '@model')).toBe('dimm');
    expect(at(m, 'target', 'size')).toMatchObject({ '@unit': 'MiB', '#text': 256 });
    expect(at(m, 'target', 'node')).toBe(0);
    expect(at(m, 'alias', '@name')).toBe("ua-x'1");
  });

  it('adds virtio-mem devices for the virtio-mem kinds and counts their maximum against maxMemory', () => {
    const xml = domainXml({
      ...spec,
      kind: 'virtio-mem',
      memoryMiB: 256,
      maxMemoryMiB: 2048,
      virtioMem: [{ alias: 'ua-vmem0', sizeMiB: 1024, requestedMiB: 0 }],
    });
    const mem = at(parse(xml), 'devices', 'memory');
    expect(at(mem, '@model')).toBe('virtio-mem');
    expect(at(mem, 'target', 'block')).toEqual({ '#text': 2, '@unit': 'MiB' });
    expect(at(mem, 'target', 'requested')).toEqual({ '#text': 0, '@unit': 'MiB' });
    expect(at(mem, 'alias', '@name')).toBe('ua-vmem0');
    expect(guestCmdline('virtio-mem')).toContain('memhp_default_state=online_movable');
    expect(guestCmdline('virtio-mem-rejecting')).toContain('memhp_default_state=online_kernel');
    expect(() =>
      domainXml({
        ...spec,
        memoryMiB: 1024,
        maxMemoryMiB: 2048,
        virtioMem: [{ alias: 'ua-v', sizeMiB: 2048, requestedMiB: 0 }],
      }),
    ).toThrow(/exceeds maxMemory/);
  });
});
