// The fake libvirtd in its own process, as libvirtd is in production, so no
// bench measures a libvirt round trip that never leaves its own event loop.
//
// usage: node --import tsx bench/fake-server.ts '{"vms":N,"dimms":K,"eventDelayMs":0,"eventBeforeReply":true}'
// Prints one line {"socketPath": "...", "vms": [{uuid, ref, dimms}]} once listening; SIGTERM stops it.
// Each line "counts" on stdin is answered with one line: the calls received so far, by procedure.

import { addVms, FakeLibvirtd } from './fake-host.js';

const spec = JSON.parse(process.argv[2] ?? '{}') as {
  vms?: number;
  dimms?: number;
  eventDelayMs?: number;
  eventBeforeReply?: boolean;
};
const fake = await FakeLibvirtd.start();
const vms = addVms(fake, spec.vms ?? 1, spec.dimms ?? 8, {
  ...(spec.eventDelayMs !== undefined ? { eventDelayMs: spec.eventDelayMs } : {}),
  ...(spec.eventBeforeReply !== undefined ? { eventBeforeReply: spec.eventBeforeReply } : {}),
});
process.stdout.write(`${JSON.stringify({ socketPath: fake.socketPath, vms })}\n`);
process.stdin.setEncoding('utf8').on('data', (chunk: string) => {
  for (const line of chunk.split('\n')) {
    if (line.trim() === 'counts') process.stdout.write(`${JSON.stringify(fake.callCounts())}\n`);
  }
});
const stop = () => {
  void fake.stop().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
