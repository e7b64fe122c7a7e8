// Profiling aid (not a bench): runs the daemon child under --cpu-prof while
// driving one method at full rate, then prints the top self-time functions.
// usage: node --import tsx bench/tools/profile-daemon.ts [METHOD] [SECONDS]
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addVms, FakeLibvirtd, spawnDaemon } from '../fake-host.js';
import { closeSockets, openSockets, requestMaker, throughput } from '../ws-load.js';

const method = process.argv[2] ?? 'VM.getStats';
const seconds = Number(process.argv[3] ?? 4);
const dir = mkdtempSync(join(tmpdir(), 'vmhostd-prof-'));
const fake = await FakeLibvirtd.start();
const [vm] = addVms(fake, 1, 8);
const daemon = await spawnDaemon(fake, { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`] });
const sockets = await openSockets(daemon.url, 16);
const params = method.startsWith('VM.') ? { vmID: vm!.uuid } : undefined;
const rate = await throughput(sockets, requestMaker(method, params), seconds * 1000, 16);
closeSockets(sockets);
await daemon.stop();
await fake.stop();
console.log(`${method}: ${Math.round(rate)} req/s; profile in ${dir}`);

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
if (!file) throw new Error('no profile written');
const prof = JSON.parse(readFileSync(join(dir, file), 'utf8')) as {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
};
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map<string, number>();
prof.samples.forEach((id, i) => {
  const n = byId.get(id);
  if (!n) return;
  const f = n.callFrame;
  const key = `${f.functionName || '(anon)'} ${f.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/\/work\/main\//, '')}:${f.lineNumber + 1}`;
  self.set(key, (self.get(key) ?? 0) + (prof.timeDeltas[i] ?? 0));
});
const total = [...self.values()].reduce((a, b) => a + b, 0);
for (const [k, v] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 30)) {
  console.log(`${((v / total) * 100).toFixed(1).padStart(5)}%  ${k}`);
}
