// The VM registry. libvirt is the source of truth: the registry is fed by
// listAllDomains and libvirt events (never by polling), and routes each to
// the VM's worker (vm-worker.ts), which alone writes the VM's record. The
// daemon's own facts live in the domain's <metadata>.

import type { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import {
  type DomainRef,
  type LibvirtApi,
  type LibvirtClientEvents,
  LifecycleEvent,
  ListDomainsFlags,
} from '../libvirt/types.js';
import { VirtError } from './errors.js';
import type { GuestProber } from './guest-probe.js';
import { libvirtDetails } from './libvirt-errors.js';
import { SizeChangeNotifier } from './size-change-notifier.js';
import type { VmManagerEvents } from './types.js';
import type { ReloadHow } from './vm-read.js';
import type { VmRecord } from './vm-record.js';
import { VmWorker } from './vm-worker.js';

export interface VmRegistryOptions {
  log: Logger;
  /** Parallel domain loads at start and resync; default 16. */
  loadConcurrency?: number;
  /** Which domains are ours, by name (default: all). */
  manages?: (domainName: string) => boolean;
  /** Asks guest agents about DIMMs (none: every DIMM's guest view stays unknown). */
  guest?: GuestProber;
  /** A resize that has not moved for this long is stalled (default 20 s). */
  resizeStallMs?: number;
}

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

/** Device events may name a DIMM by its memory backend id (mem<alias>); we key by the device alias. */
function dimmAliasOf(eventAlias: string): string {
  return /^mem(ua-|dimm\d)/.test(eventAlias) ? eventAlias.slice(3) : eventAlias;
}

export class VmRegistry {
  private readonly workers = new Map<string, VmWorker>();
  private readonly log: Logger;
  private readonly clientListeners: {
    [K in keyof LibvirtClientEvents]?: (...a: LibvirtClientEvents[K]) => void;
  } = {};

  constructor(
    private readonly client: LibvirtApi,
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

  get(uuid: string): Readonly<VmRecord> | undefined {
    return this.workers.get(uuid)?.record;
  }

  require(vmId: string): Readonly<VmRecord> {
    return this.requireWorker(vmId).require();
  }

  /** The worker of a known VM. */
  requireWorker(vmId: string): VmWorker {
    const w = this.workers.get(vmId.toLowerCase());
    if (!w?.record) throw new VirtError('no-such-vm', 'no-such-vm', `no VM with id ${vmId}`, { vmId });
    return w;
  }

  all(): Readonly<VmRecord>[] {
    const out: Readonly<VmRecord>[] = [];
    for (const w of this.workers.values()) if (w.record) out.push(w.record);
    return out;
  }

  allWorkers(): VmWorker[] {
    return [...this.workers.values()];
  }

  private worker(ref: DomainRef): VmWorker {
    const uuid = ref.uuid.toLowerCase();
    let w = this.workers.get(uuid);
    if (!w) {
      w = new VmWorker(
        uuid,
        { ...ref, uuid },
        {
          client: this.client,
          log: this.log,
          events: this.events,
          detach: (id) => {
            if (this.workers.get(id) === w) this.workers.delete(id);
          },
          reloadCurrent: (r, how) => this.refresh(r, how),
          ...(this.opts.guest ? { guest: this.opts.guest } : {}),
          sizeChanges: this.sizeChanges,
          resizeStallMs: this.opts.resizeStallMs ?? 20_000,
        },
      );
      this.workers.set(uuid, w);
    }
    return w;
  }

  private manages(ref: DomainRef): boolean {
    return this.opts.manages?.(ref.name) ?? true;
  }

  // ---- events, recovery ----

  subscribe(): void {
    const l = this.clientListeners;
    l.lifecycle = (ev) => {
      if (this.manages(ev.domain)) this.onLifecycle(ev.domain, ev.event);
    };
    l.deviceRemoved = (ev) => {
      if (this.manages(ev.domain))
        this.deviceEvent(ev.domain, { type: 'device-removed', alias: dimmAliasOf(ev.alias) });
    };
    l.deviceRemovalFailed = (ev) => {
      if (this.manages(ev.domain))
        this.deviceEvent(ev.domain, { type: 'removal-failed', alias: dimmAliasOf(ev.alias) });
    };
    l.deviceAdded = (ev) => {
      if (this.manages(ev.domain))
        this.background(this.refresh(ev.domain), 'refresh after device-added', ev.domain.uuid);
    };
    // A virtio-mem device moved: the re-read feeds its sizes to the VM's machine (size-changed).
    l.memoryDeviceSizeChange = (ev) => {
      if (!this.manages(ev.domain)) return;
      this.background(this.refresh(ev.domain), 'refresh after memory-device size change', ev.domain.uuid);
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
    for (const w of this.workers.values()) w.stop();
  }

  private deviceEvent(ref: DomainRef, e: { type: 'device-removed' | 'removal-failed'; alias: string }): void {
    const w = this.worker(ref);
    // A VM we do not know yet: its reload reconciles.
    if (!w.record) this.background(w.reload({}, ref), 'refresh after device event', w.uuid);
    else w.submit(e);
  }

  private background(p: Promise<unknown>, what: string, vmId?: string): void {
    p.catch((err: unknown) => this.log.error({ vmId, ...libvirtDetails(err) }, `${what} failed`));
  }

  private onLifecycle(ref: DomainRef, event: number): void {
    const w = this.worker(ref);
    this.log.debug({ vmId: w.uuid, event }, 'lifecycle event');
    // Unplugs in flight fail at once, not at their timeout.
    if (event === LifecycleEvent.STOPPED) w.submit({ type: 'vm-stopped' });
    const how: ReloadHow =
      event === LifecycleEvent.STARTED
        ? { boot: true }
        : event === LifecycleEvent.DEFINED
          ? { inactive: true, persistent: true }
          : event === LifecycleEvent.UNDEFINED
            ? { persistent: false }
            : {};
    this.background(w.reload(how, ref), 'refresh after lifecycle event', w.uuid);
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
    for (const [uuid, w] of this.workers) {
      if (!seen.has(uuid)) this.background(w.forget(), 'drop', uuid);
    }
    await mapLimit(all, this.opts.loadConcurrency ?? 16, async (ref) => {
      try {
        await this.refresh(ref, { persistent: persistentSet.has(ref.uuid.toLowerCase()), inactive: true });
      } catch (err) {
        this.log.error({ vmId: ref.uuid, ...libvirtDetails(err) }, 'cannot load domain (retrying)');
      }
    });
    this.log.info(
      { why, vms: this.all().length, durationMs: Math.round(performance.now() - t0) },
      'VM registry synced',
    );
  }

  /** Re-reads a domain through its worker; undefined when it is gone. */
  refresh(ref: DomainRef, how: ReloadHow = {}): Promise<VmRecord | undefined> {
    return this.worker(ref).reload(how, ref);
  }
}
