import { XMLParser } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import { buildAttachDimmXml, buildDetachDimmXml, isValidDimmAlias } from '../../src/virt/dimm-xml.js';

const parse = (xml: string) =>
  new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: '',
    parseTagValue: false,
    parseAttributeValue: false,
  }).parse(xml);

describe('DIMM device XML', () => {
  it('builds attach XML with size in KiB, node, user alias and slot', () => {
    const xml = buildAttachDimmXml({ sizeMiB: 256, node: 0, alias: 'ua-1234-abcd', slot: 3 });
    expect(parse(xml)).toEqual({
      memory: {
        model: 'dimm',
        target: { size: { unit: 'KiB', '#text': '262144' }, node: '0' },
        alias: { name: 'ua-1234-abcd' },
        address: { type: 'dimm', slot: '3' },
      },
    });
  });

  it('builds detach XML naming alias, slot and base so libvirt picks exactly that DIMM', () => {
    const xml = buildDetachDimmXml({ sizeMiB: 128, node: 0, alias: 'dimm2', slot: 2, base: '0x110000000' });
    expect(xml).toBe(
      '<memory model="dimm"><target><size unit="KiB">131072</size><node>0</node></target><alias name="dimm2"/><address type="dimm" slot="2" base="0x110000000"/></memory>',
    );
  });

  it.each(["x'/><evil", 'ua-"><x', 'ua-a b', 'dimm0', '', 'ua-'])(
    'refuses to attach with alias %j',
    (alias) => {
      expect(() => buildAttachDimmXml({ sizeMiB: 128, node: 0, alias })).toThrow(RangeError);
    },
  );

  it('accepts libvirt-named aliases only for detach', () => {
    expect(isValidDimmAlias('dimm12')).toBe(true);
    expect(isValidDimmAlias("dimm1'")).toBe(false);
    expect(() => buildDetachDimmXml({ sizeMiB: 128, node: 0, alias: "ua-x'/><evil" })).toThrow(RangeError);
  });

  it.each([
    { sizeMiB: 0 },
    { sizeMiB: -128 },
    { sizeMiB: 1.5 },
    { node: -1 },
    { slot: -1 },
    { base: '0x10"/>' },
    { base: '4096' },
  ])('rejects bad field %j', (bad) => {
    expect(() =>
      buildDetachDimmXml({ sizeMiB: 128, node: 0, alias: 'ua-a', slot: 1, base: '0x1000', ...bad }),
    ).toThrow(RangeError);
  });
});
