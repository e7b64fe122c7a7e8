// The full method table the daemon serves, and its plain HTTP fronts.
import type { HttpRoute } from '../rpc/http-route.js';
import type { MethodSpec } from '../rpc/method.js';
import type { VmManager } from '../virt/vm-manager.js';
import { type EventSource, eventMethods } from './event-methods.js';
import { type HostInfo, hostMethods } from './host-methods.js';
import { RestApi } from './rest.js';
import { vmMethods } from './vm-methods.js';

export type { HostInfo } from './host-methods.js';

/** `events`: the notification journal behind Host.getEvents (the daemon's; absent in tests that need none). */
export function apiMethods(vms: VmManager, info: HostInfo, events?: EventSource): MethodSpec[] {
  return [...hostMethods(vms, info), ...vmMethods(vms), ...(events ? eventMethods(events) : [])];
}

/** The feature page's REST request (PUT /api/vms/{id}), a front of VM.setMemory. */
export function apiRoutes(): HttpRoute[] {
  return [new RestApi()];
}
