// The devices hash engines poll (as with VDSM): it changes whenever the
// memory device set, a device's state, or the memory size changes.

import { createHash } from 'node:crypto';
import type { VmStatsDevice } from './types.js';

export function devicesHash(memSize: number, devices: readonly VmStatsDevice[]): string {
  const h = createHash('sha1');
  h.update(String(memSize));
  for (const d of devices) {
    h.update(`\n${d.alias}|${d.size}|${d.node}|${d.slot}|${d.base}|${d.state}`);
    // DIMM hashes stay as they were; a virtio-mem device adds its sizes.
    if (d.model === 'virtio-mem') h.update(`|${d.requested}|${d.current}|${d.block}`);
  }
  return h.digest('hex').slice(0, 16);
}
