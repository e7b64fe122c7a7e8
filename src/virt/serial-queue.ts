// One serial worker per key (per VM), like kubelet's pod workers: operations
// on one key never interleave, different keys run in parallel, and a worker
// is dropped as soon as it is idle.

interface Worker {
  tail: Promise<void>;
  pending: number;
}

export class SerialQueue {
  private readonly workers = new Map<string, Worker>();

  /** Runs `op` after every operation queued before it on `key`. */
  run<T>(key: string, op: () => Promise<T>): Promise<T> {
    let w = this.workers.get(key);
    if (!w) {
      w = { tail: Promise.resolve(), pending: 0 };
      this.workers.set(key, w);
    }
    const worker = w;
    worker.pending++;
    const result = worker.tail.then(op);
    worker.tail = result.then(
      () => this.done(key, worker),
      () => this.done(key, worker),
    );
    return result;
  }

  private done(key: string, worker: Worker): void {
    worker.pending--;
    if (worker.pending === 0 && this.workers.get(key) === worker) this.workers.delete(key);
  }

  /** Operations queued or running on `key`. */
  pending(key: string): number {
    return this.workers.get(key)?.pending ?? 0;
  }

  /** Keys with a live worker. */
  get size(): number {
    return this.workers.size;
  }

  /** Resolves when every operation queued so far has settled. */
  async drain(): Promise<void> {
    while (this.workers.size > 0) {
      await Promise.all([...this.workers.values()].map((w) => w.tail));
    }
  }
}
