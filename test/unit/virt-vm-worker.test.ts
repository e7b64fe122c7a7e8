// The VM worker's operation sequencing (it replaced the per-VM SerialQueue):
// operations of one VM never interleave and run in submission order, a
// failing one does not stop the next, and opsIdle waits for them all.
import { EventEmitter } from 'node:events';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { LibvirtApi } from '../../src/libvirt/types.js';
import { SizeChangeNotifier } from '../../src/virt/size-change-notifier.js';
import type { VmManagerEvents } from '../../src/virt/types.js';
import { VmWorker } from '../../src/virt/vm-worker.js';

function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { promise, open };
}

function worker(): VmWorker {
  const uuid = '00000000-0000-0000-0000-000000000001';
  return new VmWorker(
    uuid,
    { name: 'vm', uuid, id: 1 },
    {
      // No operation here touches libvirt.
      client: {} as LibvirtApi,
      log: pino({ level: 'silent' }),
      events: new EventEmitter<VmManagerEvents>(),
      detach: () => {},
      reloadCurrent: async () => undefined,
      sizeChanges: new SizeChangeNotifier(() => {}),
      resizeStallMs: 20_000,
    },
  );
}

const tick = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

describe('VmWorker operations', () => {
  it('never interleaves operations of one VM, in submission order, and survives a failing one', async () => {
    const w = worker();
    const log: string[] = [];
    const g = gate();
    const a = w.operate(async () => {
      log.push('a-start');
      await g.promise;
      log.push('a-end');
      throw new Error('a failed');
    });
    const b = w.operate(async () => {
      log.push('b');
      return 'b';
    });
    await tick();
    expect(log).toEqual(['a-start']);
    expect(w.busy).toBe(true);
    const idle = w.opsIdle().then(() => log.push('idle'));
    g.open();
    await expect(a).rejects.toThrow('a failed');
    expect(await b).toBe('b');
    await idle;
    expect(log).toEqual(['a-start', 'a-end', 'b', 'idle']);
    expect(w.busy).toBe(false);
  });

  it('runs two VMs in parallel', async () => {
    const w1 = worker();
    const w2 = worker();
    const g = gate();
    const log: string[] = [];
    void w1.operate(async () => {
      await g.promise;
      log.push('vm1');
    });
    await w2.operate(async () => {
      log.push('vm2');
    });
    expect(log).toEqual(['vm2']);
    g.open();
    await w1.opsIdle();
    expect(log).toEqual(['vm2', 'vm1']);
  });

  it('a VM without a record answers no-such-vm', () => {
    expect(() => worker().require()).toThrow(/no VM with id/);
  });
});
