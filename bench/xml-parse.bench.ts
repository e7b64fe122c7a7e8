// XML library choice: parsing a real live domain XML with 4 hot-plugged DIMMs
// (bench/fixtures/live-domain-dimms.xml, `virsh dumpxml` of a test guest on
// libvirt 9.0, captured by bench/tools/capture-live-xml.ts) with
// fast-xml-parser (what src/virt uses, with the daemon's own reader settings)
// against xml2js (the other common choice), both to a plain object with
// attributes kept, in the same run, alternating blocks. Also our whole
// parseDomainXml (parse + extraction of the facts) against the same xml2js
// parse, to show the extraction adds little; and the daemon's reader (the
// fast reader of src/virt/xml-read.ts, which builds fast-xml-parser's
// objects) against fast-xml-parser itself.

import { readFileSync } from 'node:fs';
import { Parser } from 'xml2js';
import { parseDomainXml } from '../src/virt/domain-xml.js';
import { makeFullReader, makeReader } from '../src/virt/xml-common.js';
import { type BenchResult, summarize } from './lib.js';

const BLOCKS = 20;
const PER_BLOCK = 100;
const WARMUP = 500;

export async function run(): Promise<BenchResult[]> {
  const xml = readFileSync(new URL('./fixtures/live-domain-dimms.xml', import.meta.url), 'utf8');
  // The same reader settings domain-xml.ts uses.
  const paths = ['domain.devices.memory', 'domain.devices.memballoon', 'domain.cpu.numa.cell'];
  const fxp = makeFullReader(paths);
  const reader = makeReader(paths);
  const x2j = new Parser({ explicitArray: false, attrkey: '@', charkey: '#text' });
  const viaXml2js = (): unknown => {
    let out: unknown;
    x2j.parseString(xml, (err: Error | null, r: unknown) => {
      if (err) throw err;
      out = r;
    });
    if (out === undefined) throw new Error('xml2js did not answer synchronously');
    return out;
  };
  const viaFxp = (): unknown => fxp.parse(xml);
  const viaOurs = (): unknown => parseDomainXml(xml);
  const viaReader = (): unknown => reader.parse(xml);
  if (parseDomainXml(xml).dimms.length !== 4) throw new Error('fixture: expected 4 DIMMs');

  // Per-parse time in µs, from blocks of PER_BLOCK parses.
  const block = (fn: () => unknown): number => {
    const t0 = performance.now();
    for (let i = 0; i < PER_BLOCK; i++) fn();
    return ((performance.now() - t0) * 1000) / PER_BLOCK;
  };
  for (let i = 0; i < WARMUP; i++) {
    viaFxp();
    viaXml2js();
    viaOurs();
    viaReader();
  }
  const fxpUs: number[] = [];
  const x2jUs: number[] = [];
  const oursUs: number[] = [];
  const readerUs: number[] = [];
  for (let b = 0; b < BLOCKS; b++) {
    fxpUs.push(block(viaFxp));
    x2jUs.push(block(viaXml2js));
    oursUs.push(block(viaOurs));
    readerUs.push(block(viaReader));
  }
  const r = summarize(readerUs, 'us');
  const f = summarize(fxpUs, 'us');
  const x = summarize(x2jUs, 'us');
  const o = summarize(oursUs, 'us');
  return [
    {
      name: 'XML parse: fast-xml-parser vs xml2js',
      what: `µs per parse of a ${xml.length}-char live domain XML with 4 DIMMs (blocks of ${PER_BLOCK}; lower is better)`,
      runs: BLOCKS,
      ours: f,
      baseline: { ...x, name: 'xml2js' },
      ratio: f.median / x.median,
      target: 'ratio <= 1 (informs the choice)',
      pass: f.median <= x.median,
    },
    {
      name: 'XML parse: daemon reader vs fast-xml-parser',
      what: `µs per parse of the same XML by the daemon's reader (src/virt/xml-read.ts: the same objects, one indexOf pass) vs fast-xml-parser with the same settings`,
      runs: BLOCKS,
      ours: r,
      baseline: { ...f, name: 'fast-xml-parser' },
      ratio: r.median / f.median,
      target: 'ratio <= 1',
      pass: r.median <= f.median,
    },
    {
      name: 'XML parseDomainXml (parse + extract)',
      what: "µs per parseDomainXml (the daemon's reader + our extraction of memory, DIMMs, NUMA, metadata) vs the bare xml2js parse",
      runs: BLOCKS,
      ours: o,
      baseline: { ...x, name: 'xml2js parse only' },
      ratio: o.median / x.median,
    },
  ];
}
