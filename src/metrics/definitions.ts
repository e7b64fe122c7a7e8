// Every metric the daemon exports, with its help text, labels and buckets,
// in one place: the README's table, the Grafana dashboard's test and the
// daemon all read these. Gauges of current state are computed at scrape
// time from the sources given (nothing to keep in step between scrapes).
import { Counter, collectDefaultMetrics, Gauge, type Registry } from 'prom-client';

export interface VmSnapshot {
  vmId: string;
  vmName: string;
  status: string;
  /** MiB */
  memSize: number;
  memoryDevices: readonly { state: string }[];
}

/** What the state gauges read at each scrape. */
export interface GaugeSources {
  vms(): readonly VmSnapshot[];
  /** Connected clients per transport (ws, stomp, ...). */
  clients(): ReadonlyMap<string, number>;
  libvirtConnected(): boolean;
}

export interface MetricOptions {
  /** Adds series labelled by VM (memory size, rejections): one series per VM. */
  perVm: boolean;
  version: string;
}

export interface MetricSet {
  lateRemovals: Counter;
  rpcRequests: Counter<'method' | 'code'>;
  refused: Counter<'reason'>;
  libvirtReconnects: Counter;
  /** Only with perVm. */
  vmRejections: Counter<'vm_id' | 'vm_name'> | undefined;
}

export function defineMetrics(registry: Registry, src: GaugeSources, opts: MetricOptions): MetricSet {
  const registers = [registry];
  // process_* (RSS, CPU, fds, start time) and nodejs_* (event-loop lag
  // percentiles since the previous scrape, heap, GC).
  collectDefaultMetrics({ register: registry });

  new Gauge({
    name: 'vmhostd_build_info',
    help: 'Always 1; the daemon version as a label.',
    labelNames: ['version'],
    registers,
  }).set({ version: opts.version }, 1);

  const set: MetricSet = {
    lateRemovals: new Counter({
      name: 'vmhostd_late_removals_total',
      help: 'DIMMs the guest released after their call had ended (timeout, lost connection, daemon restart).',
      registers,
    }),
    rpcRequests: new Counter({
      name: 'vmhostd_rpc_requests_total',
      help: 'JSON-RPC requests by method and answer code (0 = success); method is "-" for unknown methods and unparsable requests.',
      labelNames: ['method', 'code'],
      registers,
    }),
    refused: new Counter({
      name: 'vmhostd_connections_refused_total',
      help: 'Connections refused before they became clients, by reason (limits, tls, origin, timeout).',
      labelNames: ['reason'],
      registers,
    }),
    libvirtReconnects: new Counter({
      name: 'vmhostd_libvirt_reconnects_total',
      help: 'Times the connection to libvirt was re-established after it was lost.',
      registers,
    }),
    vmRejections: opts.perVm
      ? new Counter({
          name: 'vmhostd_vm_unplug_rejections_total',
          help: 'Hot unplugs the guest rejected, per VM (only with metrics.per_vm).',
          labelNames: ['vm_id', 'vm_name'],
          registers,
        })
      : undefined,
  };

  new Gauge({
    name: 'vmhostd_libvirt_up',
    help: '1 while the connection to libvirt is up, 0 while it is down.',
    registers,
    collect() {
      this.set(src.libvirtConnected() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'vmhostd_vms',
    help: 'VMs this daemon manages, by status.',
    labelNames: ['status'],
    registers,
    collect() {
      this.reset();
      const by = new Map<string, number>();
      for (const vm of src.vms()) by.set(vm.status, (by.get(vm.status) ?? 0) + 1);
      for (const [status, n] of by) this.set({ status }, n);
    },
  });
  new Gauge({
    name: 'vmhostd_dimms',
    help: 'DIMMs of the managed VMs, by state (plugged, unplugging).',
    labelNames: ['state'],
    registers,
    collect() {
      let plugged = 0;
      let unplugging = 0;
      for (const vm of src.vms()) {
        for (const d of vm.memoryDevices) {
          if (d.state === 'unplugging') unplugging++;
          else plugged++;
        }
      }
      this.set({ state: 'plugged' }, plugged);
      this.set({ state: 'unplugging' }, unplugging);
    },
  });
  new Gauge({
    name: 'vmhostd_clients',
    help: 'Connected clients, by transport.',
    labelNames: ['transport'],
    registers,
    collect() {
      this.reset();
      for (const [transport, n] of src.clients()) this.set({ transport }, n);
    },
  });
  if (opts.perVm) {
    new Gauge({
      name: 'vmhostd_vm_memory_bytes',
      help: 'Memory of each VM (base + DIMMs), per VM (only with metrics.per_vm).',
      labelNames: ['vm_id', 'vm_name'],
      registers,
      collect() {
        this.reset();
        for (const vm of src.vms())
          this.set({ vm_id: vm.vmId, vm_name: vm.vmName }, vm.memSize * 1024 * 1024);
      },
    });
  }
  return set;
}
