// Profiling aid: round trips of single libvirt calls to the fake (same process).
import { LibvirtClient } from '../../src/libvirt/client.js';
import { DomainAffect, MetadataType } from '../../src/libvirt/types.js';
import { startFakeProcess } from '../fake-host.js';
import { summarize } from '../lib.js';

const fake = await startFakeProcess({ vms: 1, dimms: 8 });
const [vm] = fake.vms;
const c = await LibvirtClient.connect({ socketPath: fake.socketPath, keepaliveIntervalMs: 0 });
const time = async (name: string, fn: () => Promise<unknown>) => {
  const s: number[] = [];
  for (let i = 0; i < 500; i++) {
    const t0 = performance.now();
    await fn();
    s.push(performance.now() - t0);
  }
  console.log(name, summarize(s, 'ms').median.toFixed(3));
};
await time('getState', () => c.getState(vm!.ref));
await time('getXMLDesc', () => c.getXMLDesc(vm!.ref));
await time('getState+getXMLDesc', () => Promise.all([c.getState(vm!.ref), c.getXMLDesc(vm!.ref)]));
await time('setMetadata', () =>
  c.setMetadata(
    vm!.ref,
    MetadataType.ELEMENT,
    '<x:m xmlns:x="urn:x">1</x:m>',
    'x',
    'urn:x',
    DomainAffect.LIVE,
  ),
);
await c.close();
await fake.stop();
