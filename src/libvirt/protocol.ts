// Program/procedure numbers and struct codecs for the part of libvirt's RPC
// protocol we speak. Numbers and layouts checked against libvirt's
// src/remote/remote_protocol.x, src/rpc/virnetprotocol.x and
// src/rpc/virkeepaliveprotocol.x.

import { LibvirtProtocolError } from './errors.js';
import type { DomainRef } from './types.js';
import type { XdrReader, XdrWriter } from './xdr.js';

export const REMOTE_PROGRAM = 0x20008086;
export const REMOTE_PROTOCOL_VERSION = 1;

/** libvirt's QEMU-specific program (src/remote/qemu_protocol.x); QEMU_PROTOCOL_VERSION = 1. */
export const QEMU_PROGRAM = 0x20008087;
/** qemu_procedure values we use. */
export const QemuProc = {
  /** args {dom, cmd, int timeout, flags} -> ret {remote_string result} */
  DOMAIN_AGENT_COMMAND: 3,
} as const;
export const QemuProcName: Record<number, string> = Object.fromEntries(
  Object.entries(QemuProc).map(([name, num]) => [num, `QEMU_${name}`]),
);
/** virDomainQemuAgentCommandTimeoutValues: block, libvirt's default (5 s), no wait; else seconds. */
export const AgentTimeout = { BLOCK: -2, DEFAULT: -1, NOWAIT: 0 } as const;

export const KEEPALIVE_PROGRAM = 0x6b656570;
export const KEEPALIVE_PROTOCOL_VERSION = 1;
export const KeepaliveProc = { PING: 1, PONG: 2 } as const;

/** remote_procedure values we use. */
export const Proc = {
  CONNECT_OPEN: 1,
  CONNECT_CLOSE: 2,
  CONNECT_GET_VERSION: 4,
  DOMAIN_CREATE_XML: 10,
  DOMAIN_DEFINE_XML: 11,
  DOMAIN_DESTROY: 12,
  DOMAIN_GET_XML_DESC: 14,
  DOMAIN_LOOKUP_BY_UUID: 24,
  DOMAIN_UNDEFINE: 35,
  CONNECT_GET_HOSTNAME: 59,
  CONNECT_SUPPORTS_FEATURE: 60,
  AUTH_LIST: 66,
  AUTH_POLKIT: 70,
  CONNECT_GET_LIB_VERSION: 157,
  DOMAIN_ATTACH_DEVICE_FLAGS: 160,
  DOMAIN_DETACH_DEVICE_FLAGS: 161,
  DOMAIN_UPDATE_DEVICE_FLAGS: 174,
  DOMAIN_GET_STATE: 212,
  DOMAIN_SET_METADATA: 264,
  DOMAIN_GET_METADATA: 265,
  CONNECT_LIST_ALL_DOMAINS: 273,
  DOMAIN_GET_JOB_STATS: 298,
  CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY: 316,
  CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY: 317,
  DOMAIN_EVENT_CALLBACK_LIFECYCLE: 318,
  DOMAIN_EVENT_CALLBACK_DEVICE_REMOVED: 333,
  DOMAIN_EVENT_CALLBACK_DEVICE_ADDED: 354,
  DOMAIN_EVENT_CALLBACK_DEVICE_REMOVAL_FAILED: 367,
  DOMAIN_EVENT_MEMORY_DEVICE_SIZE_CHANGE: 438,
} as const;

/** Procedure number -> name (for logs, errors and the fake's call counters). */
export const ProcName: Record<number, string> = Object.fromEntries(
  Object.entries(Proc).map(([name, num]) => [num, name]),
);

/** virDomainEventID values for the callback register. */
export const DomainEventId = {
  LIFECYCLE: 0,
  DEVICE_REMOVED: 15,
  DEVICE_ADDED: 19,
  DEVICE_REMOVAL_FAILED: 22,
  MEMORY_DEVICE_SIZE_CHANGE: 26,
} as const;

/** remote_auth_type. */
export const AuthType = { NONE: 0, SASL: 1, POLKIT: 2 } as const;

/** virDrvFeature: the peer supports the keepalive program. */
export const FEATURE_PROGRAM_KEEPALIVE = 10;

export const UUID_BYTES = 16;

const UUID_RE = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

export function uuidToBytes(uuid: string): Buffer {
  if (!UUID_RE.test(uuid)) throw new TypeError(`not a UUID: ${JSON.stringify(uuid)}`);
  return Buffer.from(uuid.replace(/-/g, ''), 'hex');
}

export function uuidFromBytes(b: Buffer): string {
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

// remote_nonnull_domain { remote_nonnull_string name; remote_uuid uuid; int id; }
export function writeDomain(w: XdrWriter, d: DomainRef): void {
  w.writeString(d.name);
  w.writeOpaqueFixed(uuidToBytes(d.uuid), UUID_BYTES);
  w.writeInt(d.id);
}

export function readDomain(r: XdrReader): DomainRef {
  const name = r.readString();
  const uuid = uuidFromBytes(r.readOpaqueFixed(UUID_BYTES));
  const id = r.readInt();
  return { name, uuid, id };
}

/** Smallest encoding of a remote_nonnull_domain (empty name): for array count sanity checks. */
export const DOMAIN_MIN_BYTES = 4 + UUID_BYTES + 4;

export interface RemoteError {
  code: number;
  domain: number;
  message: string | null;
  level: number;
  dom: DomainRef | null;
  str1: string | null;
  str2: string | null;
  str3: string | null;
  int1: number;
  int2: number;
}

// remote_error; the trailing remote_network is decoded and dropped.
export function readRemoteError(r: XdrReader): RemoteError {
  const code = r.readInt();
  const domain = r.readInt();
  const message = r.readOptionalString();
  const level = r.readInt();
  const dom = r.readOptional(readDomain);
  const str1 = r.readOptionalString();
  const str2 = r.readOptionalString();
  const str3 = r.readOptionalString();
  const int1 = r.readInt();
  const int2 = r.readInt();
  r.readOptional((rr) => {
    rr.readString();
    rr.readOpaqueFixed(UUID_BYTES);
    return null;
  });
  return { code, domain, message, level, dom, str1, str2, str3, int1, int2 };
}

export function writeRemoteError(
  w: XdrWriter,
  e: { code: number; domain: number; message: string | null; level?: number },
): void {
  w.writeInt(e.code);
  w.writeInt(e.domain);
  w.writeOptionalString(e.message);
  w.writeInt(e.level ?? 2);
  w.writeUint(0); // dom
  w.writeOptionalString(e.message); // str1: libvirt repeats the message here
  w.writeUint(0); // str2
  w.writeUint(0); // str3
  w.writeInt(0);
  w.writeInt(0);
  w.writeUint(0); // net
}

/** REMOTE_DOMAIN_JOB_STATS_MAX: typed params in a job-stats reply. */
export const JOB_STATS_MAX = 64;
/** VIR_TYPED_PARAM_FIELD_LENGTH. */
const TYPED_PARAM_FIELD_MAX = 80;

/** virTypedParameterType. */
export const TypedParamType = {
  INT: 1,
  UINT: 2,
  LLONG: 3,
  ULLONG: 4,
  DOUBLE: 5,
  BOOLEAN: 6,
  STRING: 7,
} as const;

export type TypedParamValue = number | bigint | boolean | string;

// remote_typed_param { remote_nonnull_string field; union switch (int type) value; }
function readTypedParam(r: XdrReader): [string, TypedParamValue] {
  const field = r.readString(TYPED_PARAM_FIELD_MAX);
  const type = r.readInt();
  switch (type) {
    case TypedParamType.INT:
      return [field, r.readInt()];
    case TypedParamType.UINT:
      return [field, r.readUint()];
    case TypedParamType.LLONG:
      return [field, r.readHyper()];
    case TypedParamType.ULLONG:
      return [field, r.readUhyper()];
    case TypedParamType.DOUBLE:
      return [field, r.readOpaqueFixed(8).readDoubleBE(0)];
    case TypedParamType.BOOLEAN:
      return [field, r.readInt() !== 0];
    case TypedParamType.STRING:
      return [field, r.readString()];
    default:
      throw new LibvirtProtocolError(`typed parameter ${JSON.stringify(field)}: unknown type ${type}`);
  }
}

/** A remote_typed_param array as a field -> value map (the first of repeated fields wins). */
export function readTypedParams(r: XdrReader, max: number): Record<string, TypedParamValue> {
  const list = r.readArray(readTypedParam, max, 8);
  const out: Record<string, TypedParamValue> = Object.create(null) as Record<string, TypedParamValue>;
  for (const [k, v] of list) if (!(k in out)) out[k] = v;
  return out;
}

export function writeTypedParams(
  w: XdrWriter,
  params: readonly { field: string; type: number; value: TypedParamValue }[],
): void {
  w.writeUint(params.length);
  for (const p of params) {
    w.writeString(p.field);
    w.writeInt(p.type);
    switch (p.type) {
      case TypedParamType.INT:
      case TypedParamType.BOOLEAN:
        w.writeInt(typeof p.value === 'boolean' ? (p.value ? 1 : 0) : Number(p.value));
        break;
      case TypedParamType.UINT:
        w.writeUint(Number(p.value));
        break;
      case TypedParamType.LLONG:
        w.writeHyper(p.value as bigint | number);
        break;
      case TypedParamType.ULLONG:
        w.writeUhyper(p.value as bigint | number);
        break;
      case TypedParamType.DOUBLE: {
        const b = Buffer.alloc(8);
        b.writeDoubleBE(Number(p.value), 0);
        w.writeOpaqueFixed(b, 8);
        break;
      }
      case TypedParamType.STRING:
        w.writeString(String(p.value));
        break;
      default:
        throw new RangeError(`unknown typed parameter type ${p.type}`);
    }
  }
}

/** A decoded domain event (MESSAGE from the remote program). */
export type DomainEventMessage =
  | { kind: 'lifecycle'; callbackId: number; domain: DomainRef; event: number; detail: number }
  | {
      kind: 'deviceRemoved' | 'deviceAdded' | 'deviceRemovalFailed';
      callbackId: number;
      domain: DomainRef;
      alias: string;
    }
  | {
      /** remote_domain_event_memory_device_size_change_msg; `size` is the device's current size in KiB. */
      kind: 'memoryDeviceSizeChange';
      callbackId: number;
      domain: DomainRef;
      alias: string;
      sizeKiB: number;
    };

/**
 * Decodes an event body, or returns null for a procedure we do not handle.
 * All layouts start with callbackID then the domain (the device-removed
 * one nests {dom, devAlias} in a struct, which encodes identically).
 */
export function readDomainEvent(proc: number, r: XdrReader): DomainEventMessage | null {
  switch (proc) {
    case Proc.DOMAIN_EVENT_CALLBACK_LIFECYCLE: {
      const callbackId = r.readInt();
      const domain = readDomain(r);
      const event = r.readInt();
      const detail = r.readInt();
      return { kind: 'lifecycle', callbackId, domain, event, detail };
    }
    case Proc.DOMAIN_EVENT_CALLBACK_DEVICE_REMOVED:
    case Proc.DOMAIN_EVENT_CALLBACK_DEVICE_ADDED:
    case Proc.DOMAIN_EVENT_CALLBACK_DEVICE_REMOVAL_FAILED: {
      const callbackId = r.readInt();
      const domain = readDomain(r);
      const alias = r.readString();
      const kind =
        proc === Proc.DOMAIN_EVENT_CALLBACK_DEVICE_REMOVED
          ? 'deviceRemoved'
          : proc === Proc.DOMAIN_EVENT_CALLBACK_DEVICE_ADDED
            ? 'deviceAdded'
            : 'deviceRemovalFailed';
      return { kind, callbackId, domain, alias };
    }
    case Proc.DOMAIN_EVENT_MEMORY_DEVICE_SIZE_CHANGE: {
      const callbackId = r.readInt();
      const domain = readDomain(r);
      const alias = r.readString();
      const sizeKiB = r.readUhyperNumber();
      return { kind: 'memoryDeviceSizeChange', callbackId, domain, alias, sizeKiB };
    }
    default:
      return null;
  }
}

export function writeDomainEvent(w: XdrWriter, ev: DomainEventMessage): number {
  w.writeInt(ev.callbackId);
  writeDomain(w, ev.domain);
  if (ev.kind === 'lifecycle') {
    w.writeInt(ev.event);
    w.writeInt(ev.detail);
    return Proc.DOMAIN_EVENT_CALLBACK_LIFECYCLE;
  }
  w.writeString(ev.alias);
  if (ev.kind === 'memoryDeviceSizeChange') {
    w.writeUhyper(ev.sizeKiB);
    return Proc.DOMAIN_EVENT_MEMORY_DEVICE_SIZE_CHANGE;
  }
  switch (ev.kind) {
    case 'deviceRemoved':
      return Proc.DOMAIN_EVENT_CALLBACK_DEVICE_REMOVED;
    case 'deviceAdded':
      return Proc.DOMAIN_EVENT_CALLBACK_DEVICE_ADDED;
    case 'deviceRemovalFailed':
      return Proc.DOMAIN_EVENT_CALLBACK_DEVICE_REMOVAL_FAILED;
    default:
      throw new LibvirtProtocolError('unknown event kind');
  }
}

/** Event kind -> the eventID to register for it. */
export const EventIdForKind = {
  lifecycle: DomainEventId.LIFECYCLE,
  deviceRemoved: DomainEventId.DEVICE_REMOVED,
  deviceAdded: DomainEventId.DEVICE_ADDED,
  deviceRemovalFailed: DomainEventId.DEVICE_REMOVAL_FAILED,
  memoryDeviceSizeChange: DomainEventId.MEMORY_DEVICE_SIZE_CHANGE,
} as const;

/**
 * Event kinds whose registration may fail on an older libvirtd (the
 * memory-device size change event is libvirt >= 7.9): the client then goes on
 * without them.
 */
export const OPTIONAL_EVENT_KINDS: ReadonlySet<DomainEventMessage['kind']> = new Set([
  'memoryDeviceSizeChange',
]);
