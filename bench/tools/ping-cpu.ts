// Profiling aid (not a bench): CPU per Host.ping of the daemon, of the bare
// ws echo and of the client driving them (this process), at the shape of the
// daemon-rpc throughput row (C connections, 16 in flight each).
// usage: node --import tsx bench/tools/ping-cpu.ts [CONNS] [SECONDS] [ROUNDS]
import { FakeLibvirtd, spawnDaemon } from '../fake-host.js';
import { cpuMs, selfCpuMs } from '../lib.js';
import { closeSockets, openSockets, requestMaker, startEchoServer, throughput } from '../ws-load.js';

const conns = Number(process.argv[2] ?? 1);
const seconds = Number(process.argv[3] ?? 2);
const rounds = Number(process.argv[4] ?? 3);
const fake = await FakeLibvirtd.start();
const daemon = await spawnDaemon(fake);
const echo = await startEchoServer({ 'Host.ping': 'true' });
for (let r = 0; r < rounds; r++) {
  for (const [name, url, pid] of [
    ['daemon', daemon.url, daemon.proc.pid ?? -1],
    ['echo', echo.url, echo.pid],
  ] as const) {
    const sockets = await openSockets(url, conns);
    const s0 = cpuMs(pid);
    const c0 = selfCpuMs();
    let replies = 0;
    for (const ws of sockets) ws.on('message', () => replies++);
    const rate = await throughput(sockets, requestMaker('Host.ping'), seconds * 1000, 16);
    const server = (cpuMs(pid) - s0) / replies;
    const client = (selfCpuMs() - c0) / replies;
    closeSockets(sockets);
    console.log(
      `${name.padEnd(6)} ${Math.round(rate)} req/s; CPU per request: server ${(server * 1000).toFixed(2)} us, client ${(client * 1000).toFixed(2)} us`,
    );
  }
}
await daemon.stop();
await echo.close();
await fake.stop();
