// Preload for the daemon child of bench/tools/unplug-counts.ts: counts the
// calls of JSON.stringify/parse and of fast-xml-parser's parse/build, and on
// SIGUSR2 writes the totals so far as one JSON line to stderr. Counts, unlike
// times, do not depend on how loaded the machine is.
import { XMLBuilder, XMLParser } from 'fast-xml-parser';

const counts = { jsonStringify: 0, jsonParse: 0, xmlParse: 0, xmlBuild: 0 };
const wrap = (obj, key, name) => {
  const orig = obj[key];
  obj[key] = function (...args) {
    counts[name]++;
    return orig.apply(this, args);
  };
};
wrap(JSON, 'stringify', 'jsonStringify');
wrap(JSON, 'parse', 'jsonParse');
wrap(XMLParser.prototype, 'parse', 'xmlParse');
wrap(XMLBuilder.prototype, 'build', 'xmlBuild');
process.on('SIGUSR2', () => {
  process.stderr.write(`COUNTS ${JSON.stringify({ ...counts })}\n`);
});
