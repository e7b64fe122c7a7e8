// Shared fast-xml-parser settings and small helpers for reading libvirt XML.

import { XMLBuilder, XMLParser } from 'fast-xml-parser';
import { FastXmlReader } from './xml-read.js';

export const ATTR = '@_';

/** fast-xml-parser with the reader settings: values stay strings, arrays where libvirt can repeat. */
export function makeFullReader(arrayPaths: readonly string[]): XMLParser {
  const set = new Set(arrayPaths);
  // Rendering the path is the costly part of the callback: only do it for tag
  // names that can be arrays at all.
  const names = new Set(arrayPaths.map((p) => p.slice(p.lastIndexOf('.') + 1)));
  return new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: ATTR,
    parseTagValue: false,
    parseAttributeValue: false,
    trimValues: true,
    isArray: (name, jpath) => names.has(name) && set.has(String(jpath)),
  });
}

/** Reader for libvirt's XML: the same objects as makeFullReader, built by the fast reader where it can. */
export function makeReader(arrayPaths: readonly string[]): { parse(xml: string): unknown } {
  return new FastXmlReader(arrayPaths, makeFullReader(arrayPaths));
}

/** Builder for device/metadata fragments; escapes text and attribute values. */
export const fragmentBuilder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: ATTR,
  suppressEmptyNode: true,
  processEntities: true,
});

export type XmlObj = Record<string, unknown>;

export function isObj(v: unknown): v is XmlObj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function child(o: unknown, name: string): unknown {
  return isObj(o) ? o[name] : undefined;
}

export function asArray(v: unknown): unknown[] {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? v : [v];
}

/** Text content of an element that may carry attributes. */
export function text(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  if (isObj(v)) {
    const t = v['#text'];
    if (typeof t === 'string' || typeof t === 'number') return String(t);
    return '';
  }
  return undefined;
}

export function attr(o: unknown, name: string): string | undefined {
  const v = child(o, ATTR + name);
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined;
}

/** Local element name without a namespace prefix. */
export function localName(name: string): string {
  const i = name.indexOf(':');
  return i < 0 ? name : name.slice(i + 1);
}

const UNIT_KIB: Record<string, number> = {
  b: 1 / 1024,
  bytes: 1 / 1024,
  k: 1,
  kib: 1,
  kb: 1000 / 1024,
  m: 1024,
  mib: 1024,
  mb: 1e6 / 1024,
  g: 1024 ** 2,
  gib: 1024 ** 2,
  gb: 1e9 / 1024,
  t: 1024 ** 3,
  tib: 1024 ** 3,
  tb: 1e12 / 1024,
};

/** A libvirt scaled integer (default unit KiB) in KiB, floored. */
export function toKiB(value: string, unit: string | undefined): number {
  const n = Number(value.trim());
  if (!Number.isFinite(n) || n < 0) throw new Error(`bad size value '${value}'`);
  const f = UNIT_KIB[(unit ?? 'KiB').toLowerCase()];
  if (f === undefined) throw new Error(`unknown size unit '${unit}'`);
  return Math.floor(n * f);
}
