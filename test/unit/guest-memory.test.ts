// The movability probe against an in-memory guest agent that answers the way
// qemu-ga does (replies and errors as JSON text through libvirt's passthrough).
import { describe, expect, it } from 'vitest';
import { LibvirtError, LibvirtErrorCode } from '../../src/libvirt/errors.js';
import type { DomainRef, LibvirtApi } from '../../src/libvirt/types.js';
import { classify, dimmBlocks, probeGuestMemory } from '../../src/virt/guest-memory.js';

const dom: DomainRef = { name: 'vm', uuid: '00000000-0000-0000-0000-000000000001', id: 1 };
const BLOCK = 0x8000000n; // 128 MiB

interface FakeGuest {
  /** phys-index -> 'offline' or the zone it is online in */
  blocks: Map<number, string>;
  blocked?: string[];
  hang?: boolean;
  calls: string[];
}

function fakeApi(g: FakeGuest): LibvirtApi {
  const files = new Map<number, string>();
  let next = 1;
  const api = {
    async qemuAgentCommand(_d: DomainRef, cmd: string): Promise<string | null> {
      const { execute, arguments: args } = JSON.parse(cmd) as {
        execute: string;
        arguments?: { path?: string; handle?: number };
      };
      g.calls.push(execute);
      if (g.hang) return new Promise(() => undefined);
      if (g.blocked?.includes(execute)) {
        return JSON.stringify({
          error: { class: 'CommandNotFound', desc: `Command ${execute} has been disabled` },
        });
      }
      const ok = (v: unknown) => JSON.stringify({ return: v });
      switch (execute) {
        case 'guest-get-memory-blocks':
          return ok(
            [...g.blocks].map(([i, z]) => ({
              'phys-index': i,
              online: z !== 'offline',
              'can-offline': true,
            })),
          );
        case 'guest-file-open': {
          const path = args?.path ?? '';
          let content: string | undefined;
          if (path === '/sys/devices/system/memory/block_size_bytes') content = '8000000\n';
          const m = /memory(\d+)\/valid_zones$/.exec(path);
          if (m) content = `${g.blocks.get(Number(m[1]))}\n`;
          if (content === undefined)
            return JSON.stringify({ error: { class: 'GenericError', desc: 'no such file' } });
          files.set(next, content);
          return ok(next++);
        }
        case 'guest-file-read':
          return ok({
            count: 1,
            'buf-b64': Buffer.from(files.get(args?.handle ?? 0) ?? '').toString('base64'),
            eof: true,
          });
        case 'guest-file-close':
          files.delete(args?.handle ?? 0);
          return ok({});
        default:
          return JSON.stringify({ error: { class: 'CommandNotFound', desc: 'unknown' } });
      }
    },
  };
  return api as unknown as LibvirtApi;
}

const dimm = (alias: string, block: number, blocks = 1) => ({
  alias,
  base: `0x${(BigInt(block) * BLOCK).toString(16)}`,
  size: blocks * 128,
});

describe('guest memory probe', () => {
  it('reports per DIMM: movable, normal, offline, partly online, and unknown for blocks the guest lacks', async () => {
    const g: FakeGuest = {
      blocks: new Map([
        [0, 'DMA32'],
        [32, 'Movable'],
        [33, 'Normal'],
        [34, 'offline'],
        [35, 'Movable'],
        [36, 'offline'],
      ]),
      calls: [],
    };
    const r = await probeGuestMemory(fakeApi(g), dom, [
      dimm('mov', 32),
      dimm('norm', 33),
      dimm('off', 34),
      dimm('mix', 35, 2),
      dimm('absent', 40),
    ]);
    expect(r.silent).toBe(false);
    expect(Object.fromEntries(r.views)).toEqual({
      mov: { online: true, zone: 'movable' },
      norm: { online: true, zone: 'normal' },
      off: { online: false, zone: 'offline' },
      mix: { online: false, zone: 'movable' },
      absent: { online: false, zone: 'unknown' },
    });
    // Offline blocks need no file read; every opened file is closed.
    expect(g.calls.filter((c) => c === 'guest-file-open')).toHaveLength(1 + 3);
    expect(g.calls.filter((c) => c === 'guest-file-close')).toHaveLength(1 + 3);
  });

  it('a command blocked by the agent policy makes every DIMM unknown', async () => {
    const g: FakeGuest = { blocks: new Map([[32, 'Movable']]), blocked: ['guest-file-open'], calls: [] };
    const r = await probeGuestMemory(fakeApi(g), dom, [dimm('a', 32)]);
    expect(r.views.get('a')).toEqual({ online: false, zone: 'unknown' });
    // It answered (with an error): not silent.
    expect(r.silent).toBe(false);
  });

  it('an agent that never answers: unknown after the deadline', async () => {
    const g: FakeGuest = { blocks: new Map(), hang: true, calls: [] };
    const r = await probeGuestMemory(fakeApi(g), dom, [dimm('a', 32)], { deadlineMs: 50 });
    expect(r.views.get('a')?.zone).toBe('unknown');
    expect(r.silent).toBe(true);
    expect(g.calls).toEqual(['guest-get-memory-blocks']);
  });

  it('libvirt giving up on the agent (agent unresponsive): unknown, and silent', async () => {
    const api = {
      qemuAgentCommand: () =>
        Promise.reject(
          new LibvirtError('Guest agent is not responding', LibvirtErrorCode.AGENT_UNRESPONSIVE, 10),
        ),
    } as unknown as LibvirtApi;
    const r = await probeGuestMemory(api, dom, [dimm('a', 32)]);
    expect(r.views.get('a')?.zone).toBe('unknown');
    expect(r.silent).toBe(true);
  });

  it('a client without agent passthrough: unknown, no call', async () => {
    const r = await probeGuestMemory({} as LibvirtApi, dom, [dimm('a', 32)]);
    expect(r.views.get('a')?.zone).toBe('unknown');
    expect(r.silent).toBe(false);
  });

  it('maps a DIMM to its blocks; unaligned or unknown addresses give none', () => {
    expect(dimmBlocks(dimm('a', 32, 2), BLOCK)).toEqual([32n, 33n]);
    expect(dimmBlocks({ alias: 'a', base: '0x100000000', size: 100 }, BLOCK)).toBeUndefined();
    expect(dimmBlocks({ alias: 'a', base: '', size: 128 }, BLOCK)).toBeUndefined();
    expect(classify([])).toEqual({ online: false, zone: 'unknown' });
    expect(classify(['Movable', 'Movable'])).toEqual({ online: true, zone: 'movable' });
    expect(classify(['Normal', 'Movable'])).toEqual({ online: true, zone: 'mixed' });
    // Offline blocks do not mix: the zone is that of the online ones, and `online` says not all are.
    expect(classify(['Normal', 'offline'])).toEqual({ online: false, zone: 'normal' });
    expect(classify(['offline', 'Movable'])).toEqual({ online: false, zone: 'movable' });
    expect(classify(['offline', 'offline'])).toEqual({ online: false, zone: 'offline' });
    expect(classify(['Normal', 'Movable', 'offline'])).toEqual({ online: false, zone: 'mixed' });
  });
});
