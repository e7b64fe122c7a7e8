// "Set memory to X" planner of the oVirt Hot Unplug Memory feature page
// (docs/design.md, "The feature"): which DIMMs to unplug, or what to plug.

import { invalid } from './errors.js';

export interface PlannerDimm {
  alias: string;
  /** MiB */
  size: number;
  state: 'plugged' | 'unplugging';
  hotplugged: boolean;
}

export type MemoryPlan =
  | { kind: 'none'; requested: number }
  | { kind: 'increase'; requested: number; plugSize: number }
  /** `unplug` may be empty: nothing suitable (the caller decides what that means). */
  | { kind: 'decrease'; requested: number; decrement: number; unplug: { alias: string; size: number }[] };

export const MiB = 1024 * 1024;

export function bytesToMiB(bytes: number): number {
  return Math.floor(bytes / MiB);
}

/**
 * Decrease: d = current - requested; candidates are hot-unpluggable DIMMs not
 * being unplugged with size <= d, by size descending (stable), taken greedily
 * while the running total stays <= d. Increase: one DIMM of the difference,
 * which must be a multiple of the alignment.
 */
export function planMemory(
  currentMiB: number,
  dimms: readonly PlannerDimm[],
  requestedBytes: number,
  alignmentMiB: number,
): MemoryPlan {
  const requested = bytesToMiB(requestedBytes);
  if (requested === currentMiB) return { kind: 'none', requested };
  if (requested > currentMiB) {
    const plugSize = requested - currentMiB;
    if (plugSize % alignmentMiB !== 0) {
      throw invalid(
        'memory',
        `increase must be a multiple of ${alignmentMiB} MiB`,
        `memory increase of ${plugSize} MiB is not a multiple of the DIMM alignment (${alignmentMiB} MiB)`,
      );
    }
    return { kind: 'increase', requested, plugSize };
  }
  const decrement = currentMiB - requested;
  // Array.prototype.sort is stable, so equal sizes keep device order.
  const candidates = dimms
    .filter((d) => d.hotplugged && d.state === 'plugged' && d.size > 0 && d.size <= decrement)
    .sort((a, b) => b.size - a.size);
  const unplug: { alias: string; size: number }[] = [];
  let total = 0;
  for (const d of candidates) {
    if (total + d.size <= decrement) {
      unplug.push({ alias: d.alias, size: d.size });
      total += d.size;
    }
  }
  return { kind: 'decrease', requested, decrement, unplug };
}
