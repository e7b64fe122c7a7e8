// The fast XML reader against fast-xml-parser with the same settings, the
// oracle: on real libvirt XML and on generated documents (nesting, repeated
// and listed tags, namespaced names, attributes in either quote, entities,
// comments, whitespace) it must build the same objects, and it must really
// take its fast path on the plain subset, not fall back every time.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import type { XMLParser } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import { makeFullReader } from '../../src/virt/xml-common.js';
import { FastXmlReader } from '../../src/virt/xml-read.js';

const PATHS = ['domain.devices.memory', 'domain.devices.memballoon', 'domain.cpu.numa.cell'];

/** A fast reader whose fallback is counted (and answered by the real full parser). */
function readers(): { fast: FastXmlReader; full: XMLParser; fallbacks: () => number } {
  const full = makeFullReader(PATHS);
  let n = 0;
  const counting = {
    parse: (xml: string) => {
      n++;
      return full.parse(xml);
    },
  } as unknown as XMLParser;
  return { fast: new FastXmlReader(PATHS, counting), full, fallbacks: () => n };
}

const root = join(import.meta.dirname, '../..');
const fixtures = [
  join(root, 'bench/fixtures/live-domain-dimms.xml'),
  ...readdirSync(join(root, 'test/fixtures/virt'))
    .filter((f) => f.endsWith('.xml'))
    .map((f) => join(root, 'test/fixtures/virt', f)),
];

describe('fast XML reader', () => {
  it.each(fixtures)('reads %s like fast-xml-parser, on its fast path', (file) => {
    const xml = readFileSync(file, 'utf8');
    const { fast, full, fallbacks } = readers();
    expect(fast.parse(xml)).toEqual(full.parse(xml));
    expect(fallbacks()).toBe(0);
  });

  it('lists a single listed tag, and repeated tags anywhere', () => {
    const { fast, fallbacks } = readers();
    expect(
      fast.parse(
        "<domain><devices><memory model='dimm'/><disk/><disk a='1'>x</disk></devices><x><memory>1</memory></x></domain>",
      ),
    ).toEqual({
      domain: {
        devices: { memory: [{ '@_model': 'dimm' }], disk: ['', { '@_a': '1', '#text': 'x' }] },
        x: { memory: '1' },
      },
    });
    expect(fallbacks()).toBe(0);
  });

  it('hands what it does not read to the full parser: same result', () => {
    const { fast, full, fallbacks } = readers();
    const docs = [
      '<?xml version="1.0"?><a>1</a>',
      '<a><![CDATA[<x>&]]></a>',
      '<a>&#65;&#x42;</a>',
      '<a b="&nbsp;">t &unknown; u</a>',
      '<a>x\r\ny</a>',
      '<a><__proto__>1</__proto__><constructor>2</constructor></a>',
      '<a b>1</a>',
      '<a><b></a>',
      '<a>& b</a>',
    ];
    // The same value, or the same error (fast-xml-parser refuses __proto__).
    const outcome = (f: () => unknown) => {
      try {
        return { value: f() };
      } catch (err) {
        return { error: String(err) };
      }
    };
    for (const d of docs) expect(outcome(() => fast.parse(d))).toEqual(outcome(() => full.parse(d)));
    expect(fallbacks()).toBe(docs.length);
  });

  it('builds what fast-xml-parser builds on generated documents', () => {
    const names = [
      'domain',
      'devices',
      'memory',
      'memballoon',
      'cpu',
      'numa',
      'cell',
      'a',
      'b-c',
      'ns:vm',
      'x.y',
    ];
    const textChars = fc.constantFrom(
      'a',
      'Z',
      '0',
      ' ',
      '\n',
      '\t',
      '&amp;',
      '&lt;',
      '&gt;',
      '&quot;',
      '&apos;',
      '>',
      '"',
      "'",
      '/',
      '=',
    );
    const text = fc.array(textChars, { maxLength: 8 }).map((a) => a.join(''));
    const attrValue = fc
      .array(fc.constantFrom('v', ' ', '&amp;', '&lt;', '>', '/', '=', '\n'), { maxLength: 6 })
      .map((a) => a.join(''));
    const attrs = fc.uniqueArray(
      fc.tuple(fc.constantFrom('model', 'id', 'name', 'xmlns:ns', 'unit'), attrValue, fc.boolean()),
      {
        selector: (t) => t[0],
        maxLength: 3,
      },
    );
    const ws = fc.constantFrom('', ' ', '\n  ', '\t');
    type Node = {
      name: string;
      attrs: [string, string, boolean][];
      kids: (Node | string)[];
      selfClose: boolean;
      times: number;
    };
    const { node } = fc.letrec<{ node: Node; kid: Node | string }>((tie) => ({
      node: fc.record({
        name: fc.constantFrom(...names),
        attrs,
        kids: fc.array(tie('kid'), { maxLength: 4 }),
        selfClose: fc.boolean(),
        times: fc.integer({ min: 1, max: 3 }), // repeated siblings
      }),
      kid: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        text,
        fc.constant('<!-- c -->'),
        tie('node'),
      ),
    }));
    const render = (n: Node, pad: string): string => {
      const a = n.attrs
        .map(([k, v, dq]) =>
          dq ? ` ${k}="${v.replaceAll('"', '&quot;')}"` : ` ${k}='${v.replaceAll("'", '&apos;')}'`,
        )
        .join('');
      const inner = n.kids
        .map((k) => (typeof k === 'string' ? k.replaceAll('<', '&lt;') : render(k, pad)))
        .join(pad);
      const one =
        n.selfClose && n.kids.length === 0
          ? `<${n.name}${a}${pad}/>`
          : `<${n.name}${a}>${inner}</${n.name}${pad === '\t' ? '' : pad}>`;
      return Array.from({ length: n.times }, () => one).join(pad);
    };
    const { fast, full, fallbacks } = readers();
    let docs = 0;
    fc.assert(
      fc.property(node, ws, (n, pad) => {
        const xml = render({ ...n, name: 'domain', times: 1 }, pad);
        docs++;
        expect(fast.parse(xml)).toEqual(full.parse(xml));
      }),
      { numRuns: 2000, seed: 12 },
    );
    // The generator stays in the plain subset: the fast path did the work.
    expect(fallbacks()).toBe(0);
    expect(docs).toBe(2000);
  });
});
