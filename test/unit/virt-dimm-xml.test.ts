import fc from 'fast-check';
import { XMLParser } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import { buildAttachDimmXml, buildDetachDimmXml, isValidDimmAlias } from '../../src/virt/dimm-xml.js';
import { ATTR, fragmentBuilder } from '../../src/virt/xml-common.js';

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

  it('writes what the XML builder writes for any valid DIMM, byte for byte', () => {
    const viaBuilder = (spec: {
      sizeMiB: number;
      node: number;
      alias: string;
      slot?: number;
      base?: string;
    }) => {
      const memory: Record<string, unknown> = {
        [`${ATTR}model`]: 'dimm',
        target: {
          size: { [`${ATTR}unit`]: 'KiB', '#text': String(spec.sizeMiB * 1024) },
          node: String(spec.node),
        },
        alias: { [`${ATTR}name`]: spec.alias },
      };
      if (spec.slot !== undefined || spec.base !== undefined) {
        memory.address = {
          [`${ATTR}type`]: 'dimm',
          ...(spec.slot !== undefined ? { [`${ATTR}slot`]: String(spec.slot) } : {}),
          ...(spec.base !== undefined ? { [`${ATTR}base`]: spec.base.toLowerCase() } : {}),
        };
      }
      return fragmentBuilder.build({ memory }) as string;
    };
    const alias = fc.oneof(
      fc.stringMatching(/^ua-[A-Za-z0-9-]{1,20}$/),
      fc.integer({ min: 0, max: 99999 }).map((n) => `dimm${n}`),
    );
    fc.assert(
      fc.property(
        fc.record(
          {
            sizeMiB: fc.integer({ min: 1, max: 2 ** 30 }),
            node: fc.integer({ min: 0, max: 64 }),
            alias,
            slot: fc.integer({ min: 0, max: 255 }),
            base: fc.stringMatching(/^0x[0-9a-fA-F]{1,16}$/),
          },
          { requiredKeys: ['sizeMiB', 'node', 'alias'] },
        ),
        (spec) => {
          expect(buildDetachDimmXml(spec)).toBe(viaBuilder(spec));
        },
      ),
      { numRuns: 500, seed: 7 },
    );
  });
});
