// Forwards the VM manager's events as the VDSM-style notifications of
// docs/design.md, "Notifications". Device outcomes are published as "hold": if no client hears
// them (found during recovery at start, or while nobody is connected), the
// event journal replays them to every client that connects or subscribes
// later, so the engine learns of them whoever connected first.
import type { PublishOptions } from '../rpc/event-journal.js';
import type { VmManager } from '../virt/vm-manager.js';

export interface EventPublisher {
  notify(method: string, params: unknown, opts?: PublishOptions): void;
}

export interface NotificationForwarder {
  stop(): void;
}

const OUTCOME: PublishOptions = { hold: true };

/** Subscribe before the manager opens, so nothing it finds during recovery is lost. */
export function forwardNotifications(vms: VmManager, out: EventPublisher): NotificationForwarder {
  const onStatus = (stats: { vmId: string }) => out.notify(`|virt|VM_status|${stats.vmId}`, stats);
  const onRemoved = (vmId: string, ev: { alias: string; memSize: number; late: boolean }) =>
    out.notify(`|virt|device_removed|${vmId}`, ev, OUTCOME);
  const onFailed = (vmId: string, ev: { alias: string; reason: string }) =>
    out.notify(`|virt|device_removal_failed|${vmId}`, ev, OUTCOME);
  const onSize = (vmId: string, ev: { alias: string; requested: number; current: number }) =>
    out.notify(`|virt|memory_device_size_changed|${vmId}`, ev);
  vms.on('vmStatus', onStatus);
  vms.on('deviceRemoved', onRemoved);
  vms.on('deviceRemovalFailed', onFailed);
  vms.on('memoryDeviceSizeChanged', onSize);
  return {
    stop() {
      vms.off('vmStatus', onStatus);
      vms.off('deviceRemoved', onRemoved);
      vms.off('deviceRemovalFailed', onFailed);
      vms.off('memoryDeviceSizeChanged', onSize);
    },
  };
}
