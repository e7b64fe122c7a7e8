// The full method table the daemon serves, and its plain HTTP fronts.
import type { HttpRoute } from '../rpc/http-route.js';
import type { MethodSpec } from '../rpc/method.js';
import type { VmManager } from '../virt/vm-manager.js';
import { type HostInfo, hostMethods } from './host-methods.js';
import { RestApi } from './rest.js';
import { vmMethods } from './vm-methods.js';

export type { HostInfo } from './host-methods.js';

export function apiMethods(vms: VmManager, info: HostInfo): MethodSpec[] {
  return [...hostMethods(vms, info), ...vmMethods(vms)];
}

/** The feature page's REST request (PUT /api/vms/{id}), a front of VM.setMemory. */
export function apiRoutes(): HttpRoute[] {
  return [new RestApi()];
}
