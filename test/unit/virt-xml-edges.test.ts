// Edges of the DIMM builder, the domain parser, the planner and the packet
// framer that mutation testing (npm run mutate) found unguarded.
import { describe, expect, it } from 'vitest';
import { LibvirtProtocolError } from '../../src/libvirt/errors.js';
import { DEFAULT_MAX_PACKET_BYTES, encodePacket, PacketParser } from '../../src/libvirt/packet.js';
import {
  buildAttachDimmXml,
  buildDetachDimmXml,
  isUserAlias,
  isValidDimmAlias,
} from '../../src/virt/dimm-xml.js';
import { parseDomainXml } from '../../src/virt/domain-xml.js';
import { MiB, type PlannerDimm, planMemory } from '../../src/virt/planner.js';

describe('DIMM device XML', () => {
  const spec = { sizeMiB: 128, node: 0, alias: 'ua-a' };

  it('anchors the alias and base patterns at both ends', () => {
    expect(isUserAlias('ua-x')).toBe(true);
    expect(isUserAlias('xua-x')).toBe(false);
    expect(isValidDimmAlias('dimm3')).toBe(true);
    expect(isValidDimmAlias('mydimm3')).toBe(false);
    expect(() => buildDetachDimmXml({ ...spec, base: '10x100000000' })).toThrow(/base must be a hex address/);
  });

  it('names the rule that failed', () => {
    expect(() => buildAttachDimmXml({ ...spec, sizeMiB: 0 })).toThrow(
      /^DIMM size must be a positive integer \(MiB\)$/,
    );
    expect(() => buildAttachDimmXml({ ...spec, node: -1 })).toThrow(
      /^DIMM node must be a non-negative integer$/,
    );
    expect(() => buildAttachDimmXml({ ...spec, alias: 'dimm0' })).toThrow(/^DIMM alias must match \/\^ua-/);
    expect(() => buildDetachDimmXml({ ...spec, alias: 'x' })).toThrow(/ or \/\^dimm/);
    expect(() => buildDetachDimmXml({ ...spec, slot: -1 })).toThrow(
      /^DIMM slot must be a non-negative integer$/,
    );
    expect(() => buildDetachDimmXml({ ...spec, slot: 1.5 })).toThrow(/slot/);
    expect(() => buildDetachDimmXml({ ...spec, base: 'zz' })).toThrow(
      /^DIMM base must be a hex address 0x…$/,
    );
  });

  it('takes slot 0, and writes an address only when slot or base is given', () => {
    expect(buildAttachDimmXml(spec)).not.toContain('<address');
    expect(buildDetachDimmXml({ ...spec, slot: 0 })).toContain(`<address type="dimm" slot="0"`);
    const onlyBase = buildDetachDimmXml({ ...spec, base: '0x1A0000000' });
    expect(onlyBase).toContain('<address type="dimm" base="0x1a0000000"');
    expect(onlyBase).not.toContain('slot=');
  });
});

const domain = (devices: string, extra = '') =>
  `<domain type='qemu'><name>d</name><uuid>6D99DBCB-6808-49E3-9406-621CCD6CFEFA</uuid>
  <memory unit='KiB'>1310720</memory>${extra}<devices>${devices}</devices></domain>`;

describe('domain XML parser', () => {
  it('reads one DIMM, one balloon and one NUMA cell (single children are lists too)', () => {
    const d = parseDomainXml(
      domain(
        `<memory model='dimm'><target><size unit='KiB'>262144</size><node>1</node></target>
         <alias name='ua-one'/><address type='dimm' slot='0' base='0x100000000'/></memory>
         <memballoon model='virtio'/>`,
        `<maxMemory slots='16' unit='KiB'>8388608</maxMemory><cpu><numa><cell id='3' memory='1048576' unit='KiB'/></numa></cpu>`,
      ),
    );
    expect(d.uuid).toBe('6d99dbcb-6808-49e3-9406-621ccd6cfefa');
    expect(d.dimms).toEqual([
      { alias: 'ua-one', sizeKiB: 262144, size: 256, node: 1, slot: 0, base: '0x100000000' },
    ]);
    expect(d.numaCells).toEqual([{ id: 3, memoryKiB: 1048576 }]);
    expect([d.slots, d.maxMemoryKiB, d.currentMemoryKiB, d.balloonActive]).toEqual([16, 8388608, null, true]);
  });

  it('defaults a DIMM without node to 0 and without address to null slot/base; a cell without id or memory', () => {
    const d = parseDomainXml(
      domain(
        `<memory model='dimm'><target><size unit='MiB'>128</size></target></memory>`,
        `<cpu><numa><cell/><cell/></numa></cpu>`,
      ),
    );
    expect(d.dimms).toEqual([{ alias: null, sizeKiB: 131072, size: 128, node: 0, slot: null, base: null }]);
    expect(d.numaCells).toEqual([
      { id: 0, memoryKiB: 0 },
      { id: 1, memoryKiB: 0 },
    ]);
  });

  it('a balloon is active unless every one is model none', () => {
    expect(parseDomainXml(domain(`<memballoon model='none'/>`)).balloonActive).toBe(false);
    expect(
      parseDomainXml(domain(`<memballoon model='none'/><memballoon model='virtio'/>`)).balloonActive,
    ).toBe(true);
    expect(parseDomainXml(domain('')).balloonActive).toBe(false);
  });

  it('refuses malformed numbers and missing sizes, naming the element', () => {
    const bad =
      (devices: string, extra = '') =>
      () =>
        parseDomainXml(domain(devices, extra));
    expect(bad('', `<maxMemory slots='x' unit='KiB'>1</maxMemory>`)).toThrow(
      /^domain XML: bad or missing maxMemory slots$/,
    );
    expect(bad('', `<maxMemory slots='1 6' unit='KiB'>1</maxMemory>`)).toThrow(/maxMemory slots/);
    expect(bad('', `<maxMemory slots='16x' unit='KiB'>1</maxMemory>`)).toThrow(/maxMemory slots/);
    expect(bad('', `<maxMemory slots='x16' unit='KiB'>1</maxMemory>`)).toThrow(/maxMemory slots/);
    expect(parseDomainXml(domain('', `<maxMemory slots=' 16 ' unit='KiB'>1</maxMemory>`)).slots).toBe(16);
    expect(bad(`<memory model='dimm'><target><node>0</node></target></memory>`)).toThrow(
      /^domain XML: missing dimm target size$/,
    );
    expect(bad(`<memory model='dimm'><target><size>1</size><node>a</node></target></memory>`)).toThrow(
      /^domain XML: bad or missing dimm target node$/,
    );
    expect(
      bad(`<memory model='dimm'><target><size>1</size></target><address type='dimm' slot='s'/></memory>`),
    ).toThrow(/^domain XML: bad or missing dimm slot$/);
    expect(bad('', `<cpu><numa><cell id='a'/></numa></cpu>`)).toThrow(/^domain XML: bad or missing cell id$/);
    expect(() => parseDomainXml(domain('').replace(/<memory unit='KiB'>1310720<\/memory>/, ''))).toThrow(
      /^domain XML: missing <memory>$/,
    );
  });
});

describe('planner edges', () => {
  const hp = (alias: string, size: number): PlannerDimm => ({
    alias,
    size,
    state: 'plugged',
    hotplugged: true,
  });

  it('MiB is 2^20 bytes', () => {
    expect(MiB).toBe(1048576);
  });

  it('takes a single DIMM exactly the size of the decrement', () => {
    expect(planMemory(1536, [hp('a', 256), hp('b', 128)], 1280 * MiB, 128)).toMatchObject({
      unplug: [{ alias: 'a', size: 256 }],
    });
  });

  it('never picks a zero-size device', () => {
    expect(planMemory(1536, [hp('z', 0), hp('b', 128)], 1408 * MiB, 128)).toMatchObject({
      unplug: [{ alias: 'b', size: 128 }],
    });
  });

  it('names the alignment rule for an unaligned increase', () => {
    expect(() => planMemory(1024, [], 1100 * MiB, 128)).toThrow(
      /memory increase of 76 MiB is not a multiple of the DIMM alignment \(128 MiB\)/,
    );
  });
});

describe('packet framer edges', () => {
  it('the default cap is 32 MiB of message plus the length word', () => {
    expect(DEFAULT_MAX_PACKET_BYTES).toBe(32 * 1024 * 1024 + 4);
  });

  it('takes a packet exactly at the cap and refuses one byte more', () => {
    const p = encodePacket({ prog: 1, vers: 1, proc: 1, type: 1, serial: 1, status: 0 }, (w) =>
      w.writeUint(7),
    );
    expect(new PacketParser(p.length).push(p)).toHaveLength(1);
    expect(() => new PacketParser(p.length - 1).push(p)).toThrow(LibvirtProtocolError);
  });
});
