// Errors of the domain layer. The API layer maps `kind` to a JSON-RPC code
// and passes `reason` and `details` on as error data.

export type VirtErrorKind =
  | 'no-such-vm'
  | 'migrating'
  | 'hotplug'
  | 'hotunplug'
  | 'invalid'
  | 'shutting-down';

export type HotplugReason = 'libvirt-error' | 'no-free-slot' | 'not-running';

export type HotunplugReason =
  | 'guest-rejected'
  | 'timeout'
  | 'not-running'
  | 'device-not-found'
  | 'not-hotplugged'
  | 'already-unplugging'
  | 'vm-gone'
  | 'libvirt-error'
  | 'no-suitable-device'
  /** A virtio-mem resize stopped moving short of its target. */
  | 'stalled'
  /** setMemory below base memory + boot-time DIMMs, which can never be removed. */
  | 'below-minimum'
  /** The guest holds the DIMM (or part of it) in ZONE_NORMAL: it would refuse; not tried (force tries). */
  | 'not-movable';

export class VirtError extends Error {
  override readonly name = 'VirtError';
  constructor(
    readonly kind: VirtErrorKind,
    readonly reason: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** A semantic parameter error naming the field and the rule it broke. */
export function invalid(field: string, rule: string, message: string): VirtError {
  return new VirtError('invalid', 'invalid', message, { field, rule });
}
