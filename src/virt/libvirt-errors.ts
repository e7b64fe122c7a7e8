// How the domain layer reads libvirt's errors: fields for the log, a message,
// and the "domain is gone" case.

import { LibvirtError, LibvirtErrorCode } from '../libvirt/errors.js';

export function libvirtDetails(err: unknown): Record<string, unknown> {
  if (err instanceof LibvirtError) return { libvirtCode: err.code, libvirtMessage: err.message };
  return { error: err instanceof Error ? err.message : String(err) };
}

export function isNoDomain(err: unknown): boolean {
  return err instanceof LibvirtError && err.code === LibvirtErrorCode.NO_DOMAIN;
}

export function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
