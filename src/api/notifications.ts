// Forwards the VM manager's events to every connected client as the
// VDSM-style notifications of DESIGN section 3.
import type { VmManager } from '../virt/vm-manager.js';

export interface Broadcaster {
  notify(method: string, params: unknown): void;
}

export function forwardNotifications(vms: VmManager, out: Broadcaster): () => void {
  const onStatus = (stats: { vmId: string }) => out.notify(`|virt|VM_status|${stats.vmId}`, stats);
  const onRemoved = (vmId: string, ev: { alias: string; memSize: number; late: boolean }) =>
    out.notify(`|virt|device_removed|${vmId}`, ev);
  const onFailed = (vmId: string, ev: { alias: string; reason: string }) =>
    out.notify(`|virt|device_removal_failed|${vmId}`, ev);
  vms.on('vmStatus', onStatus);
  vms.on('deviceRemoved', onRemoved);
  vms.on('deviceRemovalFailed', onFailed);
  return () => {
    vms.off('vmStatus', onStatus);
    vms.off('deviceRemoved', onRemoved);
    vms.off('deviceRemovalFailed', onFailed);
  };
}
