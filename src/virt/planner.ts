// "Set memory to X" planner of the oVirt Hot Unplug Memory feature page
// (docs/design.md, "The feature"): which DIMMs to unplug, or what to plug.

import { invalid } from './errors.js';
import type { GuestZone } from './guest-memory.js';

export interface PlannerDimm {
  alias: string;
  /** MiB */
  size: number;
  state: 'plugged' | 'unplugging';
  hotplugged: boolean;
  /** Where the guest holds it (guest-memory.ts); absent: unknown. */
  zone?: GuestZone;
}

/** A DIMM the planner would have taken but did not: the guest holds it in ZONE_NORMAL. */
export interface SkippedDimm {
  alias: string;
  size: number;
  reason: 'not-movable';
}

export type MemoryPlan =
  | { kind: 'none'; requested: number }
  | { kind: 'increase'; requested: number; plugSize: number }
  /** `unplug` may be empty: nothing suitable (the caller decides what that means). */
  | {
      kind: 'decrease';
      requested: number;
      decrement: number;
      unplug: { alias: string; size: number }[];
      /** Candidates left out because the guest would refuse them (not with `force`). */
      skipped: SkippedDimm[];
    };

export const MiB = 1024 * 1024;

export function bytesToMiB(bytes: number): number {
  return Math.floor(bytes / MiB);
}

/**
 * Decrease: d = current - requested; candidates are hot-unpluggable DIMMs not
 * being unplugged with size <= d, by size descending (stable), taken greedily
 * while the running total stays <= d. Increase: one DIMM of the difference,
 * which must be a multiple of the alignment.
 *
 * What the guest says of the DIMMs (docs/design.md, "Guest movability"):
 * candidates it holds in ZONE_NORMAL (zone normal or mixed) are skipped and
 * listed; the greedy pass takes those it can give back (movable, or offline:
 * never onlined) first, then those of unknown zone. When every zone is
 * unknown (no agent) or the same, this is the feature page's plan unchanged.
 * `force`: zones are ignored (the feature page's plan).
 */
export function planMemory(
  currentMiB: number,
  dimms: readonly PlannerDimm[],
  requestedBytes: number,
  alignmentMiB: number,
  opts: { force?: boolean } = {},
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
  const fits = dimms.filter(
    (d) => d.hotplugged && d.state === 'plugged' && d.size > 0 && d.size <= decrement,
  );
  const rank = (d: PlannerDimm): number =>
    opts.force
      ? 0
      : d.zone === 'normal' || d.zone === 'mixed'
        ? 2
        : d.zone === 'movable' || d.zone === 'offline'
          ? 0
          : 1;
  const skipped: SkippedDimm[] = fits
    .filter((d) => rank(d) === 2)
    .map((d) => ({ alias: d.alias, size: d.size, reason: 'not-movable' }));
  const candidates = [
    ...fits.filter((d) => rank(d) === 0).sort((a, b) => b.size - a.size),
    ...fits.filter((d) => rank(d) === 1).sort((a, b) => b.size - a.size),
  ];
  const unplug: { alias: string; size: number }[] = [];
  let total = 0;
  for (const d of candidates) {
    if (total + d.size <= decrement) {
      unplug.push({ alias: d.alias, size: d.size });
      total += d.size;
    }
  }
  return { kind: 'decrease', requested, decrement, unplug, skipped };
}
