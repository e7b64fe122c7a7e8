// Daemon-owned facts stored in the domain's own <metadata> under our
// namespace, so a restarted daemon loses nothing and needs no database.

import { escapeXml } from '../xml-escape.js';
import { ATTR, asArray, attr, isObj, localName, makeReader, text, type XmlObj } from './xml-common.js';

export const METADATA_URI = 'http://ovirt.org/vmhostd/1.0';
export const METADATA_PREFIX = 'vmhostd';

export interface UnplugMark {
  alias: string;
  /** ISO time the unplug was requested. */
  since: string;
}

export interface VmMetadata {
  /** MiB; null when never set (defaults to the VM's memory). */
  guaranteedMiB: number | null;
  /** Aliases of the DIMMs present when the VM started; null when not recorded. */
  bootDimms: string[] | null;
  unplugging: UnplugMark[];
  /**
   * Aliases of the DIMMs in the live XML when this was written (absent when
   * not recorded): one that is gone at a restart was removed while the
   * daemon was away, so an unplug needs no mark before its detach.
   */
  present?: string[];
  /**
   * Resizes of virtio-mem devices still pending a while after they were
   * asked (absent when none): a restarted daemon adopts them and reports
   * their end (docs/design.md, "Recovery").
   */
  resizing?: ResizeMark[];
}

export interface ResizeMark {
  alias: string;
  /** ISO time the resize was requested. */
  since: string;
  /** MiB asked of the guest. */
  requested: number;
  /** ISO time it gives up; absent when it has none (kept after a failure). */
  deadline?: string;
  onFailure: 'settle' | 'keep';
}

export function emptyMetadata(): VmMetadata {
  return { guaranteedMiB: null, bootDimms: null, unplugging: [] };
}

/** Strips namespace prefixes from element names, recursively. */
function unprefix(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(unprefix);
  if (!isObj(v)) return v;
  const out: XmlObj = {};
  for (const [k, val] of Object.entries(v)) {
    out[k.startsWith(ATTR) || k === '#text' ? k : localName(k)] = unprefix(val);
  }
  return out;
}

/** Reads our <vm> element (already parsed, names possibly prefixed). */
export function metadataFromElement(el: unknown): VmMetadata {
  const vm = unprefix(el);
  const md = emptyMetadata();
  if (!isObj(vm)) return md;
  const g = text(vm.guaranteed);
  if (g !== undefined && /^\d+$/.test(g.trim())) md.guaranteedMiB = Number(g.trim());
  if (vm.bootDimms !== undefined) {
    md.bootDimms = [];
    for (const d of asArray(isObj(vm.bootDimms) ? vm.bootDimms.dimm : undefined)) {
      const a = attr(d, 'alias');
      if (a) md.bootDimms.push(a);
    }
  }
  for (const d of asArray(isObj(vm.unplugging) ? vm.unplugging.dimm : undefined)) {
    const a = attr(d, 'alias');
    if (a) md.unplugging.push({ alias: a, since: attr(d, 'since') ?? '' });
  }
  const resizing = asArray(isObj(vm.resizing) ? vm.resizing.device : undefined)
    .map(resizeMarkOf)
    .filter((m) => m !== undefined);
  if (resizing.length) md.resizing = resizing;
  if (vm.present !== undefined) {
    md.present = [];
    for (const d of asArray(isObj(vm.present) ? vm.present.dimm : undefined)) {
      const a = attr(d, 'alias');
      if (a) md.present.push(a);
    }
  }
  return md;
}

/** A resize mark, or undefined when it lacks what a restart needs (it is then ignored). */
function resizeMarkOf(d: unknown): ResizeMark | undefined {
  const alias = attr(d, 'alias');
  const since = attr(d, 'since');
  const requested = attr(d, 'requested');
  const deadline = attr(d, 'deadline');
  const onFailure = attr(d, 'onFailure');
  if (!alias || !since || requested === undefined || !/^\d+$/.test(requested)) return undefined;
  if (onFailure !== 'settle' && onFailure !== 'keep') return undefined;
  if (deadline !== undefined && Number.isNaN(Date.parse(deadline))) return undefined;
  return {
    alias,
    since,
    requested: Number(requested),
    ...(deadline !== undefined ? { deadline } : {}),
    onFailure,
  };
}

const reader = makeReader([]);

/** Parses the string virDomainGetMetadata returns for our namespace. */
export function parseMetadata(xml: string): VmMetadata {
  const doc = reader.parse(xml) as XmlObj;
  const rootKey = Object.keys(doc).find((k) => localName(k) === 'vm');
  return rootKey === undefined ? emptyMetadata() : metadataFromElement(doc[rootKey]);
}

/**
 * Finds our element among the children of a parsed <metadata> by its
 * namespace URI (whatever prefix the writer chose).
 */
export function findOurElement(metadata: unknown): unknown {
  if (!isObj(metadata)) return undefined;
  for (const [k, v] of Object.entries(metadata)) {
    if (k.startsWith(ATTR) || k === '#text') continue;
    for (const el of asArray(v)) {
      if (!isObj(el)) continue;
      const i = k.indexOf(':');
      const nsAttr = i < 0 ? 'xmlns' : `xmlns:${k.slice(0, i)}`;
      if (attr(el, nsAttr) === METADATA_URI && localName(k) === 'vm') return el;
    }
  }
  return undefined;
}

/**
 * The fragment given to virDomainSetMetadata (libvirt attaches the namespace
 * with our key as prefix). Values are escaped by the builder.
 */
export function buildMetadata(md: VmMetadata): string {
  // A template, not the XML builder (written after every removal); the same
  // bytes the builder wrote (test/unit/virt-metadata.test.ts).
  const dimms = (name: string, aliases: readonly string[]) =>
    aliases.length
      ? `<${name}>${aliases.map((a) => `<dimm alias="${escapeXml(a)}"/>`).join('')}</${name}>`
      : `<${name}/>`;
  let body = '';
  if (md.guaranteedMiB !== null) body += `<guaranteed>${escapeXml(String(md.guaranteedMiB))}</guaranteed>`;
  if (md.bootDimms !== null) body += dimms('bootDimms', md.bootDimms);
  if (md.unplugging.length) {
    body += `<unplugging>${md.unplugging
      .map((u) => `<dimm alias="${escapeXml(u.alias)}" since="${escapeXml(u.since)}"/>`)
      .join('')}</unplugging>`;
  }
  if (md.present !== undefined) body += dimms('present', md.present);
  if (md.resizing?.length) {
    body += `<resizing>${md.resizing
      .map(
        (r) =>
          `<device alias="${escapeXml(r.alias)}" since="${escapeXml(r.since)}" requested="${r.requested}"` +
          (r.deadline !== undefined ? ` deadline="${escapeXml(r.deadline)}"` : '') +
          ` onFailure="${r.onFailure}"/>`,
      )
      .join('')}</resizing>`;
  }
  return body ? `<vm>${body}</vm>` : '<vm/>';
}
