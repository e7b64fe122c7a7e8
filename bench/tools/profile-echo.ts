// Profiling aid (not a bench): the echo server under --cpu-prof at full rate, top self-time functions.
// usage: node --import tsx bench/tools/profile-echo.ts [SECONDS]
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { closeSockets, openSockets, requestMaker, throughput } from '../ws-load.js';

const seconds = Number(process.argv[2] ?? 4);
const dir = mkdtempSync(join(tmpdir(), 'vmhostd-prof-'));
const file = join(dir, 'r.json');
const stats = JSON.stringify({ vmId: 'x'.repeat(36), blob: 'y'.repeat(1200) });
writeFileSync(file, JSON.stringify({ 'VM.getStats': stats }));
const entry = fileURLToPath(new URL('../echo-server.ts', import.meta.url));
const child = spawn(
  process.execPath,
  ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--import', 'tsx', entry, file],
  {
    stdio: ['ignore', 'pipe', 'inherit'],
  },
);
const url = await new Promise<string>((r) =>
  child.stdout.once('data', (c: Buffer) => r((JSON.parse(c.toString()) as { url: string }).url)),
);
const s = await openSockets(url, 16);
console.log(Math.round(await throughput(s, requestMaker('VM.getStats', { vmID: 'x' }), seconds * 1000, 16)));
closeSockets(s);
child.kill('SIGINT');
await new Promise((r) => child.once('exit', r));
const f = readdirSync(dir).find((x) => x.endsWith('.cpuprofile'));
console.log(f ? join(dir, f) : 'no profile');
