// Every configurable key, its type, range and default, in one table: the TOML
// reader and the flag parser both validate through it, so a key is checked the
// same way wherever it comes from. config/vmhostd.toml documents the same keys.

import { ConfigError, LOG_LEVELS } from './types.js';

export type KeyKind =
  | { t: 'string'; nonEmpty?: boolean }
  | { t: 'bool' }
  | { t: 'int'; min: number; max: number; alsoZero?: boolean }
  | { t: 'number'; min: number; max: number }
  | { t: 'enum'; values: readonly string[] }
  /** A TOML array of non-empty strings; a flag gives it comma-separated. */
  | { t: 'list'; check?: (item: string) => string | null };

export type Value = string | number | boolean | readonly string[];

export interface KeySpec {
  kind: KeyKind;
  def: Value;
}

export const KEYS = {
  'listen.host': { kind: { t: 'string', nonEmpty: true }, def: '127.0.0.1' },
  // 0 (any free port, logged in the ready line) is for tests; not advertised in the range.
  'listen.port': { kind: { t: 'int', min: 1, max: 65535, alsoZero: true }, def: 54321 },
  'listen.allow_insecure': { kind: { t: 'bool' }, def: false },
  'listen.allowed_origins': { kind: { t: 'list', check: originProblem }, def: [] as readonly string[] },
  'listen.allowed_hosts': { kind: { t: 'list', check: hostNameProblem }, def: [] as readonly string[] },
  'tls.cert': { kind: { t: 'string' }, def: '' },
  'tls.key': { kind: { t: 'string' }, def: '' },
  'tls.ca': { kind: { t: 'string' }, def: '' },
  'tls.require_client_cert': { kind: { t: 'bool' }, def: true },
  'libvirt.uri': { kind: { t: 'string', nonEmpty: true }, def: 'qemu:///system' },
  'libvirt.socket': { kind: { t: 'string' }, def: '' },
  'libvirt.domain_prefix': { kind: { t: 'string' }, def: '' },
  'libvirt.call_timeout': { kind: { t: 'number', min: 1, max: 3600 }, def: 60 },
  'libvirt.keepalive_interval': { kind: { t: 'int', min: 1, max: 3600 }, def: 5 },
  'libvirt.keepalive_count': { kind: { t: 'int', min: 1, max: 100 }, def: 5 },
  'memory.unplug_timeout': { kind: { t: 'number', min: 1, max: 86400 }, def: 30 },
  'memory.dimm_alignment_mib': { kind: { t: 'int', min: 1, max: 1048576 }, def: 128 },
  'memory.resize_timeout': { kind: { t: 'number', min: 1, max: 86400 }, def: 120 },
  'memory.resize_stall_timeout': { kind: { t: 'number', min: 0.1, max: 86400 }, def: 20 },
  'guest.probe_interval': { kind: { t: 'number', min: 0, max: 86400 }, def: 60 },
  'guest.probe_timeout': { kind: { t: 'number', min: 0.1, max: 60 }, def: 3 },
  'events.max_entries': { kind: { t: 'int', min: 100, max: 10_000_000 }, def: 10_000 },
  'events.max_age': { kind: { t: 'number', min: 60, max: 30 * 86400 }, def: 86400 },
  'log.level': { kind: { t: 'enum', values: LOG_LEVELS }, def: 'info' },
  'log.pretty': { kind: { t: 'bool' }, def: false },
  'limits.max_payload_bytes': { kind: { t: 'int', min: 1024, max: 268435456 }, def: 1048576 },
  'limits.max_connections': { kind: { t: 'int', min: 1, max: 100000 }, def: 1024 },
  'limits.max_in_flight_per_connection': { kind: { t: 'int', min: 1, max: 100000 }, def: 64 },
  'limits.handshake_timeout': { kind: { t: 'number', min: 0.1, max: 600 }, def: 5 },
  'limits.first_byte_timeout': { kind: { t: 'number', min: 0.1, max: 600 }, def: 2 },
  'limits.max_pending_connections': { kind: { t: 'int', min: 1, max: 100000 }, def: 256 },
  'limits.max_pending_per_address': { kind: { t: 'int', min: 1, max: 100000 }, def: 16 },
  'limits.max_batch_entries': { kind: { t: 'int', min: 1, max: 100000 }, def: 64 },
  'console.enabled': { kind: { t: 'bool' }, def: true },
  'console.dir': { kind: { t: 'string' }, def: '' },
  // "" = off; else HOST:PORT on loopback (checked in config.ts).
  'metrics.listen': { kind: { t: 'string' }, def: '' },
  'metrics.per_vm': { kind: { t: 'bool' }, def: false },
} as const satisfies Record<string, KeySpec>;

/** An origin is scheme://host[:port], nothing else (what browsers send in Origin). */
export function originProblem(item: string): string | null {
  let u: URL;
  try {
    u = new URL(item);
  } catch {
    return 'must be an origin like https://engine.example:8443';
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'must be an http:// or https:// origin';
  if (u.origin !== item)
    return 'must be an origin as browsers send it: scheme://host[:port], lower case, no default port, no path';
  return null;
}

/** A host name or IP address as it appears in a Host header, without port. */
export function hostNameProblem(item: string): string | null {
  if (
    !/^(\[[0-9a-fA-F:.]+\]|[0-9a-fA-F:]*:[0-9a-fA-F:.]*|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)$/.test(item)
  )
    return 'must be a host name or IP address, without port';
  return null;
}

export type KeyName = keyof typeof KEYS;
export type Settings = { [K in KeyName]: Value };

export function isKeyName(s: string): s is KeyName {
  return Object.hasOwn(KEYS, s);
}

export function defaultSettings(): Settings {
  const out: Partial<Record<KeyName, Value>> = {};
  for (const k of Object.keys(KEYS) as KeyName[]) out[k] = KEYS[k].def;
  return out as Settings;
}

export function describeGot(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v);
  if (typeof v === 'bigint') return `${v}`;
  if (v instanceof Date) return 'a date';
  if (Array.isArray(v)) return 'an array';
  if (v !== null && typeof v === 'object') return 'a table';
  return String(v);
}

function rangeText(kind: { min: number; max: number }): string {
  return `${kind.min}..${kind.max}`;
}

/**
 * Validates one value for `key`. `label` is what the error names (the TOML key,
 * or the flag). `fromText` is true for flag values, which arrive as strings.
 */
export function checkValue(key: KeyName, label: string, v: unknown, fromText: boolean): Value {
  const kind: KeyKind = KEYS[key].kind;
  switch (kind.t) {
    case 'string': {
      if (typeof v !== 'string') throw new ConfigError(label, `must be a string (got ${describeGot(v)})`);
      if (kind.nonEmpty && v.trim() === '') throw new ConfigError(label, 'must not be empty');
      if (/[\0\r\n]/.test(v)) throw new ConfigError(label, 'must not contain control characters');
      return v;
    }
    case 'bool': {
      if (typeof v === 'boolean') return v;
      if (fromText && (v === 'true' || v === 'false')) return v === 'true';
      throw new ConfigError(label, `must be true or false (got ${describeGot(v)})`);
    }
    case 'int':
    case 'number': {
      let n: unknown = v;
      if (fromText && typeof v === 'string') n = /^[+-]?\d+(\.\d+)?$/.test(v.trim()) ? Number(v) : v;
      const what = kind.t === 'int' ? 'an integer' : 'a number';
      if (typeof n !== 'number' || !Number.isFinite(n) || (kind.t === 'int' && !Number.isInteger(n))) {
        throw new ConfigError(label, `must be ${what} ${rangeText(kind)} (got ${describeGot(v)})`);
      }
      if ((n < kind.min || n > kind.max) && !(kind.t === 'int' && kind.alsoZero && n === 0)) {
        throw new ConfigError(label, `must be ${what} ${rangeText(kind)} (got ${describeGot(v)})`);
      }
      return n;
    }
    case 'list': {
      let items: unknown = v;
      if (fromText && typeof v === 'string') items = v === '' ? [] : v.split(',').map((x) => x.trim());
      if (!Array.isArray(items) || !items.every((x) => typeof x === 'string')) {
        throw new ConfigError(label, `must be an array of strings (got ${describeGot(v)})`);
      }
      const list = items as string[];
      for (const item of list) {
        if (item === '') throw new ConfigError(label, 'must not contain an empty string');
        const problem = kind.check?.(item) ?? null;
        if (problem !== null) throw new ConfigError(label, `${problem} (got ${describeGot(item)})`);
      }
      return list;
    }
    case 'enum': {
      if (typeof v !== 'string' || !kind.values.includes(v)) {
        throw new ConfigError(label, `must be one of ${kind.values.join(', ')} (got ${describeGot(v)})`);
      }
      return v;
    }
  }
}
