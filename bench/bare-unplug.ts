// A DIMM unplug with nothing but our libvirt client: detach, then wait for
// its device-removed event (the waiter is registered before the detach, as
// libvirt may send the event before the detach's reply). The bare baseline
// of the fake benches and the core of the protocol floor.

import type { LibvirtClient } from '../src/libvirt/client.js';
import { DomainAffect, type DomainRef } from '../src/libvirt/types.js';
import { escapeXml } from '../src/xml-escape.js';

export interface DimmToRemove {
  readonly alias: string;
  readonly sizeMiB: number;
  readonly node: number;
}

export type BareUnplug = (ref: DomainRef, dimm: DimmToRemove) => Promise<void>;

export function bareUnplugger(client: LibvirtClient): BareUnplug {
  const waiting = new Map<string, () => void>();
  client.on('deviceRemoved', (e) => {
    const key = `${e.domain.uuid}/${e.alias}`;
    waiting.get(key)?.();
    waiting.delete(key);
  });
  return async (ref, { alias, sizeMiB, node }) => {
    const removed = new Promise<void>((resolve) => waiting.set(`${ref.uuid}/${alias}`, resolve));
    const xml = `<memory model='dimm'><target><size unit='MiB'>${sizeMiB}</size><node>${node}</node></target><alias name='${escapeXml(alias)}'/></memory>`;
    await client.detachDeviceFlags(ref, xml, DomainAffect.LIVE);
    await removed;
  };
}
