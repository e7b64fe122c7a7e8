// VM.* methods: memory hot plug, hot unplug and "set memory to X". Each
// handler checks what the schema cannot (vmId agreement), converts units and
// calls the VM manager; the manager owns all semantics.

import { randomUUID } from 'node:crypto';
import type { MethodContext, MethodSpec } from '../rpc/method.js';
import type { VmManager } from '../virt/vm-manager.js';
import { ErrorCode } from './contract.js';
import { defineMethod } from './define-method.js';
import { invalidParam, mapErrors } from './error-mapping.js';
import { memoryOf, toHotplugSpec, toHotunplugSpec } from './memory-device.js';
import {
  HotplugParams,
  HotunplugParams,
  ResizeMemoryDeviceParams,
  ResizeResult,
  SetMemoryParams,
  SetMemoryResult,
  UnplugResult,
  VmIdParams,
  VmStats,
  VmStatsList,
} from './schemas.js';
import { statsListResult } from './stats-json.js';

/** VDSM sends the VM id twice; a mismatch is a caller bug we must not guess about. */
function sameVm(vmID: string, vmId: string): void {
  if (vmID.toLowerCase() !== vmId.toLowerCase()) {
    throw invalidParam('params.vmId', 'equals vmID', `must equal vmID (${vmID})`);
  }
}

/**
 * An operation id ties the request's "rpc call" line to the VM manager's
 * step lines. It rides on that one line rather than a line of its own (an
 * unplug logs two lines at info, not three: log lines are a large share of
 * its CPU, bench/README.md).
 */
function opIdOf(ctx: MethodContext): string {
  const opId = `op-${randomUUID().slice(0, 8)}`;
  ctx.logFields = { ...ctx.logFields, opId };
  ctx.log.debug({ opId, requestId: ctx.requestId, connectionId: ctx.connectionId }, 'operation accepted');
  return opId;
}

const seconds = (s: number | undefined): number | undefined => (s === undefined ? undefined : s * 1000);

const NO_SUCH_VM = { code: ErrorCode.NO_SUCH_VM, message: 'no such VM' };
const MIGRATING = { code: ErrorCode.MIGRATING, message: 'VM is migrating' };
const HOTPLUG_FAILED = { code: ErrorCode.HOTPLUG_FAILED, message: 'hot plug failed' };
const HOTUNPLUG_FAILED = { code: ErrorCode.HOTUNPLUG_FAILED, message: 'hot unplug failed' };

export function vmMethods(vms: VmManager): MethodSpec[] {
  return [
    defineMethod({
      name: 'VM.getStats',
      logLevel: 'debug',
      readOnly: true,
      summary: "A VM's memory and memory devices: as VDSM, a list holding its one VmStats.",
      params: VmIdParams,
      result: VmStatsList,
      errors: [NO_SUCH_VM],
      handler: async ({ vmID }) => mapErrors(async () => statsListResult([vms.stats(vmID.toLowerCase())])),
    }),
    defineMethod({
      name: 'VM.hotplugMemory',
      summary:
        "Hot plug one DIMM into a running VM: params.memory (VDSM's VmMemoryDevice, as ovirt-engine sends it) or params.xml.",
      params: HotplugParams,
      result: VmStats,
      errors: [NO_SUCH_VM, MIGRATING, HOTPLUG_FAILED],
      handler: async ({ vmID, params }, ctx) => {
        sameVm(vmID, params.vmId);
        const spec = toHotplugSpec(memoryOf(params));
        return mapErrors(() =>
          vms.hotplugMemory(vmID.toLowerCase(), spec, {
            memGuaranteedSize: params.memGuaranteedSize,
            opId: opIdOf(ctx),
          }),
        );
      },
    }),
    defineMethod({
      name: 'VM.hotunplugMemory',
      summary:
        'Hot unplug one previously hot-plugged DIMM (found by alias and, where given, slot and base) and wait until the guest releases it. ' +
        'A DIMM the guest agent says the guest holds in ZONE_NORMAL is refused at once (85 not-movable) unless force.',
      params: HotunplugParams,
      result: UnplugResult,
      errors: [NO_SUCH_VM, MIGRATING, HOTUNPLUG_FAILED],
      handler: async ({ vmID, params, timeout, force }, ctx) => {
        sameVm(vmID, params.vmId);
        const spec = toHotunplugSpec(memoryOf(params));
        return mapErrors(() =>
          vms.hotunplugMemory(vmID.toLowerCase(), spec, {
            memGuaranteedSize: params.memGuaranteedSize,
            timeoutMs: seconds(timeout),
            opId: opIdOf(ctx),
            force: force === true,
          }),
        );
      },
    }),
    defineMethod({
      name: 'VM.resizeMemoryDevice',
      summary:
        "Resize a running VM's virtio-mem device to `requested` MiB and wait until the guest has plugged or unplugged its blocks.",
      params: ResizeMemoryDeviceParams,
      result: ResizeResult,
      errors: [NO_SUCH_VM, MIGRATING, HOTUNPLUG_FAILED],
      handler: async ({ vmID, alias, requested, timeout, onFailure }, ctx) =>
        mapErrors(() =>
          vms.resizeMemoryDevice(vmID.toLowerCase(), alias, requested, {
            timeoutMs: seconds(timeout),
            onFailure,
            opId: opIdOf(ctx),
          }),
        ),
    }),
    defineMethod({
      name: 'VM.setMemory',
      summary:
        "Set a running VM's memory to X bytes: unplug the DIMMs the planner picks (or plug one), set guaranteed memory and the next-run configuration.",
      params: SetMemoryParams,
      result: SetMemoryResult,
      errors: [NO_SUCH_VM, MIGRATING, HOTPLUG_FAILED, HOTUNPLUG_FAILED],
      handler: async ({ vmID, memory, guaranteed, timeout, dryRun, force }, ctx) => {
        if (guaranteed !== undefined && guaranteed > memory) {
          throw invalidParam('guaranteed', '<= memory', 'must not exceed memory');
        }
        return mapErrors(() =>
          vms.setMemory(vmID.toLowerCase(), memory, {
            guaranteedBytes: guaranteed,
            timeoutMs: seconds(timeout),
            opId: opIdOf(ctx),
            dryRun: dryRun === true,
            force: force === true,
          }),
        );
      },
    }),
  ];
}
