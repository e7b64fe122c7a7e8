// Edges of the next-run memory editor that mutation testing found unguarded.
import { describe, expect, it } from 'vitest';
import { parseDomainXml } from '../../src/virt/domain-xml.js';
import { editInactiveMemory } from '../../src/virt/next-run-xml.js';

const K = 1024;
const dom = (body: string) =>
  `<domain type='qemu'><name>007</name><uuid>u</uuid>${body}<devices><acpi/></devices></domain>`;
const cells = (...mib: (number | null)[]) =>
  `<cpu><numa>${mib.map((m, i) => (m === null ? '<cell/>' : `<cell id='${i}' memory='${m}' unit='MiB'/>`)).join('')}</numa></cpu>`;
const cellMiB = (xml: string) => parseDomainXml(xml).numaCells.map((c) => c.memoryKiB / K);

describe('editInactiveMemory edges', () => {
  it('refuses a document without <domain> or without <memory>, naming what is missing', () => {
    expect(() => editInactiveMemory('<other/>', { totalKiB: 1024 * K })).toThrow(
      /^domain XML: no <domain> element$/,
    );
    expect(() => editInactiveMemory(dom(''), { totalKiB: 1024 * K })).toThrow(/^domain XML: no <memory>$/);
  });

  it('without NUMA cells sets <memory> only, and keeps a lower <currentMemory> unless it exceeds the new total', () => {
    const xml = dom(`<memory unit='MiB'>2048</memory><currentMemory unit='MiB'>1024</currentMemory>`);
    const up = parseDomainXml(editInactiveMemory(xml, { totalKiB: 3072 * K }));
    expect([up.memoryKiB, up.currentMemoryKiB, up.numaCells]).toEqual([3072 * K, 1024 * K, []]);
    const down = parseDomainXml(editInactiveMemory(xml, { totalKiB: 768 * K }));
    expect([down.memoryKiB, down.currentMemoryKiB]).toEqual([768 * K, 768 * K]);
    const none = parseDomainXml(
      editInactiveMemory(dom(`<memory unit='MiB'>2048</memory>`), { totalKiB: 1024 * K }),
    );
    expect(none.currentMemoryKiB).toBeNull();
  });

  it('keeps text verbatim (no number parsing, no trimming) and empty elements self-closed', () => {
    const out = editInactiveMemory(dom(`<memory unit='MiB'>2048</memory><title> a  b </title>`), {
      totalKiB: 1024 * K,
    });
    expect(out).toContain('<name>007</name>');
    expect(out).toContain('<title> a  b </title>');
    expect(out).toContain('<acpi/>');
  });

  it('counts the memory devices of the definition, skipping one without a size', () => {
    const xml = `<domain><name>n</name><uuid>u</uuid><memory unit='MiB'>1280</memory>${cells(1024)}<devices>
      <memory model='dimm'><target><size unit='MiB'>256</size><node>0</node></target></memory>
      <memory model='nvdimm'><target><node>0</node></target></memory></devices></domain>`;
    expect(cellMiB(editInactiveMemory(xml, { totalKiB: 1536 * K }))).toEqual([1280]);
  });

  it('takes an initial memory of exactly the 128 MiB minimum', () => {
    expect(
      cellMiB(
        editInactiveMemory(dom(`<memory unit='MiB'>1024</memory>${cells(1024)}`), { totalKiB: 128 * K }),
      ),
    ).toEqual([128]);
    expect(() =>
      editInactiveMemory(dom(`<memory unit='MiB'>1024</memory>${cells(1024)}`), { totalKiB: 127 * K }),
    ).toThrow(/^next-run memory would leave too little initial memory$/);
  });

  it('moves a node only in the direction of the change and never past it; unknown nodes are skipped', () => {
    const xml = dom(`<memory unit='MiB'>2048</memory>${cells(1024, 1024)}`);
    // Shrinking by 256: a positive delta on node 0 is ignored, the largest cell (the first of equals) takes it.
    expect(
      cellMiB(editInactiveMemory(xml, { totalKiB: 1792 * K, nodeDeltasKiB: new Map([[0, 512 * K]]) })),
    ).toEqual([768, 1024]);
    // Growing by 128 with a delta of 512 on node 1: clipped to 128.
    expect(
      cellMiB(editInactiveMemory(xml, { totalKiB: 2176 * K, nodeDeltasKiB: new Map([[1, 512 * K]]) })),
    ).toEqual([1024, 1152]);
    // Shrinking by 128 with -512 on node 1: clipped to -128.
    expect(
      cellMiB(editInactiveMemory(xml, { totalKiB: 1920 * K, nodeDeltasKiB: new Map([[1, -512 * K]]) })),
    ).toEqual([1024, 896]);
    // Node 7 does not exist; no change at all leaves the cells alone.
    expect(
      cellMiB(editInactiveMemory(xml, { totalKiB: 2176 * K, nodeDeltasKiB: new Map([[7, 128 * K]]) })),
    ).toEqual([1152, 1024]);
    expect(
      cellMiB(editInactiveMemory(xml, { totalKiB: 2048 * K, nodeDeltasKiB: new Map([[0, 128 * K]]) })),
    ).toEqual([1024, 1024]);
  });

  it('a node delta stops at the 128 MiB cell minimum, the rest goes to the largest cell', () => {
    const xml = dom(`<memory unit='MiB'>1280</memory>${cells(256, 1024)}`);
    expect(
      cellMiB(editInactiveMemory(xml, { totalKiB: 768 * K, nodeDeltasKiB: new Map([[0, -512 * K]]) })),
    ).toEqual([128, 640]);
  });

  it('shrinks across several cells, largest first, and refuses what no cell can give', () => {
    const xml = dom(`<memory unit='MiB'>1536</memory>${cells(512, 1024)}`);
    expect(cellMiB(editInactiveMemory(xml, { totalKiB: 384 * K }))).toEqual([256, 128]);
    const tight = dom(`<memory unit='MiB'>256</memory>${cells(128, 128)}`);
    expect(() => editInactiveMemory(tight, { totalKiB: 128 * K })).toThrow(
      /^next-run memory does not fit the NUMA cells$/,
    );
  });

  it('numbers cells without an id by position and reads a cell without memory as 0', () => {
    const xml = dom(`<memory unit='MiB'>1024</memory>${cells(null, null)}`);
    const out = editInactiveMemory(xml, { totalKiB: 1024 * K, nodeDeltasKiB: new Map([[1, 1024 * K]]) });
    expect(cellMiB(out)).toEqual([0, 1024]);
  });
});
