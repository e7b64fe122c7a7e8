// The API's error codes and every `data.reason` value, defined once
// (docs/design.md, "Errors"). Handlers, the REST front, the CLI's
// explanations and the tests all read them from here.
import { RpcErrorCode } from '../rpc/errors.js';
import type {
  HotplugReason as VirtHotplugReason,
  HotunplugReason as VirtHotunplugReason,
} from '../virt/errors.js';

/** Every code the API answers with: the transport's and the domain's (VDSM's numbers). */
export const ErrorCode = {
  ...RpcErrorCode,
  /** No VM with that id on this host. */
  NO_SUCH_VM: 1,
  /** The VM is migrating: memory cannot change now. */
  MIGRATING: 51,
  /** Hot plug failed; `data.reason` is a HotplugReason. */
  HOTPLUG_FAILED: 70,
  /** Hot unplug failed; `data.reason` is a HotunplugReason. */
  HOTUNPLUG_FAILED: 85,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export const HOTPLUG_REASONS = ['libvirt-error', 'no-free-slot', 'not-running'] as const;
export type HotplugReason = (typeof HOTPLUG_REASONS)[number];

export const HOTUNPLUG_REASONS = [
  'guest-rejected',
  'timeout',
  'not-running',
  'device-not-found',
  'not-hotplugged',
  'already-unplugging',
  'vm-gone',
  'libvirt-error',
  'no-suitable-device',
  'stalled',
  'below-minimum',
  'not-movable',
] as const;
export type HotunplugReason = (typeof HOTUNPLUG_REASONS)[number];

/** `data.reason` of codes 1 and 51. */
export const NO_SUCH_VM_REASON = 'no-such-vm';
export const MIGRATING_REASON = 'migrating';

export type Reason = HotplugReason | HotunplugReason | typeof NO_SUCH_VM_REASON | typeof MIGRATING_REASON;

/** The reasons each domain code can carry. */
export const REASONS_BY_CODE: Readonly<Record<number, readonly Reason[]>> = {
  [ErrorCode.NO_SUCH_VM]: [NO_SUCH_VM_REASON],
  [ErrorCode.MIGRATING]: [MIGRATING_REASON],
  [ErrorCode.HOTPLUG_FAILED]: HOTPLUG_REASONS,
  [ErrorCode.HOTUNPLUG_FAILED]: HOTUNPLUG_REASONS,
};

export function isReasonOf(code: number, reason: unknown): reason is Reason {
  return typeof reason === 'string' && (REASONS_BY_CODE[code] ?? []).some((r) => r === reason);
}

// The domain layer names its reasons too; a reason it adds that the contract
// lacks (or the other way round) fails the compile here.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const hotplugAgrees: Same<VirtHotplugReason, HotplugReason> = true;
const hotunplugAgrees: Same<VirtHotunplugReason, HotunplugReason> = true;
void hotplugAgrees;
void hotunplugAgrees;
