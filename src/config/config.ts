// Resolves the daemon configuration: built-in defaults, then the TOML file,
// then command-line flags; then the checks that span several keys.

import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isLoopbackHost, unbracketHost } from '../rpc/listen-policy.js';
import { parseFlags, parseListen } from './flags.js';
import { checkValue, defaultSettings, type Settings } from './keys.js';
import { readTomlSettings } from './toml-file.js';
import { ConfigError, ConfigInfoRequest, type DaemonConfig, type LogLevel } from './types.js';

export { isLoopbackHost } from '../rpc/listen-policy.js';
export { ConfigError, ConfigInfoRequest, type DaemonConfig, type LogLevel, type TlsConfig } from './types.js';

export const DEFAULT_CONFIG_PATH = '/etc/vmhostd/vmhostd.toml';

/** The package root: this file lives in src/config/ or dist/config/. */
export function packageRoot(): string {
  return fileURLToPath(new URL('../../', import.meta.url));
}

export function packageVersion(): string {
  try {
    const pkg: unknown = JSON.parse(readFileSync(`${packageRoot()}package.json`, 'utf8'));
    if (pkg && typeof pkg === 'object' && 'version' in pkg && typeof pkg.version === 'string')
      return pkg.version;
  } catch {
    // fall through: a stripped install still runs
  }
  return '0.0.0';
}

export function helpText(): string {
  return `Usage: vmhostd [options]

Per-host agent daemon for KVM hosts: memory hot plug and hot unplug through
libvirt, over JSON-RPC 2.0 on a WebSocket (ws://HOST:PORT/jsonrpc).

Options (flags override the config file):
  --config PATH              TOML config file (default ${DEFAULT_CONFIG_PATH} if it
                             exists, else built-in defaults; env VMHOSTD_CONFIG)
  --listen HOST:PORT         listen address (default 127.0.0.1:54321; [::1]:PORT for IPv6)
  --libvirt-uri URI          libvirt URI (default qemu:///system)
  --libvirt-socket PATH      libvirt unix socket (default: /run/libvirt/virtqemud-sock
                             if present, else /run/libvirt/libvirt-sock)
  --domain-prefix PREFIX     manage only domains whose name starts with PREFIX (default: all)
  --unplug-timeout SECONDS   default wait for the guest to release a DIMM (default 30)
  --log-level LEVEL          fatal, error, warn, info, debug, trace (default info)
  --log-pretty               human-readable logs instead of JSON lines
  --tls-cert PATH            server certificate (PEM); with --tls-key enables wss://
  --tls-key PATH             server private key (PEM)
  --tls-ca PATH              CA bundle that signs client certificates (PEM)
  --require-client-cert      require a client certificate signed by --tls-ca (default with TLS)
  --no-require-client-cert   accept TLS clients without a certificate
  --allow-insecure           allow plain ws:// on a non-loopback address (logs a warning)
  --console-dir DIR          directory of the web console served at / (default <package>/web)
  --no-console               do not serve the web console
  --metrics-listen HOST:PORT also serve /metrics as plain HTTP on this loopback address
  -h, --help                 show this help and exit
  -V, --version              show the version and exit

Exit codes: 0 clean stop, 2 bad configuration or flag.
`;
}

export interface LoadOptions {
  /** Where to look for a config file when neither --config nor VMHOSTD_CONFIG is given. */
  defaultConfigPath?: string;
  /** Overrides packageRoot() (tests). */
  packageRoot?: string;
}

function checkReadable(key: string, path: string): void {
  try {
    accessSync(path, constants.R_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    throw new ConfigError(key, `cannot read ${JSON.stringify(path)} (${code})`);
  }
}

/**
 * Builds the configuration from argv (without node and script) and env.
 * Throws ConfigError (exit 2) or ConfigInfoRequest (--help/--version, exit 0).
 */
export function loadConfig(
  argv: readonly string[],
  env: Record<string, string | undefined>,
  opts: LoadOptions = {},
): DaemonConfig {
  const flags = parseFlags(argv);
  if (flags.help) throw new ConfigInfoRequest(helpText());
  if (flags.version) throw new ConfigInfoRequest(`vmhostd ${packageVersion()}\n`);

  const s: Settings = defaultSettings();
  const explicitPath = flags.configPath ?? (env.VMHOSTD_CONFIG || undefined);
  const defaultPath = opts.defaultConfigPath ?? DEFAULT_CONFIG_PATH;
  const path = explicitPath ?? (existsSync(defaultPath) ? defaultPath : undefined);
  if (path !== undefined) Object.assign(s, readTomlSettings(path));
  Object.assign(s, flags.settings);
  return resolve(s, opts.packageRoot ?? packageRoot());
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : String(v);
}
function num(v: unknown): number {
  return typeof v === 'number' ? v : Number(v);
}
function bool(v: unknown): boolean {
  return v === true;
}
function list(v: unknown): string[] {
  return Array.isArray(v) ? v.map(String) : [];
}

/** Cross-key checks and the final shape. */
function resolve(s: Settings, root: string): DaemonConfig {
  const cert = str(s['tls.cert']);
  const key = str(s['tls.key']);
  const ca = str(s['tls.ca']);
  const requireClientCert = bool(s['tls.require_client_cert']);
  let tls: DaemonConfig['tls'] = null;
  if (cert !== '' || key !== '') {
    if (cert === '') throw new ConfigError('tls.cert', 'is required when tls.key is set (--tls-cert)');
    if (key === '') throw new ConfigError('tls.key', 'is required when tls.cert is set (--tls-key)');
    checkReadable('tls.cert', cert);
    checkReadable('tls.key', key);
    if (ca !== '') checkReadable('tls.ca', ca);
    if (requireClientCert && ca === '') {
      throw new ConfigError(
        'tls.ca',
        'is required to verify client certificates (set tls.ca, or tls.require_client_cert = false)',
      );
    }
    tls = { cert, key, requireClientCert, ...(ca !== '' ? { ca } : {}) };
  } else if (ca !== '') {
    throw new ConfigError('tls.ca', 'is set but TLS is off (set tls.cert and tls.key too)');
  }

  const host = unbracketHost(str(s['listen.host']));
  const allowInsecure = bool(s['listen.allow_insecure']);
  if (tls === null && !allowInsecure && !isLoopbackHost(host)) {
    throw new ConfigError(
      'listen.host',
      `${JSON.stringify(host)} is not a loopback address: configure TLS ([tls] cert/key/ca) or set listen.allow_insecure = true`,
    );
  }

  const maxBatchEntries = num(s['limits.max_batch_entries']);
  if (maxBatchEntries > num(s['limits.max_in_flight_per_connection'])) {
    throw new ConfigError(
      'limits.max_batch_entries',
      `must not exceed limits.max_in_flight_per_connection (${num(s['limits.max_in_flight_per_connection'])}): a batch that fits is answered whole`,
    );
  }

  const consoleEnabled = bool(s['console.enabled']);
  let consoleDir = str(s['console.dir']);
  if (consoleEnabled && consoleDir !== '') {
    let isDir = false;
    try {
      isDir = statSync(consoleDir).isDirectory();
    } catch {
      isDir = false;
    }
    if (!isDir) throw new ConfigError('console.dir', `${JSON.stringify(consoleDir)} is not a directory`);
  }
  if (consoleDir === '') consoleDir = `${root.replace(/\/$/, '')}/web`;
  const metricsListen = resolveMetricsListen(str(s['metrics.listen']));

  return {
    listen: {
      host,
      port: num(s['listen.port']),
      allowedOrigins: list(s['listen.allowed_origins']),
      allowedHosts: list(s['listen.allowed_hosts']),
    },
    tls,
    allowInsecure,
    libvirt: {
      uri: str(s['libvirt.uri']),
      socket: str(s['libvirt.socket']),
      domainPrefix: str(s['libvirt.domain_prefix']),
      callTimeoutS: num(s['libvirt.call_timeout']),
      keepaliveIntervalS: num(s['libvirt.keepalive_interval']),
      keepaliveCount: num(s['libvirt.keepalive_count']),
    },
    unplugTimeoutS: num(s['memory.unplug_timeout']),
    dimmAlignmentMiB: num(s['memory.dimm_alignment_mib']),
    resizeTimeoutS: num(s['memory.resize_timeout']),
    resizeStallS: num(s['memory.resize_stall_timeout']),
    guest: { probeIntervalS: num(s['guest.probe_interval']), probeTimeoutS: num(s['guest.probe_timeout']) },
    events: { maxEntries: num(s['events.max_entries']), maxAgeS: num(s['events.max_age']) },
    log: { level: str(s['log.level']) as LogLevel, pretty: bool(s['log.pretty']) },
    limits: {
      maxPayloadBytes: num(s['limits.max_payload_bytes']),
      maxConnections: num(s['limits.max_connections']),
      maxInFlightPerConnection: num(s['limits.max_in_flight_per_connection']),
      handshakeTimeoutS: num(s['limits.handshake_timeout']),
      firstByteTimeoutS: num(s['limits.first_byte_timeout']),
      maxPendingConnections: num(s['limits.max_pending_connections']),
      maxPendingPerAddress: num(s['limits.max_pending_per_address']),
      maxBatchEntries,
    },
    console: { enabled: consoleEnabled, dir: consoleDir },
    metrics: { listen: metricsListen, perVm: bool(s['metrics.per_vm']) },
  };
}

/** metrics.listen: "" (off) or HOST:PORT on loopback, since that listener is plain HTTP. */
function resolveMetricsListen(v: string): { host: string; port: number } | null {
  if (v === '') return null;
  const { host, port } = parseListen('metrics.listen', v);
  if (!isLoopbackHost(host)) {
    throw new ConfigError(
      'metrics.listen',
      `${JSON.stringify(host)} is not a loopback address: this listener is plain HTTP (scrape /metrics on the main listener over TLS instead)`,
    );
  }
  return { host, port: num(checkValue('listen.port', 'metrics.listen', port, true)) };
}

/** Resolves the libvirt socket path when the config leaves it to auto-detection. */
export function resolveLibvirtSocket(
  configured: string,
  exists: (p: string) => boolean = existsSync,
): string {
  if (configured !== '') return configured;
  return exists('/run/libvirt/virtqemud-sock') ? '/run/libvirt/virtqemud-sock' : '/run/libvirt/libvirt-sock';
}

/**
 * For the daemon entry: loadConfig, printing help/version (exit 0) or the
 * one-line error (exit 2) and exiting the process.
 */
export function loadConfigOrExit(
  argv: readonly string[],
  env: Record<string, string | undefined>,
): DaemonConfig {
  try {
    return loadConfig(argv, env);
  } catch (e) {
    if (e instanceof ConfigInfoRequest) {
      process.stdout.write(e.text);
      process.exit(0);
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`vmhostd: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
}
