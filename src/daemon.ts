// vmhostd's entry: config -> libvirt connection -> VM manager -> JSON-RPC
// server, and an orderly shutdown on SIGTERM/SIGINT. Wiring only: every piece
// it starts lives in its own layer.
//
// Stopping: the first SIGTERM/SIGINT refuses new requests and lets running
// ones finish (at most SHUTDOWN_DRAIN_MS), then closes; exit 0 when every
// request finished, 1 when the drain deadline cut some. Further signals
// during the stop are logged and change nothing (the replies in flight still
// go out); SIGKILL is the way to stop at once. The whole stop, including the
// bounded log flush, ends within STOP_BOUND_MS whatever stdout does.
import type { Logger } from 'pino';
import { apiMethods, apiRoutes } from './api/index.js';
import { forwardNotifications } from './api/notifications.js';
import { ConfigError, ConfigInfoRequest, type DaemonConfig, loadConfig } from './config/config.js';
import { defaultSocketPath, LibvirtClient } from './libvirt/client.js';
import { createLogger, droppedLogLines, flushLogger } from './log.js';
import { DaemonMetrics } from './metrics/daemon-metrics.js';
import { type MetricsListener, metricsRoute, startMetricsListener } from './metrics/http.js';
import { EventJournal } from './rpc/event-journal.js';
import { RpcServer } from './rpc/server.js';
import { API_VERSION, DAEMON_VERSION, formatLibvirtVersion } from './version.js';
import { VmManager } from './virt/vm-manager.js';

export interface Daemon {
  url: string;
  rpc: RpcServer;
  vms: VmManager;
  client: LibvirtClient;
  metrics: DaemonMetrics;
  /** The plain loopback /metrics listener (metrics.listen), if configured. */
  metricsUrl: string | undefined;
  /** Resolves true when every in-flight request finished before the drain deadline. */
  stop(): Promise<boolean>;
}

const CONNECT_RETRY_MAX_MS = 10_000;
export const SHUTDOWN_DRAIN_MS = 15_000;
const LOG_FLUSH_MS = 2_000;
/** Drain, closing sockets, libvirt and the log flush, with room to spare; systemd's TimeoutStopSec is above it. */
export const STOP_BOUND_MS = SHUTDOWN_DRAIN_MS + 10_000;

/** libvirtd may start after us (boot order, restarts): keep trying, loudly. */
async function connectLibvirt(
  config: DaemonConfig,
  log: Logger,
  signal: AbortSignal,
): Promise<LibvirtClient> {
  const socketPath = config.libvirt.socket || defaultSocketPath();
  let delay = 250;
  for (let attempt = 1; ; attempt++) {
    try {
      const client = await LibvirtClient.connect({
        socketPath,
        uri: config.libvirt.uri,
        callTimeoutMs: config.libvirt.callTimeoutS * 1000,
        keepaliveIntervalMs: config.libvirt.keepaliveIntervalS * 1000,
        keepaliveCount: config.libvirt.keepaliveCount,
        reconnect: { initialDelayMs: 250, maxDelayMs: CONNECT_RETRY_MAX_MS },
      });
      log.info({ socketPath, uri: config.libvirt.uri, attempt }, 'connected to libvirt');
      return client;
    } catch (err) {
      if (signal.aborted) throw err;
      log.warn(
        { socketPath, attempt, err: (err as Error).message, retryInMs: delay },
        'libvirt not reachable',
      );
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, CONNECT_RETRY_MAX_MS);
    }
  }
}

export async function startDaemon(
  config: DaemonConfig,
  log: Logger,
  signal = new AbortController().signal,
): Promise<Daemon> {
  const client = await connectLibvirt(config, log, signal);
  const [libVer, hvVer, hostname] = await Promise.all([
    client.getLibVersion(),
    client.getVersion(),
    client.getHostname(),
  ]);
  client.on('disconnected', (err) =>
    log.error({ err: err.message }, 'libvirt connection lost; reconnecting'),
  );
  client.on('reconnected', () => log.info('libvirt connection restored'));
  const metrics = new DaemonMetrics({ version: DAEMON_VERSION, perVm: config.metrics.perVm });
  metrics.watchLibvirt(client);

  const prefix = config.libvirt.domainPrefix;
  const vms = VmManager.create(client, {
    log,
    unplugTimeoutMs: config.unplugTimeoutS * 1000,
    dimmAlignmentMiB: config.dimmAlignmentMiB,
    resizeTimeoutMs: config.resizeTimeoutS * 1000,
    resizeStallMs: config.resizeStallS * 1000,
    guestProbe: {
      intervalMs: config.guest.probeIntervalS * 1000,
      deadlineMs: config.guest.probeTimeoutS * 1000,
    },
    ...(prefix ? { manages: (name: string) => name.startsWith(prefix) } : {}),
    observer: metrics.operationObserver,
  });
  // Numbered notifications, kept for resuming clients; it exists before the RPC server so recovery's findings are kept.
  const events = new EventJournal({
    log,
    maxEntries: config.events.maxEntries,
    maxAgeMs: config.events.maxAgeS * 1000,
  });
  const forwarder = forwardNotifications(vms, events);
  metrics.watchVms(vms);
  await vms.open();
  const methods = apiMethods(
    vms,
    {
      version: DAEMON_VERSION,
      apiVersion: API_VERSION,
      libvirtVersion: formatLibvirtVersion(libVer),
      hypervisorVersion: formatLibvirtVersion(hvVer),
      hostname,
      libvirtConnected: () => client.connected,
      status: () => metrics.status(),
    },
    events,
  );
  let rpc: RpcServer;
  let metricsListener: MetricsListener | undefined;
  try {
    rpc = await RpcServer.start({
      host: config.listen.host,
      port: config.listen.port,
      methods,
      routes: [...apiRoutes(), metricsRoute(metrics, log)],
      logger: log,
      tls: config.tls ?? undefined,
      allowInsecure: config.allowInsecure,
      allowedOrigins: config.listen.allowedOrigins,
      allowedHosts: config.listen.allowedHosts,
      limits: {
        maxPayloadBytes: config.limits.maxPayloadBytes,
        maxConnections: config.limits.maxConnections,
        maxInFlightPerConnection: config.limits.maxInFlightPerConnection,
        handshakeTimeoutMs: config.limits.handshakeTimeoutS * 1000,
        firstByteTimeoutMs: config.limits.firstByteTimeoutS * 1000,
        maxPendingConnections: config.limits.maxPendingConnections,
        maxPendingPerAddress: config.limits.maxPendingPerAddress,
        maxBatchEntries: config.limits.maxBatchEntries,
      },
      staticDir: config.console.enabled ? config.console.dir : undefined,
      apiVersion: API_VERSION,
      serverName: `vmhostd/${DAEMON_VERSION}`,
      events,
      observer: metrics.rpcObserver,
    });
    const server = rpc;
    metrics.addClientSource('ws', () => server.clientCounts().ws);
    metrics.addClientSource('stomp', () => server.clientCounts().stomp);
    if (config.metrics.listen) {
      const { host, port } = config.metrics.listen;
      metricsListener = await startMetricsListener(host, port, metrics, log).catch(async (err: unknown) => {
        await server.close({ drainMs: 0 });
        throw err;
      });
    }
  } catch (err) {
    metrics.close();
    forwarder.stop();
    await vms.close();
    await client.close();
    throw err;
  }
  const url = rpc.url();
  const metricsUrl = metricsListener?.url();
  log.info(
    {
      url,
      version: DAEMON_VERSION,
      libvirt: formatLibvirtVersion(libVer),
      vms: vms.list().length,
      ...(metricsUrl ? { metricsUrl } : {}),
    },
    'ready',
  );

  let stopping: Promise<boolean> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      log.info('shutting down: no new requests, finishing in-flight operations');
      await rpc.close({ drainMs: SHUTDOWN_DRAIN_MS });
      const drained = rpc.drainedInTime;
      await metricsListener?.close();
      metrics.close();
      forwarder.stop();
      await vms.close();
      await client.close();
      log.info({ drained, droppedLogLines: droppedLogLines(log) }, 'stopped');
      return drained;
    })();
    return stopping;
  };
  return { url, rpc, vms, client, metrics, metricsUrl, stop };
}

/** The `vmhostd` command. Returns the process exit code for fatal start errors. */
export async function main(argv: string[]): Promise<void> {
  let config: DaemonConfig;
  try {
    config = loadConfig(argv, process.env);
  } catch (err) {
    // --help, -h, --version, -V: the flag parser knows every spelling --help advertises.
    if (err instanceof ConfigInfoRequest) {
      process.stdout.write(err.text);
      return;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`vmhostd: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
  const log = createLogger({ level: config.log.level, pretty: config.log.pretty });
  const abort = new AbortController();
  let daemon: Daemon | undefined;
  let exiting = false;
  const exit = (code: number) => {
    if (exiting) return;
    exiting = true;
    void flushLogger(log, LOG_FLUSH_MS).then(() => process.exit(code));
  };
  let stopSignal: string | undefined;
  const onSignal = (sig: string) => {
    if (stopSignal !== undefined) {
      log.warn(
        { signal: sig, stoppingSince: stopSignal },
        'already stopping: in-flight requests still finish within the drain deadline (SIGKILL stops at once)',
      );
      return;
    }
    stopSignal = sig;
    log.info({ signal: sig }, 'signal received');
    abort.abort();
    // Whatever hangs (libvirt, a socket, stdout), the stop ends within its bound.
    setTimeout(() => {
      log.error({ boundMs: STOP_BOUND_MS }, 'stop did not finish within its bound; exiting');
      exit(1);
    }, STOP_BOUND_MS).unref();
    if (!daemon) return exit(0);
    daemon.stop().then(
      (drained) => exit(drained ? 0 : 1),
      (err: unknown) => {
        log.error({ err }, 'unclean shutdown');
        exit(1);
      },
    );
  };
  // Logs are buffered: a crash must still leave its reason in the journal.
  process.once('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception');
    exit(70);
  });
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  try {
    daemon = await startDaemon(config, log, abort.signal);
  } catch (err) {
    log.fatal({ err }, 'failed to start');
    exit(1);
  }
}
