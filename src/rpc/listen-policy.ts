// Who may listen where, and how TLS material is loaded. Without TLS the
// daemon stays on loopback unless the operator explicitly allows otherwise.
import { readFileSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';

export interface TlsOptions {
  /** PEM text, or a path to a PEM file (anything not starting with "-----BEGIN" is read as a path). */
  cert: string;
  key: string;
  /** CA bundle that client certificates must chain to; required when requireClientCert. */
  ca?: string;
  requireClientCert: boolean;
}

export interface LoadedTls {
  cert: string;
  key: string;
  ca: string | undefined;
  requireClientCert: boolean;
}

/** "[::1]" -> "::1": the bracketed IPv6 form is how URLs and HOST:PORT write it, not a listen address. */
export function unbracketHost(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

// Parsed, not string-compared: "::1", "0:0:0:0:0:0:0:1" and "::ffff:127.0.0.1" are one address family.
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

/** The one loopback rule, used by the config check and by the listener. */
export function isLoopbackHost(host: string): boolean {
  const h = unbracketHost(host);
  if (h.toLowerCase() === 'localhost') return true;
  const family = isIP(h);
  if (family === 0) return false;
  return LOOPBACK.check(h, family === 4 ? 'ipv4' : 'ipv6');
}

function loadPem(what: string, value: string): string {
  if (value.trimStart().startsWith('-----BEGIN')) return value;
  try {
    return readFileSync(value, 'utf8');
  } catch (err) {
    throw new Error(`tls.${what}: cannot read ${value}: ${(err as Error).message}`);
  }
}

export function loadTls(tls: TlsOptions): LoadedTls {
  if (tls.requireClientCert && !tls.ca) {
    throw new Error(
      'tls.ca is required when client certificates are required (it is what they are verified against)',
    );
  }
  return {
    cert: loadPem('cert', tls.cert),
    key: loadPem('key', tls.key),
    ca: tls.ca ? loadPem('ca', tls.ca) : undefined,
    requireClientCert: tls.requireClientCert,
  };
}

/** Throws unless plain ws on `host` is acceptable; returns true when it is allowed only by allowInsecure. */
export function checkPlainListen(host: string, allowInsecure: boolean): boolean {
  if (isLoopbackHost(host)) return false;
  if (!allowInsecure) {
    throw new Error(
      `refusing to listen on non-loopback address ${host} without TLS: configure tls (cert, key, ca) or set allow_insecure = true`,
    );
  }
  return true;
}

/**
 * Why a TLS client's certificate is refused, or null if it is fine. The
 * server completes the handshake and answers this as an HTTP 403 instead of
 * aborting the handshake: clients then get a reason they can show (a TLS
 * 1.3 abort after the client's Finished reaches them as "socket hang up").
 */
export function clientCertProblem(socket: {
  authorized: boolean;
  authorizationError?: Error | string | null;
  getPeerCertificate(): object | null;
}): { code: string; text: string } | null {
  if (socket.authorized) return null;
  const cert = socket.getPeerCertificate();
  if (cert === null || Object.keys(cert).length === 0) {
    return { code: 'NO_CLIENT_CERT', text: 'no client certificate was sent' };
  }
  const e = socket.authorizationError;
  const code =
    (typeof e === 'string' ? e : ((e as NodeJS.ErrnoException | null)?.code ?? e?.message)) ?? 'UNKNOWN';
  switch (code) {
    case 'CERT_HAS_EXPIRED':
      return { code, text: 'the client certificate has expired' };
    case 'CERT_NOT_YET_VALID':
      return { code, text: 'the client certificate is not valid yet' };
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'CERT_SIGNATURE_FAILURE':
      return { code, text: 'the client certificate is signed by a CA the daemon does not trust (tls.ca)' };
    case 'INVALID_PURPOSE':
      return { code, text: 'the certificate is not for TLS clients (extendedKeyUsage lacks clientAuth)' };
    default:
      return { code, text: `the client certificate was refused (${code})` };
  }
}
