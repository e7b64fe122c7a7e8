// VM.* methods: memory hot plug, hot unplug and "set memory to X". Each
// handler checks what the schema cannot (vmId agreement), converts units and
// calls the VM manager; the manager owns all semantics.
import { randomUUID } from 'node:crypto';
import type { MethodContext, MethodSpec } from '../rpc/method.js';
import type { VmManager } from '../virt/vm-manager.js';
import { invalidParam, mapErrors } from './error-mapping.js';
import {
  hotplugParams,
  hotunplugParams,
  setMemoryParams,
  setMemoryResultSchema,
  unplugResultSchema,
  vmIdParams,
  vmStatsSchema,
} from './schemas.js';

interface VmIdParams {
  vmID: string;
}
interface HotplugParams {
  vmID: string;
  params: {
    vmId: string;
    memory: { size: number; node: number; alias?: string };
    memGuaranteedSize?: number;
  };
}
interface HotunplugParams {
  vmID: string;
  params: {
    vmId: string;
    memory: {
      size: number;
      node: number;
      alias: string;
      address?: { type?: 'dimm'; slot?: number; base?: string };
    };
    memGuaranteedSize?: number;
  };
  timeout?: number;
}
interface SetMemoryParams {
  vmID: string;
  memory: number;
  guaranteed?: number;
  timeout?: number;
}

/** VDSM sends the VM id twice; a mismatch is a caller bug we must not guess about. */
function sameVm(vmID: string, vmId: string): void {
  if (vmID.toLowerCase() !== vmId.toLowerCase()) {
    throw invalidParam('params.vmId', 'equals vmID', `must equal vmID (${vmID})`);
  }
}

/** An operation id ties the request's log lines to the VM manager's step lines. */
function opIdOf(ctx: MethodContext): string {
  const opId = `op-${randomUUID().slice(0, 8)}`;
  ctx.log.info({ opId, requestId: ctx.requestId, connectionId: ctx.connectionId }, 'operation accepted');
  return opId;
}

const seconds = (s: number | undefined): number | undefined => (s === undefined ? undefined : s * 1000);

export function vmMethods(vms: VmManager): MethodSpec[] {
  const getStats: MethodSpec<VmIdParams, unknown> = {
    name: 'VM.getStats',
    logLevel: 'debug',
    summary: "A VM's memory and memory devices.",
    params: vmIdParams,
    result: vmStatsSchema,
    errors: [{ code: 1, message: 'no such VM' }],
    handler: async ({ vmID }) => mapErrors(async () => vms.stats(vmID.toLowerCase())),
  };
  const hotplug: MethodSpec<HotplugParams, unknown> = {
    name: 'VM.hotplugMemory',
    summary: 'Hot plug one DIMM into a running VM.',
    params: hotplugParams,
    result: vmStatsSchema,
    errors: [
      { code: 1, message: 'no such VM' },
      { code: 51, message: 'VM is migrating' },
      { code: 70, message: 'hot plug failed' },
    ],
    handler: async ({ vmID, params }, ctx) => {
      sameVm(vmID, params.vmId);
      return mapErrors(() =>
        vms.hotplugMemory(vmID.toLowerCase(), params.memory, {
          memGuaranteedSize: params.memGuaranteedSize,
          opId: opIdOf(ctx),
        }),
      );
    },
  };
  const hotunplug: MethodSpec<HotunplugParams, unknown> = {
    name: 'VM.hotunplugMemory',
    summary: 'Hot unplug one previously hot-plugged DIMM and wait until the guest releases it.',
    params: hotunplugParams,
    result: unplugResultSchema,
    errors: [
      { code: 1, message: 'no such VM' },
      { code: 51, message: 'VM is migrating' },
      { code: 85, message: 'hot unplug failed' },
    ],
    handler: async ({ vmID, params, timeout }, ctx) => {
      sameVm(vmID, params.vmId);
      const { address, ...memory } = params.memory;
      return mapErrors(() =>
        vms.hotunplugMemory(
          vmID.toLowerCase(),
          { ...memory, address: address && { slot: address.slot, base: address.base } },
          { memGuaranteedSize: params.memGuaranteedSize, timeoutMs: seconds(timeout), opId: opIdOf(ctx) },
        ),
      );
    },
  };
  const setMemory: MethodSpec<SetMemoryParams, unknown> = {
    name: 'VM.setMemory',
    summary:
      "Set a running VM's memory to X bytes: unplug the DIMMs the planner picks (or plug one), set guaranteed memory and the next-run configuration.",
    params: setMemoryParams,
    result: setMemoryResultSchema,
    errors: [
      { code: 1, message: 'no such VM' },
      { code: 51, message: 'VM is migrating' },
      { code: 70, message: 'hot plug failed' },
      { code: 85, message: 'hot unplug failed' },
    ],
    handler: async ({ vmID, memory, guaranteed, timeout }, ctx) => {
      if (guaranteed !== undefined && guaranteed > memory) {
        throw invalidParam('guaranteed', '<= memory', 'must not exceed memory');
      }
      return mapErrors(() =>
        vms.setMemory(vmID.toLowerCase(), memory, {
          guaranteedBytes: guaranteed,
          timeoutMs: seconds(timeout),
          opId: opIdOf(ctx),
        }),
      );
    },
  };
  return [getStats, hotplug, hotunplug, setMemory] as MethodSpec[];
}
