// Public types of the libvirt client. This file is the contract between the
// wire layer (src/libvirt) and its users (src/virt, tests, benches): it knows
// nothing of JSON-RPC or of memory semantics.

/** A domain as libvirt identifies it on the wire (remote_nonnull_domain). */
export interface DomainRef {
  name: string;
  /** Canonical lower-case 8-4-4-4-12 form. */
  uuid: string;
  /** Runtime id, -1 when inactive. */
  id: number;
}

/** virDomainState values. */
export const DomainState = {
  NOSTATE: 0,
  RUNNING: 1,
  BLOCKED: 2,
  PAUSED: 3,
  SHUTDOWN: 4,
  SHUTOFF: 5,
  CRASHED: 6,
  PMSUSPENDED: 7,
} as const;

/** virDomainEventType values (lifecycle events). */
export const LifecycleEvent = {
  DEFINED: 0,
  UNDEFINED: 1,
  STARTED: 2,
  SUSPENDED: 3,
  RESUMED: 4,
  STOPPED: 5,
  SHUTDOWN: 6,
  PMSUSPENDED: 7,
  CRASHED: 8,
} as const;

/** virDomainModificationImpact / device flags. */
export const DomainAffect = { CURRENT: 0, LIVE: 1, CONFIG: 2 } as const;

/** virDomainXMLFlags. */
export const DomainXmlFlags = { SECURE: 1, INACTIVE: 2, UPDATE_CPU: 4, MIGRATABLE: 8 } as const;

/** virDomainMetadataType. */
export const MetadataType = { DESCRIPTION: 0, TITLE: 1, ELEMENT: 2 } as const;

/** virConnectListAllDomainsFlags (subset). */
export const ListDomainsFlags = { ACTIVE: 1, INACTIVE: 2, PERSISTENT: 4, TRANSIENT: 8, RUNNING: 16 } as const;

/** virDomainJobType. */
export const JobType = { NONE: 0, BOUNDED: 1, UNBOUNDED: 2, COMPLETED: 3, FAILED: 4, CANCELLED: 5 } as const;

/** virDomainJobOperation (the typed param "operation" of job stats, libvirt >= 3.3). */
export const JobOperation = {
  UNKNOWN: 0,
  START: 1,
  SAVE: 2,
  RESTORE: 3,
  MIGRATION_IN: 4,
  MIGRATION_OUT: 5,
  SNAPSHOT: 6,
  SNAPSHOT_REVERT: 7,
  DUMP: 8,
  BACKUP: 9,
  SNAPSHOT_DELETE: 10,
} as const;

/** virDomainGetJobStats: the job type and its typed parameters by field name (e.g. "operation"). */
export interface JobStats {
  type: number;
  params: Record<string, number | bigint | boolean | string>;
}

export interface DomainStateInfo {
  state: number;
  reason: number;
}

export interface LifecycleEventInfo {
  domain: DomainRef;
  event: number;
  detail: number;
}

export interface DeviceEventInfo {
  domain: DomainRef;
  /**
   * Device alias as libvirt reports it (e.g. "ua-…" or "dimm0"). Note: for a
   * DIMM, libvirt 9's device-added event names the memory backend object,
   * i.e. "mem" + the alias ("memua-…"); device-removed and
   * device-removal-failed carry the plain alias.
   */
  alias: string;
}

export interface MemoryDeviceSizeChangeInfo {
  domain: DomainRef;
  /** The memory device's alias (a virtio-mem device: "ua-…" or "virtiomem0"). */
  alias: string;
  /** The device's new current (plugged) size, KiB. */
  sizeKiB: number;
}

export interface LibvirtClientEvents {
  lifecycle: [LifecycleEventInfo];
  deviceAdded: [DeviceEventInfo];
  deviceRemoved: [DeviceEventInfo];
  deviceRemovalFailed: [DeviceEventInfo];
  /** VIR_DOMAIN_EVENT_ID_MEMORY_DEVICE_SIZE_CHANGE: a virtio-mem device's current size moved. */
  memoryDeviceSizeChange: [MemoryDeviceSizeChangeInfo];
  /** The connection was lost; pending calls have been failed. */
  disconnected: [Error];
  /** A new connection is open and event callbacks are registered again. */
  reconnected: [];
}

/**
 * The typed calls the rest of vmhostd uses. LibvirtClient implements it; unit
 * tests of src/virt may implement it in memory.
 */
export interface LibvirtApi {
  readonly connected: boolean;
  getLibVersion(): Promise<number>;
  getVersion(): Promise<number>;
  getHostname(): Promise<string>;
  listAllDomains(flags?: number): Promise<DomainRef[]>;
  lookupByUUID(uuid: string): Promise<DomainRef>;
  getXMLDesc(dom: DomainRef, flags?: number): Promise<string>;
  getState(dom: DomainRef): Promise<DomainStateInfo>;
  /** The domain's current job (flags 0); type NONE when there is none. */
  getJobStats(dom: DomainRef): Promise<JobStats>;
  attachDeviceFlags(dom: DomainRef, xml: string, flags: number): Promise<void>;
  detachDeviceFlags(dom: DomainRef, xml: string, flags: number): Promise<void>;
  /** virDomainUpdateDeviceFlags: e.g. a virtio-mem device's new `<requested>` size. */
  updateDeviceFlags(dom: DomainRef, xml: string, flags: number): Promise<void>;
  /** False when libvirtd refused to register the memory-device size-change event (libvirt < 7.9). */
  readonly memoryDeviceEvents: boolean;
  setMetadata(
    dom: DomainRef,
    type: number,
    metadata: string | null,
    key: string | null,
    uri: string | null,
    flags: number,
  ): Promise<void>;
  /** Rejects with LibvirtError code 80 (VIR_ERR_NO_DOMAIN_METADATA) when absent. */
  getMetadata(dom: DomainRef, type: number, uri: string | null, flags: number): Promise<string>;
  defineXML(xml: string): Promise<DomainRef>;
  createXML(xml: string, flags?: number): Promise<DomainRef>;
  destroy(dom: DomainRef): Promise<void>;
  undefine(dom: DomainRef): Promise<void>;
  /**
   * A guest-agent command through libvirt (QEMU program, procedure 3); the
   * agent's JSON reply. Optional: in-memory test doubles may leave it out,
   * and callers then treat the guest as having no agent.
   */
  qemuAgentCommand?(dom: DomainRef, cmd: string, timeoutS: number, flags?: number): Promise<string | null>;
  on<K extends keyof LibvirtClientEvents>(
    event: K,
    listener: (...args: LibvirtClientEvents[K]) => void,
  ): this;
  off<K extends keyof LibvirtClientEvents>(
    event: K,
    listener: (...args: LibvirtClientEvents[K]) => void,
  ): this;
  close(): Promise<void>;
}
