// A DIMM that libvirt says left (device-removed) is taken out of the cached
// domain at once, with no re-read (docs/design.md, "Device lifecycle"):
// - withoutDimm gives what parsing the live XML after the removal gives;
// - a re-read sent before the removal and answered after it (the XML from
//   before) does not bring the DIMM back, while a later one is taken as is.
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { DomainRef, DomainStateInfo, LibvirtApi } from '../../src/libvirt/types.js';
import { parseDomainXml, withoutDimm } from '../../src/virt/domain-xml.js';
import type { VmManagerEvents, VmStats } from '../../src/virt/types.js';
import { VmWorker } from '../../src/virt/vm-worker.js';

const live = readFileSync(new URL('../fixtures/virt/live-3dimms-metadata.xml', import.meta.url), 'utf8');
const virtio = readFileSync(new URL('../fixtures/virt/live-virtio-mem.xml', import.meta.url), 'utf8');

/** The live XML as libvirt shows it after removing `alias`: the element gone, <memory> lowered by its size. */
function removedInXml(xml: string, alias: string): string {
  const blocks = xml.match(/<memory model='dimm'>[\s\S]*?<\/memory>/g) ?? [];
  const block = blocks.find((b) => b.includes(`<alias name='${alias}'/>`));
  if (!block) throw new Error(`no ${alias} in fixture`);
  const kib = Number(/<size unit='KiB'>(\d+)<\/size>/.exec(block)?.[1]);
  return xml
    .replace(block, '')
    .replace(
      /<memory unit='KiB'>(\d+)<\/memory>/,
      (_m, n: string) => `<memory unit='KiB'>${Number(n) - kib}</memory>`,
    );
}

describe('withoutDimm', () => {
  it('equals the parse of the live XML without the DIMM, for each DIMM', () => {
    const dom = parseDomainXml(live);
    expect(dom.dimms.length).toBeGreaterThan(1);
    for (const d of dom.dimms) {
      const alias = d.alias!;
      expect(withoutDimm(dom, alias)).toStrictEqual(parseDomainXml(removedInXml(live, alias)));
    }
  });

  it('counts virtio-mem devices at their current size, as the parse does', () => {
    // The virtio-mem guest's XML with one DIMM more (and <memory> raised by it).
    const block = (live.match(/<memory model='dimm'>[\s\S]*?<\/memory>/g) ?? []).find((b) =>
      b.includes("<alias name='ua-a1'/>"),
    )!;
    const both = virtio
      .replace('</devices>', `${block}\n</devices>`)
      .replace(
        /<memory unit='KiB'>(\d+)<\/memory>/,
        (_m, n: string) => `<memory unit='KiB'>${Number(n) + 131072}</memory>`,
      );
    const dom = parseDomainXml(both);
    expect(dom.virtioMem).toHaveLength(1);
    expect(withoutDimm(dom, 'ua-a1')).toStrictEqual(parseDomainXml(virtio));
    expect(withoutDimm(dom, 'ua-a1').memory).toBe(dom.memory - 128);
    expect(withoutDimm(dom, 'no-such-alias')).toBe(dom);
  });
});

function gate<T>(): { promise: Promise<T>; open(v: T): void } {
  let open!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    open = r;
  });
  return { promise, open };
}

describe('VmWorker: a removal by event against a re-read in flight', () => {
  it('a read sent before the removal does not bring the DIMM back; a read sent after it is taken as is', async () => {
    const uuid = 'e05fd4b2-5bbb-4ce8-b9b1-fc1234ba720e';
    const running: DomainStateInfo = { state: 1, reason: 1 };
    const xmls: Promise<string>[] = [];
    let sent = gate<void>();
    const client = {
      getState: async (_d: DomainRef) => running,
      getXMLDesc: (_d: DomainRef, _f: number) => {
        sent.open();
        return xmls.shift() ?? Promise.resolve(live);
      },
      setMetadata: async () => {},
    } as unknown as LibvirtApi;
    const events = new EventEmitter<VmManagerEvents>();
    const published: VmStats[] = [];
    events.on('vmStatus', (s) => published.push(s));
    const w = new VmWorker(
      uuid,
      { name: 'vm', uuid, id: 3 },
      {
        client,
        log: pino({ level: 'silent' }),
        events,
        detach: () => {},
        reloadCurrent: async () => undefined,
      },
    );
    await w.reload({ persistent: false });
    const aliases = () => w.record?.dom.dimms.map((d) => d.alias);
    expect(aliases()).toEqual(['dimm0', 'ua-a1', 'ua-a2']);
    const memBefore = w.record!.dom.memory;

    const req = w.requestUnplug('ua-a1', undefined);
    await req.marked;
    // A re-read goes out (another event, a resync) and libvirt answers it with the XML of before...
    const stale = gate<string>();
    xmls.push(stale.promise);
    sent = gate<void>();
    const reading = w.reload();
    await sent.promise;
    // ...while the guest releases the DIMM.
    w.submit({ type: 'device-removed', alias: 'ua-a1' });
    const settled = await req.answer;
    expect(settled.answer).toEqual({ kind: 'removed', late: false });
    expect(settled.memSize).toBe(memBefore - 128);
    expect(aliases()).toEqual(['dimm0', 'ua-a2']);
    const seenAfterRemoval = published.length;

    stale.open(live);
    await reading;
    expect(aliases()).toEqual(['dimm0', 'ua-a2']);
    expect(w.record!.devices.present).toEqual(['dimm0', 'ua-a2']);
    expect(w.record!.dom.memory).toBe(memBefore - 128);
    // No stats ever showed it again.
    for (const s of published.slice(seenAfterRemoval)) {
      expect(s.memoryDevices?.map((d) => d.alias) ?? []).not.toContain('ua-a1');
    }

    // A read sent after the removal is the truth (here: the DIMM plugged again under the same alias).
    await w.reload();
    expect(aliases()).toEqual(['dimm0', 'ua-a1', 'ua-a2']);
    expect(w.record!.devices.present).toEqual(['dimm0', 'ua-a1', 'ua-a2']);
  });
});
