// Real Debian 12 test guests (systemd, udev, qemu-guest-agent; built by
// test/host/build-debian-guest.sh). Unlike the busybox guests they say nothing
// on the console: the test talks to them through their guest agent, with
// `virsh qemu-agent-command` (test infrastructure must not depend on our own
// libvirt client). How they are built and booted: test/host/README.md.

import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, TestRunner } from 'vitest';
import { domainXml } from '../host/domain-xml.js';
import { CONSOLE_DIR, GUEST_DIR, virsh } from './guest.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const DEBIAN_DIR = process.env.VMHOST_DEBIAN_DIR ?? join(REPO, '.cache/debian');
const KERNEL = join(GUEST_DIR, 'vmlinuz');
const INITRD = join(DEBIAN_DIR, 'initramfs.cpio.zst');
const READY_TIMEOUT_MS = 180_000; // ~15 s on a quiet host; generous for a loaded one
const POLL_MS = 250;

// Serial console for post-mortems (the kernel and systemd report failures
// there), a quiet kernel, and the same TCG speed-ups as the busybox guests.
const COMMON_CMDLINE = [
  'console=ttyS0',
  'quiet',
  'panic=-1',
  'nokaslr',
  'mitigations=off',
  'no_timer_check',
  'tsc=unstable',
  'i8042.noaux',
  'i8042.nokbd',
  'i8042.nopnp',
];

export interface DebianGuestOptions {
  /** Kernel command-line arguments of the recipe under test (none: Debian's defaults). */
  cmdline?: string[];
  /** Base memory (MiB), default 1024: the guest's root file system lives in it. */
  memoryMiB?: number;
  namePrefix?: string;
}

export interface ExecResult {
  exitcode: number;
  stdout: string;
  stderr: string;
}

/** One memory block as the guest's sysfs shows it. */
export interface GuestMemoryBlock {
  block: string;
  state: string;
  /** For an online block: its zone; for an offline one: the zones it could be onlined to. */
  validZones: string;
  /** The ACPI memory device (one per DIMM) it belongs to, e.g. PNP0C80:01; '' for boot memory. */
  dimm: string;
}

export interface DebianGuest {
  name: string;
  uuid: string;
  consolePath: string;
  /** Milliseconds from `virsh create` to the first answered guest-ping. */
  readyMs: number;
  /** One guest agent command; resolves with its `return` value. */
  agent<T = unknown>(execute: string, args?: Record<string, unknown>, timeoutS?: number): Promise<T>;
  /** Runs `sh -c script` in the guest (guest-exec) and waits for it to exit. */
  sh(script: string, timeoutMs?: number): Promise<ExecResult>;
  /** Like sh(), but rejects unless it exits 0. */
  shOk(script: string, timeoutMs?: number): Promise<string>;
  memTotalKiB(): Promise<number>;
  memoryBlocks(): Promise<GuestMemoryBlock[]>;
  destroy(): Promise<void>;
}

/** Throws a clear error naming the script to run if the Debian guest is not built (or stale). */
export async function debianGuestReady(): Promise<void> {
  for (const f of [KERNEL, INITRD]) {
    if (!existsSync(f)) {
      throw new Error(`test host not ready: ${f} is missing. Run: bash test/host/build-debian-guest.sh`);
    }
  }
  // A changed build script must not silently boot the old image (the script writes its own hash).
  if (process.env.VMHOST_DEBIAN_DIR) return;
  const script = await readFile(join(REPO, 'test/host/build-debian-guest.sh'));
  const stamp = await readFile(join(DEBIAN_DIR, 'script.sha256'), 'utf8').catch(() => '');
  if (stamp.trim() !== createHash('sha256').update(script).digest('hex')) {
    throw new Error(
      'test host not ready: the Debian guest is stale (test/host/build-debian-guest.sh changed). ' +
        'Run: bash test/host/build-debian-guest.sh',
    );
  }
}

/** `virsh qemu-agent-command`, parsed; rejects with virsh's error (agent not connected, timeout, command failed). */
async function agentCommand<T>(
  name: string,
  execute: string,
  args: Record<string, unknown> | undefined,
  timeoutS: number,
): Promise<T> {
  const cmd = JSON.stringify(args ? { execute, arguments: args } : { execute });
  const out = await virsh(
    ['qemu-agent-command', name, cmd, '--timeout', String(timeoutS)],
    (timeoutS + 15) * 1000,
  );
  return (JSON.parse(out) as { return: T }).return;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function startDebianGuest(opts: DebianGuestOptions = {}): Promise<DebianGuest> {
  await debianGuestReady();
  const prefix = (opts.namePrefix ?? 'deb')
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .slice(0, 32);
  const name = `vmhostd-test-${prefix}-${randomBytes(4).toString('hex')}`;
  const uuid = randomUUID();
  const consolePath = join(CONSOLE_DIR, `${name}.console.log`);
  const xmlPath = join(CONSOLE_DIR, `${name}.xml`);
  await mkdir(CONSOLE_DIR, { recursive: true });
  await writeFile(
    xmlPath,
    domainXml({
      name,
      uuid,
      kind: 'cooperative', // unused: the command line below replaces the kind's
      memoryMiB: opts.memoryMiB ?? 1024,
      maxMemoryMiB: 8192,
      slots: 16,
      bootDimmsMiB: [],
      kernelPath: KERNEL,
      initrdPath: INITRD,
      consolePath,
      cmdline: [...COMMON_CMDLINE, ...(opts.cmdline ?? [])].join(' '),
      guestAgent: true,
    }),
  );
  let destroying: Promise<void> | undefined;
  const agent = <T>(execute: string, args?: Record<string, unknown>, timeoutS = 10): Promise<T> =>
    agentCommand<T>(name, execute, args, timeoutS);

  const sh = async (script: string, timeoutMs = 60_000): Promise<ExecResult> => {
    const { pid } = await agent<{ pid: number }>('guest-exec', {
      path: '/bin/sh',
      arg: ['-c', script],
      'capture-output': true,
    });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const st = await agent<{
        exited: boolean;
        exitcode?: number;
        'out-data'?: string;
        'err-data'?: string;
      }>('guest-exec-status', { pid });
      if (st.exited) {
        const dec = (b?: string) => (b ? Buffer.from(b, 'base64').toString('utf8') : '');
        return { exitcode: st.exitcode ?? -1, stdout: dec(st['out-data']), stderr: dec(st['err-data']) };
      }
      if (Date.now() > deadline)
        throw new Error(`guest ${name}: sh -c ${JSON.stringify(script)} still running after ${timeoutMs} ms`);
      await sleep(100);
    }
  };

  const guest: DebianGuest = {
    name,
    uuid,
    consolePath,
    readyMs: 0,
    agent,
    sh,
    async shOk(script, timeoutMs) {
      const r = await sh(script, timeoutMs);
      if (r.exitcode !== 0) {
        throw new Error(
          `guest ${name}: sh -c ${JSON.stringify(script)} exited ${r.exitcode}: ${r.stderr || r.stdout}`,
        );
      }
      return r.stdout;
    },
    async memTotalKiB() {
      const out = await guest.shOk('grep ^MemTotal: /proc/meminfo');
      const m = /MemTotal:\s+(\d+)/.exec(out);
      if (!m?.[1]) throw new Error(`guest ${name}: no MemTotal in ${JSON.stringify(out)}`);
      return Number(m[1]);
    },
    async memoryBlocks() {
      const out = await guest.shOk(
        'cd /sys/devices/system/memory && for b in memory*; do ' +
          'fw=$(readlink $b/firmware_node 2>/dev/null); ' +
          'echo "$b|$(cat $b/state)|$(cat $b/valid_zones 2>/dev/null)|$fw"; done',
      );
      return out
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          const [block = '', state = '', validZones = '', fw = ''] = line.split('|');
          return { block, state, validZones, dimm: fw.split('/').pop() ?? '' };
        });
    },
    destroy() {
      destroying ??= (async () => {
        await virsh(['destroy', name]).catch(ignoreGone);
        await rm(xmlPath, { force: true });
        if (!process.env.VMHOST_KEEP_CONSOLE) await rm(consolePath, { force: true });
      })();
      return destroying;
    },
  };

  const t0 = Date.now();
  try {
    await virsh(['create', xmlPath]);
    // Ready = the agent answers (until then libvirt fails at once: "agent is not connected").
    for (;;) {
      try {
        await agent('guest-ping', undefined, 2);
        break;
      } catch (err) {
        if (Date.now() - t0 > READY_TIMEOUT_MS) throw err;
        await sleep(POLL_MS);
      }
    }
    guest.readyMs = Date.now() - t0;
  } catch (err) {
    const tail = (await readFile(consolePath, 'latin1').catch(() => '')).split('\n').slice(-20).join('\n');
    await guest.destroy();
    const why = err instanceof Error ? err.message : String(err);
    throw new Error(`Debian guest ${name} failed to become ready: ${why}\nconsole tail:\n${tail}`);
  }
  return guest;
}

function ignoreGone(err: unknown): void {
  const msg = err instanceof Error ? err.message : String(err);
  if (/not found|not running|no domain|failed to get domain/i.test(msg)) return;
  throw err;
}

/** Vitest helper: as useGuests() (test/helpers/guest.ts), for Debian guests. */
export function useDebianGuests(): { start(opts?: DebianGuestOptions): Promise<DebianGuest> } {
  const perTest = new Set<Promise<DebianGuest>>();
  const perFile = new Set<Promise<DebianGuest>>();
  const destroyAll = async (set: Set<Promise<DebianGuest>>): Promise<void> => {
    const starts = [...set];
    set.clear();
    await Promise.all(starts.map(async (p) => (await p.catch(() => undefined))?.destroy()));
  };
  afterEach(() => destroyAll(perTest));
  afterAll(() => destroyAll(perFile));
  return {
    start(opts) {
      const p = startDebianGuest(opts);
      (TestRunner.getCurrentTest() ? perTest : perFile).add(p);
      return p;
    },
  };
}
