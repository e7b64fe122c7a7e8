// Who may listen where, and how TLS material is loaded. Without TLS the
// daemon stays on loopback unless the operator explicitly allows otherwise.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';

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

export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || /^::ffff:127\./i.test(h);
  return false;
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
