import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDomainXml } from '../../src/virt/domain-xml.js';
import { buildMetadata, emptyMetadata, parseMetadata, type VmMetadata } from '../../src/virt/metadata.js';
import { ATTR, fragmentBuilder } from '../../src/virt/xml-common.js';

describe('vmhostd metadata', () => {
  const md: VmMetadata = {
    guaranteedMiB: 900,
    bootDimms: ['dimm0', 'ua-boot-1'],
    unplugging: [{ alias: 'ua-x', since: '2026-01-01T00:00:00.000Z' }],
  };

  it('round-trips through the fragment given to setMetadata', () => {
    expect(parseMetadata(buildMetadata(md))).toEqual(md);
    expect(parseMetadata(buildMetadata(emptyMetadata()))).toEqual(emptyMetadata());
  });

  it('keeps an empty boot set distinct from an unrecorded one', () => {
    const m = { ...emptyMetadata(), bootDimms: [] };
    expect(parseMetadata(buildMetadata(m)).bootDimms).toEqual([]);
  });

  it('reads what virDomainGetMetadata returns (as printed by libvirt 9.0)', () => {
    const got = `<vm>
  <guaranteed>512</guaranteed>
  <bootDimms>
    <dimm alias="dimm0"/>
  </bootDimms>
</vm>
`;
    expect(parseMetadata(got)).toEqual({ guaranteedMiB: 512, bootDimms: ['dimm0'], unplugging: [] });
  });

  it('reads it from a domain XML under whatever prefix declares our namespace', () => {
    const xml = `<domain><name>n</name><uuid>u</uuid><memory>1024</memory><metadata>
      <x:vm xmlns:x="http://ovirt.org/vmhostd/1.0"><x:unplugging><x:dimm alias="ua-1" since="t"/></x:unplugging></x:vm>
    </metadata></domain>`;
    expect(parseDomainXml(xml).metadata).toEqual({
      guaranteedMiB: null,
      bootDimms: null,
      unplugging: [{ alias: 'ua-1', since: 't' }],
    });
  });

  it('escapes values', () => {
    const xml = buildMetadata({ ...emptyMetadata(), bootDimms: [`a"'<&>`] });
    expect(xml).not.toContain('<&');
    expect(parseMetadata(xml).bootDimms).toEqual([`a"'<&>`]);
  });
});

describe('vmhostd metadata fragment', () => {
  // What the XML builder wrote before the template (the reference).
  const viaBuilder = (md: VmMetadata): string => {
    const vm: Record<string, unknown> = {};
    if (md.guaranteedMiB !== null) vm.guaranteed = String(md.guaranteedMiB);
    if (md.bootDimms !== null) {
      vm.bootDimms = md.bootDimms.length ? { dimm: md.bootDimms.map((a) => ({ [`${ATTR}alias`]: a })) } : '';
    }
    if (md.unplugging.length) {
      vm.unplugging = {
        dimm: md.unplugging.map((u) => ({ [`${ATTR}alias`]: u.alias, [`${ATTR}since`]: u.since })),
      };
    }
    if (md.present !== undefined) {
      vm.present = md.present.length ? { dimm: md.present.map((a) => ({ [`${ATTR}alias`]: a })) } : '';
    }
    return fragmentBuilder.build({ vm }) as string;
  };

  it('is what the XML builder writes, byte for byte, for any metadata (special characters escaped)', () => {
    const value = fc.string({ unit: fc.constantFrom('a', 'Z', '0', '-', '&', '<', '>', '"', "'", ' ', 'é') });
    const aliases = fc.array(value, { maxLength: 4 });
    fc.assert(
      fc.property(
        fc.record(
          {
            guaranteedMiB: fc.option(fc.nat(), { nil: null }),
            bootDimms: fc.option(aliases, { nil: null }),
            unplugging: fc.array(fc.record({ alias: value, since: value }), { maxLength: 3 }),
            present: aliases,
          },
          { requiredKeys: ['guaranteedMiB', 'bootDimms', 'unplugging'] },
        ),
        (md) => {
          expect(buildMetadata(md)).toBe(viaBuilder(md));
        },
      ),
      { numRuns: 500, seed: 3 },
    );
  });
});

describe('vmhostd metadata: resize marks', () => {
  it('round-trip (with and without a deadline), are absent when none, and a mark missing what a restart needs is ignored', () => {
    const md: VmMetadata = {
      ...emptyMetadata(),
      resizing: [
        {
          alias: 'ua-v"0',
          since: '2026-01-01T00:00:00.000Z',
          requested: 512,
          deadline: '2026-01-01T00:02:00.000Z',
          onFailure: 'settle',
        },
        { alias: 'virtiomem1', since: '2026-01-01T00:00:00.000Z', requested: 0, onFailure: 'keep' },
      ],
    };
    expect(parseMetadata(buildMetadata(md))).toEqual(md);
    expect(buildMetadata({ ...emptyMetadata(), resizing: [] })).toBe('<vm/>');
    expect(parseMetadata('<vm/>')).not.toHaveProperty('resizing');
    const bad = parseMetadata(
      '<vm><resizing><device alias="a" since="t" requested="x" onFailure="keep"/>' +
        '<device alias="b" since="t" requested="2" onFailure="maybe"/>' +
        '<device alias="c" requested="2" onFailure="keep"/>' +
        '<device alias="d" since="t" requested="2" deadline="soon" onFailure="keep"/>' +
        '<device alias="e" since="t" requested="2" onFailure="keep"/></resizing></vm>',
    );
    expect(bad.resizing).toEqual([{ alias: 'e', since: 't', requested: 2, onFailure: 'keep' }]);
  });
});
