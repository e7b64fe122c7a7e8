// A fast reader for the XML libvirt writes (domain XML, our metadata). It
// builds exactly the object fast-xml-parser builds with the daemon's reader
// settings (xml-common.ts: attributes as '@_name', text as '#text' or the
// value itself, values trimmed strings, repeated or listed tags as arrays),
// in one pass with indexOf and no per-node callbacks: parsing the live XML
// on every change of a VM was the largest part of an unplug's CPU time
// (bench/README.md). It reads only a plain subset (elements, quoted
// attributes, text, comments, the five predefined entities); anything else
// (CDATA, DOCTYPE, processing instructions, other references, a carriage
// return, unusual names, malformed input) is handed to fast-xml-parser
// unchanged, so the result never differs (test/unit/virt-xml-read.test.ts
// compares the two on generated documents).

import type { XMLParser } from 'fast-xml-parser';

export type XmlValue = string | XmlNode | XmlValue[];
export interface XmlNode {
  [key: string]: XmlValue;
}

/** Thrown inside the fast path: this input is for the full parser. */
class Unsupported extends Error {}
const UNSUPPORTED = new Unsupported();

// Names fast-xml-parser renames or refuses, and anything our plain objects
// could confuse with their prototype: left to the full parser.
const RISKY_NAME =
  /^(?:__|constructor$|prototype$|hasOwnProperty$|toString$|valueOf$|isPrototypeOf$|propertyIsEnumerable$|toLocaleString$)/;
const NAME = /^[A-Za-z][\w.:-]*$/;
const ENTITIES = new Map([
  ['lt', '<'],
  ['gt', '>'],
  ['amp', '&'],
  ['quot', '"'],
  ['apos', "'"],
]);
const ATTR = /\s*([^\s=]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/y;

function checkName(n: string): string {
  if (!NAME.test(n) || RISKY_NAME.test(n)) throw UNSUPPORTED;
  return n;
}

/** Trims, then replaces the predefined entities (fast-xml-parser's order). */
function value(raw: string): string {
  const v = raw.trim();
  if (v.indexOf('&') < 0) return v;
  let out = '';
  let from = 0;
  for (let amp = v.indexOf('&'); amp >= 0; amp = v.indexOf('&', from)) {
    const semi = v.indexOf(';', amp);
    const rep = semi < 0 ? undefined : ENTITIES.get(v.slice(amp + 1, semi));
    if (rep === undefined) throw UNSUPPORTED; // numeric or other references
    out += v.slice(from, amp) + rep;
    from = semi + 1;
  }
  return out + v.slice(from);
}

interface Frame {
  name: string;
  path: string;
  obj: XmlNode;
  attrs: XmlNode | undefined;
  text: string | undefined;
  hasChild: boolean;
}

export class FastXmlReader {
  private readonly arrayNames: Set<string>;
  private readonly arrayPaths: Set<string>;

  constructor(
    arrayPaths: readonly string[],
    private readonly full: XMLParser,
  ) {
    this.arrayPaths = new Set(arrayPaths);
    this.arrayNames = new Set(arrayPaths.map((p) => p.slice(p.lastIndexOf('.') + 1)));
  }

  parse(xml: string): unknown {
    try {
      return this.fast(xml);
    } catch (err) {
      if (err !== UNSUPPORTED) throw err;
      return this.full.parse(xml);
    }
  }

  private fast(xml: string): XmlNode {
    if (xml.indexOf('\r') >= 0) throw UNSUPPORTED; // the full parser normalises line ends
    const root: Frame = { name: '', path: '', obj: {}, attrs: undefined, text: undefined, hasChild: false };
    const stack: Frame[] = [root];
    let top = root;
    let raw = ''; // text since the last tag, across comments (as the full parser keeps it)
    let i = 0;
    const n = xml.length;
    while (i < n) {
      const lt = xml.indexOf('<', i);
      if (lt < 0) {
        raw += xml.slice(i);
        break;
      }
      raw += xml.slice(i, lt);
      const c = xml.charCodeAt(lt + 1);
      if (c === 33 /* ! */) {
        if (!xml.startsWith('<!--', lt)) throw UNSUPPORTED; // CDATA, DOCTYPE
        const end = xml.indexOf('-->', lt + 4);
        if (end < 0) throw UNSUPPORTED;
        i = end + 3;
        continue;
      }
      if (c === 63 /* ? */) throw UNSUPPORTED;
      if (c === 47 /* / */) {
        const gt = xml.indexOf('>', lt + 2);
        if (gt < 0 || stack.length === 1) throw UNSUPPORTED;
        if (xml.slice(lt + 2, gt).trim() !== top.name) throw UNSUPPORTED;
        this.flushText(top, raw);
        raw = '';
        stack.pop();
        const parent = stack[stack.length - 1]!;
        this.close(top, parent);
        top = parent;
        i = gt + 1;
        continue;
      }
      // Opening tag: the name, then attributes until '>' or '/>'.
      let j = lt + 1;
      while (j < n) {
        const ch = xml.charCodeAt(j);
        if (ch === 62 || ch === 47 || ch === 32 || ch === 10 || ch === 9) break;
        j++;
      }
      const name = checkName(xml.slice(lt + 1, j));
      if (stack.length === 1) {
        if (raw.trim() !== '') throw UNSUPPORTED; // text outside the root
      } else {
        this.flushText(top, raw);
      }
      raw = '';
      let attrs: XmlNode | undefined;
      for (;;) {
        let ch = xml.charCodeAt(j);
        while (ch === 32 || ch === 10 || ch === 9) ch = xml.charCodeAt(++j);
        if (ch === 62 || ch === 47) break;
        ATTR.lastIndex = j;
        const m = ATTR.exec(xml);
        if (!m) throw UNSUPPORTED; // no value, unquoted, or cut off
        attrs ??= {};
        attrs[`@_${checkName(m[1]!)}`] = value(m[2] ?? m[3]!);
        j = ATTR.lastIndex;
      }
      const selfClosing = xml.charCodeAt(j) === 47;
      if (selfClosing && xml.charCodeAt(j + 1) !== 62) throw UNSUPPORTED;
      const path = stack.length === 1 ? name : `${top.path}.${name}`;
      const frame: Frame = { name, path, obj: {}, attrs, text: undefined, hasChild: false };
      if (selfClosing) {
        this.close(frame, top);
        i = j + 2;
      } else {
        if (stack.length > 100) throw UNSUPPORTED; // the full parser's nesting limit
        stack.push(frame);
        top = frame;
        i = j + 1;
      }
    }
    if (stack.length !== 1 || raw.trim() !== '') throw UNSUPPORTED;
    return root.obj;
  }

  private flushText(f: Frame, raw: string): void {
    if (raw === '') return;
    const v = value(raw);
    if (v !== '') f.text = f.text === undefined ? v : f.text + v;
  }

  /** Compresses a closed element as fast-xml-parser does and adds it to its parent. */
  private close(f: Frame, parent: Frame): void {
    let val: XmlValue;
    if (f.text !== undefined) f.obj['#text'] = f.text;
    if (f.attrs) {
      val = f.obj;
      for (const k in f.attrs) val[k] = f.attrs[k]!;
    } else if (!f.hasChild) {
      val = f.text ?? '';
    } else {
      val = f.obj;
    }
    parent.hasChild = true;
    const o = parent.obj;
    const prev = Object.hasOwn(o, f.name) ? o[f.name] : undefined;
    if (prev === undefined) o[f.name] = this.isListed(f) ? [val] : val;
    else if (Array.isArray(prev)) prev.push(val);
    else o[f.name] = [prev, val];
  }

  private isListed(f: Frame): boolean {
    return this.arrayNames.has(f.name) && this.arrayPaths.has(f.path);
  }
}
