// Edits the memory of a persistent domain's inactive (next-run) definition:
// <memory>, <currentMemory> and the NUMA cells, which libvirt treats as the
// authoritative initial memory. Everything else round-trips unchanged.

import { XMLBuilder, XMLParser } from 'fast-xml-parser';
import { ATTR, toKiB } from './xml-common.js';

type Node = Record<string, unknown>;

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: ATTR,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  processEntities: true,
});
const builder = new XMLBuilder({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: ATTR,
  suppressEmptyNode: true,
  processEntities: true,
});

function tagOf(n: Node): string | undefined {
  return Object.keys(n).find((k) => k !== ':@' && k !== '#text');
}
function kids(n: Node): Node[] {
  const t = tagOf(n);
  const v = t === undefined ? undefined : n[t];
  return Array.isArray(v) ? (v as Node[]) : [];
}
function find(nodes: Node[], tag: string): Node | undefined {
  return nodes.find((n) => tagOf(n) === tag);
}
function findAll(nodes: Node[], tag: string): Node[] {
  return nodes.filter((n) => tagOf(n) === tag);
}
function attrs(n: Node): Record<string, string> {
  let a = n[':@'] as Record<string, string> | undefined;
  if (!a) {
    a = {};
    n[':@'] = a;
  }
  return a;
}
function textOf(n: Node): string {
  return kids(n)
    .map((k) => (typeof k['#text'] === 'string' || typeof k['#text'] === 'number' ? String(k['#text']) : ''))
    .join('');
}
function setText(n: Node, value: string): void {
  const t = tagOf(n);
  if (t !== undefined) n[t] = [{ '#text': value }];
}
function sizeKiB(n: Node): number {
  return toKiB(textOf(n), attrs(n)[`${ATTR}unit`]);
}
function setSizeKiB(n: Node, kib: number): void {
  attrs(n)[`${ATTR}unit`] = 'KiB';
  setText(n, String(kib));
}

export interface MemoryEdit {
  /** New total <memory> in KiB (initial memory plus the definition's memory devices). */
  totalKiB: number;
  /**
   * Preferred per-node changes of the NUMA cells (KiB), e.g. the node of a
   * plugged or unplugged DIMM. What they leave over goes to the largest cell.
   */
  nodeDeltasKiB?: ReadonlyMap<number, number>;
  /** New `<requested>` (KiB) of virtio-mem devices, by alias: their next-boot size. */
  requestedKiB?: ReadonlyMap<string, number>;
}

/** Minimum a NUMA cell may shrink to. */
const MIN_CELL_KIB = 128 * 1024;

export function editInactiveMemory(xml: string, edit: MemoryEdit): string {
  const tree = parser.parse(xml) as Node[];
  const domain = find(tree, 'domain');
  if (!domain) throw new Error('domain XML: no <domain> element');
  const top = kids(domain);
  const memory = find(top, 'memory');
  if (!memory) throw new Error('domain XML: no <memory>');
  const oldTotal = sizeKiB(memory);

  let deviceKiB = 0;
  for (const dev of findAll(kids(find(top, 'devices') ?? {}), 'memory')) {
    const size = find(kids(find(kids(dev), 'target') ?? {}), 'size');
    if (size) deviceKiB += sizeKiB(size);
  }
  const newInitial = edit.totalKiB - deviceKiB;
  if (newInitial < MIN_CELL_KIB)
    throw new RangeError('next-run memory would leave too little initial memory');

  const numa = find(kids(find(top, 'cpu') ?? {}), 'numa');
  const cells = numa ? findAll(kids(numa), 'cell') : [];
  if (cells.length) {
    const mem = cells.map((c) => {
      const a = attrs(c);
      return toKiB(a[`${ATTR}memory`] ?? '0', a[`${ATTR}unit`]);
    });
    const ids = cells.map((c, i) => Number(attrs(c)[`${ATTR}id`] ?? i));
    let residual = newInitial - mem.reduce((s, m) => s + m, 0);
    for (const [node, delta] of edit.nodeDeltasKiB ?? []) {
      const i = ids.indexOf(node);
      if (i < 0 || residual === 0) continue;
      // Only move in the direction of the overall change, and never past it.
      const d =
        residual > 0 ? Math.min(Math.max(delta, 0), residual) : Math.max(Math.min(delta, 0), residual);
      const applied = Math.max(d, MIN_CELL_KIB - mem[i]!);
      mem[i]! += applied;
      residual -= applied;
    }
    while (residual !== 0) {
      let i = 0;
      for (let j = 1; j < mem.length; j++) if (mem[j]! > mem[i]!) i = j;
      const applied = residual > 0 ? residual : Math.max(residual, MIN_CELL_KIB - mem[i]!);
      if (applied === 0) throw new RangeError('next-run memory does not fit the NUMA cells');
      mem[i]! += applied;
      residual -= applied;
    }
    cells.forEach((c, i) => {
      const a = attrs(c);
      a[`${ATTR}memory`] = String(mem[i]);
      a[`${ATTR}unit`] = 'KiB';
    });
  }

  for (const [alias, kib] of edit.requestedKiB ?? []) {
    const dev = findAll(kids(find(top, 'devices') ?? {}), 'memory').find(
      (d) =>
        attrs(d)[`${ATTR}model`] === 'virtio-mem' &&
        attrs(find(kids(d), 'alias') ?? {})[`${ATTR}name`] === alias,
    );
    const requested = dev && find(kids(find(kids(dev), 'target') ?? {}), 'requested');
    if (!requested)
      throw new Error(`domain XML: no virtio-mem device ${alias} with a <requested> in the definition`);
    setSizeKiB(requested, kib);
  }

  setSizeKiB(memory, edit.totalKiB);
  const current = find(top, 'currentMemory');
  if (current) {
    const cur = sizeKiB(current);
    setSizeKiB(current, cur === oldTotal ? edit.totalKiB : Math.min(cur, edit.totalKiB));
  }
  return builder.build(tree) as string;
}
