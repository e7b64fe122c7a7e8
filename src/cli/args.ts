// Parses vmhost-client's command line into a typed command. Pure: no I/O.

import { UsageError } from './errors.js';
import { parseSizeBytes, parseSizeMiB } from './size.js';

export const DEFAULT_URL = 'ws://127.0.0.1:54321/jsonrpc';

export interface GlobalOptions {
  url: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  json: boolean;
}

export type Command =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'raw'; method: string; params: Record<string, unknown> }
  | { kind: 'vm-list' }
  | { kind: 'vm-show'; vm: string }
  | { kind: 'vm-plug'; vm: string; sizeMiB: number; node: number; alias?: string; guaranteedMiB?: number }
  | { kind: 'vm-unplug'; vm: string; alias: string; timeoutS?: number; force?: true }
  | { kind: 'vm-resize'; vm: string; alias: string; requestedMiB: number; timeoutS?: number; keep: boolean }
  | {
      kind: 'vm-set-memory';
      vm: string;
      memoryBytes: number;
      guaranteedBytes?: number;
      timeoutS?: number;
      /** Only show what would be unplugged. */
      dryRun?: true;
      /** Do not ask before removing more than half the hot-plugged memory. */
      yes?: true;
      /** Plan as if every DIMM were movable (the guest's zones are not asked). */
      force?: true;
    }
  | { kind: 'events'; vm?: string; count?: number }
  | { kind: 'status' };

export interface ParsedCli {
  global: GlobalOptions;
  command: Command;
}

/** Every option, and whether it takes a value. */
const OPTIONS: Record<string, boolean> = {
  '--url': true,
  '--tls-cert': true,
  '--tls-key': true,
  '--tls-ca': true,
  '--json': false,
  '--help': false,
  '--version': false,
  '--node': true,
  '--alias': true,
  '--guaranteed': true,
  '--timeout': true,
  '--count': true,
  '--keep': false,
  '--dry-run': false,
  '--yes': false,
  '--force': false,
};
const SHORT: Record<string, string> = { '-h': '--help', '-V': '--version' };
const GLOBAL = new Set(['--url', '--tls-cert', '--tls-key', '--tls-ca', '--json', '--help', '--version']);

/** Command-specific options allowed per command. */
const ALLOWED: Record<string, readonly string[]> = {
  'vm-plug': ['--node', '--alias', '--guaranteed'],
  'vm-unplug': ['--timeout', '--force'],
  'vm-resize': ['--timeout', '--keep'],
  'vm-set-memory': ['--guaranteed', '--timeout', '--dry-run', '--yes', '--force'],
  events: ['--count'],
};

function parseInt10(what: string, s: string, min: number, max: number): number {
  if (!/^\d+$/.test(s) || Number(s) < min || Number(s) > max) {
    throw new UsageError(`${what}: must be an integer ${min}..${max} (got "${s}")`);
  }
  return Number(s);
}

function parseSeconds(what: string, s: string): number {
  const m = /^(\d+(?:\.\d+)?)s?$/.exec(s);
  const n = m ? Number(m[1]) : Number.NaN;
  if (!(n > 0 && n <= 3600)) throw new UsageError(`${what}: must be seconds, 0 < S <= 3600 (got "${s}")`);
  return n;
}

/** A raw call argument's value: JSON when it parses as JSON, else the string itself. */
export function parseRawValue(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}

const RESERVED_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

function parseRaw(positional: string[]): Command {
  const [first = '', ...rest] = positional;
  let method: string;
  let args: string[];
  if (first.includes('.')) {
    method = first;
    args = rest;
  } else {
    const [verb, ...more] = rest;
    if (verb === undefined || verb.includes('=')) {
      throw new UsageError(`"${first}" needs a method: e.g. vmhost-client ${first} getVMList, or see --help`);
    }
    method = `${first}.${verb}`;
    args = more;
  }
  if (!/^[A-Za-z][\w]*\.[A-Za-z][\w]*$/.test(method))
    throw new UsageError(`"${method}" is not a method name`);
  const params: Record<string, unknown> = {};
  for (const a of args) {
    const eq = a.indexOf('=');
    if (eq <= 0)
      throw new UsageError(`"${a}": raw call arguments are NAME=VALUE (VALUE as JSON, or a string)`);
    const key = a.slice(0, eq);
    if (RESERVED_KEYS.has(key)) throw new UsageError(`"${key}" is not a valid parameter name`);
    if (Object.hasOwn(params, key)) throw new UsageError(`parameter "${key}" given twice`);
    params[key] = parseRawValue(a.slice(eq + 1));
  }
  return { kind: 'raw', method, params };
}

function need(positional: string[], n: number, usage: string): void {
  if (positional.length !== n) throw new UsageError(`usage: vmhost-client ${usage}`);
}

export function parseCli(argv: readonly string[], env: Record<string, string | undefined> = {}): ParsedCli {
  const opts = new Map<string, string>();
  const positional: string[] = [];
  let onlyPositional = false;
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i] ?? '';
    if (onlyPositional || !raw.startsWith('-') || raw === '-' || /^-\d/.test(raw)) {
      positional.push(raw);
      continue;
    }
    if (raw === '--') {
      onlyPositional = true;
      continue;
    }
    const eq = raw.indexOf('=');
    const name = SHORT[raw] ?? (eq > 0 ? raw.slice(0, eq) : raw);
    const takesValue = OPTIONS[name];
    if (takesValue === undefined) throw new UsageError(`unknown option "${raw}" (see --help)`);
    let value = 'true';
    if (takesValue) {
      if (eq > 0) value = raw.slice(eq + 1);
      else {
        const next = argv[++i];
        if (next === undefined) throw new UsageError(`${name} needs a value`);
        value = next;
      }
    } else if (eq > 0) throw new UsageError(`${name} takes no value`);
    if (opts.has(name)) throw new UsageError(`${name} given twice`);
    opts.set(name, value);
  }

  const global: GlobalOptions = {
    url: opts.get('--url') ?? (env.VMHOSTD_URL || DEFAULT_URL),
    json: opts.has('--json'),
  };
  const cert = opts.get('--tls-cert');
  const key = opts.get('--tls-key');
  const ca = opts.get('--tls-ca');
  if (cert !== undefined) global.tlsCert = cert;
  if (key !== undefined) global.tlsKey = key;
  if (ca !== undefined) global.tlsCa = ca;
  if ((cert === undefined) !== (key === undefined))
    throw new UsageError('--tls-cert and --tls-key go together');
  if (!/^wss?:\/\/[^/\s]+/.test(global.url)) {
    throw new UsageError(`--url: must be ws://HOST:PORT/jsonrpc or wss://… (got "${global.url}")`);
  }
  if (opts.has('--help')) return { global, command: { kind: 'help' } };
  if (opts.has('--version')) return { global, command: { kind: 'version' } };
  if (positional.length === 0)
    throw new UsageError('no command given (try: vmhost-client vm list, or --help)');

  const command = parseCommand(positional, opts);
  const allowed = new Set([...GLOBAL, ...(ALLOWED[command.kind] ?? [])]);
  for (const name of opts.keys()) {
    if (!allowed.has(name)) throw new UsageError(`${name} does not apply to this command`);
  }
  return { global, command };
}

function parseCommand(positional: string[], opts: Map<string, string>): Command {
  const [head, sub] = positional;
  if (head === 'help') return { kind: 'help' };
  if (head === 'status') {
    if (positional.length > 1) throw new UsageError('usage: vmhost-client status');
    return { kind: 'status' };
  }
  if (head === 'events') {
    if (positional.length > 2) throw new UsageError('usage: vmhost-client events [VM] [--count N]');
    const c: Command = { kind: 'events' };
    if (sub !== undefined) c.vm = sub;
    const count = opts.get('--count');
    if (count !== undefined) c.count = parseInt10('--count', count, 1, 1_000_000);
    return c;
  }
  if (head !== 'vm') return parseRaw(positional);

  const args = positional.slice(2);
  const timeout = opts.get('--timeout');
  switch (sub) {
    case 'list':
      need(args, 0, 'vm list');
      return { kind: 'vm-list' };
    case 'show':
    case 'devices':
      need(args, 1, `vm ${sub} VM`);
      return { kind: 'vm-show', vm: args[0] ?? '' };
    case 'plug': {
      need(args, 2, 'vm plug VM SIZE [--node N] [--alias ua-NAME] [--guaranteed SIZE]');
      const c: Command = {
        kind: 'vm-plug',
        vm: args[0] ?? '',
        sizeMiB: parseSizeMiB('SIZE', args[1] ?? ''),
        node: parseInt10('--node', opts.get('--node') ?? '0', 0, 63),
      };
      if (c.sizeMiB <= 0) throw new UsageError('SIZE: must be more than 0');
      const alias = opts.get('--alias');
      if (alias !== undefined) c.alias = alias;
      const g = opts.get('--guaranteed');
      if (g !== undefined) c.guaranteedMiB = parseSizeMiB('--guaranteed', g);
      return c;
    }
    case 'unplug': {
      need(args, 2, 'vm unplug VM ALIAS [--timeout S] [--force]');
      const c: Command = { kind: 'vm-unplug', vm: args[0] ?? '', alias: args[1] ?? '' };
      if (timeout !== undefined) c.timeoutS = parseSeconds('--timeout', timeout);
      if (opts.has('--force')) c.force = true;
      return c;
    }
    case 'resize': {
      need(args, 3, 'vm resize VM ALIAS SIZE [--timeout S] [--keep]');
      const c: Command = {
        kind: 'vm-resize',
        vm: args[0] ?? '',
        alias: args[1] ?? '',
        requestedMiB: parseSizeMiB('SIZE', args[2] ?? ''),
        keep: opts.has('--keep'),
      };
      if (timeout !== undefined) c.timeoutS = parseSeconds('--timeout', timeout);
      return c;
    }
    case 'set-memory': {
      need(args, 2, 'vm set-memory VM SIZE [--guaranteed SIZE] [--timeout S] [--dry-run] [--yes] [--force]');
      const c: Command = {
        kind: 'vm-set-memory',
        vm: args[0] ?? '',
        memoryBytes: parseSizeBytes('SIZE', args[1] ?? ''),
      };
      if (c.memoryBytes < 1024 * 1024) throw new UsageError('SIZE: must be at least 1 MiB');
      const g = opts.get('--guaranteed');
      if (g !== undefined) c.guaranteedBytes = parseSizeBytes('--guaranteed', g);
      if (timeout !== undefined) c.timeoutS = parseSeconds('--timeout', timeout);
      if (opts.has('--dry-run')) c.dryRun = true;
      if (opts.has('--yes')) c.yes = true;
      if (opts.has('--force')) c.force = true;
      return c;
    }
    default:
      throw new UsageError(
        `unknown command "vm ${sub ?? ''}" (vm list | show | devices | plug | unplug | resize | set-memory)`.replace(
          ' )',
          ')',
        ),
      );
  }
}

export const USAGE = `Usage: vmhost-client [--url URL] [--tls-cert F --tls-key F] [--tls-ca F] [--json] COMMAND

Operator client of vmhostd (JSON-RPC 2.0 over WebSocket).

Commands:
  vm list                               VMs with status, memory and DIMM count
  vm show VM                            one VM: memory, guaranteed, DIMMs (alias/size/node/slot/
                                        state, and GUEST: the zone the guest holds it in)
  vm devices VM                         same as vm show
  vm plug VM SIZE [--node N] [--alias ua-NAME] [--guaranteed SIZE]
                                        hot plug a DIMM of SIZE
  vm unplug VM ALIAS [--timeout S] [--force]
                                        hot unplug a hot-plugged DIMM, waiting for the guest;
                                        one the guest holds in ZONE_NORMAL is refused
                                        (not-movable) unless --force
  vm resize VM ALIAS SIZE [--timeout S] [--keep]
                                        resize a virtio-mem device to SIZE (a multiple of its
                                        block), with live progress; --keep: after a stall or
                                        timeout leave the request for the guest to keep trying
  vm set-memory VM SIZE [--guaranteed SIZE] [--timeout S] [--dry-run] [--yes] [--force]
                                        lower (or raise) the VM's memory to SIZE; --dry-run
                                        shows what would be unplugged; on a terminal it asks
                                        before removing more than half the hot-plugged
                                        memory (--yes: do not ask); DIMMs the guest holds
                                        in ZONE_NORMAL are skipped unless --force
  events [VM] [--count N]               follow notifications, one line each (Ctrl-C stops)
  status                                the daemon on one screen: uptime, libvirt, VMs, DIMMs,
                                        clients, operations in flight, last 10 outcomes
  NAMESPACE METHOD [NAME=VALUE ...]     raw call, e.g. Host getVMList,
  NAMESPACE.METHOD [NAME=VALUE ...]     VM hotunplugMemory vmID=UUID params='{"vmId":…}'
                                        (VALUE is JSON when it parses as JSON, else a string)

VM is a UUID or a name. SIZE takes a unit: B, KiB, MiB, GiB, TiB (1.5GiB is fine);
a bare number is MiB. MB/GB are refused as ambiguous.

Options:
  --url URL          ws://HOST:PORT/jsonrpc or wss://… (env VMHOSTD_URL;
                     default ${DEFAULT_URL})
  --tls-cert FILE    client certificate (PEM) for mutual TLS, with --tls-key FILE
  --tls-ca FILE      CA that signed the daemon's certificate
  --json             machine-readable JSON on stdout
  -h, --help         this help;  -V, --version  the client's version

Exit codes: 0 success, 1 the operation failed (the message says why), 2 usage,
3 cannot connect to the daemon.
`;
