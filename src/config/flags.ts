// Parses the daemon's command-line flags into settings that override the file.

import { checkValue, type KeyName, type Value } from './keys.js';
import { ConfigError } from './types.js';

export interface ParsedFlags {
  configPath?: string;
  help: boolean;
  version: boolean;
  settings: Partial<Record<KeyName, Value>>;
}

/** Flags that take a value, and the key they set. */
const VALUE_FLAGS: Record<string, KeyName | 'config' | 'listen'> = {
  '--config': 'config',
  '--listen': 'listen',
  '--libvirt-socket': 'libvirt.socket',
  '--libvirt-uri': 'libvirt.uri',
  '--domain-prefix': 'libvirt.domain_prefix',
  '--unplug-timeout': 'memory.unplug_timeout',
  '--log-level': 'log.level',
  '--tls-cert': 'tls.cert',
  '--tls-key': 'tls.key',
  '--tls-ca': 'tls.ca',
  '--console-dir': 'console.dir',
  '--metrics-listen': 'metrics.listen',
};

/** Switches, and the setting they fix. */
const SWITCHES: Record<string, [KeyName, boolean]> = {
  '--log-pretty': ['log.pretty', true],
  '--require-client-cert': ['tls.require_client_cert', true],
  '--no-require-client-cert': ['tls.require_client_cert', false],
  '--allow-insecure': ['listen.allow_insecure', true],
  '--no-console': ['console.enabled', false],
};

/** Splits HOST:PORT, accepting [v6]:PORT. */
export function parseListen(flag: string, s: string): { host: string; port: unknown } {
  const m = /^\[([^\]]+)\]:([^:]*)$/.exec(s) ?? /^([^:[\]]+):([^:]*)$/.exec(s);
  if (!m) throw new ConfigError(flag, `must be HOST:PORT, e.g. 127.0.0.1:54321 or [::1]:54321 (got "${s}")`);
  return { host: m[1] ?? '', port: m[2] ?? '' };
}

export function parseFlags(argv: readonly string[]): ParsedFlags {
  const out: ParsedFlags = { help: false, version: false, settings: {} };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--help' || arg === '-h') {
      out.help = true;
      continue;
    }
    if (arg === '--version' || arg === '-V') {
      out.version = true;
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    const inline = arg.startsWith('--') && eq > 0 ? arg.slice(eq + 1) : undefined;
    const sw = SWITCHES[name];
    if (sw) {
      if (inline !== undefined) throw new ConfigError(name, 'takes no value');
      out.settings[sw[0]] = sw[1];
      continue;
    }
    const target = VALUE_FLAGS[name];
    if (!target) {
      throw new ConfigError(arg, 'unknown flag (see --help)');
    }
    let value = inline;
    if (value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('--') && next.length > 2)) {
        throw new ConfigError(name, 'needs a value');
      }
      value = next;
      i++;
    }
    if (target === 'config') {
      if (value === '') throw new ConfigError(name, 'must not be empty');
      out.configPath = value;
    } else if (target === 'listen') {
      const { host, port } = parseListen(name, value);
      out.settings['listen.host'] = checkValue('listen.host', name, host, true);
      out.settings['listen.port'] = checkValue('listen.port', name, port, true);
    } else {
      out.settings[target] = checkValue(target, name, value, true);
    }
  }
  return out;
}
