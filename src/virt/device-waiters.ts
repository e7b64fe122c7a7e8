// Interest in the outcome of one DIMM's removal, registered before the
// detach call because libvirt may deliver the event before its reply.

/** `refreshed`: the re-read of the VM that the device-removed event already started, for the waiter to reuse. */
export type RemovalOutcome =
  | { kind: 'removed'; refreshed?: Promise<unknown> }
  | { kind: 'rejected' }
  | { kind: 'vm-gone' };

interface Waiter {
  uuid: string;
  resolve(o: RemovalOutcome): void;
}

export class DeviceWaiters {
  private readonly waiters = new Map<string, Waiter>();

  private static key(uuid: string, alias: string): string {
    return `${uuid}\u0000${alias}`;
  }

  /** Registers interest; `cancel` drops it without settling. */
  wait(uuid: string, alias: string): { promise: Promise<RemovalOutcome>; cancel(): void } {
    const key = DeviceWaiters.key(uuid, alias);
    if (this.waiters.has(key)) throw new Error(`already waiting for ${alias} on ${uuid}`);
    let resolve!: (o: RemovalOutcome) => void;
    const promise = new Promise<RemovalOutcome>((r) => {
      resolve = r;
    });
    const waiter: Waiter = { uuid, resolve };
    this.waiters.set(key, waiter);
    return {
      promise,
      cancel: () => {
        if (this.waiters.get(key) === waiter) this.waiters.delete(key);
      },
    };
  }

  has(uuid: string, alias: string): boolean {
    return this.waiters.has(DeviceWaiters.key(uuid, alias));
  }

  /** Settles the waiter of one alias; false when nobody waits. */
  settle(uuid: string, alias: string, outcome: RemovalOutcome): boolean {
    const key = DeviceWaiters.key(uuid, alias);
    const w = this.waiters.get(key);
    if (!w) return false;
    this.waiters.delete(key);
    w.resolve(outcome);
    return true;
  }

  /** Settles every waiter of a VM (e.g. it stopped). */
  settleVm(uuid: string, outcome: RemovalOutcome): number {
    let n = 0;
    for (const [key, w] of this.waiters) {
      if (w.uuid !== uuid) continue;
      this.waiters.delete(key);
      w.resolve(outcome);
      n++;
    }
    return n;
  }

  get size(): number {
    return this.waiters.size;
  }
}
