// Preload for the daemon child of bench/tools/unplug-counts.ts: counts the
// calls of JSON.stringify/parse, of XML parses (the daemon's fast reader and
// fast-xml-parser, which it falls back to) and builds, and on SIGUSR2 writes
// the totals so far as one JSON line to stderr. Counts, unlike times, do not
// depend on how loaded the machine is.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { XMLBuilder, XMLParser } from 'fast-xml-parser';

const counts = { jsonStringify: 0, jsonParse: 0, xmlParse: 0, xmlParseFull: 0, xmlBuild: 0 };
const wrap = (obj, key, name) => {
  const orig = obj[key];
  obj[key] = function (...args) {
    counts[name]++;
    return orig.apply(this, args);
  };
};
wrap(JSON, 'stringify', 'jsonStringify');
wrap(JSON, 'parse', 'jsonParse');
wrap(XMLParser.prototype, 'parse', 'xmlParseFull');
// The daemon under bench/ runs from .cache/bench-build: the same module URL, the same class.
const fastReader = new URL('../../.cache/bench-build/dist/virt/xml-read.js', import.meta.url);
if (existsSync(fileURLToPath(fastReader))) {
  const { FastXmlReader } = await import(fastReader.href);
  if (FastXmlReader) wrap(FastXmlReader.prototype, 'parse', 'xmlParse');
}
wrap(XMLBuilder.prototype, 'build', 'xmlBuild');
process.on('SIGUSR2', () => {
  process.stderr.write(`COUNTS ${JSON.stringify({ ...counts })}\n`);
});
