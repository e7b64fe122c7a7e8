// Coalesces a virtio-mem device's size moves into at most one notification
// per interval per device: the first move goes out at once, later ones within
// the interval are folded into one trailing notification with the latest
// sizes, so the last value a client sees is always the device's last state.

import type { MemoryDeviceSizeChangedEvent } from './types.js';

interface Slot {
  last: number;
  pending: MemoryDeviceSizeChangedEvent | undefined;
  sent: MemoryDeviceSizeChangedEvent | undefined;
  timer: NodeJS.Timeout | undefined;
}

export class SizeChangeNotifier {
  private readonly slots = new Map<string, Slot>();

  constructor(
    private readonly emit: (vmId: string, ev: MemoryDeviceSizeChangedEvent) => void,
    private readonly intervalMs = 250,
    private readonly now: () => number = () => performance.now(),
  ) {}

  report(vmId: string, ev: MemoryDeviceSizeChangedEvent): void {
    const key = `${vmId}\n${ev.alias}`;
    let slot = this.slots.get(key);
    if (!slot) {
      slot = { last: Number.NEGATIVE_INFINITY, pending: undefined, sent: undefined, timer: undefined };
      this.slots.set(key, slot);
    }
    const s = slot.sent;
    if (s && s.requested === ev.requested && s.current === ev.current && s.late === ev.late) {
      slot.pending = undefined;
      return;
    }
    const now = this.now();
    if (!slot.timer && now - slot.last >= this.intervalMs) {
      this.send(vmId, slot, ev, now);
      return;
    }
    slot.pending = ev;
    if (!slot.timer) {
      const s = slot;
      s.timer = setTimeout(() => this.flushSlot(vmId, s), this.intervalMs - (now - s.last));
      s.timer.unref();
    }
  }

  /** Sends a pending notification of this device now (a resize ended). */
  flush(vmId: string, alias: string): void {
    const slot = this.slots.get(`${vmId}\n${alias}`);
    if (slot) this.flushSlot(vmId, slot);
  }

  /** Drops a VM's state (it is gone). */
  forget(vmId: string): void {
    for (const [key, slot] of this.slots) {
      if (!key.startsWith(`${vmId}\n`)) continue;
      if (slot.timer) clearTimeout(slot.timer);
      this.slots.delete(key);
    }
  }

  private flushSlot(vmId: string, slot: Slot): void {
    if (slot.timer) clearTimeout(slot.timer);
    slot.timer = undefined;
    const ev = slot.pending;
    slot.pending = undefined;
    if (ev) this.send(vmId, slot, ev, this.now());
  }

  private send(vmId: string, slot: Slot, ev: MemoryDeviceSizeChangedEvent, now: number): void {
    slot.last = now;
    slot.sent = ev;
    this.emit(vmId, ev);
  }
}
