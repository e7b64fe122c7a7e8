// The virtio-mem step of "set memory to X" (set-memory.ts): after the DIMM
// step, each virtio-mem device is resized by what planVirtioMem gives, one
// after the other, measured on the live memory (so it absorbs what the DIMM
// step could not do). A device that stops short is reported with the size it
// reached (and settled there), never hidden; the others still run.

import type { LibvirtApi } from '../libvirt/types.js';
import { VirtError } from './errors.js';
import type { OpLog } from './op-context.js';
import { type ResizeTarget, resizeOne } from './resize-memory.js';
import { isLiveVirtioMem } from './virtio-mem.js';
import { planVirtioMem } from './virtio-mem-plan.js';

export interface VirtioMemStep {
  resized: { alias: string; requested: number; current: number }[];
  failed: { alias: string; reason: string }[];
}

export function hasVirtioMem(target: ResizeTarget): boolean {
  const vm = target.require();
  return vm.active && vm.dom.virtioMem.some(isLiveVirtioMem);
}

export async function resizeVirtioMemTo(
  client: LibvirtApi,
  target: ResizeTarget,
  targetMiB: number,
  o: {
    timeoutMs: number;
    stallMs: number;
    op: OpLog;
    report?: (alias: string, outcome: string, durationMs: number) => void;
  },
): Promise<VirtioMemStep> {
  const step: VirtioMemStep = { resized: [], failed: [] };
  const vm = target.require();
  const plan = planVirtioMem(vm.dom.memory, targetMiB, vm.dom.virtioMem.filter(isLiveVirtioMem));
  o.op('planned virtio-mem', { memory: vm.dom.memory, target: targetMiB, resize: plan });
  for (const p of plan) {
    try {
      const r = await resizeOne(client, target, p.alias, {
        requested: p.requested,
        timeoutMs: o.timeoutMs,
        stallMs: o.stallMs,
        onFailure: 'settle',
        op: (s, extra) => o.op(s, { alias: p.alias, ...extra }),
        ...(o.report ? { report: (outcome: string, ms: number) => o.report?.(p.alias, outcome, ms) } : {}),
      });
      step.resized.push({ alias: r.alias, requested: r.requested, current: r.current });
    } catch (err) {
      if (!(err instanceof VirtError)) throw err;
      step.failed.push({ alias: p.alias, reason: err.reason });
      const current = typeof err.details.current === 'number' ? err.details.current : undefined;
      const now = typeof err.details.requestedNow === 'number' ? err.details.requestedNow : p.requested;
      if (current !== undefined) step.resized.push({ alias: p.alias, requested: now, current });
    }
  }
  return step;
}
