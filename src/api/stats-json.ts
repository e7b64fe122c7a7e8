// VmStats as JSON, serialised once per stats object, for VM.getStats (a VM
// polled often is answered from its text: 0.6 -> 0.94x of the bare ws echo).
// The VM's worker builds a new, frozen VmStats whenever anything in it
// changes (vm-stats.ts), so an object's text never goes stale and the cache
// empties itself as old stats are collected. Host.getAllVmStats does not use
// it (see host-methods.ts).

import { RawJson } from '../rpc/raw-json.js';
import type { VmStats } from '../virt/types.js';

const texts = new WeakMap<VmStats, string>();

export function statsJson(s: VmStats): string {
  let t = texts.get(s);
  if (t === undefined) {
    t = JSON.stringify(s);
    texts.set(s, t);
  }
  return t;
}

/** A list of stats as a result: the cached texts joined. */
export function statsListResult(list: readonly VmStats[]): RawJson<VmStats[]> {
  return new RawJson<VmStats[]>(`[${list.map(statsJson).join(',')}]`);
}
