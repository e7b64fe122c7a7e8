// The README's guest recipes, each on a real Debian 12 guest (systemd, udev,
// qemu-guest-agent; test/helpers/debian-guest.ts) through the daemon: plug
// two DIMMs, load the guest (user memory into the DIMMs, kernel objects into
// whatever kernel zone has room), unplug one. Each asserts what really
// happens — removed, refused by the pre-flight / rejected by the guest, or
// never onlined — and that the zone the daemon reports (VmStats guest.zone,
// the pre-flight's answer) is the one the guest's sysfs shows. The README's
// "Guest requirements" say only what these tests show.
//
// Recipes that need a running guest's change (a udev rule) share a boot with
// the recipe before them: Debian's default, then the README's udev rule;
// movable_node alone, then an onlining rule. Five boots in all.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Dimm, Stats } from '../helpers/api-types.js';
import { type DaemonProcess, startDaemon } from '../helpers/daemon.js';
import { type DebianGuest, debianGuestReady, useDebianGuests } from '../helpers/debian-guest.js';
import { TestRpcClient as Client, expectRpcError } from '../helpers/rpc-client.js';
import { waitFor } from '../helpers/wait.js';

const DIMM_MIB = 256;
const KiB_PER_MiB = 1024;
/**
 * The udev recipe exactly as the README's "Guest requirements" tell a user:
 * the file it names, the rule in its code block, then the command it gives.
 */
function readmeUdevRecipe(): { path: string; rule: string; command: string } {
  const readme = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '../../README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Guest requirements'), readme.indexOf('## Try it'));
  const m = /as a file in the guest, `([^`]+)`:\s*```\n([^\n]+)\n```\s*then, in the guest, `([^`]+)`/.exec(
    section,
  );
  if (!m) throw new Error("README's Guest requirements: the udev recipe is not where this test reads it");
  return { path: m[1]!, rule: m[2]!, command: m[3]! };
}
const README_UDEV = readmeUdevRecipe();
/** An onlining rule that names no zone: the kernel's default zone decides (movable under movable_node). */
const ONLINE_RULE = 'SUBSYSTEM=="memory", ACTION=="add", ATTR{state}=="offline", ATTR{state}="online"';

let daemon: DaemonProcess;
let c: Client;
let dir: string;
const timings: Record<string, number> = {};

beforeAll(async () => {
  await debianGuestReady();
  dir = mkdtempSync(join(tmpdir(), 'vmhostd-rcp-'));
  const config = join(dir, 'vmhostd.toml');
  // Probed every second: the test waits for the daemon's answer to match the guest's sysfs.
  writeFileSync(config, '[guest]\nprobe_interval = 1\n');
  daemon = await startDaemon({
    domainPrefix: 'vmhostd-test-rcp-',
    unplugTimeoutS: 60,
    // Debug: the operation steps (a pre-flight refusal must show no 'detach requested').
    args: ['--config', config, '--log-level', 'debug'],
  });
  c = await Client.connect(daemon.url);
});
afterAll(async () => {
  await c?.close();
  await daemon?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  // The matrix's cost, for the closing note (one line per boot).
  console.info(`guest recipes, seconds per boot: ${JSON.stringify(timings)}`);
});

const guests = useDebianGuests();

async function stats(vmId: string): Promise<Stats> {
  const [s] = await c.call<Stats[]>('VM.getStats', { vmID: vmId });
  return s!;
}

/** Waits for the daemon to know the VM (it sees the boot through libvirt's events). */
function known(g: DebianGuest): Promise<Stats> {
  return waitFor(`the daemon to know ${g.name}`, async () =>
    (await c.call<Stats[]>('Host.getAllVmStats', {})).find((s) => s.vmId === g.uuid),
  );
}

async function plug(g: DebianGuest): Promise<Dimm> {
  const before = new Set((await stats(g.uuid)).memoryDevices.map((d) => d.alias));
  const s = await c.call<Stats>('VM.hotplugMemory', {
    vmID: g.uuid,
    params: { vmId: g.uuid, memory: { size: DIMM_MIB, node: 0 } },
  });
  const d = s.memoryDevices.find((x) => !before.has(x.alias));
  if (!d) throw new Error('hot plug returned no new DIMM');
  return d;
}

const unplug = (g: DebianGuest, d: Dimm, force = false) =>
  c.call<{ status: string; memSize: number }>('VM.hotunplugMemory', {
    vmID: g.uuid,
    params: { vmId: g.uuid, memory: { size: d.size, node: d.node, alias: d.alias } },
    timeout: 60,
    ...(force ? { force: true } : {}),
  });

/** The guest's memory block names of a DIMM (memoryN), from its base address and the guest's block size. */
async function blocksOf(g: DebianGuest, d: Dimm): Promise<string[]> {
  const size = BigInt(`0x${(await g.shOk('cat /sys/devices/system/memory/block_size_bytes')).trim()}`);
  const first = BigInt(d.base) / size;
  const n = (BigInt(d.size) * 1024n * 1024n) / size;
  return Array.from({ length: Number(n) }, (_, i) => `memory${first + BigInt(i)}`);
}

/** Per block of the DIMM: 'offline' or the zone sysfs names (valid_zones of an online block). */
async function sysfsZones(g: DebianGuest, d: Dimm): Promise<string[]> {
  const want = await blocksOf(g, d);
  const all = new Map((await g.memoryBlocks()).map((b) => [b.block, b]));
  return want.map((b) => {
    const blk = all.get(b);
    if (!blk) return 'absent';
    return blk.state === 'online' ? (blk.validZones.split(/\s+/)[0] ?? '') : 'offline';
  });
}

/** The zone the daemon's probe must report for those blocks (guest-memory.ts's classify). */
function expectedZone(zones: string[]): string {
  const online = zones.filter((z) => z !== 'offline');
  if (online.length === 0) return 'offline';
  const kinds = new Set(online.map((z) => (z === 'Movable' ? 'movable' : 'normal')));
  return kinds.size > 1 ? 'mixed' : [...kinds][0]!;
}

/** Waits until the guest has dealt with the DIMMs' blocks (onlined them, or udev has settled leaving them offline). */
async function settled(g: DebianGuest, dimms: Dimm[]): Promise<string[][]> {
  return waitFor(
    'the guest to add the DIMMs',
    async () => {
      await g.shOk('udevadm settle --timeout=30');
      const zones = await Promise.all(dimms.map((d) => sysfsZones(g, d)));
      return zones.every((z) => !z.includes('absent')) ? zones : undefined;
    },
    90_000,
    500,
  );
}

/** Waits for the daemon's background probe to report, per DIMM, the zone sysfs shows. */
async function daemonSees(g: DebianGuest, dimms: Dimm[], zones: string[][]): Promise<void> {
  const want = Object.fromEntries(dimms.map((d, i) => [d.alias, expectedZone(zones[i]!)]));
  await waitFor(
    `VmStats guest zones ${JSON.stringify(want)}`,
    async () => {
      const s = await stats(g.uuid);
      const got = Object.fromEntries(
        s.memoryDevices.filter((d) => d.alias in want).map((d) => [d.alias, d.guest?.zone]),
      );
      return JSON.stringify(got) === JSON.stringify(want);
    },
    30_000,
    200,
  );
}

/**
 * Loads the guest: a tmpfs file (user memory, movable: it lands in the new
 * DIMMs when they are movable or normal), then kernel objects (dentries and
 * inodes of empty directories on a ramfs, unmovable) allocated while a ramfs
 * filler has eaten ZONE_NORMAL's free memory down to 32 MiB, so they land in
 * the DIMMs if the DIMMs are ZONE_NORMAL (with 1 GiB of base memory, ZONE_NORMAL
 * is only hot-plugged memory). Where the target's blocks are ZONE_NORMAL the
 * pin is verified as the busybox rejecting guest does: offline the blocks
 * ourselves; if they all go, the pin missed: online them again
 * (online_kernel) and retry with more directories.
 */
async function load(g: DebianGuest, target: Dimm): Promise<string> {
  const blocks = (await blocksOf(g, target)).join(' ');
  const script = `
set -u
dd if=/dev/zero of=/dev/shm/user bs=1M count=${DIMM_MIB} 2>/dev/null
mkdir -p /fill /pins
mountpoint -q /fill || mount -t ramfs ramfs /fill
normal() { awk '/^Node .*zone +Normal/{z=1;next} /^Node/{z=0} z&&/pages free/{f=$3} z&&$1=="high"{h=$2} END{print f*4+0, h*4+0}' /proc/zoneinfo; }
verify=0
for b in ${blocks}; do
  case "$(cat /sys/devices/system/memory/$b/valid_zones 2>/dev/null)" in Normal*) verify=1 ;; esac
done
n=4000; tries=0; pinned=
while [ $tries -lt 8 ]; do
  tries=$((tries + 1))
  set -- $(normal)
  fill=$((($1 - $2 - 32768) / 1024))
  [ $fill -gt 0 ] && dd if=/dev/zero of=/fill/f bs=1M count=$fill 2>/dev/null
  mkdir -p /pins/$tries && (cd /pins/$tries && seq 1 $n | xargs mkdir)
  rm -f /fill/f
  [ $verify = 1 ] || break
  for b in ${blocks}; do
    if ! echo offline >/sys/devices/system/memory/$b/state 2>/dev/null; then pinned=$b; break; fi
  done
  for b in ${blocks}; do
    [ "$(cat /sys/devices/system/memory/$b/state)" = offline ] && echo online_kernel >/sys/devices/system/memory/$b/state
  done
  [ -n "$pinned" ] && break
  n=$((n * 2))
done
echo "tries=$tries verify=$verify pinned=$pinned"
`;
  return (await g.shOk(script, 170_000)).trim();
}

/** Plug two DIMMs, wait for the guest and the daemon to agree on their zones, load the guest. */
async function plugTwo(g: DebianGuest): Promise<{ dimms: Dimm[]; zones: string[][]; memTotal0: number }> {
  const memTotal0 = await g.memTotalKiB();
  const dimms = [await plug(g), await plug(g)];
  const zones = await settled(g, dimms);
  await daemonSees(g, dimms, zones);
  return { dimms, zones, memTotal0 };
}

/** The unplug of the first DIMM succeeds, and the guest's memory shrinks by it (if it was onlined). */
async function expectRemoved(g: DebianGuest, dimms: Dimm[], onlined: boolean): Promise<void> {
  const [victim] = dimms as [Dimm];
  const memTotal = await g.memTotalKiB();
  const zone = expectedZone(await sysfsZones(g, victim));
  const mark = daemon.logs.length;
  await expect(unplug(g, victim)).resolves.toMatchObject({ status: 'removed' });
  // The pre-flight asked the guest afresh and got the zone sysfs shows.
  expect(await logAfter(mark, 'guest probed', victim.alias)).toMatchObject({ zone });
  expect((await stats(g.uuid)).memoryDevices.map((d) => d.alias)).not.toContain(victim.alias);
  const after = await waitFor(
    'MemTotal to settle after the removal',
    async () => {
      const k = await g.memTotalKiB();
      return onlined ? (k < memTotal ? k : undefined) : k;
    },
    30_000,
    250,
  );
  if (onlined) expect(memTotal - after).toBe(DIMM_MIB * KiB_PER_MiB);
  else expect(after).toBe(memTotal);
  expect(await sysfsZones(g, victim)).toEqual((await blocksOf(g, victim)).map(() => 'absent'));
}

/** The daemon's first log line `msg` about `alias` after line `mark` (stdout may lag behind the reply). */
function logAfter(mark: number, msg: string, alias: string) {
  return daemon.waitForLog(
    (l) => l.msg === msg && l.alias === alias && daemon.logs.indexOf(l) >= mark,
    10_000,
  );
}

async function boot(name: string, cmdline: string[]): Promise<DebianGuest> {
  const g = await guests.start({ namePrefix: `rcp-${name}`, cmdline });
  await known(g);
  return g;
}

function timed<T>(name: string, fn: () => Promise<T>): () => Promise<T> {
  return async () => {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      timings[name] = Math.round((performance.now() - t0) / 100) / 10;
    }
  };
}

describe('guest recipes on a real Debian 12 guest, through the daemon', () => {
  it(
    'memhp_default_state=online_movable: onlined movable, removed under load',
    timed('online_movable', async () => {
      const g = await boot('movable', ['memhp_default_state=online_movable']);
      const { dimms, zones, memTotal0 } = await plugTwo(g);
      expect(zones).toEqual([
        ['Movable', 'Movable'],
        ['Movable', 'Movable'],
      ]);
      expect(await g.memTotalKiB()).toBe(memTotal0 + 2 * DIMM_MIB * KiB_PER_MiB);
      expect(await load(g, dimms[0]!)).toMatch(/verify=0/);
      await expectRemoved(g, dimms, true);
    }),
  );

  it(
    "Debian's default: never onlined (the unplug removes an unused DIMM); then the README's udev rule: movable, removed",
    timed('default + udev rule', async () => {
      const g = await boot('default', []);
      const first = await plugTwo(g);
      expect(first.zones).toEqual([
        ['offline', 'offline'],
        ['offline', 'offline'],
      ]);
      expect(await g.memTotalKiB()).toBe(first.memTotal0);
      await expectRemoved(g, first.dimms, false);

      // As the README tells a user: the rule into the file it names, then its command.
      expect(README_UDEV.command).toBe('udevadm control --reload');
      await g.shOk(`printf '%s\\n' '${README_UDEV.rule}' > ${README_UDEV.path} && ${README_UDEV.command}`);
      const second = await plugTwo(g);
      expect(second.zones).toEqual([
        ['Movable', 'Movable'],
        ['Movable', 'Movable'],
      ]);
      expect(await load(g, second.dimms[0]!)).toMatch(/verify=0/);
      await expectRemoved(g, second.dimms, true);
    }),
  );

  it(
    'movable_node alone: never onlined; with an onlining rule (state=online): movable, removed',
    timed('movable_node (+ rule)', async () => {
      const g = await boot('movnode', ['movable_node']);
      const first = await plugTwo(g);
      expect(first.zones.flat()).toEqual(['offline', 'offline', 'offline', 'offline']);
      expect(await g.memTotalKiB()).toBe(first.memTotal0);
      await expectRemoved(g, first.dimms, false);

      // The same steps as the README's rule (udevd rereads rules only when it next checks).
      await g.shOk(
        `printf '%s\\n' '${ONLINE_RULE}' > /etc/udev/rules.d/99-online-memory.rules && udevadm control --reload`,
      );
      const second = await plugTwo(g);
      expect(second.zones.flat()).toEqual(['Movable', 'Movable', 'Movable', 'Movable']);
      expect(await load(g, second.dimms[0]!)).toMatch(/verify=0/);
      await expectRemoved(g, second.dimms, true);
    }),
  );

  it(
    'memory_hotplug.online_policy=auto-movable with memhp_default_state=online: movable, removed',
    timed('auto-movable + online', async () => {
      const g = await boot('automov', [
        'memhp_default_state=online',
        'memory_hotplug.online_policy=auto-movable',
      ]);
      const { dimms, zones } = await plugTwo(g);
      expect(zones.flat()).toEqual(['Movable', 'Movable', 'Movable', 'Movable']);
      expect(await load(g, dimms[0]!)).toMatch(/verify=0/);
      await expectRemoved(g, dimms, true);
    }),
  );

  it(
    'memhp_default_state=online alone: ZONE_NORMAL; the pre-flight refuses (85 not-movable) without touching the VM; forced, the guest rejects',
    timed('online', async () => {
      const g = await boot('online', ['memhp_default_state=online']);
      const { dimms, zones } = await plugTwo(g);
      expect(zones.flat()).toEqual(['Normal', 'Normal', 'Normal', 'Normal']);
      const target = dimms[0]!;
      expect(await load(g, target)).toMatch(/pinned=memory\d+/);
      const mark = daemon.logs.length;
      const e = await expectRpcError(unplug(g, target));
      expect(e.code).toBe(85);
      expect(e.error.data).toMatchObject({ reason: 'not-movable', alias: target.alias, zone: 'normal' });
      expect(await logAfter(mark, 'guest probed', target.alias)).toMatchObject({ zone: 'normal' });
      expect((await stats(g.uuid)).memoryDevices.find((d) => d.alias === target.alias)?.state).toBe(
        'plugged',
      );
      const forced = await expectRpcError(unplug(g, target, true));
      expect(forced.code).toBe(85);
      expect(forced.error.data).toMatchObject({ reason: 'guest-rejected' });
      // Not touched by the refused call: the only detach sent since is the forced one (log lines keep their order).
      await logAfter(mark, 'detach requested', target.alias);
      const detaches = daemon.logs
        .slice(mark)
        .filter((l) => l.msg === 'detach requested' && l.alias === target.alias);
      expect(detaches).toHaveLength(1);
      expect(await sysfsZones(g, target)).toEqual(['Normal', 'Normal']);
    }),
  );
});
