// Host.* methods: liveness, versions, VM listing. Thin: all data comes from
// the VM manager's cache or was read once at start.
import type { MethodSpec } from '../rpc/method.js';
import type { VmManager } from '../virt/vm-manager.js';
import { defineMethod } from './define-method.js';
import { AllVmStats, Capabilities, HostStatus, NoParams, PingResult, VmList } from './schemas.js';

export interface HostInfo {
  version: string;
  apiVersion: string;
  libvirtVersion: string;
  hypervisorVersion: string;
  hostname: string;
  libvirtConnected(): boolean;
  /** The daemon's status figures (the metrics module's). */
  status(): HostStatus;
}

export function hostMethods(vms: VmManager, info: HostInfo): MethodSpec[] {
  return [
    defineMethod({
      name: 'Host.ping',
      logLevel: 'debug',
      readOnly: true,
      summary: 'Liveness check; answers true without touching libvirt.',
      params: NoParams,
      result: PingResult,
      handler: async () => true as const,
    }),
    defineMethod({
      name: 'Host.getCapabilities',
      logLevel: 'debug',
      readOnly: true,
      summary: 'Daemon, API, libvirt and hypervisor versions.',
      params: NoParams,
      result: Capabilities,
      handler: async () => ({
        version: info.version,
        apiVersion: info.apiVersion,
        libvirtVersion: info.libvirtVersion,
        hypervisorVersion: info.hypervisorVersion,
        hostname: info.hostname,
        libvirtConnected: info.libvirtConnected(),
      }),
    }),
    defineMethod({
      name: 'Host.getVMList',
      logLevel: 'debug',
      readOnly: true,
      summary: 'Every VM libvirt knows on this host, with its status.',
      params: NoParams,
      result: VmList,
      handler: async () => vms.list(),
    }),
    defineMethod({
      name: 'Host.getAllVmStats',
      logLevel: 'debug',
      readOnly: true,
      summary: 'VmStats of every VM.',
      params: NoParams,
      result: AllVmStats,
      handler: async () => vms.allStats(),
    }),
    defineMethod({
      name: 'Host.getStatus',
      logLevel: 'debug',
      summary:
        'One screen of the daemon: uptime, libvirt connection, VMs and DIMMs, clients, operations in flight and the last 10 outcomes with durations.',
      params: NoParams,
      result: HostStatus,
      handler: async () => info.status(),
    }),
  ];
}
