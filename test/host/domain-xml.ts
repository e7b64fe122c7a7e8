// Domain XML for the test guests, built from typed options. Kept apart from
// src/: test infrastructure must not depend on the code it tests.

export type GuestKind = 'cooperative' | 'rejecting' | 'silent' | 'virtio-mem' | 'virtio-mem-rejecting';

/** A virtio-mem device present at boot (MiB). */
export interface VirtioMemSpec {
  alias: string;
  /** Maximum size. */
  sizeMiB: number;
  requestedMiB: number;
  /** Default 2. */
  blockMiB?: number;
}

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
  /** virtio-mem devices in the definition (the virtio-mem kinds load the driver). */
  virtioMem?: VirtioMemSpec[];
  kernelPath: string;
  initrdPath: string;
  consolePath: string;
  emulator?: string;
  /** Replaces the kind's kernel command line (the Debian guest's recipes). */
  cmdline?: string;
  /** A virtio-serial channel `org.qemu.guest_agent.0` for a guest agent (libvirt picks the socket). */
  guestAgent?: boolean;
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
  // /init loads the virtio-mem driver; the blocks it plugs go to ZONE_MOVABLE.
  'virtio-mem': ['memhp_default_state=online_movable'],
  // The same, but into ZONE_NORMAL with kernel objects pinned in them: a shrink stops short.
  'virtio-mem-rejecting': ['memhp_default_state=online_kernel'],
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

function nonNegativeInt(label: string, n: number): number {
  if (!Number.isInteger(n) || n < 0) throw new Error(`${label} must be a non-negative integer, got ${n}`);
  return n;
}

/** `<memory model='virtio-mem'>` for NUMA node 0 (sizes in MiB). */
export function virtioMemXml(spec: VirtioMemSpec): string {
  const block = positiveInt('virtio-mem block', spec.blockMiB ?? 2);
  return `<memory model='virtio-mem'>
  <target>
    <size unit='MiB'>${positiveInt('virtio-mem size', spec.sizeMiB)}</size>
    <node>0</node>
    <block unit='MiB'>${block}</block>
    <requested unit='MiB'>${nonNegativeInt('virtio-mem requested', spec.requestedMiB)}</requested>
  </target>
  <alias name='${escapeXml(spec.alias)}'/>
</memory>
`;
}

const AGENT_CHANNEL = `    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>`;

export function domainXml(spec: GuestDomainSpec): string {
  const base = positiveInt('memoryMiB', spec.memoryMiB);
  const dimms = spec.bootDimmsMiB.map((s) => positiveInt('boot DIMM size', s));
  const total = base + dimms.reduce((a, b) => a + b, 0);
  const max = positiveInt('maxMemoryMiB', spec.maxMemoryMiB);
  if (total > max) throw new Error(`memory ${total} MiB exceeds maxMemory ${max} MiB`);
  if (dimms.length > spec.slots) throw new Error(`${dimms.length} boot DIMMs exceed ${spec.slots} slots`);
  const e = escapeXml;
  const vmem = spec.virtioMem ?? [];
  const vmemMax = vmem.reduce((a, v) => a + positiveInt('virtio-mem size', v.sizeMiB), 0);
  if (total + vmemMax > max) throw new Error(`memory ${total + vmemMax} MiB exceeds maxMemory ${max} MiB`);
  const dimmDevices = [...dimms.map((s) => dimmXml(s)), ...vmem.map((v) => virtioMemXml(v))]
    .map((x) => x.replace(/^/gm, '    ').trimEnd())
    .join('\n');
  // machine 'pc' (i440fx): the fewest implicit devices; no USB, graphics, video,
  // network, disk or balloon. on_* destroy: a crashed guest must not reboot.
  return `<domain type='qemu'>
  <name>${e(spec.name)}</name>
  <uuid>${e(spec.uuid)}</uuid>
  <maxMemory slots='${positiveInt('slots', spec.slots)}' unit='MiB'>${max}</maxMemory>
  <memory unit='MiB'>${total + vmemMax}</memory>
  <currentMemory unit='MiB'>${total + vmemMax}</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${e(spec.kernelPath)}</kernel>
    <initrd>${e(spec.initrdPath)}</initrd>
    <cmdline>${e(spec.cmdline ?? guestCmdline(spec.kind))}</cmdline>
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
${spec.guestAgent ? AGENT_CHANNEL : ''}
${dimmDevices}
  </devices>
</domain>
`.replace(/\n\n/g, '\n');
}
