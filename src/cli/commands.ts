// The friendly verbs and raw calls of vmhost-client, over a connected client.

import type { Command, GlobalOptions } from './args.js';
import { ConnectError, EXIT, OperationError } from './errors.js';
import { hintForReason } from './explain.js';
import { Progress, type Writable } from './progress.js';
import type { Notification, RpcClient } from './rpc-client.js';
import { formatMiB } from './size.js';
import { renderStatus, toStatus } from './status-view.js';
import {
  renderDimms,
  renderEvent,
  renderVmList,
  renderVmShow,
  statusEventStats,
  toVmList,
  toVmStats,
  toVmStatsResult,
  type VmStats,
} from './view.js';

export interface CliIo {
  stdout: Writable;
  stderr: Writable;
  now?: () => number;
  /** Resolves when the user asks to stop (Ctrl-C) a following command. */
  interrupted?: Promise<void>;
  /** Asks a yes/no question; present only when the CLI runs on a terminal. */
  confirm?: (question: string) => Promise<boolean>;
}

const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
/** Plug and unplug wait on the guest; their deadline is the daemon's, not ours. */
const NO_CLIENT_TIMEOUT = 0;

function json(v: unknown): string {
  return `${JSON.stringify(v, null, 2)}\n`;
}

/** VM by UUID or by name (through Host.getVMList). */
export async function resolveVm(client: RpcClient, vm: string): Promise<{ vmId: string; vmName: string }> {
  if (UUID_RE.test(vm)) return { vmId: vm.toLowerCase(), vmName: vm };
  const list = toVmList(await client.call('Host.getVMList', { fullStatus: true }));
  const hit = list.find((v) => v.vmName === vm);
  if (!hit) {
    const known = list.map((v) => v.vmName).sort();
    throw new OperationError(
      `no VM named "${vm}" on this host`,
      known.length > 0 ? `known VMs: ${known.join(', ')}` : 'the host has no VMs',
    );
  }
  return hit;
}

export async function runCommand(
  client: RpcClient,
  command: Command,
  global: GlobalOptions,
  io: CliIo,
): Promise<number> {
  const out = io.stdout;
  switch (command.kind) {
    case 'raw': {
      const result = await client.call(command.method, command.params, NO_CLIENT_TIMEOUT);
      out.write(json(result));
      return EXIT.OK;
    }
    case 'vm-list': {
      const all = (await client.call('Host.getAllVmStats')) as unknown;
      out.write(global.json ? json(all) : renderVmList((Array.isArray(all) ? all : []).map(toVmStats)));
      return EXIT.OK;
    }
    case 'vm-show': {
      const { vmId } = await resolveVm(client, command.vm);
      // The friendly verb shows the one VmStats record (the raw call prints VDSM's list).
      const result = await client.call('VM.getStats', { vmID: vmId });
      const one: unknown = Array.isArray(result) ? result[0] : result;
      out.write(global.json ? json(one) : renderVmShow(toVmStatsResult(one)));
      return EXIT.OK;
    }
    case 'vm-plug':
      return plug(client, command, global, io);
    case 'vm-unplug':
      return unplug(client, command, global, io);
    case 'vm-resize':
      return resize(client, command, global, io);
    case 'vm-set-memory':
      return setMemory(client, command, global, io);
    case 'events':
      return events(client, command, global, io);
    case 'status': {
      const st = await client.call('Host.getStatus');
      out.write(global.json ? json(st) : renderStatus(toStatus(st), (io.now ?? Date.now)()));
      return EXIT.OK;
    }
    case 'help':
    case 'version':
      return EXIT.OK;
  }
}

async function plug(
  client: RpcClient,
  c: Extract<Command, { kind: 'vm-plug' }>,
  global: GlobalOptions,
  io: CliIo,
): Promise<number> {
  const { vmId } = await resolveVm(client, c.vm);
  const before = toVmStatsResult(await client.call('VM.getStats', { vmID: vmId }));
  const memory: Record<string, unknown> = { size: c.sizeMiB, node: c.node };
  if (c.alias !== undefined) memory.alias = c.alias;
  const params: Record<string, unknown> = { vmId, memory };
  if (c.guaranteedMiB !== undefined) params.memGuaranteedSize = c.guaranteedMiB;
  const result = await client.call('VM.hotplugMemory', { vmID: vmId, params }, NO_CLIENT_TIMEOUT);
  if (global.json) {
    io.stdout.write(json(result));
    return EXIT.OK;
  }
  const after = toVmStats(result);
  const known = new Set(before.memoryDevices.map((d) => d.alias));
  const added =
    after.memoryDevices.find((d) => d.alias === c.alias) ??
    after.memoryDevices.find((d) => !known.has(d.alias));
  const what = added
    ? `DIMM ${added.alias} (${formatMiB(added.size)}, node ${added.node}, slot ${added.slot})`
    : `a ${formatMiB(c.sizeMiB)} DIMM`;
  io.stdout.write(
    `Plugged ${what} into ${after.vmName || vmId}: memory ${formatMiB(before.memSize)} -> ${formatMiB(after.memSize)}, guaranteed ${formatMiB(after.memGuaranteedSize)}\n`,
  );
  io.stdout.write(renderDimms(after.memoryDevices));
  return EXIT.OK;
}

async function unplug(
  client: RpcClient,
  c: Extract<Command, { kind: 'vm-unplug' }>,
  global: GlobalOptions,
  io: CliIo,
): Promise<number> {
  const { vmId } = await resolveVm(client, c.vm);
  const stats = toVmStatsResult(await client.call('VM.getStats', { vmID: vmId }));
  const name = stats.vmName || vmId;
  const dimm = stats.memoryDevices.find((d) => d.alias === c.alias);
  if (!dimm) {
    const aliases = stats.memoryDevices.map((d) => d.alias);
    throw new OperationError(
      `${name} has no DIMM "${c.alias}"`,
      aliases.length > 0 ? `its DIMMs: ${aliases.join(', ')}` : 'it has no DIMMs',
    );
  }
  const params: Record<string, unknown> = {
    vmID: vmId,
    params: { vmId, memory: { size: dimm.size, node: dimm.node, alias: dimm.alias } },
  };
  if (c.timeoutS !== undefined) params.timeout = c.timeoutS;
  if (c.force) params.force = true;
  const progress = new Progress(io.stderr, io.now);
  const limit = c.timeoutS !== undefined ? `, timeout ${c.timeoutS} s` : '';
  progress.start(
    (t) =>
      `waiting for the guest to release DIMM ${dimm.alias} (${formatMiB(dimm.size)}) of ${name}: ${t.toFixed(0)} s${limit}`,
  );
  let result: unknown;
  try {
    result = await client.call('VM.hotunplugMemory', params, NO_CLIENT_TIMEOUT);
  } finally {
    progress.stop();
  }
  if (global.json) {
    io.stdout.write(json(result));
    return EXIT.OK;
  }
  const r = result && typeof result === 'object' ? (result as Record<string, unknown>) : {};
  io.stdout.write(
    `Removed DIMM ${dimm.alias} (${formatMiB(dimm.size)}) from ${name} in ${progress.elapsedS().toFixed(1)} s: memory ${formatMiB(stats.memSize)} -> ${formatMiB(Number(r.memSize))}, guaranteed ${formatMiB(Number(r.memGuaranteedSize))}\n`,
  );
  return EXIT.OK;
}

/** A bar of `width` cells, filled by how far `current` has come from `from` toward `to`. */
function bar(from: number, current: number, to: number, width = 20): string {
  const done = from === to ? 1 : Math.min(1, Math.max(0, (current - from) / (to - from)));
  const full = Math.round(done * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

async function resize(
  client: RpcClient,
  c: Extract<Command, { kind: 'vm-resize' }>,
  global: GlobalOptions,
  io: CliIo,
): Promise<number> {
  const { vmId } = await resolveVm(client, c.vm);
  const stats = toVmStatsResult(await client.call('VM.getStats', { vmID: vmId }));
  const name = stats.vmName || vmId;
  const dev = stats.memoryDevices.find((d) => d.alias === c.alias && d.model === 'virtio-mem');
  if (!dev) {
    const aliases = stats.memoryDevices.filter((d) => d.model === 'virtio-mem').map((d) => d.alias);
    throw new OperationError(
      `${name} has no virtio-mem device "${c.alias}"`,
      aliases.length > 0 ? `its virtio-mem devices: ${aliases.join(', ')}` : 'it has no virtio-mem device',
    );
  }
  const params: Record<string, unknown> = { vmID: vmId, alias: c.alias, requested: c.requestedMiB };
  if (c.timeoutS !== undefined) params.timeout = c.timeoutS;
  if (c.keep) params.onFailure = 'keep';
  const from = dev.current;
  let current = dev.current;
  const progress = new Progress(io.stderr, io.now);
  // The daemon reports the device's moves (coalesced) while the call waits.
  const stopListening = client.onNotification((n: Notification) => {
    if (n.method !== `|virt|memory_device_size_changed|${vmId}`) return;
    const p = n.params && typeof n.params === 'object' ? (n.params as Record<string, unknown>) : {};
    if (p.alias !== c.alias || typeof p.current !== 'number') return;
    current = p.current;
    if (!progress.tty) progress.note(`  ${c.alias}: ${formatMiB(current)} of ${formatMiB(c.requestedMiB)}`);
  });
  progress.start((t) => {
    const rate = t > 0 ? Math.abs(current - from) / t : 0;
    return `resizing ${c.alias} of ${name}: ${formatMiB(current)} -> ${formatMiB(c.requestedMiB)} ${bar(from, current, c.requestedMiB)} ${rate.toFixed(0)} MiB/s, ${t.toFixed(0)} s`;
  });
  let result: unknown;
  try {
    result = await client.call('VM.resizeMemoryDevice', params, NO_CLIENT_TIMEOUT);
  } finally {
    progress.stop();
    stopListening();
  }
  if (global.json) {
    io.stdout.write(json(result));
    return EXIT.OK;
  }
  const r = result && typeof result === 'object' ? (result as Record<string, unknown>) : {};
  io.stdout.write(
    `Resized ${c.alias} of ${name} ${formatMiB(from)} -> ${formatMiB(Number(r.current))} in ${progress.elapsedS().toFixed(1)} s: memory ${formatMiB(stats.memSize)} -> ${formatMiB(Number(r.memSize))}\n`,
  );
  const next =
    r.nextRun && typeof r.nextRun === 'object' ? (r.nextRun as Record<string, unknown>) : undefined;
  if (next) {
    io.stdout.write(
      next.updated === true
        ? `  next run: ${c.alias} at ${formatMiB(Number(next.requested))}\n`
        : `  next run: unchanged, ${c.alias} at ${formatMiB(Number(next.requested))} (the definition differed from the running VM, or the VM has none)\n`,
    );
  }
  return EXIT.OK;
}

async function setMemory(
  client: RpcClient,
  c: Extract<Command, { kind: 'vm-set-memory' }>,
  global: GlobalOptions,
  io: CliIo,
): Promise<number> {
  const { vmId } = await resolveVm(client, c.vm);
  const before: VmStats = toVmStatsResult(await client.call('VM.getStats', { vmID: vmId }));
  const name = before.vmName || vmId;
  const params: Record<string, unknown> = { vmID: vmId, memory: c.memoryBytes };
  if (c.guaranteedBytes !== undefined) params.guaranteed = c.guaranteedBytes;
  if (c.timeoutS !== undefined) params.timeout = c.timeoutS;
  if (c.force) params.force = true;
  const target = formatMiB(Math.floor(c.memoryBytes / 1048576));
  // Plan first (the daemon's dry run): a request it refuses (bad size,
  // below-minimum, nothing suitable) fails here, before any progress line,
  // and the plan is what --dry-run shows and the confirmation asks about.
  const plan = (await client.call('VM.setMemory', { ...params, dryRun: true })) as Record<string, unknown>;
  const planned = Array.isArray(plan.unplugged)
    ? plan.unplugged.map((u) => (u && typeof u === 'object' ? (u as Record<string, unknown>) : {}))
    : [];
  const removing = planned.reduce((sum, u) => sum + Number(u.size ?? 0), 0);
  const listOf = (us: Record<string, unknown>[]) =>
    us.map((u) => `${String(u.alias)} (${formatMiB(Number(u.size))})`).join(', ');
  const skippedOf = (x: Record<string, unknown>) =>
    Array.isArray(x.skipped)
      ? x.skipped.map((u) => (u && typeof u === 'object' ? (u as Record<string, unknown>) : {}))
      : [];
  const skippedLine = (x: Record<string, unknown>) =>
    skippedOf(x).length > 0
      ? [`  skipped (the guest holds them in ZONE_NORMAL; --force to try): ${listOf(skippedOf(x))}`]
      : [];
  if (c.dryRun) {
    if (global.json) {
      io.stdout.write(json(plan));
      return EXIT.OK;
    }
    io.stdout.write(
      `${name}: would set memory ${formatMiB(before.memSize)} -> ${formatMiB(Number(plan.memSize))} (dry run, nothing changed)\n` +
        `  would unplug: ${listOf(planned) || 'none'}\n` +
        skippedLine(plan)
          .map((l) => `${l.replace('  skipped', '  would skip')}\n`)
          .join('') +
        `  can never go below ${formatMiB(Number(plan.floor))} (base memory and DIMMs present at boot)\n`,
    );
    return EXIT.OK;
  }
  const hotplugged = Number(plan.hotplugged ?? 0);
  if (removing * 2 > hotplugged && removing > 0 && !c.yes && io.confirm) {
    const ok = await io.confirm(
      `Remove ${formatMiB(removing)} of the ${formatMiB(hotplugged)} hot-plugged memory of ${name} (${listOf(planned)}), ` +
        `${formatMiB(before.memSize)} -> ${formatMiB(Number(plan.memSize))}? [y/N] `,
    );
    if (!ok) throw new OperationError('cancelled: nothing changed', 'pass --yes to skip this question');
  }
  const progress = new Progress(io.stderr, io.now);
  // Removals arrive as notifications while the call waits: show them as they happen.
  const stopListening = client.onNotification((n: Notification) => {
    if (n.method === `|virt|device_removed|${vmId}` && n.params && typeof n.params === 'object') {
      const p = n.params as Record<string, unknown>;
      progress.note(`  removed ${String(p.alias)} (memory now ${formatMiB(Number(p.memSize))})`);
    }
  });
  // Only an unplug waits on the guest.
  if (removing > 0) {
    progress.start(
      (t) =>
        `setting memory of ${name} to ${target}: waiting for the guest to release DIMMs: ${t.toFixed(0)} s`,
    );
  }
  let result: unknown;
  try {
    result = await client.call('VM.setMemory', params, NO_CLIENT_TIMEOUT);
  } finally {
    progress.stop();
    stopListening();
  }
  const r = result && typeof result === 'object' ? (result as Record<string, unknown>) : {};
  const failed = Array.isArray(r.failed) ? r.failed.map((f) => (f && typeof f === 'object' ? f : {})) : [];
  if (global.json) {
    io.stdout.write(json(result));
    return failed.length > 0 ? EXIT.FAILED : EXIT.OK;
  }
  const unplugged = Array.isArray(r.unplugged) ? r.unplugged : [];
  const list = unplugged
    .map((u) => {
      const o = u && typeof u === 'object' ? (u as Record<string, unknown>) : {};
      return `${String(o.alias)} (${formatMiB(Number(o.size))})`;
    })
    .join(', ');
  const nextRun = r.nextRun && typeof r.nextRun === 'object' ? (r.nextRun as Record<string, unknown>) : {};
  const lines = [
    `${name}: memory ${formatMiB(before.memSize)} -> ${formatMiB(Number(r.memSize))}, guaranteed ${formatMiB(Number(r.memGuaranteedSize))}`,
    `  unplugged: ${list || 'none'}`,
    ...skippedLine(r),
    ...(Array.isArray(r.resized) && r.resized.length > 0
      ? [
          `  resized: ${r.resized
            .map((x) => {
              const o = x && typeof x === 'object' ? (x as Record<string, unknown>) : {};
              return `${String(o.alias)} -> ${formatMiB(Number(o.current))}`;
            })
            .join(', ')}`,
        ]
      : []),
    nextRun.updated === true
      ? `  next run: memory ${String(nextRun.memory)} MiB, guaranteed ${String(nextRun.guaranteed)} MiB`
      : '  next run: unchanged (its memory differed from the running VM, or the VM has no persistent definition)',
  ];
  io.stdout.write(`${lines.join('\n')}\n`);
  for (const f of failed as Record<string, unknown>[]) {
    const reason = String(f.reason);
    io.stderr.write(`vmhost-client: could not remove ${String(f.alias)}: ${reason}\n`);
    const hint = hintForReason(reason);
    if (hint) io.stderr.write(`  hint: ${hint}\n`);
  }
  return failed.length > 0 ? EXIT.FAILED : EXIT.OK;
}

async function events(
  client: RpcClient,
  c: Extract<Command, { kind: 'events' }>,
  global: GlobalOptions,
  io: CliIo,
): Promise<number> {
  const names = new Map<string, string>();
  let only: string | undefined;
  let seen = 0;
  let done: () => void = () => {};
  const finished = new Promise<void>((r) => {
    done = r;
  });
  client.onNotification((n) => {
    const vmId = n.method.split('|')[3];
    const wanted =
      c.vm === undefined ||
      vmId === only ||
      vmId === c.vm.toLowerCase() ||
      (vmId && names.get(vmId) === c.vm);
    // Several notifications can arrive in one read: --count N prints exactly N.
    if (!wanted || (c.count !== undefined && seen >= c.count)) return;
    const at = new Date(io.now ? io.now() : Date.now());
    if (vmId && n.method.startsWith('|virt|VM_status|')) {
      const name = statusEventStats(vmId, n.params).vmName;
      if (name) names.set(vmId, name);
    }
    io.stdout.write(
      global.json
        ? `${JSON.stringify({ time: at.toISOString(), method: n.method, params: n.params })}\n`
        : `${renderEvent(n.method, n.params, names, at)}\n`,
    );
    seen++;
    if (c.count !== undefined && seen >= c.count) done();
  });
  // Listening before the first call: nothing that happens after we connected is missed.
  for (const v of toVmList(await client.call('Host.getVMList', { fullStatus: true })))
    names.set(v.vmId, v.vmName);
  if (c.vm !== undefined) only = (await resolveVm(client, c.vm)).vmId;
  // On stderr, so stdout stays one event per line; tests also wait for it.
  io.stderr.write('following vmhostd notifications (Ctrl-C to stop)\n');
  const lost = client.closedPromise.then(() => 'lost' as const);
  const outcome = await Promise.race([
    finished.then(() => 'done' as const),
    lost,
    io.interrupted ?? new Promise<never>(() => {}),
  ]);
  if (outcome === 'lost') throw new ConnectError('lost the connection to the daemon while following events');
  return EXIT.OK;
}
