// The engine's memory device, both ways it is sent: ovirt-engine's dict
// (MemoryUtils.createVmMemoryDeviceMap: type, device, string-valued address
// and specParams, deviceId, alias ua-<deviceId>, size, node) and VDSM 4.4's
// xml form. Each field is validated; unknown fields, DTDs, entities and
// anything a DIMM does not have are refused with the field named.
import { describe, expect, it } from 'vitest';
import { memoryOf, toHotplugSpec, toHotunplugSpec } from '../../src/api/memory-device.js';
import { HotplugParams, HotunplugParams, type VmMemoryDevice } from '../../src/api/schemas.js';
import { RpcError } from '../../src/rpc/errors.js';
import type { JsonSchema } from '../../src/rpc/method.js';
import { createAjv, describeAjvError } from '../../src/rpc/validation.js';

const VM = '1e9a36b9-4b5f-4b7a-9d55-1c0b3a5d7e21';
const DEV = '5a6b7c8d-1111-4222-8333-944455556666';

/** Exactly what ovirt-engine builds for a hot unplug of a DIMM it plugged. */
const engineDict: VmMemoryDevice = {
  type: 'memory',
  device: 'memory',
  address: { type: 'dimm', slot: '0', base: '0x100000000' },
  specParams: { size: '256', node: '0' },
  deviceId: DEV,
  alias: `ua-${DEV}`,
  size: 256,
  node: 0,
};

const ajv = createAjv();
const plugSchema = ajv.compile(HotplugParams as unknown as JsonSchema);
const unplugSchema = ajv.compile(HotunplugParams as unknown as JsonSchema);

/** The first schema problem of a hot unplug request, as the dispatcher reports it. */
function schemaProblem(memory: unknown): { field: string; rule: string; message: string } | null {
  if (unplugSchema({ vmID: VM, params: { vmId: VM, memory, memGuaranteedSize: 1024 } })) return null;
  const first = unplugSchema.errors?.[0];
  if (!first) throw new Error('no error');
  return describeAjvError(first);
}

function rpcErrorOf(fn: () => unknown): { field: string; rule: string; message: string } {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RpcError);
    const e = err as RpcError;
    expect(e.code).toBe(-32602);
    return e.data as { field: string; rule: string; message: string };
  }
  throw new Error('expected an RpcError');
}

const xmlOf = (inner: string) => `<devices><memory model='dimm'>${inner}</memory></devices>`;
const TARGET = "<target><size unit='KiB'>262144</size><node>0</node></target>";

describe("the engine's memory dict", () => {
  it('passes the schema as sent and names the DIMM by alias, slot and base', () => {
    expect(schemaProblem(engineDict)).toBeNull();
    expect(toHotunplugSpec(memoryOf({ vmId: VM, memory: engineDict }))).toEqual({
      size: 256,
      node: 0,
      alias: `ua-${DEV}`,
      address: { slot: 0, base: '0x100000000' },
    });
  });

  it("hot plug honours the engine's alias, or makes ua-<deviceId> when only the device id is sent", () => {
    const { alias: _a, address: _ad, ...plug } = engineDict;
    expect(plugSchema({ vmID: VM, params: { vmId: VM, memory: plug, memGuaranteedSize: 1024 } })).toBe(true);
    expect(toHotplugSpec(memoryOf({ vmId: VM, memory: plug }))).toEqual({
      size: 256,
      node: 0,
      alias: `ua-${DEV}`,
    });
    const { address: _x, ...withAlias } = { ...engineDict, alias: 'ua-mine' };
    expect(toHotplugSpec(memoryOf({ vmId: VM, memory: withAlias })).alias).toBe('ua-mine');
    expect(toHotplugSpec(memoryOf({ vmId: VM, memory: { size: 128, node: 0 } }))).toEqual({
      size: 128,
      node: 0,
    });
  });

  it.each([
    ['device', { device: 'disk' }, 'params.params.memory.device', 'const'],
    ['type', { type: 'interface' }, 'params.params.memory.type', 'const'],
    ['deviceType', { deviceType: 'balloon' }, 'params.params.memory.deviceType', 'const'],
    ['deviceId', { deviceId: 'not-a-uuid' }, 'params.params.memory.deviceId', 'pattern'],
    ['alias charset', { alias: 'ua-x;rm -rf' }, 'params.params.memory.alias', 'pattern'],
    ['alias prefix', { alias: 'virtio-mem0' }, 'params.params.memory.alias', 'pattern'],
    ['address type', { address: { type: 'pci', slot: '0' } }, 'params.params.memory.address.type', 'const'],
    [
      'address slot',
      { address: { type: 'dimm', slot: 'zero' } },
      'params.params.memory.address.slot',
      'pattern',
    ],
    ['address base', { address: { base: '4294967296' } }, 'params.params.memory.address.base', 'pattern'],
    [
      'unknown address key',
      { address: { bus: '0' } },
      'params.params.memory.address.bus',
      'additionalProperties',
    ],
    [
      'specParams key',
      { specParams: { size: '256', model: 'dimm' } },
      'params.params.memory.specParams.model',
      'additionalProperties',
    ],
    ['specParams size', { specParams: { size: '2x' } }, 'params.params.memory.specParams.size', 'pattern'],
    ['size as string', { size: '256' }, 'params.params.memory.size', 'type'],
    ['unknown field', { guestPath: '/dev/x' }, 'params.params.memory.guestPath', 'additionalProperties'],
    // Hot plug of a virtio-mem device is not offered (docs/design.md, "Operations").
    ['virtio-mem model', { model: 'virtio-mem' }, 'params.params.memory.model', 'additionalProperties'],
  ])('refuses a bad %s, naming the field', (_what, patch, field, rule) => {
    const p = schemaProblem({ ...engineDict, ...patch });
    expect(p?.field).toBe(field);
    expect(p?.rule).toBe(rule);
  });

  it('specParams must agree with size and node', () => {
    const size = rpcErrorOf(() =>
      memoryOf({ vmId: VM, memory: { ...engineDict, specParams: { size: '128', node: '0' } } }),
    );
    expect(size).toMatchObject({ field: 'params.params.memory.specParams.size', rule: 'equals size' });
    const node = rpcErrorOf(() =>
      memoryOf({ vmId: VM, memory: { ...engineDict, specParams: { size: '256', node: 1 } } }),
    );
    expect(node).toMatchObject({ field: 'params.params.memory.specParams.node', rule: 'equals node' });
  });

  it('exactly one of memory and xml; unplug needs an alias; plug takes no slot', () => {
    expect(rpcErrorOf(() => memoryOf({ vmId: VM })).field).toBe('params.params.memory');
    expect(rpcErrorOf(() => memoryOf({ vmId: VM, memory: engineDict, xml: xmlOf(TARGET) })).field).toBe(
      'params.params.xml',
    );
    const { alias: _a, ...noAlias } = engineDict;
    expect(rpcErrorOf(() => toHotunplugSpec(memoryOf({ vmId: VM, memory: noAlias }))).field).toBe(
      'params.params.memory.alias',
    );
    expect(rpcErrorOf(() => toHotplugSpec(memoryOf({ vmId: VM, memory: engineDict }))).field).toBe(
      'params.params.memory.address',
    );
  });
});

describe('the xml form', () => {
  const full = xmlOf(`${TARGET}<alias name='ua-${DEV}'/><address type='dimm' slot='0' base='0x100000000'/>`);

  it('gives the same DIMM as the dict', () => {
    expect(toHotunplugSpec(memoryOf({ vmId: VM, xml: full }))).toEqual(
      toHotunplugSpec(memoryOf({ vmId: VM, memory: engineDict })),
    );
    const plug = xmlOf("<target><size unit='MiB'>128</size><node>0</node></target>");
    expect(toHotplugSpec(memoryOf({ vmId: VM, xml: `<?xml version='1.0'?>${plug}` }))).toEqual({
      size: 128,
      node: 0,
    });
    expect(
      toHotplugSpec(memoryOf({ vmId: VM, xml: xmlOf('<target><size>131072</size><node>1</node></target>') })),
    ).toEqual({
      size: 128,
      node: 1,
    });
  });

  it.each([
    ['a DTD', `<!DOCTYPE devices [<!ENTITY x "0">]>${xmlOf(TARGET)}`, /DTD/],
    [
      'an external entity',
      `<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><devices>&x;</devices>`,
      /DTD/,
    ],
    ['CDATA', xmlOf(`${TARGET}<alias name='ua-a'/><![CDATA[x]]>`), /CDATA/],
    ['malformed XML', '<devices><memory>', /well-formed/],
    ['another root', `<memory model='dimm'>${TARGET}</memory>`, /not allowed|<devices>/],
    [
      'two memory devices',
      `<devices><memory model='dimm'>${TARGET}</memory><memory model='dimm'>${TARGET}</memory></devices>`,
      /exactly one <memory>/,
    ],
    ['no memory device', '<devices></devices>', /memory/],
    [
      'another device beside it',
      `<devices><memory model='dimm'>${TARGET}</memory><disk/></devices>`,
      /<disk> is not allowed/,
    ],
    [
      'a virtio-mem device',
      `<devices><memory model='virtio-mem'>${TARGET}</memory></devices>`,
      /model='dimm'/,
    ],
    ['no model', `<devices><memory>${TARGET}</memory></devices>`, /model='dimm'/],
    [
      'a source element',
      xmlOf(`${TARGET}<source><pagesize>4</pagesize></source>`),
      /<source> is not allowed/,
    ],
    [
      'an unknown attribute',
      `<devices><memory model='dimm' access='shared'>${TARGET}</memory></devices>`,
      /attribute access/,
    ],
    [
      'a size that is not whole MiB',
      xmlOf("<target><size unit='KiB'>1000</size><node>0</node></target>"),
      /whole number of MiB/,
    ],
    [
      'a size unit we do not know',
      xmlOf("<target><size unit='furlong'>1</size><node>0</node></target>"),
      /unit/,
    ],
    ['no node', xmlOf("<target><size unit='MiB'>128</size></target>"), /<node>/],
    ['a bad alias', xmlOf(`${TARGET}<alias name='ua-a b'/>`), /alias/],
    ['a bad base', xmlOf(`${TARGET}<alias name='ua-a'/><address type='dimm' base='x'/>`), /address\.base/],
    ['a pci address', xmlOf(`${TARGET}<alias name='ua-a'/><address type='pci' slot='1'/>`), /address\.type/],
  ])('refuses %s with -32602 naming params.params.xml', (_what, xml, re) => {
    const e = rpcErrorOf(() => memoryOf({ vmId: VM, xml }));
    expect(e.field.startsWith('params.params.xml')).toBe(true);
    expect(`${e.field} ${e.message}`).toMatch(re);
  });
});
