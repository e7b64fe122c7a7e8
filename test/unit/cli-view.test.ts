import { describe, expect, it } from 'vitest';
import { RpcCallError } from '../../src/cli/errors.js';
import { explainRpcError, hintForReason } from '../../src/cli/explain.js';
import { Progress } from '../../src/cli/progress.js';
import { renderFields, renderTable } from '../../src/cli/table.js';
import { renderEvent, renderVmList, renderVmShow, toVmStats } from '../../src/cli/view.js';

const stats = toVmStats({
  vmId: '11111111-2222-3333-4444-555555555555',
  vmName: 'vmhostd-demo',
  status: 'Up',
  memSize: 1792,
  memGuaranteedSize: 1024,
  hash: 'h1',
  balloonActive: false,
  memoryDevices: [
    {
      alias: 'ua-bbbb',
      size: 128,
      node: 0,
      slot: 2,
      base: '0x150000000',
      state: 'unplugging',
      guest: { online: true, zone: 'movable' },
    },
    { alias: 'ua-aaaa', size: 256, node: 0, slot: 0, base: '0x100000000', state: 'plugged' },
  ],
});

describe('renderTable', () => {
  it('pads columns to the widest cell and right-aligns numbers', () => {
    const t = renderTable(
      [{ header: 'NAME' }, { header: 'SIZE', align: 'right' }, { header: 'STATE' }],
      [
        ['a', '1', 'x'],
        ['longer-name', '12345', 'y'],
      ],
    );
    expect(t).toBe(
      ['NAME          SIZE  STATE', 'a                1  x', 'longer-name  12345  y', ''].join('\n'),
    );
  });

  it('columns line up for every row', () => {
    const t = renderVmList([stats, { ...stats, vmName: 'b', vmId: 'x', memSize: 512 }]);
    const lines = t.trimEnd().split('\n');
    const at = lines[0]?.indexOf('STATUS') ?? -1;
    expect(at).toBeGreaterThan(0);
    for (const l of lines.slice(1)) expect(l.slice(at, at + 2)).toBe('Up');
    // right-aligned MEMORY column: all rows end at the same column
    const memEnd = (lines[0]?.indexOf('MEMORY') ?? 0) + 'MEMORY'.length;
    expect(lines[1]?.slice(0, memEnd).endsWith('MiB')).toBe(true);
    expect(lines[2]?.slice(0, memEnd).endsWith('MiB')).toBe(true);
  });

  it('neutralises control characters from data', () => {
    const t = renderTable([{ header: 'N' }], [['evil\u001b[2J\nname']]);
    expect(t).not.toContain('\u001b');
    expect(t.split('\n')).toHaveLength(3);
  });

  it('renderFields aligns values', () => {
    expect(
      renderFields([
        ['Name', 'x'],
        ['Guaranteed', 'y'],
      ]),
    ).toBe('Name:       x\nGuaranteed: y\n');
  });
});

describe('VM views', () => {
  it('vm list shows name, uuid, status, memory, guaranteed and DIMM count, sorted by name', () => {
    const t = renderVmList([{ ...stats, vmName: 'zeta' }, stats]);
    const lines = t.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+UUID\s+STATUS\s+MEMORY\s+GUARANTEED\s+DIMMS$/);
    expect(lines[1]).toMatch(/^vmhostd-demo\s+11111111-\S+\s+Up\s+1792 MiB\s+1024 MiB\s+2$/);
    expect(lines[2]).toMatch(/^zeta /);
    expect(renderVmList([])).toBe('No VMs.\n');
  });

  it('vm show lists DIMMs by slot with alias/size/node/slot/base/state/guest zone', () => {
    const t = renderVmShow(stats);
    expect(t).toMatch(/^Name: +vmhostd-demo$/m);
    expect(t).toMatch(/^Memory: +1792 MiB$/m);
    expect(t).toMatch(/^Guaranteed: +1024 MiB$/m);
    expect(t).toMatch(/^Balloon: +inactive$/m);
    const rows = t.split('\n').filter((l) => l.startsWith('ua-'));
    expect(t).toMatch(/^ALIAS\s+SIZE\s+NODE\s+SLOT\s+BASE\s+STATE\s+GUEST$/m);
    // A daemon that does not say: '-'.
    expect(rows[0]).toMatch(/^ua-aaaa\s+256 MiB\s+0\s+0\s+0x100000000\s+plugged\s+-$/);
    expect(rows[1]).toMatch(/^ua-bbbb\s+128 MiB\s+0\s+2\s+0x150000000\s+unplugging\s+movable$/);
    expect(renderVmShow({ ...stats, memoryDevices: [], balloonActive: true })).toMatch(
      /Balloon: +active \(hot unplug with ballooning is not recommended\)[\s\S]*No memory devices/,
    );
  });

  it('GUEST shows each zone, and a partly onlined DIMM as such', () => {
    const row = (guest: unknown) =>
      renderVmShow(
        toVmStats({
          ...stats,
          memoryDevices: [
            { alias: 'ua-x', size: 128, node: 0, slot: 0, base: '0x1', state: 'plugged', guest },
          ],
        }),
      )
        .split('\n')
        .find((l) => l.startsWith('ua-x'));
    expect(row({ online: true, zone: 'normal' })).toMatch(/plugged\s+normal$/);
    expect(row({ online: false, zone: 'offline' })).toMatch(/plugged\s+offline$/);
    expect(row({ online: false, zone: 'unknown' })).toMatch(/plugged\s+unknown$/);
    expect(row({ online: false, zone: 'movable' })).toMatch(/plugged\s+movable \(partly offline\)$/);
    expect(row({ online: true, zone: 'mixed' })).toMatch(/plugged\s+mixed$/);
  });

  it('tolerates missing fields', () => {
    const v = toVmStats({ vmId: 'x' });
    expect(renderVmShow(v)).toMatch(/Memory: +-/);
  });

  it('events are one line each', () => {
    const at = new Date('2025-01-01T00:00:00.000Z');
    const names = new Map([[stats.vmId, 'vmhostd-demo']]);
    expect(
      renderEvent(
        `|virt|device_removed|${stats.vmId}`,
        { alias: 'ua-aaaa', memSize: 1536, late: true },
        names,
        at,
      ),
    ).toBe(
      `2025-01-01T00:00:00Z  device_removed         vmhostd-demo (${stats.vmId})  alias=ua-aaaa memory=1536MiB late=true`,
    );
    expect(
      renderEvent(
        `|virt|device_removal_failed|${stats.vmId}`,
        { alias: 'ua-b', reason: 'guest-rejected' },
        names,
        at,
      ),
    ).toMatch(/device_removal_failed\s+vmhostd-demo .* alias=ua-b reason=guest-rejected$/);
    expect(renderEvent(`|virt|VM_status|${stats.vmId}`, stats, new Map(), at)).toMatch(
      /VM_status\s+1111\S+ {2}status=Up memory=1792MiB guaranteed=1024MiB dimms=2 hash=h1$/,
    );
    expect(renderEvent('other', { a: '1\n2' }, names, at)).not.toMatch(/\n/);
  });
});

describe('error explanations', () => {
  it('guest-rejected says how to make guest memory movable', () => {
    const x = explainRpcError(
      new RpcCallError('VM.hotunplugMemory', 85, 'unplug of device was rejected by the guest', {
        reason: 'guest-rejected',
      }),
      'hot unplug',
    );
    expect(x.message).toBe('hot unplug failed: unplug of device was rejected by the guest (guest-rejected)');
    expect(x.hint).toMatch(/memhp_default_state=online_movable/);
    expect(x.hint).toMatch(/movable_node/);
    expect(x.hint).toMatch(/udev rule/);
    expect(x.hint).toMatch(/udevadm control --reload/);
  });

  it('timeout says the removal stays requested', () => {
    expect(hintForReason('timeout')).toMatch(/stays requested/);
    expect(hintForReason('no-free-slot')).toMatch(/slot/);
    expect(hintForReason('whatever')).toBeUndefined();
  });

  it('codes without a reason', () => {
    expect(explainRpcError(new RpcCallError('VM.getStats', 1, 'no such VM', undefined), 'x').hint).toMatch(
      /vm list/,
    );
    expect(
      explainRpcError(new RpcCallError('VM.getStats', 100, 'boom', { correlationId: 'c-1' }), 'x').hint,
    ).toMatch(/c-1/);
  });
});

describe('Progress', () => {
  function sink(isTTY: boolean): { isTTY: boolean; text: string; write(s: string): void } {
    return {
      isTTY,
      text: '',
      write(s: string) {
        this.text += s;
      },
    };
  }

  it('plain output when not a TTY: one line, no control sequences', () => {
    const out = sink(false);
    let t = 1000;
    const p = new Progress(out, () => t);
    p.start((s) => `waiting ${s.toFixed(0)} s`);
    t = 4000;
    p.note('removed ua-1');
    p.stop();
    expect(out.text).toBe('waiting 0 s\nremoved ua-1\n');
    expect(p.elapsedS()).toBe(3);
  });

  it('redraws in place on a TTY and clears the line at the end', () => {
    const out = sink(true);
    let t = 0;
    const p = new Progress(out, () => t);
    p.start((s) => `waiting ${s.toFixed(0)} s`);
    t = 2000;
    p.note('removed ua-1');
    p.stop();
    expect(out.text).toContain('\r\u001b[2K| waiting 0 s');
    expect(out.text).toContain('\r\u001b[2Kremoved ua-1\n');
    expect(out.text).toContain('waiting 2 s');
    expect(out.text.endsWith('\r\u001b[2K')).toBe(true);
  });
});
