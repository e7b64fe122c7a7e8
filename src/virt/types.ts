// Public types of the domain layer, consumed by src/api.

import type { GuestZone } from './guest-memory.js';

export type { GuestZone } from './guest-memory.js';

export type VmStatus =
  | 'Up'
  | 'Paused'
  | 'Down'
  | 'Powering down'
  | 'Migration Source'
  | 'WaitForLaunch'
  | 'Unknown';

export type DeviceState = 'plugged' | 'unplugging' | 'resizing';

export interface VmStatsDevice {
  model: 'dimm' | 'virtio-mem';
  alias: string;
  /** MiB; a virtio-mem device's maximum. */
  size: number;
  node: number;
  /** -1 for a virtio-mem device (it takes no DIMM slot). */
  slot: number;
  /** '' for a virtio-mem device. */
  base: string;
  /** A DIMM is 'plugged' or 'unplugging'; a virtio-mem device 'plugged' or 'resizing' (the lifecycle machine's phase). */
  state: DeviceState;
  /** virtio-mem only, MiB: the size asked of the guest, what it has plugged, the step. */
  requested?: number;
  current?: number;
  block?: number;
  /** virtio-mem only: PCI address 'dddd:bb:ss.f'. */
  address?: string;
  /** DIMM only: what the guest agent last said of the DIMM's memory blocks ('unknown': no answer). */
  guest?: { online: boolean; zone: GuestZone };
}

export interface VmStats {
  vmId: string;
  vmName: string;
  status: VmStatus;
  /** MiB, base + DIMMs + each virtio-mem device's current size (the guest's memory). */
  memSize: number;
  /** MiB */
  memGuaranteedSize: number;
  /** Changes whenever the device set or a device state changes. */
  hash: string;
  balloonActive: boolean;
  memoryDevices: VmStatsDevice[];
}

export interface VmListEntry {
  vmId: string;
  vmName: string;
  status: VmStatus;
}

/** A DIMM to hot plug (MiB; alias generated when absent). */
export interface HotplugSpec {
  size: number;
  node: number;
  alias?: string;
}

/** The DIMM to hot unplug, as the engine knows it (MiB). */
export interface HotunplugSpec {
  size: number;
  node: number;
  alias: string;
  address?: { slot?: number; base?: string };
}

export interface UnplugResult {
  status: 'removed';
  alias: string;
  memSize: number;
  memGuaranteedSize: number;
}

export interface SetMemoryResult {
  memSize: number;
  memGuaranteedSize: number;
  unplugged: { alias: string; size: number }[];
  /** virtio-mem devices resized (MiB): the requested size now and the size the guest reached. */
  resized: { alias: string; requested: number; current: number }[];
  failed: { alias: string; reason: string }[];
  /** DIMMs that fit the decrease but were left out: the guest holds them in ZONE_NORMAL (not with `force`). */
  skipped: { alias: string; size: number; reason: 'not-movable' }[];
  /**
   * What the next-run (persistent, inactive) configuration holds after the
   * call. When not updated: its current values, or for a transient domain
   * (which has no next run) the running values.
   */
  nextRun: { updated: boolean; memory: number; guaranteed: number };
  /** Set on a dry run: nothing was changed; `unplugged` is what would be. */
  dryRun?: true;
  /** Dry run: MiB that can never be removed (base memory + boot-time DIMMs). */
  floor?: number;
  /** Dry run: MiB of hot-plugged DIMMs now. */
  hotplugged?: number;
}

export interface DeviceRemovedEvent {
  alias: string;
  memSize: number;
  /** True when nobody was waiting any more (the call timed out, or we were away). */
  late: boolean;
}

export interface DeviceRemovalFailedEvent {
  alias: string;
  reason: string;
}

/** A virtio-mem device moved (MiB), coalesced to a few per second. */
export interface MemoryDeviceSizeChangedEvent {
  alias: string;
  requested: number;
  current: number;
  /** The end of a resize whose call was no longer waiting (the daemon restarted, or `keep` after a failure). */
  late?: true;
}

/** A resize nobody waited for any more stopped short (MiB). */
export interface MemoryDeviceResizeFailedEvent {
  alias: string;
  reason: 'timeout' | 'stalled';
  requested: number;
  current: number;
  /** requested after it: current when settled, the request when kept. */
  requestedNow: number;
  late: true;
}

export interface VmManagerEvents {
  vmStatus: [VmStats];
  deviceRemoved: [string, DeviceRemovedEvent];
  deviceRemovalFailed: [string, DeviceRemovalFailedEvent];
  memoryDeviceSizeChanged: [string, MemoryDeviceSizeChangedEvent];
  memoryDeviceResizeFailed: [string, MemoryDeviceResizeFailedEvent];
}
