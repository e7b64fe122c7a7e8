// Errors raised by the libvirt client. LibvirtError carries libvirt's own
// numeric code/domain so callers can branch on them (e.g. 42 no domain).

/** virErrorNumber values we branch on. */
export const LibvirtErrorCode = {
  INTERNAL_ERROR: 1,
  OPERATION_FAILED: 9,
  NO_DOMAIN: 42,
  OPERATION_INVALID: 55,
  NO_DOMAIN_METADATA: 80,
  AGENT_UNRESPONSIVE: 86,
  OPERATION_TIMEOUT: 68,
  DEVICE_MISSING: 99,
} as const;

export class LibvirtError extends Error {
  override readonly name = 'LibvirtError';
  constructor(
    message: string,
    readonly code: number,
    readonly domain: number,
    readonly level = 2,
  ) {
    super(message);
  }
}

/** The connection is closed or was lost before the call completed. */
export class LibvirtConnectionError extends Error {
  override readonly name: string = 'LibvirtConnectionError';
}

/** The call was refused before it was sent: there was no connection. libvirt never saw it. */
export class LibvirtNotConnectedError extends LibvirtConnectionError {
  override readonly name = 'LibvirtNotConnectedError';
}

/** A call got no reply within its timeout. */
export class LibvirtTimeoutError extends Error {
  override readonly name = 'LibvirtTimeoutError';
}

/** The peer sent something that is not valid protocol. */
export class LibvirtProtocolError extends Error {
  override readonly name = 'LibvirtProtocolError';
}
