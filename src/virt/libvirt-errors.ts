// How the domain layer reads libvirt's errors: fields for the log, a message,
// and what a failure means. libvirt's error code and domain decide where they
// can; where libvirt reports a generic code (9, operation failed) the message
// text is matched here and nowhere else. Real messages captured from
// libvirtd 9.0 are the test data (test/unit/virt-libvirt-errors.test.ts).

import { LibvirtError, LibvirtErrorCode } from '../libvirt/errors.js';

/** virErrorDomain: errors raised by the QEMU driver. */
export const VIR_FROM_QEMU = 10;
/** virErrorNumber: an OS call failed (e.g. reading the QEMU monitor socket). */
const VIR_ERR_SYSTEM_ERROR = 38;

export function libvirtDetails(err: unknown): Record<string, unknown> {
  if (err instanceof LibvirtError) {
    return { libvirtCode: err.code, libvirtDomain: err.domain, libvirtMessage: err.message };
  }
  return { error: err instanceof Error ? err.message : String(err) };
}

export function isNoDomain(err: unknown): boolean {
  return err instanceof LibvirtError && err.code === LibvirtErrorCode.NO_DOMAIN;
}

export function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The guest refused the unplug: libvirt 9 fails the detach with code 9 from
 * the QEMU driver, "operation failed: unplug of device was rejected by the
 * guest". Code 9 is generic, so the text decides.
 */
export function isRejectedByGuest(err: unknown): boolean {
  return (
    err instanceof LibvirtError &&
    err.code === LibvirtErrorCode.OPERATION_FAILED &&
    err.domain === VIR_FROM_QEMU &&
    /rejected by the guest/i.test(err.message)
  );
}

/**
 * QEMU is going away under the call: "domain is not running" (code 55,
 * operation invalid: the code decides), or the monitor closing, which
 * libvirt 9 reports with a generic code (1 internal error, "internal error:
 * End of file from qemu monitor (vm='…')"; 9 or 38 on other paths): the text
 * decides.
 */
export function isQemuGoingAway(err: unknown): boolean {
  if (!(err instanceof LibvirtError)) return false;
  if (err.code === LibvirtErrorCode.OPERATION_INVALID) return true;
  if (MONITOR_CODES.has(err.code))
    return /qemu monitor|from monitor|monitor (was )?closed/i.test(err.message);
  return false;
}

const MONITOR_CODES = new Set<number>([
  LibvirtErrorCode.INTERNAL_ERROR,
  LibvirtErrorCode.OPERATION_FAILED,
  VIR_ERR_SYSTEM_ERROR,
]);
