// The protocol floor for an unplug through any daemon (issue 12): a bare `ws`
// JSON-RPC server, in its own process like the daemon, with our libvirt
// client, that does only what the wire contract asks of VM.hotunplugMemory:
// the request in, the migration check (virDomainGetJobStats, before the
// detach: issue 16), the detach, the wait for device-removed, the outcome
// and the VM's status as notifications to every client (each serialised
// once), and the reply. No validation, state machine, metadata, logs or
// metrics. What a daemon costs above this is its own; what this costs above
// the bare libvirt client is the contract's, and no daemon can go below it.
//
// usage: node --import tsx bench/floor-relay.ts SPEC.json
//   SPEC: {"socketPath": "...", "vms": [{uuid, ref}], "check": true,
//          "notify": true, "stats": {...VM.getStats result as template}}
// Prints one line {"url": "..."} once listening; SIGTERM stops it.

import { readFileSync } from 'node:fs';
import type { WebSocket } from 'ws';
import { LibvirtClient } from '../src/libvirt/client.js';
import { DomainAffect, type DomainRef, JobType } from '../src/libvirt/types.js';
import { escapeXml } from '../src/xml-escape.js';
import { listenBare } from './bare-ws.js';

interface Spec {
  socketPath: string;
  vms: { uuid: string; ref: DomainRef }[];
  check: boolean;
  notify: boolean;
  stats: Record<string, unknown>;
}

interface UnplugRequest {
  id: number | string;
  params: { vmID: string; params: { memory: { size: number; node: number; alias: string } } };
}

const spec = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as Spec;
const refs = new Map(spec.vms.map((v) => [v.uuid, v.ref]));
const memMiB = new Map<string, number>();
const client = await LibvirtClient.connect({ socketPath: spec.socketPath, keepaliveIntervalMs: 0 });
const waiting = new Map<string, () => void>();
client.on('deviceRemoved', (e) => {
  const key = `${e.domain.uuid}/${e.alias}`;
  waiting.get(key)?.();
  waiting.delete(key);
});

const wss = listenBare();
const clients = new Set<WebSocket>();

function broadcast(method: string, params: unknown): void {
  const data = Buffer.from(JSON.stringify({ jsonrpc: '2.0', method, params }));
  for (const ws of clients) ws.send(data);
}

function detachXml(m: { size: number; node: number; alias: string }): string {
  return `<memory model='dimm'><target><size unit='MiB'>${m.size}</size><node>${m.node}</node></target><alias name='${escapeXml(m.alias)}'/></memory>`;
}

async function unplug(req: UnplugRequest): Promise<unknown> {
  const uuid = req.params.vmID;
  const mem = req.params.params.memory;
  const ref = refs.get(uuid);
  if (!ref) throw { code: 1, message: 'Virtual machine does not exist' };
  if (spec.check) {
    const job = await client.getJobStats(ref);
    if (job.type !== JobType.NONE) throw { code: 51, message: 'migrating' };
  }
  const removed = new Promise<void>((resolve) => waiting.set(`${uuid}/${mem.alias}`, resolve));
  await client.detachDeviceFlags(ref, detachXml(mem), DomainAffect.LIVE);
  await removed;
  const memSize = (memMiB.get(uuid) ?? Number(spec.stats.memSize)) - mem.size;
  memMiB.set(uuid, memSize);
  if (spec.notify) {
    broadcast(`|virt|device_removed|${uuid}`, { alias: mem.alias, memSize, late: false });
    broadcast(`|virt|VM_status|${uuid}`, {
      [uuid]: { ...spec.stats, vmId: uuid, memSize },
      notify_time: Number(process.hrtime.bigint() / 1_000_000n),
    });
  }
  return { status: 'removed', alias: mem.alias, memSize, memGuaranteedSize: memSize };
}

wss.on('connection', (ws) => {
  clients.add(ws);
  ws.on('close', () => clients.delete(ws));
  ws.on('message', (data) => {
    const req = JSON.parse(data.toString()) as UnplugRequest & { method: string };
    unplug(req).then(
      (result) => ws.send(JSON.stringify({ jsonrpc: '2.0', id: req.id, result })),
      (error: unknown) => ws.send(JSON.stringify({ jsonrpc: '2.0', id: req.id, error })),
    );
  });
});
const stop = () => {
  void client.close().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
