// Forwards the VM manager's events as the VDSM-style notifications of
// docs/design.md, "Notifications". Device outcomes are published as "hold": if no client hears
// them (found during recovery at start, or while nobody is connected), the
// event journal replays them to every client that connects or subscribes
// later, so the engine learns of them whoever connected first.
import type { PublishOptions } from '../rpc/event-journal.js';
import type { VmManager } from '../virt/vm-manager.js';
import type { MemoryDeviceResizeFailedEvent, MemoryDeviceSizeChangedEvent, VmStats } from './schemas.js';

export interface EventPublisher {
  notify(method: string, params: unknown, opts?: PublishOptions): void;
}

export interface NotificationForwarder {
  stop(): void;
}

const OUTCOME: PublishOptions = { hold: true };

/** CLOCK_MONOTONIC in ms, as VDSM's notify_time. */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

/** Subscribe before the manager opens, so nothing it finds during recovery is lost. */
export function forwardNotifications(vms: VmManager, out: EventPublisher): NotificationForwarder {
  // VDSM's shape: {"<vmId>": stats, notify_time: monotonic ms}.
  const onStatus = (stats: VmStats) =>
    out.notify(`|virt|VM_status|${stats.vmId}`, { [stats.vmId]: stats, notify_time: monotonicMs() });
  const onRemoved = (vmId: string, ev: { alias: string; memSize: number; late: boolean }) =>
    out.notify(`|virt|device_removed|${vmId}`, ev, OUTCOME);
  const onFailed = (vmId: string, ev: { alias: string; reason: string }) =>
    out.notify(`|virt|device_removal_failed|${vmId}`, ev, OUTCOME);
  // A late end of a resize is an outcome, held like a late removal.
  const onSize = (vmId: string, ev: MemoryDeviceSizeChangedEvent) =>
    out.notify(`|virt|memory_device_size_changed|${vmId}`, ev, ev.late ? OUTCOME : undefined);
  const onResizeFailed = (vmId: string, ev: MemoryDeviceResizeFailedEvent) =>
    out.notify(`|virt|memory_device_resize_failed|${vmId}`, ev, OUTCOME);
  vms.on('vmStatus', onStatus);
  vms.on('deviceRemoved', onRemoved);
  vms.on('deviceRemovalFailed', onFailed);
  vms.on('memoryDeviceSizeChanged', onSize);
  vms.on('memoryDeviceResizeFailed', onResizeFailed);
  return {
    stop() {
      vms.off('vmStatus', onStatus);
      vms.off('deviceRemoved', onRemoved);
      vms.off('deviceRemovalFailed', onFailed);
      vms.off('memoryDeviceSizeChanged', onSize);
      vms.off('memoryDeviceResizeFailed', onResizeFailed);
    },
  };
}
