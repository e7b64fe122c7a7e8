// The daemon's metrics and status figures. Observes the other layers only
// from outside: the VM manager's public events and state, the libvirt
// client's connection events, and the typed observer hooks of rpc/ and
// virt/. Owns a prom-client registry of its own (no global state).
import { Registry } from 'prom-client';
import type { LibvirtClientEvents } from '../libvirt/types.js';
import type { RefusalReason, RpcObserver } from '../rpc/observer.js';
import type { OperationInfo, OperationObserver } from '../virt/observer.js';
import type {
  DeviceRemovalFailedEvent,
  DeviceRemovedEvent,
  MemoryDeviceResizeFailedEvent,
  MemoryDeviceSizeChangedEvent,
  VmManagerEvents,
} from '../virt/types.js';
import { defineMetrics, type MetricSet, type VmSnapshot } from './definitions.js';
import { OperationsLog } from './operations-log.js';
import type { HostStatus } from './status.js';

/** The VM manager as seen from here. */
export interface VmSource {
  allStats(): readonly VmSnapshot[];
  on<K extends keyof VmManagerEvents>(event: K, fn: (...args: VmManagerEvents[K]) => void): unknown;
  off<K extends keyof VmManagerEvents>(event: K, fn: (...args: VmManagerEvents[K]) => void): unknown;
}

/** The libvirt client as seen from here. */
export interface LibvirtSource {
  readonly connected: boolean;
  on<K extends keyof LibvirtClientEvents>(event: K, fn: (...args: LibvirtClientEvents[K]) => void): unknown;
  off<K extends keyof LibvirtClientEvents>(event: K, fn: (...args: LibvirtClientEvents[K]) => void): unknown;
}

export interface DaemonMetricsOptions {
  version: string;
  /** Export series labelled by VM (metrics.per_vm). */
  perVm?: boolean;
  now?: () => Date;
}

const seconds = (ms: number) => ms / 1000;

export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly m: MetricSet;
  private readonly log: OperationsLog;
  private readonly clientSources = new Map<string, () => number>();
  private readonly started: Date;
  private readonly now: () => Date;
  private vms: VmSource | undefined;
  private libvirt: LibvirtSource | undefined;
  private libvirtSince: Date | null = null;
  private reconnects = 0;
  private readonly stops: (() => void)[] = [];
  /**
   * Requests since the last scrape, by method, then code, with the counter
   * child they go to: a request costs two map lookups and an increment.
   */
  private readonly rpcTally = new Map<string, Map<number, { child: { inc(n: number): void }; n: number }>>();

  constructor(opts: DaemonMetricsOptions) {
    this.now = opts.now ?? (() => new Date());
    this.started = this.now();
    this.log = new OperationsLog(10, this.now);
    this.m = defineMetrics(
      this.registry,
      {
        vms: () => this.vms?.allStats() ?? [],
        clients: () => {
          const out = new Map<string, number>();
          for (const [t, count] of this.clientSources) out.set(t, count());
          return out;
        },
        inFlight: () => this.log.inFlightByMethod(),
        libvirtConnected: () => this.libvirt?.connected ?? false,
        flushRpcRequests: () => {
          for (const byCode of this.rpcTally.values()) {
            for (const t of byCode.values()) {
              if (t.n > 0) t.child.inc(t.n);
              t.n = 0;
            }
          }
        },
      },
      { perVm: opts.perVm === true, version: opts.version },
    );
  }

  /** Hands to the rpc server: counts requests and refused connections. */
  readonly rpcObserver: RpcObserver = {
    request: (method, code) => {
      const name = method ?? '-';
      let byCode = this.rpcTally.get(name);
      if (!byCode) {
        byCode = new Map();
        this.rpcTally.set(name, byCode);
      }
      const t = byCode.get(code);
      if (t) t.n++;
      else byCode.set(code, { child: this.m.rpcRequests.labels(name, String(code)), n: 1 });
    },
    refused: (reason: RefusalReason) => this.m.refused.inc({ reason }),
  };

  /** Hands to the VM manager: operation outcomes and durations. */
  readonly operationObserver: OperationObserver = {
    operationStarted: (op: OperationInfo) => this.log.started(op, op),
    operationFinished: (op, outcome, durationMs) => {
      this.m.operations.inc({ method: op.operation, outcome });
      this.log.finished(op, op, outcome, durationMs);
    },
    unplugFinished: (e) => this.m.unplugDuration.observe({ outcome: e.outcome }, seconds(e.durationMs)),
    guestReleased: (e) => this.m.guestRelease.observe(seconds(e.durationMs)),
    plugFinished: (e) => this.m.plugDuration.observe({ outcome: e.outcome }, seconds(e.durationMs)),
    resizeFinished: (e) => this.m.resizeDuration.observe({ outcome: e.outcome }, seconds(e.durationMs)),
  };

  /** Subscribe before the manager opens, so late removals found at start count. */
  watchVms(vms: VmSource): void {
    this.vms = vms;
    const onRemoved = (vmId: string, ev: DeviceRemovedEvent) => {
      if (!ev.late) return;
      this.m.lateRemovals.inc();
      this.log.record({
        operation: 'late-removal',
        vmId,
        alias: ev.alias,
        outcome: 'removed',
        durationMs: null,
      });
    };
    const onFailed = (vmId: string, ev: DeviceRemovalFailedEvent) => {
      if (ev.reason !== 'guest-rejected' || !this.m.vmRejections) return;
      const vmName = this.vms?.allStats().find((s) => s.vmId === vmId)?.vmName ?? '';
      this.m.vmRejections.inc({ vm_id: vmId, vm_name: vmName });
    };
    // A resize's late end: its call was gone (a restart, or kept after a failure).
    const lateResize = (vmId: string, alias: string, outcome: string) => {
      this.m.lateResizes.inc({ outcome });
      this.log.record({ operation: 'late-resize', vmId, alias, outcome, durationMs: null });
    };
    const onSize = (vmId: string, ev: MemoryDeviceSizeChangedEvent) => {
      if (ev.late) lateResize(vmId, ev.alias, 'resized');
    };
    const onResizeFailed = (vmId: string, ev: MemoryDeviceResizeFailedEvent) =>
      lateResize(vmId, ev.alias, ev.reason);
    vms.on('deviceRemoved', onRemoved);
    vms.on('deviceRemovalFailed', onFailed);
    vms.on('memoryDeviceSizeChanged', onSize);
    vms.on('memoryDeviceResizeFailed', onResizeFailed);
    this.stops.push(() => {
      vms.off('deviceRemoved', onRemoved);
      vms.off('deviceRemovalFailed', onFailed);
      vms.off('memoryDeviceSizeChanged', onSize);
      vms.off('memoryDeviceResizeFailed', onResizeFailed);
    });
  }

  watchLibvirt(client: LibvirtSource): void {
    this.libvirt = client;
    this.libvirtSince = this.now();
    const onUp = () => {
      this.reconnects++;
      this.libvirtSince = this.now();
      this.m.libvirtReconnects.inc();
    };
    const onDown = () => {
      this.libvirtSince = this.now();
    };
    client.on('reconnected', onUp);
    client.on('disconnected', onDown);
    this.stops.push(() => {
      client.off('reconnected', onUp);
      client.off('disconnected', onDown);
    });
  }

  /** Counts a transport's connected clients at each scrape. */
  addClientSource(transport: string, count: () => number): void {
    this.clientSources.set(transport, count);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  status(): HostStatus {
    const now = this.now();
    const vms = this.vms?.allStats() ?? [];
    const byStatus: Record<string, number> = {};
    const dimms = { plugged: 0, unplugging: 0 };
    const names = new Map<string, string>();
    for (const vm of vms) {
      byStatus[vm.status] = (byStatus[vm.status] ?? 0) + 1;
      names.set(vm.vmId, vm.vmName);
      for (const d of vm.memoryDevices) {
        if (d.model === 'virtio-mem') continue;
        if (d.state === 'unplugging') dimms.unplugging++;
        else dimms.plugged++;
      }
    }
    const clients: Record<string, number> = {};
    for (const [t, count] of this.clientSources) clients[t] = count();
    const withName = <T extends { vmId: string }>(e: T): T & { vmName: string | null } => ({
      ...e,
      vmName: names.get(e.vmId) ?? null,
    });
    return {
      startedAt: this.started.toISOString(),
      uptimeSeconds: Math.round((now.getTime() - this.started.getTime()) / 100) / 10,
      libvirt: {
        connected: this.libvirt?.connected ?? false,
        reconnects: this.reconnects,
        since: this.libvirtSince?.toISOString() ?? null,
      },
      vms: { total: vms.length, byStatus },
      dimms,
      clients,
      inFlight: this.log.inFlight().map(withName),
      recent: this.log.recent().map(withName),
    };
  }

  close(): void {
    for (const stop of this.stops.splice(0)) stop();
  }
}
