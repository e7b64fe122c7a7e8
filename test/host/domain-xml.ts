// Domain XML for the test guests, built from typed options. Kept apart from
// src/: test infrastructure must not depend on the code it tests.

export type GuestKind = 'cooperative' | 'rejecting' | 'silent';

export interface GuestDomainSpec {
  name: string;
  uuid: string;
  kind: GuestKind;
  /** Base memory (the NUMA cell), MiB. */
  memoryMiB: number;
  maxMemoryMiB: number;
  slots: number;
  /** DIMMs present in the definition at boot, MiB each. */
  bootDimmsMiB: number[];
  kernelPath: string;
  initrdPath: string;
  consolePath: string;
  emulator?: string;
}

// Kernel command line per kind. All share: serial console, a quiet kernel (its
// messages would interleave with our protocol lines), and TCG speed-ups
// (no KASLR/mitigations, skip timer checks, no PS/2 probing). THP off keeps
// min_free_kbytes small, which the rejecting guest's pinning relies on.
const COMMON_CMDLINE = [
  'console=ttyS0',
  'quiet',
  'loglevel=1',
  'panic=-1',
  'transparent_hugepage=never',
  'nokaslr',
  'mitigations=off',
  'no_timer_check',
  'tsc=unstable',
  'i8042.noaux',
  'i8042.nokbd',
  'i8042.nopnp',
];

const KIND_CMDLINE: Record<GuestKind, string[]> = {
  // Hot-plugged blocks go to ZONE_MOVABLE: the guest can always release them.
  cooperative: ['memhp_default_state=online_movable'],
  // Hot-plugged blocks go to ZONE_NORMAL and /init pins kernel objects in them.
  rejecting: ['memhp_default_state=online_kernel'],
  // No ACPI in the guest: it never sees hotplug requests, so it never answers.
  silent: ['acpi=off', 'memhp_default_state=online_movable'],
};

export function guestCmdline(kind: GuestKind): string {
  return [...COMMON_CMDLINE, ...KIND_CMDLINE[kind], `vmhost.kind=${kind}`].join(' ');
}

const XML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
};

export function escapeXml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => XML_ESCAPES[c] ?? c);
}

function positiveInt(label: string, n: number): number {
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${label} must be a positive integer, got ${n}`);
  return n;
}

/** `<memory model='dimm'>` for NUMA node 0, as the guest helpers and the canary attach it. */
export function dimmXml(sizeMiB: number, alias?: string): string {
  const aliasXml = alias === undefined ? '' : `\n  <alias name='${escapeXml(alias)}'/>`;
  return `<memory model='dimm'>
  <target>
    <size unit='MiB'>${positiveInt('DIMM size', sizeMiB)}</size>
    <node>0</node>
  </target>${aliasXml}
</memory>
`;
}

export function domainXml(spec: GuestDomainSpec): string {
  const base = positiveInt('memoryMiB', spec.memoryMiB);
  const dimms = spec.bootDimmsMiB.map((s) => positiveInt('boot DIMM size', s));
  const total = base + dimms.reduce((a, b) => a + b, 0);
  const max = positiveInt('maxMemoryMiB', spec.maxMemoryMiB);
  if (total > max) throw new Error(`memory ${total} MiB exceeds maxMemory ${max} MiB`);
  if (dimms.length > spec.slots) throw new Error(`${dimms.length} boot DIMMs exceed ${spec.slots} slots`);
  const e = escapeXml;
  const dimmDevices = dimms.map((s) => dimmXml(s).replace(/^/gm, '    ').trimEnd()).join('\n');
  // machine 'pc' (i440fx): the fewest implicit devices; no USB, graphics, video,
  // network, disk or balloon. on_* destroy: a crashed guest must not reboot.
  return `<domain type='qemu'>
  <name>${e(spec.name)}</name>
  <uuid>${e(spec.uuid)}</uuid>
  <maxMemory slots='${positiveInt('slots', spec.slots)}' unit='MiB'>${max}</maxMemory>
  <memory unit='MiB'>${total}</memory>
  <currentMemory unit='MiB'>${total}</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${e(spec.kernelPath)}</kernel>
    <initrd>${e(spec.initrdPath)}</initrd>
    <cmdline>${e(guestCmdline(spec.kind))}</cmdline>
  </os>
  <features>
    <acpi/>
  </features>
  <cpu mode='custom' match='exact' check='none'>
    <model fallback='forbid'>qemu64</model>
    <numa>
      <cell id='0' cpus='0' memory='${base}' unit='MiB'/>
    </numa>
  </cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>${e(spec.emulator ?? '/usr/bin/qemu-system-x86_64')}</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='${e(spec.consolePath)}'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
${dimmDevices}
  </devices>
</domain>
`.replace(/\n\n/g, '\n');
}
