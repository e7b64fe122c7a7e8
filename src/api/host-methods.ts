// Host.* methods: liveness, versions, VM listing. Thin: all data comes from
// the VM manager's cache or was read once at start.
import type { MethodSpec } from '../rpc/method.js';
import type { VmManager } from '../virt/vm-manager.js';
import { capabilitiesSchema, noParams, vmListSchema, vmStatsSchema } from './schemas.js';

export interface HostInfo {
  version: string;
  apiVersion: string;
  libvirtVersion: string;
  hypervisorVersion: string;
  hostname: string;
  libvirtConnected(): boolean;
}

type NoParams = Record<string, never>;

export function hostMethods(vms: VmManager, info: HostInfo): MethodSpec[] {
  const ping: MethodSpec<NoParams, boolean> = {
    name: 'Host.ping',
    logLevel: 'debug',
    summary: 'Liveness check; answers true without touching libvirt.',
    params: noParams,
    result: { const: true },
    handler: async () => true,
  };
  const caps: MethodSpec<NoParams, unknown> = {
    name: 'Host.getCapabilities',
    logLevel: 'debug',
    summary: 'Daemon, API, libvirt and hypervisor versions.',
    params: noParams,
    result: capabilitiesSchema,
    handler: async () => ({
      version: info.version,
      apiVersion: info.apiVersion,
      libvirtVersion: info.libvirtVersion,
      hypervisorVersion: info.hypervisorVersion,
      hostname: info.hostname,
      libvirtConnected: info.libvirtConnected(),
    }),
  };
  const list: MethodSpec<NoParams, unknown> = {
    name: 'Host.getVMList',
    logLevel: 'debug',
    summary: 'Every VM libvirt knows on this host, with its status.',
    params: noParams,
    result: vmListSchema,
    handler: async () => vms.list(),
  };
  const all: MethodSpec<NoParams, unknown> = {
    name: 'Host.getAllVmStats',
    logLevel: 'debug',
    summary: 'VmStats of every VM.',
    params: noParams,
    result: { type: 'array', items: vmStatsSchema },
    handler: async () => vms.allStats(),
  };
  return [ping, caps, list, all] as MethodSpec[];
}
