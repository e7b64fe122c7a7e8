// Captures bench/fixtures/live-domain-dimms.xml: the live XML of a real
// cooperative test guest after 4 DIMMs were hot plugged, as libvirt 9 writes it.
// usage: node --import tsx bench/tools/capture-live-xml.ts
import { writeFileSync } from 'node:fs';
import { startGuest, virsh } from '../../test/helpers/guest.js';

const g = await startGuest({ kind: 'cooperative', namePrefix: 'capture' });
try {
  for (let i = 1; i <= 4; i++) {
    const f = `/tmp/${g.name}-dimm${i}.xml`;
    writeFileSync(
      f,
      `<memory model='dimm'><target><size unit='MiB'>128</size><node>0</node></target><alias name='ua-capture-${i}'/></memory>`,
    );
    await virsh(['attach-device', g.name, f, '--live']);
  }
  const xml = await virsh(['dumpxml', g.name]);
  writeFileSync(new URL('../fixtures/live-domain-dimms.xml', import.meta.url), xml);
  console.log(`${xml.length} chars`);
} finally {
  await g.destroy();
}
