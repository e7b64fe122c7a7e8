// The full method table the daemon serves.
import type { MethodSpec } from '../rpc/method.js';
import type { VmManager } from '../virt/vm-manager.js';
import { type HostInfo, hostMethods } from './host-methods.js';
import { vmMethods } from './vm-methods.js';

export type { HostInfo } from './host-methods.js';

export function apiMethods(vms: VmManager, info: HostInfo): MethodSpec[] {
  return [...hostMethods(vms, info), ...vmMethods(vms)];
}
