// DaemonMetrics against stand-ins for the VM manager and the libvirt client
// (EventEmitters with the same public events), read back through an
// independent Prometheus text parser.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { LibvirtClientEvents } from '../../src/libvirt/types.js';
import { DaemonMetrics } from '../../src/metrics/daemon-metrics.js';
import type { VmSnapshot } from '../../src/metrics/definitions.js';
import type { OperationInfo } from '../../src/virt/observer.js';
import type { VmManagerEvents } from '../../src/virt/types.js';
import { Scrape } from '../helpers/prom-text.js';

class FakeVms extends EventEmitter<VmManagerEvents> {
  vms: VmSnapshot[] = [];
  allStats(): VmSnapshot[] {
    return this.vms;
  }
}

class FakeLibvirt extends EventEmitter<LibvirtClientEvents> {
  connected = true;
}

const vm = (vmId: string, status: string, states: string[], memSize = 1024): VmSnapshot => ({
  vmId,
  vmName: `name-${vmId}`,
  status,
  memSize,
  memoryDevices: states.map((state) => ({ state })),
});

async function setup(perVm = false) {
  const metrics = new DaemonMetrics({ version: '9.9.9', perVm });
  const vms = new FakeVms();
  const libvirt = new FakeLibvirt();
  metrics.watchVms(vms);
  metrics.watchLibvirt(libvirt);
  const read = async () => Scrape.parse(await metrics.render());
  return { metrics, vms, libvirt, read };
}

describe('daemon metrics', () => {
  it('exposition parses with an independent parser: every vmhostd_ family has help and a type, process defaults are there', async () => {
    const { read, metrics } = await setup();
    const s = await read();
    const ours = [...s.families].filter(([name]) => name.startsWith('vmhostd_'));
    expect(ours.length).toBeGreaterThanOrEqual(12);
    for (const [name, f] of ours) {
      expect(f.help, name).toBeTruthy();
      expect(['counter', 'gauge', 'histogram'], name).toContain(f.type);
    }
    expect(s.family('vmhostd_unplug_duration_seconds').type).toBe('histogram');
    expect(s.family('vmhostd_rpc_requests_total').type).toBe('counter');
    expect(s.family('vmhostd_vms').type).toBe('gauge');
    for (const name of [
      'process_resident_memory_bytes',
      'process_cpu_seconds_total',
      'nodejs_eventloop_lag_p99_seconds',
    ]) {
      expect(s.names.has(name), name).toBe(true);
    }
    expect(s.names.has('vmhostd_unplug_duration_seconds')).toBe(true);
    expect(s.value('vmhostd_build_info', { version: '9.9.9' })).toBe(1);
    expect(metrics.contentType).toMatch(/^text\/plain/);
  });

  it('counts JSON-RPC requests by method and code, unknown methods under "-"', async () => {
    const { metrics, read } = await setup();
    const o = metrics.rpcObserver;
    o.request?.('Host.ping', 0);
    o.request?.('Host.ping', 0);
    o.request?.('VM.hotunplugMemory', 85);
    o.request?.(null, -32601);
    o.request?.(null, -32700);
    const s = await read();
    expect(s.value('vmhostd_rpc_requests_total', { method: 'Host.ping', code: '0' })).toBe(2);
    expect(s.value('vmhostd_rpc_requests_total', { method: 'VM.hotunplugMemory', code: '85' })).toBe(1);
    expect(s.value('vmhostd_rpc_requests_total', { method: '-', code: '-32601' })).toBe(1);
    expect(s.value('vmhostd_rpc_requests_total', { method: '-', code: '-32700' })).toBe(1);
    // Tallied between scrapes: each scrape adds what came since the last, once.
    expect((await read()).value('vmhostd_rpc_requests_total', { method: 'Host.ping', code: '0' })).toBe(2);
    o.request?.('Host.ping', 0);
    const again = await read();
    expect(again.value('vmhostd_rpc_requests_total', { method: 'Host.ping', code: '0' })).toBe(3);
    expect(again.value('vmhostd_rpc_requests_total', { method: 'VM.hotunplugMemory', code: '85' })).toBe(1);
  });

  it('counts refused connections by reason', async () => {
    const { metrics, read } = await setup();
    metrics.rpcObserver.refused?.('limits');
    metrics.rpcObserver.refused?.('tls');
    metrics.rpcObserver.refused?.('tls');
    const s = await read();
    expect(s.value('vmhostd_connections_refused_total', { reason: 'limits' })).toBe(1);
    expect(s.value('vmhostd_connections_refused_total', { reason: 'tls' })).toBe(2);
    expect(s.value('vmhostd_connections_refused_total', { reason: 'origin' })).toBe(0);
  });

  it('VM and DIMM gauges follow the manager at each scrape; a VM that went away leaves no series', async () => {
    const { vms, read } = await setup();
    vms.vms = [vm('a', 'Up', ['plugged', 'unplugging', 'plugged']), vm('b', 'Up', []), vm('c', 'Down', [])];
    let s = await read();
    expect(s.value('vmhostd_vms', { status: 'Up' })).toBe(2);
    expect(s.value('vmhostd_vms', { status: 'Down' })).toBe(1);
    expect(s.value('vmhostd_dimms', { state: 'plugged' })).toBe(2);
    expect(s.value('vmhostd_dimms', { state: 'unplugging' })).toBe(1);
    vms.vms = [vm('a', 'Paused', ['plugged'])];
    s = await read();
    expect(s.series('vmhostd_vms')).toEqual([{ status: 'Paused' }]);
    expect(s.value('vmhostd_dimms', { state: 'unplugging' })).toBe(0);
  });

  it('libvirt up/down and reconnects', async () => {
    const { libvirt, read, metrics } = await setup();
    expect((await read()).value('vmhostd_libvirt_up')).toBe(1);
    libvirt.connected = false;
    libvirt.emit('disconnected', new Error('gone'));
    let s = await read();
    expect(s.value('vmhostd_libvirt_up')).toBe(0);
    expect(s.value('vmhostd_libvirt_reconnects_total')).toBe(0);
    libvirt.connected = true;
    libvirt.emit('reconnected');
    s = await read();
    expect(s.value('vmhostd_libvirt_up')).toBe(1);
    expect(s.value('vmhostd_libvirt_reconnects_total')).toBe(1);
    expect(metrics.status().libvirt).toMatchObject({ connected: true, reconnects: 1 });
  });

  it('late removals count only removals with late: true, and show in the status', async () => {
    const { vms, read, metrics } = await setup();
    vms.vms = [vm('a', 'Up', [])];
    vms.emit('deviceRemoved', 'a', { alias: 'ua-1', memSize: 1024, late: false });
    vms.emit('deviceRemoved', 'a', { alias: 'ua-2', memSize: 896, late: true });
    expect((await read()).value('vmhostd_late_removals_total')).toBe(1);
    expect(metrics.status().recent).toEqual([
      expect.objectContaining({
        operation: 'late-removal',
        vmId: 'a',
        vmName: 'name-a',
        alias: 'ua-2',
        outcome: 'removed',
        durationMs: null,
      }),
    ]);
  });

  it('no series labelled by VM unless per_vm is on', async () => {
    const { vms, read } = await setup(false);
    vms.vms = [vm('a', 'Up', ['plugged'])];
    vms.emit('deviceRemovalFailed', 'a', { alias: 'ua-1', reason: 'guest-rejected' });
    const s = await read();
    for (const name of s.families.keys()) {
      for (const labels of s.series(name)) expect(Object.keys(labels), name).not.toContain('vm_id');
    }
    expect(s.families.has('vmhostd_vm_memory_bytes')).toBe(false);
  });

  it('per_vm: memory in bytes per VM, and rejections per VM (guest-rejected only)', async () => {
    const { vms, read } = await setup(true);
    vms.vms = [vm('a', 'Up', ['plugged'], 1152), vm('b', 'Up', [], 512)];
    vms.emit('deviceRemovalFailed', 'a', { alias: 'ua-1', reason: 'guest-rejected' });
    vms.emit('deviceRemovalFailed', 'a', { alias: 'ua-1', reason: 'guest-rejected' });
    vms.emit('deviceRemovalFailed', 'b', { alias: 'ua-2', reason: 'vm-gone' });
    const s = await read();
    expect(s.value('vmhostd_vm_memory_bytes', { vm_id: 'a', vm_name: 'name-a' })).toBe(1152 * 1024 * 1024);
    expect(s.value('vmhostd_vm_memory_bytes', { vm_id: 'b' })).toBe(512 * 1024 * 1024);
    expect(s.value('vmhostd_vm_unplug_rejections_total', { vm_id: 'a', vm_name: 'name-a' })).toBe(2);
    expect(s.value('vmhostd_vm_unplug_rejections_total', { vm_id: 'b' })).toBe(0);
  });

  it('operation hooks: histograms by outcome, operations by method and outcome, in flight, last 10 newest first', async () => {
    const { metrics, read, vms } = await setup();
    vms.vms = [vm('a', 'Up', [])];
    const o = metrics.operationObserver;
    const op: OperationInfo = { operation: 'hotunplug', vmId: 'a', alias: 'ua-1' };
    o.operationStarted?.(op);
    let s = await read();
    expect(s.value('vmhostd_operations_in_flight', { method: 'hotunplug' })).toBe(1);
    expect(metrics.status().inFlight).toEqual([
      expect.objectContaining({ operation: 'hotunplug', vmId: 'a', vmName: 'name-a', alias: 'ua-1' }),
    ]);
    o.unplugFinished?.({ vmId: 'a', alias: 'ua-1', outcome: 'guest-rejected', durationMs: 40 });
    o.operationFinished?.(op, 'guest-rejected', 41);
    o.unplugFinished?.({ vmId: 'a', alias: 'ua-2', outcome: 'removed', durationMs: 1500 });
    o.guestReleased?.({ vmId: 'a', alias: 'ua-2', durationMs: 1400 });
    o.plugFinished?.({ vmId: 'a', alias: 'ua-3', outcome: 'plugged', durationMs: 200 });
    s = await read();
    expect(s.value('vmhostd_operations_in_flight', { method: 'hotunplug' })).toBe(0);
    expect(s.count('vmhostd_unplug_duration_seconds', { outcome: 'guest-rejected' })).toBe(1);
    expect(s.count('vmhostd_unplug_duration_seconds', { outcome: 'removed' })).toBe(1);
    // 1.5 s lands in the 2.5 s bucket, not the 1 s one.
    const b = s.buckets('vmhostd_unplug_duration_seconds', { outcome: 'removed' });
    expect([b.get(1), b.get(2.5), b.get(60), b.get(Infinity)]).toEqual([0, 1, 1, 1]);
    expect(b.get(0.01)).toBe(0);
    expect(s.count('vmhostd_guest_release_seconds')).toBe(1);
    expect(s.count('vmhostd_plug_duration_seconds', { outcome: 'plugged' })).toBe(1);
    expect(s.value('vmhostd_operations_total', { method: 'hotunplug', outcome: 'guest-rejected' })).toBe(1);

    for (let i = 0; i < 12; i++) {
      const p: OperationInfo = { operation: 'hotplug', vmId: 'a', alias: `ua-p${i}` };
      o.operationStarted?.(p);
      o.operationFinished?.(p, 'ok', i);
    }
    const recent = metrics.status().recent;
    expect(recent).toHaveLength(10);
    expect(recent[0]).toMatchObject({ alias: 'ua-p11', durationMs: 11, outcome: 'ok' });
    expect(recent[9]).toMatchObject({ alias: 'ua-p2' });
    expect(metrics.status().inFlight).toEqual([]);
  });

  it('close() stops observing the manager and the libvirt client', async () => {
    const { metrics, vms, libvirt, read } = await setup();
    metrics.close();
    vms.emit('deviceRemoved', 'a', { alias: 'ua-2', memSize: 896, late: true });
    libvirt.emit('reconnected');
    const s = await read();
    expect(s.value('vmhostd_late_removals_total')).toBe(0);
    expect(s.value('vmhostd_libvirt_reconnects_total')).toBe(0);
    expect(vms.listenerCount('deviceRemoved')).toBe(0);
  });
});

describe('daemon metrics: virtio-mem resizes', () => {
  it('observe each resize by outcome and duration, count late ends by outcome, and keep virtio-mem devices out of the DIMM figures', async () => {
    const { metrics, vms, read } = await setup();
    const o = metrics.operationObserver;
    const op: OperationInfo = { operation: 'resize', vmId: 'a', alias: 'vm0' };
    o.operationStarted?.(op);
    expect((await read()).value('vmhostd_operations_in_flight', { method: 'resize' })).toBe(1);
    o.resizeFinished?.({ vmId: 'a', alias: 'vm0', outcome: 'resized', durationMs: 1500 });
    o.resizeFinished?.({ vmId: 'a', alias: 'vm0', outcome: 'stalled', durationMs: 20_000 });
    o.operationFinished?.(op, 'stalled', 20_000);
    vms.emit('memoryDeviceSizeChanged', 'a', { alias: 'vm0', requested: 2, current: 2 });
    vms.emit('memoryDeviceSizeChanged', 'a', { alias: 'vm0', requested: 4, current: 4, late: true });
    vms.emit('memoryDeviceResizeFailed', 'a', {
      alias: 'vm0',
      reason: 'timeout',
      requested: 8,
      current: 4,
      requestedNow: 4,
      late: true,
    });
    vms.vms = [
      {
        ...vm('a', 'Up', []),
        memoryDevices: [
          { state: 'plugged', model: 'dimm' },
          { state: 'resizing', model: 'virtio-mem' },
          { state: 'plugged', model: 'virtio-mem' },
        ],
      },
    ];
    const s = await read();
    expect(s.count('vmhostd_resize_duration_seconds', { outcome: 'resized' })).toBe(1);
    expect(s.count('vmhostd_resize_duration_seconds', { outcome: 'stalled' })).toBe(1);
    const buckets = s.buckets('vmhostd_resize_duration_seconds', { outcome: 'resized' });
    expect([buckets.get(1), buckets.get(2.5)]).toEqual([0, 1]);
    expect(s.value('vmhostd_operations_total', { method: 'resize', outcome: 'stalled' })).toBe(1);
    expect(s.value('vmhostd_operations_in_flight', { method: 'resize' })).toBe(0);
    // A plain move is no outcome; a late end is.
    expect(s.value('vmhostd_late_resizes_total', { outcome: 'resized' })).toBe(1);
    expect(s.value('vmhostd_late_resizes_total', { outcome: 'timeout' })).toBe(1);
    expect(s.value('vmhostd_dimms', { state: 'plugged' })).toBe(1);
    expect(s.value('vmhostd_virtio_mem_devices', { state: 'resizing' })).toBe(1);
    expect(s.value('vmhostd_virtio_mem_devices', { state: 'plugged' })).toBe(1);
    const st = metrics.status();
    expect(st.dimms).toEqual({ plugged: 1, unplugging: 0 });
    expect(st.recent.map((r) => [r.operation, r.outcome])).toEqual([
      ['late-resize', 'timeout'],
      ['late-resize', 'resized'],
      ['resize', 'stalled'],
    ]);
  });
});
