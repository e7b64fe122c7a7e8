// Forwards the VM manager's events to every connected client as the
// VDSM-style notifications of docs/design.md, "Notifications". Device outcomes that happen
// while no client can hear them (found during recovery at start, or while no
// client is connected) are held and handed to the next client that connects,
// so the engine learns of them.
import type { VmManager } from '../virt/vm-manager.js';

export interface Broadcaster {
  notify(method: string, params: unknown): void;
  connectionCount(): number;
  onClientConnected(fn: () => void): () => void;
}

export interface NotificationForwarder {
  /** Starts delivering; outcomes held so far go to the first client. */
  attach(out: Broadcaster): void;
  stop(): void;
}

/** Bound on outcomes held for a client; the oldest go first (VM_status is re-readable anyway). */
const MAX_HELD = 1000;

/** Subscribe before the manager opens, so nothing it finds during recovery is lost. */
export function forwardNotifications(vms: VmManager): NotificationForwarder {
  const held: [string, unknown][] = [];
  let out: Broadcaster | undefined;
  let offConnect: (() => void) | undefined;
  const deviceOutcome = (method: string, params: unknown) => {
    if (out && out.connectionCount() > 0) {
      out.notify(method, params);
      return;
    }
    held.push([method, params]);
    if (held.length > MAX_HELD) held.shift();
  };
  const onStatus = (stats: { vmId: string }) => out?.notify(`|virt|VM_status|${stats.vmId}`, stats);
  const onRemoved = (vmId: string, ev: { alias: string; memSize: number; late: boolean }) =>
    deviceOutcome(`|virt|device_removed|${vmId}`, ev);
  const onFailed = (vmId: string, ev: { alias: string; reason: string }) =>
    deviceOutcome(`|virt|device_removal_failed|${vmId}`, ev);
  vms.on('vmStatus', onStatus);
  vms.on('deviceRemoved', onRemoved);
  vms.on('deviceRemovalFailed', onFailed);
  return {
    attach(b) {
      out = b;
      const flush = () => {
        for (const [method, params] of held.splice(0)) b.notify(method, params);
      };
      offConnect = b.onClientConnected(flush);
      if (b.connectionCount() > 0) flush();
    },
    stop() {
      offConnect?.();
      vms.off('vmStatus', onStatus);
      vms.off('deviceRemoved', onRemoved);
      vms.off('deviceRemovalFailed', onFailed);
    },
  };
}
