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
//   SPEC: {"socketPath": "...", "vms": [{uuid, ref}],
//          "stats": {...VM.getStats result as template}}
// Prints one line {"url": "..."} once listening; SIGTERM stops it.

import { readFileSync } from 'node:fs';
import type { WebSocket } from 'ws';
import { LibvirtClient } from '../src/libvirt/client.js';
import { type DomainRef, JobType } from '../src/libvirt/types.js';
import { bareUnplugger } from './bare-unplug.js';
import { listenBare } from './bare-ws.js';

interface Spec {
  socketPath: string;
  vms: { uuid: string; ref: DomainRef }[];
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
const removeDimm = bareUnplugger(client);

const wss = listenBare();
const clients = new Set<WebSocket>();

function broadcast(method: string, params: unknown): void {
  const data = Buffer.from(JSON.stringify({ jsonrpc: '2.0', method, params }));
  for (const ws of clients) ws.send(data);
}

async function unplug(req: UnplugRequest): Promise<unknown> {
  const uuid = req.params.vmID;
  const mem = req.params.params.memory;
  const ref = refs.get(uuid);
  if (!ref) throw { code: 1, message: 'Virtual machine does not exist' };
  const job = await client.getJobStats(ref);
  if (job.type !== JobType.NONE) throw { code: 51, message: 'migrating' };
  await removeDimm(ref, { alias: mem.alias, sizeMiB: mem.size, node: mem.node });
  const memSize = (memMiB.get(uuid) ?? Number(spec.stats.memSize)) - mem.size;
  memMiB.set(uuid, memSize);
  broadcast(`|virt|device_removed|${uuid}`, { alias: mem.alias, memSize, late: false });
  broadcast(`|virt|VM_status|${uuid}`, {
    [uuid]: { ...spec.stats, vmId: uuid, memSize },
    notify_time: Number(process.hrtime.bigint() / 1_000_000n),
  });
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
