// A DaemonMetrics (with metrics.per_vm) in which every metric has moved at
// least once, scraped: what the daemon can export, for tests that hold
// documentation and dashboards to it.
import { EventEmitter } from 'node:events';
import type { LibvirtClientEvents } from '../../src/libvirt/types.js';
import { DaemonMetrics } from '../../src/metrics/daemon-metrics.js';
import type { VmSnapshot } from '../../src/metrics/definitions.js';
import type { VmManagerEvents } from '../../src/virt/types.js';
import { Scrape } from './prom-text.js';

/** A scrape of a daemon in which every metric has moved at least once. */
export async function everyMetricOnce(): Promise<Scrape> {
  const metrics = new DaemonMetrics({ version: 't', perVm: true });
  const vms = Object.assign(new EventEmitter<VmManagerEvents>(), {
    allStats: (): VmSnapshot[] => [
      { vmId: 'a', vmName: 'vm-a', status: 'Up', memSize: 1024, memoryDevices: [{ state: 'plugged' }] },
    ],
  });
  const libvirt = Object.assign(new EventEmitter<LibvirtClientEvents>(), { connected: true });
  metrics.watchVms(vms);
  metrics.watchLibvirt(libvirt);
  metrics.addClientSource('ws', () => 1);
  libvirt.emit('reconnected');
  vms.emit('deviceRemoved', 'a', { alias: 'ua-1', memSize: 1024, late: true });
  vms.emit('deviceRemovalFailed', 'a', { alias: 'ua-2', reason: 'guest-rejected' });
  metrics.rpcObserver.request?.('Host.ping', 0);
  metrics.rpcObserver.refused?.('tls');
  const o = metrics.operationObserver;
  const op = { operation: 'hotunplug' as const, vmId: 'a', alias: 'ua-2' };
  o.operationStarted?.(op);
  o.operationFinished?.(op, 'guest-rejected', 10);
  o.operationStarted?.({ operation: 'hotplug', vmId: 'a' });
  o.unplugFinished?.({ vmId: 'a', alias: 'ua-2', outcome: 'removed', durationMs: 10 });
  o.guestReleased?.({ vmId: 'a', alias: 'ua-2', durationMs: 9 });
  o.plugFinished?.({ vmId: 'a', alias: 'ua-3', outcome: 'plugged', durationMs: 10 });
  o.resizeFinished?.({ vmId: 'a', alias: 'vm0', outcome: 'resized', durationMs: 10 });
  vms.emit('memoryDeviceSizeChanged', 'a', { alias: 'vm0', requested: 2, current: 2, late: true });
  return Scrape.parse(await metrics.render());
}
