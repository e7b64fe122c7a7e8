// Prints the domain XML of the demo VM (a cooperative test guest, persistent)
// using the test host's generator, so the demo runs exactly what the tests do.
//   node --import tsx scripts/demo-domain.ts NAME UUID CONSOLE_PATH GUEST_DIR
import { join } from 'node:path';
import { domainXml } from '../test/host/domain-xml.js';

const [name, uuid, consolePath, guestDir] = process.argv.slice(2);
if (!name || !uuid || !consolePath || !guestDir) {
  process.stderr.write('usage: demo-domain.ts NAME UUID CONSOLE_PATH GUEST_DIR\n');
  process.exit(2);
}
process.stdout.write(
  domainXml({
    name,
    uuid,
    kind: 'cooperative',
    memoryMiB: 512,
    maxMemoryMiB: 8192,
    slots: 16,
    bootDimmsMiB: [],
    kernelPath: join(guestDir, 'vmlinuz'),
    initrdPath: join(guestDir, 'initramfs.cpio.gz'),
    consolePath,
  }),
);
