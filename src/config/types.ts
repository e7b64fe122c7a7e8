// The daemon's resolved configuration, and the error every bad key or flag
// becomes. Shared by the TOML reader, the flag parser and the daemon.

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface TlsConfig {
  /** Paths to PEM files. */
  cert: string;
  key: string;
  ca?: string;
  requireClientCert: boolean;
}

export interface DaemonConfig {
  listen: {
    host: string;
    port: number;
    /** Browser origins (besides the console's own) allowed to call the API. */
    allowedOrigins: string[];
    /** Extra names a Host header may carry (besides the listen address, loopback and this machine's names). */
    allowedHosts: string[];
  };
  /** null = plain ws (only allowed on loopback unless allowInsecure). */
  tls: TlsConfig | null;
  allowInsecure: boolean;
  libvirt: {
    uri: string;
    /** '' = auto: /run/libvirt/virtqemud-sock if present else /run/libvirt/libvirt-sock. */
    socket: string;
    /** Manage only domains whose name starts with this ('' = all). */
    domainPrefix: string;
    callTimeoutS: number;
    keepaliveIntervalS: number;
    keepaliveCount: number;
  };
  unplugTimeoutS: number;
  dimmAlignmentMiB: number;
  /** Default wait (s) of VM.resizeMemoryDevice, and how long `current` may stand still before it is stalled. */
  resizeTimeoutS: number;
  resizeStallS: number;
  /** Asking guest agents which zone holds each DIMM: every probe_interval s (0: only on changes), each within probe_timeout s. */
  guest: { probeIntervalS: number; probeTimeoutS: number };
  /** Bounds of the notification journal behind replay and Host.getEvents. */
  events: { maxEntries: number; maxAgeS: number };
  log: { level: LogLevel; pretty: boolean };
  limits: {
    maxPayloadBytes: number;
    maxConnections: number;
    maxInFlightPerConnection: number;
    handshakeTimeoutS: number;
    firstByteTimeoutS: number;
    maxPendingConnections: number;
    maxPendingPerAddress: number;
    maxBatchEntries: number;
  };
  console: { enabled: boolean; dir: string };
  /** listen: the extra plain-HTTP loopback /metrics listener, or null for none. */
  metrics: { listen: { host: string; port: number } | null; perVm: boolean };
}

/** A bad config key or flag. `message` is one line naming the key; the daemon prints it and exits 2. */
export class ConfigError extends Error {
  readonly exitCode = 2;
  constructor(
    readonly key: string,
    problem: string,
  ) {
    super(`config: ${key}: ${problem}`);
    this.name = 'ConfigError';
  }
}

/** --help or --version: not an error, the daemon prints `text` and exits 0. */
export class ConfigInfoRequest extends Error {
  readonly exitCode = 0;
  constructor(readonly text: string) {
    super(text);
    this.name = 'ConfigInfoRequest';
  }
}
