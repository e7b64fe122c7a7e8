// The API's params, results and notification params, written once with
// TypeBox: each schema is plain JSON Schema (what ajv validates requests
// with and what rpc.discover publishes) and, through Static<>, the
// TypeScript type the handlers, the REST front, the CLI and the tests use.
// So the enforced, the published and the typed contract are one.
import { type Static, type TProperties, type TSchema, Type } from '@sinclair/typebox';
import type { JsonSchema } from '../rpc/method.js';
import { HOTPLUG_REASONS, HOTUNPLUG_REASONS } from './contract.js';

/** 16 TiB in MiB: far above any real VM, low enough that sums stay exact. */
export const MAX_MIB = 16 * 1024 * 1024;
export const MAX_BYTES = MAX_MIB * 1024 * 1024;
export const MAX_TIMEOUT_S = 3600;

/** A string schema limited to `values`, typed as their union (enum keeps ajv's "allowed" list). */
function StringEnum<const T extends readonly string[]>(values: T, description?: string) {
  return Type.Unsafe<T[number]>({
    type: 'string',
    enum: [...values],
    ...(description ? { description } : {}),
  });
}

/** The JSON Schema view of a TypeBox schema, for MethodSpec. */
export function json(schema: TSchema): JsonSchema {
  return schema as unknown as JsonSchema;
}

export const Uuid = Type.String({
  pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
  description: 'VM UUID',
});

/** Our own aliases (ua-…) or the ones libvirt assigns when none is given (dimmN). */
export const Alias = Type.String({
  pattern: '^(ua-[A-Za-z0-9-]{1,64}|dimm[0-9]{1,4})$',
  description: 'device alias: "ua-" followed by letters, digits or dashes, or libvirt\'s "dimmN"',
});

const Mib = (description: string, minimum = 1) => Type.Integer({ minimum, maximum: MAX_MIB, description });

const Bytes = (description: string, minimum = 0) =>
  Type.Integer({ minimum, maximum: MAX_BYTES, description });

const Timeout = Type.Number({
  exclusiveMinimum: 0,
  maximum: MAX_TIMEOUT_S,
  description: 'seconds to wait for the guest to release the device',
});

const Node = Type.Integer({ minimum: 0, maximum: 63, description: 'guest NUMA node' });

const closed = { additionalProperties: false } as const;

// ---------------------------------------------------------------- params

export const NoParams = Type.Object({}, closed);
export type NoParams = Static<typeof NoParams>;

export const VmIdParams = Type.Object({ vmID: Uuid }, closed);
export type VmIdParams = Static<typeof VmIdParams>;

/** VDSM's envelope for memory device calls: {vmID, params:{vmId, memory, memGuaranteedSize?}, ...extra}. */
function MemoryDeviceParams<M extends TSchema, E extends TProperties>(memory: M, extra: E) {
  return Type.Object(
    {
      vmID: Uuid,
      params: Type.Object(
        {
          vmId: Uuid,
          memory,
          memGuaranteedSize: Type.Optional(Mib('guaranteed memory to set, MiB', 0)),
        },
        closed,
      ),
      ...extra,
    },
    closed,
  );
}

export const HotplugMemory = Type.Object(
  { size: Mib('DIMM size in MiB'), node: Node, alias: Type.Optional(Alias) },
  closed,
);
export type HotplugMemory = Static<typeof HotplugMemory>;

export const HotplugParams = MemoryDeviceParams(HotplugMemory, {});
export type HotplugParams = Static<typeof HotplugParams>;

export const DimmAddress = Type.Object(
  {
    type: Type.Optional(Type.Literal('dimm')),
    slot: Type.Optional(Type.Integer({ minimum: 0, maximum: 255 })),
    base: Type.Optional(Type.String({ pattern: '^0x[0-9a-fA-F]{1,16}$' })),
  },
  closed,
);

export const HotunplugMemory = Type.Object(
  { size: Mib('DIMM size in MiB'), node: Node, alias: Alias, address: Type.Optional(DimmAddress) },
  closed,
);
export type HotunplugMemory = Static<typeof HotunplugMemory>;

export const HotunplugParams = MemoryDeviceParams(HotunplugMemory, { timeout: Type.Optional(Timeout) });
export type HotunplugParams = Static<typeof HotunplugParams>;

export const SetMemoryParams = Type.Object(
  {
    vmID: Uuid,
    memory: Bytes('requested VM memory in bytes (floored to MiB)', 1),
    guaranteed: Type.Optional(Bytes('requested guaranteed memory in bytes')),
    timeout: Type.Optional(Timeout),
  },
  closed,
);
export type SetMemoryParams = Static<typeof SetMemoryParams>;

/** A virtio-mem device's alias: ours (ua-…) or libvirt's (virtiomemN). */
export const VirtioMemAlias = Type.String({
  pattern: '^(ua-[A-Za-z0-9-]{1,64}|virtiomem[0-9]{1,4}|dimm[0-9]{1,4})$',
  description: 'virtio-mem device alias ("ua-…" or libvirt\'s "virtiomemN")',
});

export const ResizeMemoryDeviceParams = Type.Object(
  {
    vmID: Uuid,
    alias: VirtioMemAlias,
    requested: Type.Integer({
      minimum: 0,
      maximum: MAX_MIB,
      description: 'new requested size in MiB: a multiple of the device block, <= its maximum size',
    }),
    timeout: Type.Optional(Timeout),
    onFailure: Type.Optional(
      StringEnum(
        ['settle', 'keep'] as const,
        'after a timeout or stall: settle requested to the current size reached (default), or keep it so the guest keeps trying',
      ),
    ),
  },
  closed,
);
export type ResizeMemoryDeviceParams = Static<typeof ResizeMemoryDeviceParams>;

// ---------------------------------------------------------------- results

export const VmStatus = StringEnum(
  ['Up', 'Paused', 'Down', 'Powering down', 'Migration Source', 'WaitForLaunch', 'Unknown'] as const,
  'VDSM-style VM status',
);

export const VmStatsDevice = Type.Object(
  {
    model: StringEnum(['dimm', 'virtio-mem'] as const),
    alias: Type.String(),
    size: Type.Integer({ description: 'MiB; a virtio-mem device: its maximum' }),
    node: Type.Integer(),
    slot: Type.Integer({ description: '-1 for virtio-mem (it takes no DIMM slot)' }),
    base: Type.String({ description: "guest physical base address, '0x…'; '' for virtio-mem" }),
    state: StringEnum(
      ['plugged', 'unplugging', 'resizing'] as const,
      'DIMM: plugged | unplugging; virtio-mem: plugged | resizing (current != requested)',
    ),
    requested: Type.Optional(Type.Integer({ description: 'virtio-mem: MiB asked of the guest' })),
    current: Type.Optional(Type.Integer({ description: 'virtio-mem: MiB the guest has plugged' })),
    block: Type.Optional(Type.Integer({ description: 'virtio-mem: MiB; requested is a multiple of it' })),
    address: Type.Optional(Type.String({ description: "virtio-mem: PCI address 'dddd:bb:ss.f'" })),
  },
  closed,
);
export type VmStatsDevice = Static<typeof VmStatsDevice>;

export const VmStats = Type.Object(
  {
    vmId: Type.String(),
    vmName: Type.String(),
    status: VmStatus,
    memSize: Type.Integer({ description: 'MiB, base + DIMMs + each virtio-mem device’s current size' }),
    memGuaranteedSize: Type.Integer({ description: 'MiB' }),
    hash: Type.String({ description: 'changes whenever the device set or a device state changes' }),
    balloonActive: Type.Boolean(),
    memoryDevices: Type.Array(VmStatsDevice),
  },
  closed,
);
export type VmStats = Static<typeof VmStats>;

export const VmListEntry = Type.Object(
  { vmId: Type.String(), vmName: Type.String(), status: VmStatus },
  closed,
);
export const VmList = Type.Array(VmListEntry);
export type VmList = Static<typeof VmList>;

export const AllVmStats = Type.Array(VmStats);
export type AllVmStats = Static<typeof AllVmStats>;

export const PingResult = Type.Literal(true);

export const Capabilities = Type.Object(
  {
    version: Type.String(),
    apiVersion: Type.String(),
    libvirtVersion: Type.String(),
    hypervisorVersion: Type.String(),
    hostname: Type.String(),
    libvirtConnected: Type.Boolean(),
  },
  closed,
);
export type Capabilities = Static<typeof Capabilities>;

export const UnplugResult = Type.Object(
  {
    status: Type.Literal('removed'),
    alias: Type.String(),
    memSize: Type.Integer({ description: 'MiB after the removal' }),
    memGuaranteedSize: Type.Integer({ description: 'MiB' }),
  },
  closed,
);
export type UnplugResult = Static<typeof UnplugResult>;

export const ResizeResult = Type.Object(
  {
    alias: Type.String(),
    requested: Type.Integer({ description: 'MiB' }),
    current: Type.Integer({ description: 'MiB, = requested' }),
    memSize: Type.Integer({ description: 'MiB after the resize' }),
  },
  closed,
);
export type ResizeResult = Static<typeof ResizeResult>;

/**
 * A failure reason: the schema lists the contract's values (tests hold every
 * answer to it); the static type stays string because the domain layer's
 * records carry plain strings.
 */
const reasonOf = (values: readonly string[]) => Type.Unsafe<string>({ type: 'string', enum: [...values] });
const FailureReason = reasonOf([...new Set([...HOTUNPLUG_REASONS, ...HOTPLUG_REASONS])]);

export const SetMemoryResult = Type.Object(
  {
    memSize: Type.Integer({ description: 'MiB' }),
    memGuaranteedSize: Type.Integer({ description: 'MiB' }),
    unplugged: Type.Array(Type.Object({ alias: Type.String(), size: Type.Integer() }, closed)),
    resized: Type.Array(
      Type.Object({ alias: Type.String(), requested: Type.Integer(), current: Type.Integer() }, closed),
      { description: 'virtio-mem devices resized (MiB): requested now, and the size the guest reached' },
    ),
    failed: Type.Array(Type.Object({ alias: Type.String(), reason: FailureReason }, closed)),
    nextRun: Type.Object(
      {
        updated: Type.Boolean(),
        memory: Type.Integer({ description: 'MiB' }),
        guaranteed: Type.Integer({ description: 'MiB' }),
      },
      closed,
    ),
  },
  closed,
);
export type SetMemoryResult = Static<typeof SetMemoryResult>;

const Count = Type.Integer({ minimum: 0 });
const IsoTime = Type.String({ description: 'ISO 8601 time' });

/** Host.getStatus: the figures of the metrics as one screen. */
export const HostStatus = Type.Object(
  {
    startedAt: IsoTime,
    uptimeSeconds: Type.Number({ minimum: 0 }),
    libvirt: Type.Object(
      {
        connected: Type.Boolean(),
        reconnects: Type.Integer({
          minimum: 0,
          description: 'times re-established since the daemon started',
        }),
        since: Type.Union([IsoTime, Type.Null()], {
          description: 'when the connection last went up or down',
        }),
      },
      closed,
    ),
    vms: Type.Object({ total: Count, byStatus: Type.Record(Type.String(), Count) }, closed),
    dimms: Type.Object({ plugged: Count, unplugging: Count }, closed),
    clients: Type.Record(Type.String(), Count, { description: 'connected clients per transport' }),
    inFlight: Type.Array(
      Type.Object(
        {
          operation: Type.String(),
          vmId: Type.String(),
          vmName: Type.Union([Type.String(), Type.Null()]),
          alias: Type.Optional(Type.String()),
          since: IsoTime,
        },
        closed,
      ),
      { description: 'operations accepted and not yet answered, oldest first' },
    ),
    recent: Type.Array(
      Type.Object(
        {
          at: IsoTime,
          operation: Type.String({ description: 'hotplug, hotunplug, setMemory or late-removal' }),
          vmId: Type.String(),
          vmName: Type.Union([Type.String(), Type.Null()]),
          alias: Type.Optional(Type.String()),
          outcome: Type.String({ description: 'ok, partial, or the error reason' }),
          durationMs: Type.Union([Type.Number({ minimum: 0 }), Type.Null()]),
        },
        closed,
      ),
      { maxItems: 10, description: 'the last 10 outcomes, newest first' },
    ),
  },
  closed,
);
export type HostStatus = Static<typeof HostStatus>;

// ---------------------------------------------------------------- notifications

export const DeviceRemovedEvent = Type.Object(
  {
    alias: Type.String(),
    memSize: Type.Integer({ description: 'MiB after the removal' }),
    late: Type.Boolean({ description: 'nobody was waiting any more (timed out, or the daemon was away)' }),
  },
  closed,
);
export type DeviceRemovedEvent = Static<typeof DeviceRemovedEvent>;

export const DeviceRemovalFailedEvent = Type.Object(
  { alias: Type.String(), reason: reasonOf(HOTUNPLUG_REASONS) },
  closed,
);
export type DeviceRemovalFailedEvent = Static<typeof DeviceRemovalFailedEvent>;

export const MemoryDeviceSizeChangedEvent = Type.Object(
  {
    alias: Type.String(),
    requested: Type.Integer({ description: 'MiB' }),
    current: Type.Integer({ description: 'MiB the guest has plugged now' }),
  },
  closed,
);
export type MemoryDeviceSizeChangedEvent = Static<typeof MemoryDeviceSizeChangedEvent>;

/** Notification method prefixes (the VM id follows) and their params schemas. */
export const NOTIFICATIONS = {
  '|virt|VM_status|': VmStats,
  '|virt|device_removed|': DeviceRemovedEvent,
  '|virt|device_removal_failed|': DeviceRemovalFailedEvent,
  '|virt|memory_device_size_changed|': MemoryDeviceSizeChangedEvent,
} as const satisfies Record<string, TSchema>;
