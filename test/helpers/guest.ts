// Real QEMU test guests for integration tests. Drives libvirt with `virsh` on
// purpose: the test host must not depend on our own libvirt client.
// How the host and the guest work: test/host/README.md.

import { execFile } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, type FSWatcher, watch } from 'node:fs';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, TestRunner } from 'vitest';
import { domainXml, type GuestKind, type VirtioMemSpec } from '../host/domain-xml.js';

export type { GuestKind, VirtioMemSpec } from '../host/domain-xml.js';

export interface GuestOptions {
  kind: GuestKind;
  /** Base memory (MiB), default 512. */
  memoryMiB?: number;
  /** Default 8192, with 16 slots. */
  maxMemoryMiB?: number;
  /** define + start (an inactive definition exists) instead of a transient create; destroy also undefines. */
  persistent?: boolean;
  /** DIMMs present in the definition at boot (for "not hot-plugged" tests). */
  bootDimmsMiB?: number[];
  /** virtio-mem devices in the definition (use a virtio-mem kind so the guest loads the driver). */
  virtioMem?: VirtioMemSpec[];
  namePrefix?: string;
}

export interface Guest {
  name: string;
  uuid: string;
  consolePath: string;
  /**
   * Resolves when a console line matches, rejects after timeoutMs with the console tail in the message.
   * Lines printed before the call count too, unless `onlyNew` is set.
   */
  waitForConsole(re: RegExp, timeoutMs?: number, opts?: { onlyNew?: boolean }): Promise<RegExpMatchArray>;
  /** Latest MemTotal (KiB) the guest printed. */
  memTotalKiB(): Promise<number>;
  /** Waits until the guest prints a MemTotal satisfying pred (deadline, clear error). */
  waitForMemTotal(pred: (kib: number) => boolean, timeoutMs?: number): Promise<number>;
  /** Idempotent; destroys (and undefines when persistent). */
  destroy(): Promise<void>;
}

export const LIBVIRT_URI = process.env.VMHOST_TEST_LIBVIRT_URI ?? 'qemu:///system';
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const HOST_DIR = join(REPO, 'test/host');
export const GUEST_DIR = process.env.VMHOST_GUEST_DIR ?? join(REPO, '.cache/guest');
export const CONSOLE_DIR = process.env.VMHOST_CONSOLE_DIR ?? '/var/lib/vmhostd-test';
const KERNEL = join(GUEST_DIR, 'vmlinuz');
const INITRD = join(GUEST_DIR, 'initramfs.cpio.gz');
const BOOT_TIMEOUT_MS = 90_000;
const DEFAULT_WAIT_MS = 30_000;
const POLL_MS = 100;

const READY_RE = /VMHOST-GUEST READY memtotal_kib=(\d+) blocks=(\d+)/;
const MEMTOTAL_RE = /VMHOST-GUEST (?:MEMTOTAL kib|READY memtotal_kib)=(\d+)/;

/** Runs virsh against the test libvirtd; rejects with virsh's stderr. */
export function virsh(args: string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile('virsh', ['-q', '-c', LIBVIRT_URI, ...args], { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) {
        const why = stderr.trim() || err.message;
        reject(new Error(`virsh ${args.join(' ')} failed: ${why}`));
      } else {
        resolvePromise(stdout);
      }
    });
  });
}

let readyCheck: Promise<void> | undefined;

/** Throws a clear error if libvirtd is not answering or the guest artefacts are missing or stale. */
export function hostReady(): Promise<void> {
  readyCheck ??= checkHost().catch((err: unknown) => {
    readyCheck = undefined;
    throw err;
  });
  return readyCheck;
}

async function checkHost(): Promise<void> {
  try {
    await virsh(['version'], 15_000);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new Error(
      `test host not ready: libvirtd is not answering at ${LIBVIRT_URI} (${why}). ` +
        'Run (as root): bash test/host/setup-host.sh',
    );
  }
  for (const f of [KERNEL, INITRD]) {
    if (!existsSync(f)) {
      throw new Error(`test host not ready: ${f} is missing. Run: bash test/host/build-guest.sh`);
    }
  }
  // Same key as build-guest.sh: a changed /init must not silently boot the old one.
  const key = await readFile(join(GUEST_DIR, 'initramfs.key'), 'utf8').catch(() => '');
  if (!process.env.VMHOST_GUEST_DIR) {
    const hash = createHash('sha256');
    for (const f of [join(HOST_DIR, 'guest-init.sh'), join(HOST_DIR, 'build-guest.sh'), '/bin/busybox']) {
      hash.update(await readFile(f));
    }
    if (key.trim() !== hash.digest('hex')) {
      throw new Error(
        'test host not ready: the guest initramfs is stale (test/host changed). ' +
          'Run: bash test/host/build-guest.sh',
      );
    }
  }
}

/** Follows the serial-console file: new bytes are read on inotify events and on a short poll. */
class ConsoleFollower {
  readonly lines: string[] = [];
  private offset = 0;
  private partial = '';
  private reading: Promise<void> | undefined;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<() => void>();

  constructor(readonly path: string) {}

  start(): void {
    this.timer = setInterval(() => void this.refresh(), POLL_MS);
    this.timer.unref();
    try {
      this.watcher = watch(this.path, () => void this.refresh());
      this.watcher.on('error', () => this.watcher?.close());
    } catch {
      // The poll alone still works.
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.watcher?.close();
    this.listeners.clear();
  }

  /** Reads whatever was appended since the last read; concurrent calls share one read. */
  refresh(): Promise<void> {
    this.reading ??= this.readNew().finally(() => {
      this.reading = undefined;
    });
    return this.reading;
  }

  private async readNew(): Promise<void> {
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(this.path, 'r');
    } catch {
      return;
    }
    try {
      const buf = Buffer.alloc(64 * 1024);
      let grew = false;
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
        if (bytesRead === 0) break;
        this.offset += bytesRead;
        this.partial += buf.subarray(0, bytesRead).toString('latin1');
        grew = true;
      }
      if (!grew) return;
      const parts = this.partial.split(/\r?\n/);
      this.partial = parts.pop() ?? '';
      if (parts.length === 0) return;
      this.lines.push(...parts.map((l) => l.replace(/\r/g, '')));
      for (const l of [...this.listeners]) l();
    } finally {
      await fh.close();
    }
  }

  /** Calls check() now and after every new batch of lines until it returns a value or the deadline passes. */
  waitFor<T>(check: () => T | undefined, timeoutMs: number, describe: () => string): Promise<T> {
    return new Promise<T>((resolvePromise, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const listener = (): void => {
        let value: T | undefined;
        try {
          value = check();
        } catch (err) {
          done();
          reject(err);
          return;
        }
        if (value !== undefined) {
          done();
          resolvePromise(value);
        }
      };
      const done = (): void => {
        this.listeners.delete(listener);
        if (timer) clearTimeout(timer);
      };
      timer = setTimeout(() => {
        done();
        reject(
          new Error(`${describe()} within ${timeoutMs} ms; console tail (${this.path}):\n${this.tail()}`),
        );
      }, timeoutMs);
      this.listeners.add(listener);
      void this.refresh().then(listener);
    });
  }

  tail(n = 20): string {
    const lines = [...this.lines, ...(this.partial ? [this.partial] : [])];
    return lines.slice(-n).join('\n') || '(empty)';
  }
}

function lastMemTotal(lines: readonly string[]): number | undefined {
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = MEMTOTAL_RE.exec(lines[i] ?? '');
    if (m?.[1]) return Number(m[1]);
  }
  return undefined;
}

function sanitizePrefix(prefix: string | undefined): string {
  const p = (prefix ?? 'guest')
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return (p || 'guest').slice(0, 32);
}

const live = new Set<Guest>();

/** Starts a guest and resolves once its readiness line is on the console (deadline ~90 s). */
export async function startGuest(opts: GuestOptions): Promise<Guest> {
  await hostReady();
  const name = `vmhostd-test-${sanitizePrefix(opts.namePrefix)}-${randomBytes(4).toString('hex')}`;
  const uuid = randomUUID();
  const consolePath = join(CONSOLE_DIR, `${name}.console.log`);
  const xmlPath = join(CONSOLE_DIR, `${name}.xml`);
  await mkdir(CONSOLE_DIR, { recursive: true });
  await writeFile(
    xmlPath,
    domainXml({
      name,
      uuid,
      kind: opts.kind,
      memoryMiB: opts.memoryMiB ?? 512,
      maxMemoryMiB: opts.maxMemoryMiB ?? 8192,
      slots: 16,
      bootDimmsMiB: opts.bootDimmsMiB ?? [],
      ...(opts.virtioMem ? { virtioMem: opts.virtioMem } : {}),
      kernelPath: KERNEL,
      initrdPath: INITRD,
      consolePath,
    }),
  );
  const persistent = opts.persistent ?? false;
  const follower = new ConsoleFollower(consolePath);
  let destroying: Promise<void> | undefined;

  const guest: Guest = {
    name,
    uuid,
    consolePath,
    async waitForConsole(re, timeoutMs = DEFAULT_WAIT_MS, waitOpts) {
      await follower.refresh();
      let from = waitOpts?.onlyNew ? follower.lines.length : 0;
      return follower.waitFor(
        () => {
          for (; from < follower.lines.length; from++) {
            const m = (follower.lines[from] ?? '').match(re);
            if (m) return m;
          }
          return undefined;
        },
        timeoutMs,
        () => `guest ${name}: no console line matched ${re}`,
      );
    },
    async memTotalKiB() {
      await follower.refresh();
      const kib = lastMemTotal(follower.lines);
      if (kib === undefined) {
        throw new Error(`guest ${name} printed no MemTotal yet; console tail:\n${follower.tail()}`);
      }
      return kib;
    },
    waitForMemTotal(pred, timeoutMs = DEFAULT_WAIT_MS) {
      return follower.waitFor(
        () => {
          const kib = lastMemTotal(follower.lines);
          return kib !== undefined && pred(kib) ? kib : undefined;
        },
        timeoutMs,
        () =>
          `guest ${name}: MemTotal never satisfied ${pred.toString()} (last ${lastMemTotal(follower.lines)} KiB)`,
      );
    },
    destroy() {
      destroying ??= (async () => {
        follower.stop();
        live.delete(guest);
        await virsh(['destroy', name]).catch(ignoreGone);
        if (persistent) await virsh(['undefine', name]).catch(ignoreGone);
        await rm(xmlPath, { force: true });
        if (!process.env.VMHOST_KEEP_CONSOLE) await rm(consolePath, { force: true });
      })();
      return destroying;
    },
  };

  live.add(guest);
  try {
    if (persistent) {
      await virsh(['define', xmlPath]);
      await virsh(['start', name]);
    } else {
      await virsh(['create', xmlPath]);
    }
    follower.start();
    await guest.waitForConsole(READY_RE, BOOT_TIMEOUT_MS);
  } catch (err) {
    const tail = follower.tail();
    await guest.destroy();
    const why = err instanceof Error ? err.message : String(err);
    throw new Error(
      `guest ${name} (${opts.kind}) failed to start: ${why}${why.includes('console tail') ? '' : `\nconsole tail:\n${tail}`}`,
    );
  }
  return guest;
}

function ignoreGone(err: unknown): void {
  const msg = err instanceof Error ? err.message : String(err);
  if (/not found|not running|no domain|failed to get domain/i.test(msg)) return;
  throw err;
}

/**
 * Vitest helper: guests started inside a test (or its beforeEach) are destroyed after that test,
 * guests started in beforeAll after the file; both also when the test fails.
 */
export function useGuests(): { start(opts: GuestOptions): Promise<Guest> } {
  // Starts are tracked while pending too: a test that times out mid-boot must not leak its guest.
  const perTest = new Set<Promise<Guest>>();
  const perFile = new Set<Promise<Guest>>();
  const destroyAll = async (set: Set<Promise<Guest>>): Promise<void> => {
    const starts = [...set];
    set.clear();
    const results = await Promise.allSettled(
      starts.map(async (p) => {
        const guest = await p.catch(() => undefined); // a failed start already cleaned up
        await guest?.destroy();
      }),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  };
  afterEach(() => destroyAll(perTest));
  afterAll(() => destroyAll(perFile));
  return {
    start(opts) {
      const p = startGuest(opts);
      (TestRunner.getCurrentTest() ? perTest : perFile).add(p);
      return p;
    },
  };
}

/** Destroys every guest this process started and has not destroyed yet (for non-vitest scripts). */
export async function destroyAllGuests(): Promise<void> {
  await Promise.allSettled([...live].map((g) => g.destroy()));
}
