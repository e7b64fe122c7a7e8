// Edges of our <metadata> reader and writer that mutation testing found unguarded.
import { describe, expect, it } from 'vitest';
import { parseDomainXml } from '../../src/virt/domain-xml.js';
import {
  buildMetadata,
  emptyMetadata,
  findOurElement,
  METADATA_PREFIX,
  METADATA_URI,
  parseMetadata,
} from '../../src/virt/metadata.js';

const inDomain = (metadata: string) =>
  parseDomainXml(
    `<domain><name>n</name><uuid>u</uuid><memory>1024</memory><metadata>${metadata}</metadata></domain>`,
  ).metadata;

describe('metadata reader edges', () => {
  it('the namespace libvirt stores it under, with our prefix', () => {
    expect([METADATA_URI, METADATA_PREFIX]).toEqual(['http://ovirt.org/vmhostd/1.0', 'vmhostd']);
  });

  it('reads prefixed names at every depth, several entries of each list, and keeps attributes', () => {
    const md = inDomain(`<v:vm xmlns:v="${METADATA_URI}"><v:guaranteed>640</v:guaranteed>
      <v:bootDimms><v:dimm alias="dimm0"/><v:dimm alias="dimm1"/></v:bootDimms>
      <v:unplugging><v:dimm alias="ua-a" since="t1"/><v:dimm alias="ua-b"/></v:unplugging></v:vm>`);
    expect(md).toEqual({
      guaranteedMiB: 640,
      bootDimms: ['dimm0', 'dimm1'],
      unplugging: [
        { alias: 'ua-a', since: 't1' },
        { alias: 'ua-b', since: '' },
      ],
    });
  });

  it('finds ours under a default namespace, and ignores other namespaces and other elements', () => {
    expect(inDomain(`<vm xmlns="${METADATA_URI}"><guaranteed>1</guaranteed></vm>`)?.guaranteedMiB).toBe(1);
    expect(
      inDomain(`<o:vm xmlns:o="http://example.org/other"><o:guaranteed>1</o:guaranteed></o:vm>`),
    ).toBeNull();
    expect(
      inDomain(`<v:other xmlns:v="${METADATA_URI}"><v:guaranteed>1</v:guaranteed></v:other>`),
    ).toBeNull();
    expect(
      inDomain(
        `<o:vm xmlns:o="http://example.org/other"/><v:vm xmlns:v="${METADATA_URI}"><v:guaranteed>2</v:guaranteed></v:vm>`,
      )?.guaranteedMiB,
    ).toBe(2);
    expect(findOurElement('text')).toBeUndefined();
    expect(findOurElement({ '#text': 'x', 'v:vm': 'not an element' })).toBeUndefined();
  });

  it('takes only a whole number of MiB as guaranteed (spaces around allowed)', () => {
    const g = (v: string) => parseMetadata(`<vm><guaranteed>${v}</guaranteed></vm>`).guaranteedMiB;
    expect(g(' 512 ')).toBe(512);
    expect(g('512x')).toBeNull();
    expect(g('x512')).toBeNull();
    expect(g('-1')).toBeNull();
  });

  it('skips entries without an alias, and reads an unknown root as empty', () => {
    const md = parseMetadata(
      `<vm><bootDimms><dimm/><dimm alias="dimm0"/></bootDimms><unplugging><dimm since="t"/></unplugging></vm>`,
    );
    expect(md).toEqual({ guaranteedMiB: null, bootDimms: ['dimm0'], unplugging: [] });
    expect(parseMetadata('<other><guaranteed>5</guaranteed></other>')).toEqual(emptyMetadata());
    expect(parseMetadata('')).toEqual(emptyMetadata());
  });
});

describe('metadata writer edges', () => {
  it('writes only what is set', () => {
    expect(buildMetadata(emptyMetadata())).toBe('<vm/>');
    const only = buildMetadata({ ...emptyMetadata(), guaranteedMiB: 0 });
    expect(only).toContain('<guaranteed>0</guaranteed>');
    expect(only).not.toContain('bootDimms');
    expect(only).not.toContain('unplugging');
  });

  it('writes each boot DIMM and each mark as an element with its attributes', () => {
    const xml = buildMetadata({
      guaranteedMiB: null,
      bootDimms: ['dimm0'],
      unplugging: [{ alias: 'ua-a', since: 't' }],
    });
    expect(xml).toContain('<dimm alias="dimm0"');
    expect(xml).toContain('<dimm alias="ua-a" since="t"');
  });
});
