import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseDomainXml } from '../../src/virt/domain-xml.js';
import { sampleGuestSpec } from '../helpers/sample-data.js';
import { domainXml } from '../host/domain-xml.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/virt/${name}`, import.meta.url), 'utf8');

describe('parseDomainXml', () => {
  it('reads a live libvirt 9.0 domain with a boot DIMM, two hot-plugged DIMMs and our metadata', () => {
    const d = parseDomainXml(fixture('live-3dimms-metadata.xml'));
    expect(d.name).toBe('vmhostd-explore-virt');
    expect(d.uuid).toBe('e05fd4b2-5bbb-4ce8-b9b1-fc1234ba720e');
    expect(d.memoryKiB).toBe(917504);
    expect(d.memory).toBe(896);
    expect(d.maxMemoryKiB).toBe(8192 * 1024);
    expect(d.slots).toBe(16);
    expect(d.numaCells).toEqual([{ id: 0, memoryKiB: 512 * 1024 }]);
    expect(d.dimms).toEqual([
      { alias: 'dimm0', sizeKiB: 131072, size: 128, node: 0, slot: 0, base: '0x100000000' },
      { alias: 'ua-a1', sizeKiB: 131072, size: 128, node: 0, slot: 1, base: '0x108000000' },
      { alias: 'ua-a2', sizeKiB: 131072, size: 128, node: 0, slot: 2, base: '0x110000000' },
    ]);
    expect(d.balloonActive).toBe(false);
    expect(d.metadata).toEqual({ guaranteedMiB: 512, bootDimms: ['dimm0'], unplugging: [] });
  });

  it('reads an inactive definition: DIMMs without alias or base, no metadata', () => {
    const d = parseDomainXml(fixture('inactive-boot-dimm.xml'));
    expect(d.memory).toBe(640);
    expect(d.dimms).toEqual([{ alias: null, sizeKiB: 131072, size: 128, node: 0, slot: 0, base: null }]);
    expect(d.metadata).toBeNull();
  });

  it('treats a memballoon with a model other than none as active, and converts units', () => {
    const xml = fixture('inactive-boot-dimm.xml')
      .replace("<memballoon model='none'/>", "<memballoon model='virtio'/>")
      .replace("<memory unit='KiB'>655360</memory>", "<memory unit='GiB'>2</memory>");
    const d = parseDomainXml(xml);
    expect(d.balloonActive).toBe(true);
    expect(d.memory).toBe(2048);
  });

  it('ignores other memory device models and other metadata namespaces', () => {
    const xml = fixture('live-3dimms-metadata.xml')
      .replace(
        '<memballoon',
        "<memory model='nvdimm'><source><path>/tmp/nv</path></source><target><size unit='KiB'>1048576</size><node>0</node></target><alias name='nvdimm0'/></memory><memballoon",
      )
      .replace(
        '<vmhostd:vm xmlns:vmhostd="http://ovirt.org/vmhostd/1.0">',
        '<other:vm xmlns:other="urn:other"><other:guaranteed>1</other:guaranteed></other:vm><vmhostd:vm xmlns:vmhostd="http://ovirt.org/vmhostd/1.0">',
      );
    const d = parseDomainXml(xml);
    expect(d.dimms.map((m) => m.alias)).toEqual(['dimm0', 'ua-a1', 'ua-a2']);
    expect(d.virtioMem).toEqual([]);
    expect(d.metadata?.guaranteedMiB).toBe(512);
  });

  it('reads a live libvirt 9.0 virtio-mem device; memory counts its current size, not its maximum', () => {
    const d = parseDomainXml(fixture('live-virtio-mem.xml'));
    // libvirt's <memory>: 256 MiB base + the device's 1 GiB maximum.
    expect(d.memoryKiB).toBe(1310720);
    expect(d.virtioMem).toEqual([
      {
        alias: 'ua-vmem0',
        node: 0,
        sizeKiB: 1048576,
        blockKiB: 2048,
        requestedKiB: 131072,
        currentKiB: 131072,
        size: 1024,
        block: 2,
        requested: 128,
        current: 128,
        address: { type: 'pci', domain: '0x0000', bus: '0x00', slot: '0x02', function: '0x0' },
      },
    ]);
    expect(d.memory).toBe(256 + 128);
    const partial = parseDomainXml(
      fixture('live-virtio-mem.xml').replace(
        "<current unit='KiB'>131072</current>",
        "<current unit='KiB'>0</current>",
      ),
    );
    expect(partial.memory).toBe(256);
    expect(partial.virtioMem[0]?.current).toBe(0);
  });

  it('takes an inactive virtio-mem device (no <current>, no alias) at its requested size', () => {
    const xml = fixture('live-virtio-mem.xml')
      .replace(/<current unit='KiB'>\d+<\/current>/, '')
      .replace("<alias name='ua-vmem0'/>", '');
    const d = parseDomainXml(xml);
    expect(d.virtioMem[0]).toMatchObject({ alias: null, currentKiB: 131072, current: 128 });
    expect(d.memory).toBe(384);
  });

  it('defaults what libvirt may leave out of a virtio-mem device, and reads no address when there is none', () => {
    const xml = fixture('live-virtio-mem.xml')
      .replace(/<requested unit='KiB'>\d+<\/requested>/, '')
      .replace(/<current unit='KiB'>\d+<\/current>/, '')
      .replace('<node>0</node>', '')
      .replace(/<address type='pci'[^>]*\/>/, '');
    expect(parseDomainXml(xml).virtioMem[0]).toMatchObject({
      node: 0,
      requestedKiB: 0,
      currentKiB: 0,
      address: null,
    });
    // A node other than 0 is read, not defaulted.
    const node1 = fixture('live-virtio-mem.xml').replace('<node>0</node>', '<node>1</node>');
    expect(parseDomainXml(node1).virtioMem[0]?.node).toBe(1);
  });

  it('reads NUMA cell sizes in their unit', () => {
    const mib = fixture('live-virtio-mem.xml').replace(
      "<cell id='0' cpus='0' memory='262144' unit='KiB'/>",
      "<cell id='0' cpus='0' memory='256' unit='MiB'/>",
    );
    expect(parseDomainXml(mib).numaCells).toEqual([{ id: 0, memoryKiB: 262144 }]);
  });

  it('refuses a number that is not one (a DIMM slot, a node), naming it', () => {
    const live = fixture('live-3dimms-metadata.xml');
    expect(() => parseDomainXml(live.replace("slot='1'", "slot='one'"))).toThrow(/bad or missing dimm slot/);
    expect(() => parseDomainXml(live.replace('<node>0</node>', '<node>-1</node>'))).toThrow(
      /bad or missing dimm target node/,
    );
  });

  it('rejects documents that are not a domain', () => {
    expect(() => parseDomainXml('<network/>')).toThrow(/no <domain>/);
    expect(() => parseDomainXml('<domain><name>x</name></domain>')).toThrow(/uuid/);
  });
});

describe('parseDomainXml: the guest agent channel', () => {
  const spec = sampleGuestSpec;
  it('is seen only when a channel targets org.qemu.guest_agent.0', () => {
    expect(parseDomainXml(domainXml({ ...spec, guestAgent: true })).guestAgent).toBe(true);
    expect(parseDomainXml(domainXml(spec)).guestAgent).toBe(false);
    // Another virtio-serial channel is not the agent's; the live form (state, alias) is.
    const other = domainXml(spec).replace(
      '</devices>',
      "<channel type='unix'><target type='virtio' name='org.example.other'/></channel></devices>",
    );
    expect(parseDomainXml(other).guestAgent).toBe(false);
    const liveForm = domainXml(spec).replace(
      '</devices>',
      "<channel type='unix'><source mode='bind'/><target type='virtio' name='org.qemu.guest_agent.0' state='disconnected'/><alias name='channel0'/></channel><channel type='pty'><target type='virtio' name='x'/></channel></devices>",
    );
    expect(parseDomainXml(liveForm).guestAgent).toBe(true);
  });
});
