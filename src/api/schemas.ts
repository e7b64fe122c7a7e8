// The API's params, results and notification params, written once with
// TypeBox: each schema is plain JSON Schema (what ajv validates requests
// with and what rpc.discover publishes) and, through Static<>, the
// TypeScript type the handlers, the REST front, the CLI and the tests use.
// So the enforced, the published and the typed contract are one.
import { type Static, type TSchema, Type } from '@sinclair/typebox';
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

const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
export const Uuid = Type.String({ pattern: UUID_PATTERN, description: 'VM UUID' });

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

/** An unsigned integer as VDSM and the engine send it: a number, or a string of digits. */
const UintLike = (max: number, description: string) =>
  Type.Unsafe<number | string>({
    type: ['integer', 'string'],
    minimum: 0,
    maximum: max,
    pattern: `^[0-9]{1,${String(max).length}}$`,
    description,
  });

/** The engine sends libvirt's address attributes as a map of strings: {type:"dimm", slot:"0", base:"0x100000000"}. */
export const DimmAddress = Type.Object(
  {
    type: Type.Optional(Type.Literal('dimm')),
    slot: Type.Optional(UintLike(255, 'DIMM slot')),
    base: Type.Optional(
      Type.String({ pattern: '^0x[0-9a-fA-F]{1,16}$', description: 'guest physical base address' }),
    ),
  },
  closed,
);
export type DimmAddress = Static<typeof DimmAddress>;

/**
 * VDSM's VmMemoryDevice (size, node, device, deviceId, deviceType, alias,
 * address) plus what ovirt-engine's MemoryUtils.createVmMemoryDeviceMap adds
 * (type, specParams {size, node} as strings). Nothing else is accepted.
 */
export const VmMemoryDevice = Type.Object(
  {
    size: Mib('DIMM size in MiB'),
    node: Node,
    alias: Type.Optional(Alias),
    address: Type.Optional(DimmAddress),
    device: Type.Optional(Type.Literal('memory', { description: 'VDSM VmMemoryDeviceType: always memory' })),
    type: Type.Optional(Type.Literal('memory', { description: "the engine's device type: always memory" })),
    deviceType: Type.Optional(Type.Literal('memory', { description: 'VDSM VmDeviceType: always memory' })),
    deviceId: Type.Optional(Type.String({ pattern: UUID_PATTERN, description: "the engine's device UUID" })),
    specParams: Type.Optional(
      Type.Object(
        {
          size: Type.Optional(UintLike(MAX_MIB, 'MiB; equals size')),
          node: Type.Optional(UintLike(63, 'equals node')),
        },
        closed,
      ),
    ),
  },
  closed,
);
export type VmMemoryDevice = Static<typeof VmMemoryDevice>;

/** The memory device as XML (VDSM 4.4): a <devices> element holding exactly one <memory model='dimm'>. */
export const MemoryXml = Type.String({
  minLength: 1,
  maxLength: 16384,
  description: "XML snippet: <devices> with exactly one <memory model='dimm'> (no DTD, no entities)",
});

/** VDSM's HotplugMemoryParams: {vmId, memory | xml (exactly one), memGuaranteedSize?}. */
const HotplugMemoryParams = Type.Object(
  {
    vmId: Uuid,
    memory: Type.Optional(VmMemoryDevice),
    xml: Type.Optional(MemoryXml),
    memGuaranteedSize: Type.Optional(Mib('guaranteed memory to set, MiB', 0)),
  },
  closed,
);
export type HotplugMemoryParams = Static<typeof HotplugMemoryParams>;

export const HotplugParams = Type.Object({ vmID: Uuid, params: HotplugMemoryParams }, closed);
export type HotplugParams = Static<typeof HotplugParams>;

const Force = Type.Boolean({
  description:
    'unplug even a DIMM the guest agent says the guest holds in ZONE_NORMAL (refused with 85 not-movable otherwise)',
});

export const HotunplugParams = Type.Object(
  { vmID: Uuid, params: HotplugMemoryParams, timeout: Type.Optional(Timeout), force: Type.Optional(Force) },
  closed,
);
export type HotunplugParams = Static<typeof HotunplugParams>;

export const SetMemoryParams = Type.Object(
  {
    vmID: Uuid,
    memory: Bytes('requested VM memory in bytes (floored to MiB)', 1),
    guaranteed: Type.Optional(Bytes('requested guaranteed memory in bytes')),
    timeout: Type.Optional(Timeout),
    dryRun: Type.Optional(
      Type.Boolean({
        description: 'plan only: answer what would be unplugged (or plugged) and change nothing',
      }),
    ),
    force: Type.Optional(
      Type.Boolean({
        description:
          'plan as if every DIMM were movable (by default DIMMs the guest holds in ZONE_NORMAL are skipped)',
      }),
    ),
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

export const GUEST_ZONES = ['movable', 'normal', 'offline', 'mixed', 'unknown'] as const;

/** A DIMM as its guest last told (through the guest agent; refreshed in the background). */
export const GuestDimmView = Type.Object(
  {
    online: Type.Boolean({ description: 'every memory block of the DIMM is online in the guest' }),
    zone: StringEnum(
      GUEST_ZONES,
      'the zone its online blocks are in: movable (can be given back), normal (kernel memory: the guest would refuse), ' +
        'offline (no block online), mixed (some blocks movable, some normal), unknown (no agent or no answer)',
    ),
  },
  closed,
);
export type GuestDimmView = Static<typeof GuestDimmView>;

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
    guest: Type.Optional(GuestDimmView),
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

/** VDSM's VmShortStatus: Host.getVMList's default entry. */
export const VmShortStatus = Type.Object({ vmId: Type.String(), status: VmStatus }, closed);
/** Host.getVMList with fullStatus: the VM's identity and memory (VDSM sends its whole definition). */
export const VmFullStatus = Type.Object(
  {
    vmId: Type.String(),
    vmName: Type.String(),
    status: VmStatus,
    memSize: Type.Integer({ description: 'MiB, base + DIMMs' }),
    memGuaranteedSize: Type.Integer({ description: 'MiB' }),
  },
  closed,
);
export type VmFullStatus = Static<typeof VmFullStatus>;

/** VDSM's Host.getVMList params: fullStatus (default false), vmList (filter), onlyUUID (default false). */
export const GetVmListParams = Type.Object(
  {
    fullStatus: Type.Optional(Type.Boolean({ description: 'full entries (vmId, vmName, status, memory)' })),
    vmList: Type.Optional(Type.Array(Uuid, { maxItems: 10_000, description: 'only these VMs' })),
    onlyUUID: Type.Optional(Type.Boolean({ description: 'without fullStatus: a list of UUIDs' })),
  },
  closed,
);
export type GetVmListParams = Static<typeof GetVmListParams>;

/** UUIDs (onlyUUID), VmShortStatus (default) or full entries (fullStatus). */
export const VmList = Type.Union([
  Type.Array(Type.String({ pattern: UUID_PATTERN })),
  Type.Array(VmShortStatus),
  Type.Array(VmFullStatus),
]);
export type VmList = Static<typeof VmList>;

/** VM.getStats: as VDSM, an array holding the one VmStats record. */
export const VmStatsList = Type.Array(VmStats, { minItems: 1, maxItems: 1 });
export type VmStatsList = Static<typeof VmStatsList>;

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
    nextRun: Type.Object(
      {
        updated: Type.Boolean({
          description: 'the next-run definition was in step with the running VM and now asks the same',
        }),
        requested: Type.Integer({ description: "MiB the definition's device asks for (its next-boot size)" }),
      },
      closed,
    ),
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
    skipped: Type.Array(
      Type.Object(
        {
          alias: Type.String(),
          size: Type.Integer({ description: 'MiB' }),
          reason: Type.Literal('not-movable'),
        },
        closed,
      ),
      {
        description:
          'DIMMs that fit the decrease but were left out: the guest agent says the guest holds them in ZONE_NORMAL (empty with force)',
      },
    ),
    nextRun: Type.Object(
      {
        updated: Type.Boolean(),
        memory: Type.Integer({ description: 'MiB' }),
        guaranteed: Type.Integer({ description: 'MiB' }),
      },
      closed,
    ),
    dryRun: Type.Optional(Type.Literal(true, { description: 'a dry run: nothing was changed' })),
    floor: Type.Optional(
      Type.Integer({ description: 'dry run: MiB that can never be removed (base memory + boot-time DIMMs)' }),
    ),
    hotplugged: Type.Optional(Type.Integer({ description: 'dry run: MiB of hot-plugged DIMMs now' })),
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
    late: Type.Optional(
      Type.Literal(true, {
        description:
          'the end of a resize nobody waited for any more (its call was lost with a daemon restart, or it was kept after a failure)',
      }),
    ),
  },
  closed,
);
export type MemoryDeviceSizeChangedEvent = Static<typeof MemoryDeviceSizeChangedEvent>;

export const MemoryDeviceResizeFailedEvent = Type.Object(
  {
    alias: Type.String(),
    reason: Type.Union([Type.Literal('timeout'), Type.Literal('stalled')]),
    requested: Type.Integer({ description: 'MiB the resize asked for' }),
    current: Type.Integer({ description: 'MiB the guest had plugged when it stopped' }),
    requestedNow: Type.Integer({ description: 'MiB requested now: current when settled, else the request' }),
    late: Type.Literal(true, { description: 'nobody was waiting any more (the daemon restarted)' }),
  },
  closed,
);
export type MemoryDeviceResizeFailedEvent = Static<typeof MemoryDeviceResizeFailedEvent>;

/**
 * `|virt|VM_status|<vmId>` params, VDSM's way: `{"<vmId>": VmStats, "notify_time": ms}`
 * (notify_time from a monotonic clock).
 */
export const VmStatusEvent = Type.Unsafe<Record<string, VmStats | number>>({
  type: 'object',
  properties: { notify_time: Type.Integer({ minimum: 0, description: 'monotonic ms when sent' }) },
  patternProperties: { [UUID_PATTERN]: VmStats },
  required: ['notify_time'],
  minProperties: 2,
  maxProperties: 2,
  additionalProperties: false,
});

/** Notification method prefixes (the VM id follows) and their params schemas. */
export const NOTIFICATIONS = {
  '|virt|VM_status|': VmStatusEvent,
  '|virt|device_removed|': DeviceRemovedEvent,
  '|virt|device_removal_failed|': DeviceRemovalFailedEvent,
  '|virt|memory_device_size_changed|': MemoryDeviceSizeChangedEvent,
  '|virt|memory_device_resize_failed|': MemoryDeviceResizeFailedEvent,
} as const satisfies Record<string, TSchema>;
