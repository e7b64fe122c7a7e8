// The web console: its state model (pure JS module, imported as the browser
// does) and the CSP/escaping rules its files must keep.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

interface Dimm {
  alias: string;
  size: number;
  node: number;
  slot: number;
  base: string;
  state: string;
}
interface Vm {
  vmId: string;
  vmName: string;
  status: string;
  memSize: number;
  memoryDevices: Dimm[];
}
interface Note {
  kind: string;
  text: string;
  hint?: string;
}
interface State {
  vms: Map<string, Vm>;
  notes: Map<string, Note>;
}
interface Model {
  createState(): State;
  setAll(s: State, list: unknown): void;
  applyNotification(s: State, method: string, params: unknown): string | null;
  noteKey(vmId: string, alias: string): string;
  unplugRequest(vmId: string, d: Dimm): unknown;
  canRemove(vm: Vm, d: Dimm): boolean;
  socketUrl(l: { protocol: string; host: string }): string;
  cleanStats(v: unknown): Vm | null;
  resizeRequest(vmId: string, d: unknown, text: string): { params?: unknown; error?: string };
  zoneOf(d: unknown): { text: string; notMovable: boolean };
}

const webDir = join(import.meta.dirname, '..', '..', 'web');
let m: Model;
beforeAll(async () => {
  m = (await import(join(webDir, 'console-model.js'))) as Model;
});

const VM = '11111111-2222-3333-4444-555555555555';
const dimm = (alias: string, slot: number, state = 'plugged'): Dimm => ({
  alias,
  size: 128,
  node: 0,
  slot,
  base: '0x100000000',
  state,
});
const stats = (devices: Dimm[]) => ({
  vmId: VM,
  vmName: 'demo',
  status: 'Up',
  memSize: 512 + 128 * devices.length,
  memGuaranteedSize: 512,
  hash: 'h',
  balloonActive: false,
  memoryDevices: devices,
});

describe('console model', () => {
  it('loads the VM list and applies VM_status', () => {
    const s = m.createState();
    m.setAll(s, [stats([dimm('ua-a', 0)]), 'garbage', { no: 'id' }]);
    expect([...s.vms.keys()]).toEqual([VM]);
    const line = m.applyNotification(s, `|virt|VM_status|${VM}`, {
      [VM]: stats([dimm('ua-a', 0), dimm('ua-b', 1)]),
      notify_time: 1234,
    });
    expect(line).toBe('demo: status Up, memory 768 MiB');
    expect(s.vms.get(VM)?.memoryDevices.map((d) => d.alias)).toEqual(['ua-a', 'ua-b']);
  });

  it('device_removed drops the DIMM and notes it; late removals say so', () => {
    const s = m.createState();
    m.setAll(s, [stats([dimm('ua-a', 0), dimm('ua-b', 1, 'unplugging')])]);
    expect(
      m.applyNotification(s, `|virt|device_removed|${VM}`, { alias: 'ua-b', memSize: 640, late: true }),
    ).toBe('demo: DIMM ua-b removed (late)');
    expect(s.vms.get(VM)?.memoryDevices.map((d) => d.alias)).toEqual(['ua-a']);
    expect(s.vms.get(VM)?.memSize).toBe(640);
    expect(s.notes.get(m.noteKey(VM, 'ua-b'))?.text).toMatch(/after the call had timed out/);
  });

  it('device_removal_failed notes the reason and the movable-memory hint', () => {
    const s = m.createState();
    m.setAll(s, [stats([dimm('ua-a', 0)])]);
    m.applyNotification(s, `|virt|device_removal_failed|${VM}`, { alias: 'ua-a', reason: 'guest-rejected' });
    const note = s.notes.get(m.noteKey(VM, 'ua-a'));
    expect(note?.kind).toBe('error');
    expect(note?.text).toBe('removal failed: guest-rejected');
    expect(note?.hint).toMatch(/online_movable/);
  });

  it('ignores unknown or malformed notifications', () => {
    const s = m.createState();
    expect(m.applyNotification(s, 'something', {})).toBeNull();
    expect(m.applyNotification(s, `|virt|other|${VM}`, {})).toBeNull();
    expect(m.applyNotification(s, `|virt|device_removed|${VM}`, null)).toMatch(/removed/);
  });

  it('keeps virtio-mem fields, follows memory_device_size_changed, and checks a resize before sending it', () => {
    const s = m.createState();
    const vmem = {
      model: 'virtio-mem',
      alias: 'ua-vm',
      size: 1024,
      node: 0,
      slot: -1,
      base: '',
      state: 'plugged',
      requested: 0,
      current: 0,
      block: 2,
    };
    m.setAll(s, [stats([dimm('ua-a', 0), vmem as unknown as Dimm])]);
    const line = m.applyNotification(s, `|virt|memory_device_size_changed|${VM}`, {
      alias: 'ua-vm',
      requested: 512,
      current: 130,
    });
    expect(line).toMatch(/ua-vm at 130 MiB of 512 MiB/);
    const dev = s.vms.get(VM)?.memoryDevices.find((d) => d.alias === 'ua-vm');
    expect(dev).toMatchObject({ model: 'virtio-mem', requested: 512, current: 130, state: 'resizing' });
    expect(s.vms.get(VM)?.memoryDevices.find((d) => d.alias === 'ua-a')).toMatchObject({ model: 'dimm' });
    expect(m.resizeRequest(VM, dev, '256')).toEqual({ params: { vmID: VM, alias: 'ua-vm', requested: 256 } });
    expect(m.resizeRequest(VM, dev, '3').error).toMatch(/multiple of 2 MiB/);
    expect(m.resizeRequest(VM, dev, '2048').error).toMatch(/at most 1024/);
    expect(m.resizeRequest(VM, dev, '-2').error).toMatch(/whole number/);
    expect(m.resizeRequest(VM, dev, 'x').error).toMatch(/whole number/);
  });

  it('Remove is offered only for plugged DIMMs of running VMs, with the API params', () => {
    const vm = m.cleanStats(stats([dimm('ua-a', 0)]));
    expect(vm).not.toBeNull();
    if (!vm) return;
    expect(m.canRemove(vm, dimm('ua-a', 0))).toBe(true);
    expect(m.canRemove(vm, dimm('ua-a', 0, 'unplugging'))).toBe(false);
    expect(m.canRemove({ ...vm, status: 'Paused' }, dimm('ua-a', 0))).toBe(false);
    expect(m.unplugRequest(VM, dimm('ua-a', 0))).toEqual({
      vmID: VM,
      params: { vmId: VM, memory: { size: 128, node: 0, alias: 'ua-a' } },
    });
  });

  it('shows the zone the guest holds each DIMM in; normal and mixed are marked not movable', () => {
    const vm = m.cleanStats(
      stats([
        { ...dimm('ua-m', 0), guest: { online: true, zone: 'movable' } } as Dimm,
        { ...dimm('ua-n', 1), guest: { online: true, zone: 'normal' } } as Dimm,
        { ...dimm('ua-p', 2), guest: { online: false, zone: 'mixed' } } as Dimm,
        { ...dimm('ua-o', 3), guest: { online: false, zone: 'offline' } } as Dimm,
        dimm('ua-old', 4),
      ]),
    );
    expect(vm?.memoryDevices.map((d) => m.zoneOf(d))).toEqual([
      { text: 'movable', notMovable: false },
      { text: 'normal', notMovable: true },
      { text: 'mixed (partly offline)', notMovable: true },
      { text: 'offline', notMovable: false },
      { text: '-', notMovable: false },
    ]);
  });

  it('uses ws or wss to match the page', () => {
    expect(m.socketUrl({ protocol: 'http:', host: 'h:54321' })).toBe('ws://h:54321/jsonrpc');
    expect(m.socketUrl({ protocol: 'https:', host: 'h:54321' })).toBe('wss://h:54321/jsonrpc');
  });
});

describe('console files', () => {
  const html = readFileSync(join(webDir, 'index.html'), 'utf8');
  const js =
    readFileSync(join(webDir, 'console.js'), 'utf8') + readFileSync(join(webDir, 'console-model.js'), 'utf8');
  const css = readFileSync(join(webDir, 'console.css'), 'utf8');

  it('CSP-friendly: no inline scripts, styles or handlers; no external URLs', () => {
    for (const tag of html.match(/<script\b[^>]*>/g) ?? []) expect(tag).toMatch(/\ssrc="[^"]+"/);
    expect(html).not.toMatch(/<script\b[^>]*>[^<\s]/);
    expect(html).not.toMatch(/<style\b/);
    expect(html).not.toMatch(/\sstyle=/);
    expect(html).not.toMatch(/\son[a-z]+=/i);
    for (const text of [html, js, css]) expect(text).not.toMatch(/(https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}\//i);
  });

  it('never writes data as HTML', () => {
    expect(js).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
    expect(js).toMatch(/textContent/);
  });
});
