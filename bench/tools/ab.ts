// Quick A/B aid (not a bench): daemon vs echo throughput for one method, alternated.
// usage: node --import tsx bench/tools/ab.ts [METHOD] [CONNS] [ROUNDS]
import { TestRpcClient } from '../../test/helpers/rpc-client.js';
import { addVms, FakeLibvirtd, spawnDaemon } from '../fake-host.js';
import { closeSockets, openSockets, requestMaker, startEchoServer, throughput } from '../ws-load.js';

const method = process.argv[2] ?? 'VM.getStats';
const conns = Number(process.argv[3] ?? 16);
const rounds = Number(process.argv[4] ?? 5);
const fake = await FakeLibvirtd.start();
const [vm] = addVms(fake, 1, 8);
const daemon = await spawnDaemon(fake);
const params = method.startsWith('VM.') ? { vmID: vm!.uuid } : undefined;
const c = await TestRpcClient.connect(daemon.url);
const echo = await startEchoServer({ [method]: JSON.stringify(await c.call(method, params)) });
await c.close();
for (let i = 0; i < rounds; i++) {
  const row: string[] = [];
  for (const url of [daemon.url, echo.url]) {
    const s = await openSockets(url, conns);
    row.push(String(Math.round(await throughput(s, requestMaker(method, params), 1000, 16))));
    closeSockets(s);
  }
  console.log(`daemon ${row[0]}  echo ${row[1]}  ratio ${(Number(row[0]) / Number(row[1])).toFixed(2)}`);
}
await echo.close();
await daemon.stop();
await fake.stop();
