// Every metric the daemon exports, with its help text, labels and buckets,
// in one place: the README's table, the Grafana dashboard's test and the
// daemon all read these. Gauges of current state are computed at scrape
// time from the sources given (nothing to keep in step between scrapes).
import { Counter, collectDefaultMetrics, Gauge, Histogram, type Registry } from 'prom-client';

/** How often the event-loop lag is sampled (a timer that wakes the daemon). */
export const LAG_SAMPLE_MS = 100;

/** 10 ms .. 60 s: a cooperative guest releases a DIMM in well under a second, the default timeout is 30 s. */
export const DURATION_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60];

/** 100 ms .. 5 min: a virtio-mem resize moves about 0.5 GiB/s under TCG; the default deadline is 120 s. */
export const RESIZE_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300];

export interface VmSnapshot {
  vmId: string;
  vmName: string;
  status: string;
  /** MiB */
  memSize: number;
  memoryDevices: readonly { state: string; model?: string }[];
}

/** What the state gauges read at each scrape. */
export interface GaugeSources {
  vms(): readonly VmSnapshot[];
  /** Connected clients per transport (ws, stomp, ...). */
  clients(): ReadonlyMap<string, number>;
  /** Calls accepted and not yet answered, per operation. */
  inFlight(): ReadonlyMap<string, number>;
  libvirtConnected(): boolean;
  /**
   * Called before each scrape of `vmhostd_rpc_requests_total`: requests are
   * tallied in plain numbers as they come and added to the counter here
   * (prom-client hashes the labels on every inc: 10% of a `Host.ping`).
   */
  flushRpcRequests?(): void;
}

export interface MetricOptions {
  /** Adds series labelled by VM (memory size, rejections): one series per VM. */
  perVm: boolean;
  version: string;
}

export interface MetricSet {
  unplugDuration: Histogram<'outcome'>;
  guestRelease: Histogram;
  plugDuration: Histogram<'outcome'>;
  resizeDuration: Histogram<'outcome'>;
  lateResizes: Counter<'outcome'>;
  operations: Counter<'method' | 'outcome'>;
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
  // percentiles since the previous scrape, heap, GC). The lag is sampled by a
  // timer: at prom-client's default 10 ms an idle daemon woke 100 times a
  // second (7.6 ms of CPU a second on the test VM); every 100 ms still sees
  // any lasting lag, and a stall of 50 ms one time in two.
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: LAG_SAMPLE_MS });

  new Gauge({
    name: 'vmhostd_build_info',
    help: 'Always 1; the daemon version as a label.',
    labelNames: ['version'],
    registers,
  }).set({ version: opts.version }, 1);

  const set: MetricSet = {
    unplugDuration: new Histogram({
      name: 'vmhostd_unplug_duration_seconds',
      help: 'Hot unplug of one DIMM, from its start in the VM worker to its outcome (removed, guest-rejected, timeout, vm-gone, libvirt-error, ...).',
      labelNames: ['outcome'],
      buckets: DURATION_BUCKETS,
      registers,
    }),
    guestRelease: new Histogram({
      name: 'vmhostd_guest_release_seconds',
      help: 'Detach sent to libvirt until device-removed: how long guests take to release a DIMM.',
      buckets: DURATION_BUCKETS,
      registers,
    }),
    plugDuration: new Histogram({
      name: 'vmhostd_plug_duration_seconds',
      help: 'Hot plug of one DIMM, by outcome (plugged or the failure reason).',
      labelNames: ['outcome'],
      buckets: DURATION_BUCKETS,
      registers,
    }),
    resizeDuration: new Histogram({
      name: 'vmhostd_resize_duration_seconds',
      help: 'Resize of one virtio-mem device, from its start in the VM worker to its answer, by outcome (resized, timeout, stalled, vm-gone, libvirt-error, ...).',
      labelNames: ['outcome'],
      buckets: RESIZE_BUCKETS,
      registers,
    }),
    lateResizes: new Counter({
      name: 'vmhostd_late_resizes_total',
      help: 'virtio-mem resizes that ended after their call was gone (adopted after a restart, or kept after a failure), by outcome (resized, timeout, stalled).',
      labelNames: ['outcome'],
      registers,
    }),
    operations: new Counter({
      name: 'vmhostd_operations_total',
      help: 'Memory operations answered, by method (hotplug, hotunplug, setMemory, resize) and outcome (ok, partial, or the error reason).',
      labelNames: ['method', 'outcome'],
      registers,
    }),
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
      collect: () => src.flushRpcRequests?.(),
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
          if (d.model === 'virtio-mem') continue;
          if (d.state === 'unplugging') unplugging++;
          else plugged++;
        }
      }
      this.set({ state: 'plugged' }, plugged);
      this.set({ state: 'unplugging' }, unplugging);
    },
  });
  new Gauge({
    name: 'vmhostd_virtio_mem_devices',
    help: 'virtio-mem devices of the managed VMs, by state (plugged, resizing).',
    labelNames: ['state'],
    registers,
    collect() {
      let plugged = 0;
      let resizing = 0;
      for (const vm of src.vms()) {
        for (const d of vm.memoryDevices) {
          if (d.model !== 'virtio-mem') continue;
          if (d.state === 'resizing') resizing++;
          else plugged++;
        }
      }
      this.set({ state: 'plugged' }, plugged);
      this.set({ state: 'resizing' }, resizing);
    },
  });
  new Gauge({
    name: 'vmhostd_operations_in_flight',
    help: 'Memory operations accepted and not yet answered (queued or running), by method.',
    labelNames: ['method'],
    registers,
    collect() {
      this.reset();
      for (const method of ['hotplug', 'hotunplug', 'setMemory', 'resize']) this.set({ method }, 0);
      for (const [method, n] of src.inFlight()) this.set({ method }, n);
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
