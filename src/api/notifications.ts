// Forwards the VM manager's events to every connected client as the
// VDSM-style notifications of DESIGN section 3. Device outcomes that happen
// while no client is connected (e.g. found during recovery at start) are held
// and handed to the first client that connects, so the engine learns of them.
import type { VmManager } from '../virt/vm-manager.js';

export interface Broadcaster {
  notify(method: string, params: unknown): void;
  connectionCount(): number;
  onClientConnected(fn: () => void): () => void;
}

/** Bound on outcomes held for a client; the oldest go first (VM_status is re-readable anyway). */
const MAX_HELD = 1000;

export function forwardNotifications(vms: VmManager, out: Broadcaster): () => void {
  const held: [string, unknown][] = [];
  const deviceOutcome = (method: string, params: unknown) => {
    if (out.connectionCount() > 0) {
      out.notify(method, params);
      return;
    }
    held.push([method, params]);
    if (held.length > MAX_HELD) held.shift();
  };
  const onStatus = (stats: { vmId: string }) => out.notify(`|virt|VM_status|${stats.vmId}`, stats);
  const onRemoved = (vmId: string, ev: { alias: string; memSize: number; late: boolean }) =>
    deviceOutcome(`|virt|device_removed|${vmId}`, ev);
  const onFailed = (vmId: string, ev: { alias: string; reason: string }) =>
    deviceOutcome(`|virt|device_removal_failed|${vmId}`, ev);
  const offConnect = out.onClientConnected(() => {
    for (const [method, params] of held.splice(0)) out.notify(method, params);
  });
  vms.on('vmStatus', onStatus);
  vms.on('deviceRemoved', onRemoved);
  vms.on('deviceRemovalFailed', onFailed);
  return () => {
    offConnect();
    vms.off('vmStatus', onStatus);
    vms.off('deviceRemoved', onRemoved);
    vms.off('deviceRemovalFailed', onFailed);
  };
}
