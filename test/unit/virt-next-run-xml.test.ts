import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseDomainXml } from '../../src/virt/domain-xml.js';
import { editInactiveMemory } from '../../src/virt/next-run-xml.js';

const inactive = readFileSync(new URL('../fixtures/virt/inactive-boot-dimm.xml', import.meta.url), 'utf8');
const K = 1024;

describe('editInactiveMemory', () => {
  it('sets <memory>, <currentMemory> and the NUMA cell, keeping the boot DIMM and everything else', () => {
    const out = editInactiveMemory(inactive, { totalKiB: 1400 * K, nodeDeltasKiB: new Map([[0, 384 * K]]) });
    const d = parseDomainXml(out);
    expect(d.memoryKiB).toBe(1400 * K);
    expect(d.currentMemoryKiB).toBe(1400 * K);
    // 1400 total minus the 128 MiB boot DIMM of the definition.
    expect(d.numaCells).toEqual([{ id: 0, memoryKiB: 1272 * K }]);
    expect(d.dimms).toHaveLength(1);
    expect(out).toContain('<emulator>/usr/bin/qemu-system-x86_64</emulator>');
    expect(out).toContain('<on_crash>destroy</on_crash>');
  });

  it('puts the change on the DIMM node first, the rest on the largest cell', () => {
    const xml = `<domain type='qemu'><name>n</name><uuid>u</uuid><memory unit='MiB'>2048</memory>
      <currentMemory unit='MiB'>1536</currentMemory>
      <cpu><numa><cell id='0' cpus='0' memory='512' unit='MiB'/><cell id='1' cpus='1' memory='1536' unit='MiB'/></numa></cpu>
      <description>a &amp; b &lt;c&gt;</description></domain>`;
    const out = editInactiveMemory(xml, { totalKiB: 1792 * K, nodeDeltasKiB: new Map([[0, -128 * K]]) });
    const d = parseDomainXml(out);
    expect(d.numaCells).toEqual([
      { id: 0, memoryKiB: 384 * K },
      { id: 1, memoryKiB: 1408 * K },
    ]);
    expect(d.currentMemoryKiB).toBe(1536 * K);
    expect(out).toContain('<description>a &amp; b &lt;c&gt;</description>');
  });

  it('refuses to leave too little initial memory', () => {
    expect(() => editInactiveMemory(inactive, { totalKiB: 200 * K })).toThrow(RangeError);
  });
});

describe('editInactiveMemory: virtio-mem', () => {
  const xml = `<domain type='qemu'><name>n</name><uuid>u</uuid><memory unit='KiB'>1310720</memory>
    <currentMemory unit='KiB'>1310720</currentMemory>
    <cpu><numa><cell id='0' cpus='0' memory='262144' unit='KiB'/></numa></cpu>
    <devices><memory model='virtio-mem'><target><size unit='KiB'>1048576</size><node>0</node>
    <block unit='KiB'>2048</block><requested unit='KiB'>0</requested></target><alias name='ua-vmem0'/>
    <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/></memory></devices></domain>`;

  it("sets a device's <requested> (its next-boot size) and keeps <memory> counting it at its maximum", () => {
    const out = editInactiveMemory(xml, {
      totalKiB: 1310720,
      requestedKiB: new Map([['ua-vmem0', 444 * K]]),
    });
    const d = parseDomainXml(out);
    expect(d.memoryKiB).toBe(1310720);
    expect(d.virtioMem).toMatchObject([{ alias: 'ua-vmem0', requestedKiB: 444 * K, sizeKiB: 1024 * K }]);
    expect(d.numaCells).toEqual([{ id: 0, memoryKiB: 256 * K }]);
  });

  it('refuses a device the definition does not have', () => {
    expect(() =>
      editInactiveMemory(xml, { totalKiB: 1310720, requestedKiB: new Map([['ua-x', 2 * K]]) }),
    ).toThrow(/no virtio-mem device ua-x/);
  });
});
