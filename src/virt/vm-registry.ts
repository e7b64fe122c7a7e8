// The VM registry. libvirt is the source of truth: the registry is fed by
// listAllDomains and libvirt events (never by polling), each domain's XML is
// re-read and parsed once per change, and the daemon's own facts live in the
// domain's <metadata>. Events and refreshes of one VM go through its sync
// worker, so cached state is applied in order. It publishes each VM's stats
// and emits the manager's events through the emitter it is given.

import type { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import {
  DomainAffect,
  type DomainRef,
  type DomainStateInfo,
  DomainXmlFlags,
  type LibvirtApi,
  type LibvirtClientEvents,
  LifecycleEvent,
  ListDomainsFlags,
  MetadataType,
} from '../libvirt/types.js';
import type { DeviceWaiters } from './device-waiters.js';
import { isUserAlias } from './dimm-xml.js';
import { parseDomainXml } from './domain-xml.js';
import { VirtError } from './errors.js';
import { devicesHash } from './hash.js';
import { isNoDomain, libvirtDetails } from './libvirt-errors.js';
import { buildMetadata, emptyMetadata, METADATA_PREFIX, METADATA_URI } from './metadata.js';
import { SerialQueue } from './serial-queue.js';
import { SizeChangeNotifier } from './size-change-notifier.js';
import { isActive, statusOf } from './status.js';
import type { VmManagerEvents, VmStats, VmStatsDevice } from './types.js';
import { virtioMemStats } from './virtio-mem.js';
import { deviceState, hasAlias, type VmRecord } from './vm-record.js';

export interface VmRegistryOptions {
  log: Logger;
  /** Parallel domain loads at start and resync; default 16. */
  loadConcurrency?: number;
  /** Which domains are ours, by name (default: all). */
  manages?: (domainName: string) => boolean;
}

const DOWN_STATE: DomainStateInfo = { state: 5, reason: 0 };

async function mapLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export class VmRegistry {
  private readonly vms = new Map<string, VmRecord>();
  /** Event handling and XML refreshes, one worker per VM. */
  private readonly sync = new SerialQueue();
  private readonly log: Logger;
  private readonly clientListeners: {
    [K in keyof LibvirtClientEvents]?: (...a: LibvirtClientEvents[K]) => void;
  } = {};

  constructor(
    private readonly client: LibvirtApi,
    private readonly waiters: DeviceWaiters,
    private readonly events: EventEmitter<VmManagerEvents>,
    private readonly opts: VmRegistryOptions,
  ) {
    this.log = opts.log;
    this.sizeChanges = new SizeChangeNotifier((vmId, ev) =>
      this.events.emit('memoryDeviceSizeChanged', vmId, ev),
    );
  }

  /** virtio-mem size moves, coalesced (memory_device_size_changed notifications). */
  readonly sizeChanges: SizeChangeNotifier;

  // ---- lookups (from cache, no libvirt call) ----

  get(uuid: string): VmRecord | undefined {
    return this.vms.get(uuid);
  }

  require(vmId: string): VmRecord {
    const vm = this.vms.get(vmId.toLowerCase());
    if (!vm) throw new VirtError('no-such-vm', 'no-such-vm', `no VM with id ${vmId}`, { vmId });
    return vm;
  }

  all(): VmRecord[] {
    return [...this.vms.values()];
  }

  private manages(ref: DomainRef): boolean {
    return this.opts.manages?.(ref.name) ?? true;
  }

  // ---- loading, events, recovery ----

  subscribe(): void {
    const l = this.clientListeners;
    l.lifecycle = (ev) => {
      if (this.manages(ev.domain)) this.onLifecycle(ev.domain, ev.event);
    };
    l.deviceRemoved = (ev) => {
      if (!this.manages(ev.domain)) return;
      const uuid = ev.domain.uuid.toLowerCase();
      // The refresh finishes the bookkeeping when nobody waits (late removal);
      // a waiting unplug reuses it rather than reading the XML a second time.
      const refreshed = this.refresh(ev.domain);
      this.waiters.settle(uuid, dimmAliasOf(ev.alias), { kind: 'removed', refreshed });
      this.background(refreshed, 'refresh after device-removed', uuid);
    };
    l.deviceRemovalFailed = (ev) => {
      if (!this.manages(ev.domain)) return;
      const uuid = ev.domain.uuid.toLowerCase();
      const alias = dimmAliasOf(ev.alias);
      if (this.waiters.settle(uuid, alias, { kind: 'rejected' })) return;
      this.background(
        this.sync.run(uuid, () => this.lateRemovalFailed(uuid, alias)),
        'late device-removal-failed',
        uuid,
      );
    };
    l.deviceAdded = (ev) => {
      if (this.manages(ev.domain)) {
        this.background(this.refresh(ev.domain), 'refresh after device-added', ev.domain.uuid);
      }
    };
    // A virtio-mem device moved: memSize and the device's current size follow the live XML.
    l.memoryDeviceSizeChange = (ev) => {
      if (!this.manages(ev.domain)) return;
      const uuid = ev.domain.uuid.toLowerCase();
      const refreshed = this.refresh(ev.domain).then((vm) => {
        const dev = vm?.dom.virtioMem.find((v) => v.alias === ev.alias);
        if (dev)
          this.sizeChanges.report(uuid, { alias: ev.alias, requested: dev.requested, current: dev.current });
      });
      this.background(refreshed, 'refresh after memory-device size change', uuid);
    };
    l.disconnected = (err) =>
      this.log.warn({ err: err.message }, 'libvirt connection lost; waiting for reconnect');
    l.reconnected = () => this.background(this.resync('reconnect'), 'resync after reconnect');
    for (const [k, fn] of Object.entries(l)) {
      this.client.on(k as keyof LibvirtClientEvents, fn as () => void);
    }
  }

  unsubscribe(): void {
    for (const [k, fn] of Object.entries(this.clientListeners)) {
      this.client.off(k as keyof LibvirtClientEvents, fn as () => void);
    }
  }

  private background(p: Promise<unknown>, what: string, vmId?: string): void {
    p.catch((err: unknown) => this.log.error({ vmId, ...libvirtDetails(err) }, `${what} failed`));
  }

  private onLifecycle(ref: DomainRef, event: number): void {
    const uuid = ref.uuid.toLowerCase();
    this.log.debug({ vmId: uuid, event }, 'lifecycle event');
    if (event === LifecycleEvent.STOPPED) {
      // Unplugs in flight fail at once, not at their timeout.
      this.waiters.settleVm(uuid, { kind: 'vm-gone' });
    }
    const how =
      event === LifecycleEvent.STARTED
        ? { boot: true }
        : event === LifecycleEvent.DEFINED
          ? { inactive: true, persistent: true }
          : event === LifecycleEvent.UNDEFINED
            ? { persistent: false }
            : {};
    this.background(this.refresh(ref, how), 'refresh after lifecycle event', uuid);
  }

  /** Re-lists domains and reloads each (start and after a reconnect). */
  async resync(why: 'start' | 'reconnect'): Promise<void> {
    const t0 = performance.now();
    const [listed, persistent] = await Promise.all([
      this.client.listAllDomains(0),
      this.client.listAllDomains(ListDomainsFlags.PERSISTENT),
    ]);
    const all = listed.filter((d) => this.manages(d));
    const persistentSet = new Set(persistent.map((d) => d.uuid.toLowerCase()));
    const seen = new Set(all.map((d) => d.uuid.toLowerCase()));
    for (const uuid of [...this.vms.keys()]) {
      if (!seen.has(uuid))
        this.background(
          this.sync.run(uuid, async () => this.drop(uuid)),
          'drop',
          uuid,
        );
    }
    await mapLimit(all, this.opts.loadConcurrency ?? 16, async (ref) => {
      try {
        await this.refresh(ref, { persistent: persistentSet.has(ref.uuid.toLowerCase()), inactive: true });
      } catch (err) {
        this.log.error({ vmId: ref.uuid, ...libvirtDetails(err) }, 'cannot load domain');
      }
    });
    this.log.info(
      { why, vms: this.vms.size, durationMs: Math.round(performance.now() - t0) },
      'VM registry synced',
    );
  }

  /** Re-reads a domain's state and XML in its sync worker; undefined when it is gone. */
  refresh(
    ref: DomainRef,
    how: { boot?: boolean; inactive?: boolean; persistent?: boolean } = {},
  ): Promise<VmRecord | undefined> {
    const uuid = ref.uuid.toLowerCase();
    return this.sync.run(uuid, () => this.load({ ...ref, uuid }, how));
  }

  private async load(
    ref: DomainRef,
    how: { boot?: boolean; inactive?: boolean; persistent?: boolean },
  ): Promise<VmRecord | undefined> {
    const uuid = ref.uuid;
    let state: DomainStateInfo;
    let xml: string;
    try {
      [state, xml] = await Promise.all([this.client.getState(ref), this.client.getXMLDesc(ref, 0)]);
    } catch (err) {
      if (isNoDomain(err)) {
        this.drop(uuid);
        return undefined;
      }
      throw err;
    }
    const dom = parseDomainXml(xml);
    const active = isActive(state);
    let vm = this.vms.get(uuid);
    const firstSight = !vm;
    const persistent =
      how.persistent ??
      vm?.persistent ??
      (await this.client.listAllDomains(ListDomainsFlags.PERSISTENT)).some(
        (d) => d.uuid.toLowerCase() === uuid,
      );
    if (!vm) {
      vm = {
        uuid,
        ref,
        state,
        status: statusOf(state),
        active,
        persistent,
        dom,
        inactiveMemoryKiB: null,
        nextRunGuaranteed: null,
        meta: emptyMetadata(),
        metaBootId: null,
        inFlight: new Set(),
        stats: undefined as unknown as VmStats,
        metaWrite: Promise.resolve(),
      };
    }
    const wasActive = vm.active && !firstSight;
    // A live ref carries the runtime id; keep it for calls.
    vm.ref = { name: dom.name, uuid, id: active ? (ref.id >= 0 ? ref.id : vm.ref.id) : -1 };
    vm.state = state;
    vm.status = statusOf(state);
    vm.active = active;
    vm.persistent = persistent;
    vm.dom = dom;

    if (persistent && (how.inactive || firstSight || vm.inactiveMemoryKiB === null)) {
      const inactive = active
        ? parseDomainXml(await this.client.getXMLDesc(ref, DomainXmlFlags.INACTIVE))
        : dom;
      vm.inactiveMemoryKiB = inactive.memoryKiB;
      vm.nextRunGuaranteed = inactive.metadata?.guaranteedMiB ?? null;
    } else if (!persistent) {
      vm.inactiveMemoryKiB = null;
      vm.nextRunGuaranteed = null;
    }
    this.vms.set(uuid, vm);

    const late: { alias: string; memSize: number }[] = [];
    if (!active) {
      this.waiters.settleVm(uuid, { kind: 'vm-gone' });
      vm.meta = emptyMetadata();
      vm.metaBootId = null;
      if (!persistent) {
        this.drop(uuid);
        return undefined;
      }
    } else if (how.boot || !wasActive || vm.metaBootId !== vm.ref.id) {
      await this.adoptMetadata(vm, how.boot === true);
    } else {
      late.push(...(await this.reconcileUnplugs(vm)));
    }
    this.publish(vm);
    for (const l of late) this.events.emit('deviceRemoved', uuid, { ...l, late: true });
    return vm;
  }

  /** Takes the live metadata for a boot we did not know yet, recording what we must. */
  private async adoptMetadata(vm: VmRecord, boot: boolean): Promise<void> {
    const dom = vm.dom;
    const aliases = dom.dimms.map((d) => d.alias).filter((a): a is string => a !== null);
    const md = dom.metadata ? structuredClone(dom.metadata) : emptyMetadata();
    let write = false;
    if (boot) {
      // Everything present at start was onlined by the guest at boot.
      md.bootDimms = aliases;
      md.unplugging = [];
      write = true;
      this.log.info({ vmId: vm.uuid, bootDimms: aliases }, 'VM started: recorded boot-time DIMMs');
    } else if (md.bootDimms === null) {
      // First seen running without our metadata: DIMMs with our user alias
      // (ua-…) were plugged by an engine; libvirt-named ones (dimmN) and any
      // in the persistent definition are taken as boot-time.
      const defined = vm.persistent ? await this.definedDimmAliases(vm) : new Set<string>();
      md.bootDimms = aliases.filter((a) => !isUserAlias(a) || defined.has(a));
      write = true;
      this.log.warn(
        {
          vmId: vm.uuid,
          assumedBootDimms: md.bootDimms,
          assumedHotplugged: aliases.filter((a) => !md.bootDimms?.includes(a)),
        },
        'VM first seen running without vmhostd metadata: assumed ua-* DIMMs not in the definition were hot-plugged, the others present at boot',
      );
    }
    if (md.guaranteedMiB === null) {
      md.guaranteedMiB = Math.min(vm.nextRunGuaranteed ?? dom.memory, dom.memory);
      write = true;
    }
    vm.meta = md;
    vm.metaBootId = vm.ref.id;
    // Unplugs that completed while we were away.
    const late = boot ? [] : await this.reconcileUnplugs(vm, false);
    if (write || late.length) {
      await this.persistMeta(vm).catch((err: unknown) =>
        this.log.error({ vmId: vm.uuid, ...libvirtDetails(err) }, 'cannot write vmhostd metadata'),
      );
    }
    this.publish(vm);
    for (const l of late) this.events.emit('deviceRemoved', vm.uuid, { ...l, late: true });
  }

  private async definedDimmAliases(vm: VmRecord): Promise<Set<string>> {
    try {
      const inactive = parseDomainXml(await this.client.getXMLDesc(vm.ref, DomainXmlFlags.INACTIVE));
      return new Set(inactive.dimms.map((d) => d.alias).filter((a): a is string => a !== null));
    } catch {
      return new Set();
    }
  }

  /**
   * Marks of DIMMs no longer in the live XML: the waiting operation gets its
   * answer; without one, the removal completed late and we finish it here.
   */
  private async reconcileUnplugs(
    vm: VmRecord,
    persist = true,
  ): Promise<{ alias: string; memSize: number }[]> {
    const present = new Set(vm.dom.dimms.map((d) => d.alias));
    const late: { alias: string; memSize: number }[] = [];
    for (const mark of [...vm.meta.unplugging]) {
      if (present.has(mark.alias)) continue;
      if (this.waiters.settle(vm.uuid, mark.alias, { kind: 'removed' }) || vm.inFlight.has(mark.alias))
        continue;
      vm.meta.unplugging = vm.meta.unplugging.filter((u) => u.alias !== mark.alias);
      late.push({ alias: mark.alias, memSize: vm.dom.memory });
      this.log.info({ vmId: vm.uuid, alias: mark.alias, since: mark.since }, 'late removal completed');
    }
    if (late.length) {
      if (vm.meta.guaranteedMiB !== null)
        vm.meta.guaranteedMiB = Math.min(vm.meta.guaranteedMiB, vm.dom.memory);
      if (persist) {
        await this.persistMeta(vm).catch((err: unknown) =>
          this.log.error({ vmId: vm.uuid, ...libvirtDetails(err) }, 'cannot write vmhostd metadata'),
        );
      }
    }
    return late;
  }

  private async lateRemovalFailed(uuid: string, alias: string): Promise<void> {
    const vm = this.vms.get(uuid);
    if (!vm || vm.inFlight.has(alias) || !vm.meta.unplugging.some((u) => u.alias === alias)) return;
    vm.meta.unplugging = vm.meta.unplugging.filter((u) => u.alias !== alias);
    this.log.info({ vmId: uuid, alias }, 'late removal failed: guest rejected');
    await this.persistMeta(vm).catch((err: unknown) =>
      this.log.error({ vmId: uuid, ...libvirtDetails(err) }, 'cannot write vmhostd metadata'),
    );
    this.publish(vm);
    this.events.emit('deviceRemovalFailed', uuid, { alias, reason: 'guest-rejected' });
  }

  private drop(uuid: string): void {
    this.waiters.settleVm(uuid, { kind: 'vm-gone' });
    const vm = this.vms.get(uuid);
    if (!vm) return;
    this.vms.delete(uuid);
    vm.state = DOWN_STATE;
    vm.status = 'Down';
    vm.active = false;
    this.log.info({ vmId: uuid, vmName: vm.dom.name }, 'VM gone');
    this.events.emit('vmStatus', this.buildStats(vm, []));
  }

  /** Writes our metadata; writes of one VM are chained and each sends the latest state. */
  persistMeta(vm: VmRecord): Promise<void> {
    const write = async (): Promise<void> => {
      if (!vm.active) return;
      await this.client.setMetadata(
        vm.ref,
        MetadataType.ELEMENT,
        buildMetadata(vm.meta),
        METADATA_PREFIX,
        METADATA_URI,
        DomainAffect.LIVE,
      );
    };
    const p = vm.metaWrite.then(write, write);
    vm.metaWrite = p.catch(() => undefined);
    return p;
  }

  // ---- stats ----

  /** Rebuilds the cached stats and notifies when anything visible changed. */
  publish(vm: VmRecord): void {
    const devices: VmStatsDevice[] = vm.active
      ? vm.dom.dimms
          .filter(hasAlias)
          .map(
            (d): VmStatsDevice => ({
              model: 'dimm',
              alias: d.alias,
              size: d.size,
              node: d.node,
              slot: d.slot ?? -1,
              base: d.base ?? '',
              state: deviceState(vm, d.alias),
            }),
          )
          .sort((a, b) => a.slot - b.slot)
          .concat(vm.dom.virtioMem.map(virtioMemStats))
      : [];
    const prev = vm.stats as VmStats | undefined;
    const next = this.buildStats(vm, devices);
    vm.stats = next;
    if (
      !prev ||
      prev.hash !== next.hash ||
      prev.status !== next.status ||
      prev.memGuaranteedSize !== next.memGuaranteedSize ||
      prev.vmName !== next.vmName ||
      prev.balloonActive !== next.balloonActive
    ) {
      if (this.vms.get(vm.uuid) === vm) this.events.emit('vmStatus', next);
    }
  }

  private buildStats(vm: VmRecord, devices: VmStatsDevice[]): VmStats {
    const memSize = vm.dom.memory;
    const g = vm.active ? (vm.meta.guaranteedMiB ?? memSize) : (vm.nextRunGuaranteed ?? memSize);
    return Object.freeze({
      vmId: vm.uuid,
      vmName: vm.dom.name,
      status: vm.status,
      memSize,
      memGuaranteedSize: Math.min(g, memSize),
      hash: devicesHash(memSize, devices),
      balloonActive: vm.dom.balloonActive,
      memoryDevices: devices,
    });
  }
}

/** Device events may name a DIMM by its memory backend id (mem<alias>); we key by the device alias. */
function dimmAliasOf(eventAlias: string): string {
  return /^mem(ua-|dimm\d)/.test(eventAlias) ? eventAlias.slice(3) : eventAlias;
}
