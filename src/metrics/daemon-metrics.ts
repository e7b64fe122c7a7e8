// The daemon's metrics. Observes the other layers only
// from outside: the VM manager's public events and state, the libvirt
// client's connection events, and the typed observer hooks of rpc/ and
// virt/. Owns a prom-client registry of its own (no global state).
import { Registry } from 'prom-client';
import type { LibvirtClientEvents } from '../libvirt/types.js';
import type { RefusalReason, RpcObserver } from '../rpc/observer.js';
import type { DeviceRemovalFailedEvent, DeviceRemovedEvent, VmManagerEvents } from '../virt/types.js';
import { defineMetrics, type MetricSet, type VmSnapshot } from './definitions.js';

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
}

export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly m: MetricSet;
  private readonly clientSources = new Map<string, () => number>();
  private vms: VmSource | undefined;
  private libvirt: LibvirtSource | undefined;
  private readonly stops: (() => void)[] = [];
  /** Children of the request counter by method, then code: the per-request cost is two map lookups. */
  private readonly rpcChildren = new Map<string, Map<number, { inc(): void }>>();

  constructor(opts: DaemonMetricsOptions) {
    this.m = defineMetrics(
      this.registry,
      {
        vms: () => this.vms?.allStats() ?? [],
        clients: () => {
          const out = new Map<string, number>();
          for (const [t, count] of this.clientSources) out.set(t, count());
          return out;
        },
        libvirtConnected: () => this.libvirt?.connected ?? false,
      },
      { perVm: opts.perVm === true, version: opts.version },
    );
  }

  /** Hands to the rpc server: counts requests and refused connections. */
  readonly rpcObserver: RpcObserver = {
    request: (method, code) => {
      const name = method ?? '-';
      let byCode = this.rpcChildren.get(name);
      if (!byCode) {
        byCode = new Map();
        this.rpcChildren.set(name, byCode);
      }
      let child = byCode.get(code);
      if (!child) {
        child = this.m.rpcRequests.labels(name, String(code));
        byCode.set(code, child);
      }
      child.inc();
    },
    refused: (reason: RefusalReason) => this.m.refused.inc({ reason }),
  };

  /** Subscribe before the manager opens, so late removals found at start count. */
  watchVms(vms: VmSource): void {
    this.vms = vms;
    const onRemoved = (_vmId: string, ev: DeviceRemovedEvent) => {
      if (!ev.late) return;
      this.m.lateRemovals.inc();
    };
    const onFailed = (vmId: string, ev: DeviceRemovalFailedEvent) => {
      if (ev.reason !== 'guest-rejected' || !this.m.vmRejections) return;
      const vmName = this.vms?.allStats().find((s) => s.vmId === vmId)?.vmName ?? '';
      this.m.vmRejections.inc({ vm_id: vmId, vm_name: vmName });
    };
    vms.on('deviceRemoved', onRemoved);
    vms.on('deviceRemovalFailed', onFailed);
    this.stops.push(() => {
      vms.off('deviceRemoved', onRemoved);
      vms.off('deviceRemovalFailed', onFailed);
    });
  }

  watchLibvirt(client: LibvirtSource): void {
    this.libvirt = client;
    const onUp = () => this.m.libvirtReconnects.inc();
    client.on('reconnected', onUp);
    this.stops.push(() => client.off('reconnected', onUp));
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

  close(): void {
    for (const stop of this.stops.splice(0)) stop();
  }
}
