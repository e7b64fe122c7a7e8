// Minimal reader of V8 .heapsnapshot files (the JSON node writes with
// v8.writeHeapSnapshot): object counts and self sizes by constructor, and who
// retains the objects of one constructor. Enough to diff two snapshots.
import { readFileSync } from 'node:fs';

interface RawSnapshot {
  snapshot: {
    meta: {
      node_fields: string[];
      node_types: [string[], ...unknown[]];
      edge_fields: string[];
      edge_types: [string[], ...unknown[]];
    };
  };
  nodes: number[];
  edges: number[];
  strings: string[];
}

export interface Tally {
  count: number;
  selfBytes: number;
}

export class HeapSnapshot {
  private readonly s: RawSnapshot;
  private readonly nf: number;
  private readonly ef: number;
  private readonly nodeTypes: string[];
  private readonly edgeTypes: string[];
  private readonly iType: number;
  private readonly iName: number;
  private readonly iSize: number;
  private readonly iEdges: number;
  private readonly eType: number;
  private readonly eName: number;
  private readonly eTo: number;

  constructor(file: string) {
    this.s = JSON.parse(readFileSync(file, 'utf8')) as RawSnapshot;
    const m = this.s.snapshot.meta;
    this.nf = m.node_fields.length;
    this.ef = m.edge_fields.length;
    this.nodeTypes = m.node_types[0];
    this.edgeTypes = m.edge_types[0];
    this.iType = m.node_fields.indexOf('type');
    this.iName = m.node_fields.indexOf('name');
    this.iSize = m.node_fields.indexOf('self_size');
    this.iEdges = m.node_fields.indexOf('edge_count');
    this.eType = m.edge_fields.indexOf('type');
    this.eName = m.edge_fields.indexOf('name_or_index');
    this.eTo = m.edge_fields.indexOf('to_node');
  }

  get nodeCount(): number {
    return this.s.nodes.length / this.nf;
  }

  /** Grouping key of the node at array offset `at`: "type:name", strings lumped by type. */
  key(at: number): string {
    const type = this.nodeTypes[this.s.nodes[at + this.iType] ?? 0] ?? '?';
    if (
      type === 'string' ||
      type === 'concatenated string' ||
      type === 'sliced string' ||
      type === 'number'
    ) {
      return `(${type})`;
    }
    const name = this.s.strings[this.s.nodes[at + this.iName] ?? 0] ?? '?';
    return `${type}:${name.length > 80 ? `${name.slice(0, 77)}...` : name}`;
  }

  /** Count and self size per key. */
  tally(): Map<string, Tally> {
    const out = new Map<string, Tally>();
    const nodes = this.s.nodes;
    for (let at = 0; at < nodes.length; at += this.nf) {
      const k = this.key(at);
      const t = out.get(k) ?? { count: 0, selfBytes: 0 };
      t.count++;
      t.selfBytes += nodes[at + this.iSize] ?? 0;
      out.set(k, t);
    }
    return out;
  }

  /** For nodes whose key is `target`: how often each "retainer key --edge-->" points at one. */
  retainersOf(target: string, limit = 10): [string, number][] {
    const nodes = this.s.nodes;
    const edges = this.s.edges;
    const hits = new Map<string, number>();
    let edgeAt = 0;
    for (let at = 0; at < nodes.length; at += this.nf) {
      const n = nodes[at + this.iEdges] ?? 0;
      for (let e = 0; e < n; e++, edgeAt += this.ef) {
        const to = edges[edgeAt + this.eTo] ?? 0;
        if (this.key(to) !== target) continue;
        const etype = this.edgeTypes[edges[edgeAt + this.eType] ?? 0] ?? '?';
        if (etype === 'weak') continue;
        const raw = edges[edgeAt + this.eName] ?? 0;
        const ename = etype === 'element' || etype === 'hidden' ? `[${etype}]` : (this.s.strings[raw] ?? '?');
        const k = `${this.key(at)} --${ename}-->`;
        hits.set(k, (hits.get(k) ?? 0) + 1);
      }
    }
    return [...hits.entries()].sort((a, b) => b[1] - a[1]).slice(0, limit);
  }
}
