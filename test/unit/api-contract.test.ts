// The contract defined once: every method's params and result schema
// compiles under the validator's strict mode and is what rpc.discover
// publishes; the result checker every API-level test goes through rejects
// answers the schemas do not describe; codes and reasons are one set that the
// domain layer, the REST front and the CLI's explanations all cover.
import { describe, expect, it } from 'vitest';
import { ErrorCode, HOTPLUG_REASONS, HOTUNPLUG_REASONS, REASONS_BY_CODE } from '../../src/api/contract.js';
import { toRpcError } from '../../src/api/error-mapping.js';
import { apiMethods } from '../../src/api/index.js';
import { statusForError } from '../../src/api/rest.js';
import { hintForReason } from '../../src/cli/explain.js';
import type { RpcError } from '../../src/rpc/errors.js';
import { buildOpenRpcDocument } from '../../src/rpc/openrpc.js';
import { createAjv } from '../../src/rpc/validation.js';
import { VirtError } from '../../src/virt/errors.js';
import type { VmManager } from '../../src/virt/vm-manager.js';
import {
  ContractViolation,
  checkError,
  checkedMethods,
  checkNotification,
  checkResult,
} from '../helpers/contract-check.js';

const VM = '0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0';
const specs = apiMethods({} as VmManager, {
  version: '0',
  apiVersion: '1.0',
  libvirtVersion: '9.0.0',
  hypervisorVersion: '7.2.0',
  hostname: 'h',
  libvirtConnected: () => true,
  status: () => {
    throw new Error('not called: only the specs are read');
  },
});

const stats = {
  vmId: VM,
  vmName: 'demo',
  status: 'Up',
  memSize: 1280,
  memGuaranteedSize: 1024,
  hash: 'abc',
  balloonActive: false,
  memoryDevices: [
    { model: 'dimm', alias: 'ua-1', size: 256, node: 0, slot: 0, base: '0x100000000', state: 'plugged' },
  ],
};

describe('API contract', () => {
  it('every method has params and result schemas that compile in strict mode', () => {
    expect(specs.map((s) => s.name).sort()).toEqual([...checkedMethods].sort());
    for (const s of specs) {
      const ajv = createAjv();
      expect(() => ajv.compile(s.params), s.name).not.toThrow();
      expect(() => ajv.compile(s.result), s.name).not.toThrow();
    }
  });

  it('rpc.discover publishes exactly the schemas the checker holds results to', () => {
    const doc = JSON.parse(JSON.stringify(buildOpenRpcDocument(specs, { title: 't', version: '1' }))) as {
      methods: { name: string; result: { schema: unknown }; params: { name: string; schema: unknown }[] }[];
    };
    for (const s of specs) {
      const m = doc.methods.find((x) => x.name === s.name);
      expect(m?.result.schema, s.name).toEqual(JSON.parse(JSON.stringify(s.result)));
      const props = (s.params as { properties: Record<string, unknown> }).properties;
      expect(m?.params.map((p) => p.name)).toEqual(Object.keys(props));
    }
  });

  it('the result checker accepts a conforming answer and rejects drift (extra, missing, wrong type)', () => {
    checkResult('VM.getStats', [stats]);
    checkResult('Host.getAllVmStats', [stats]);
    checkResult('Host.getVMList', [{ vmId: VM, status: 'Up' }]);
    checkResult('Host.getVMList', [VM]);
    checkResult('Host.getVMList', [
      { vmId: VM, vmName: 'demo', status: 'Up', memSize: 1, memGuaranteedSize: 1 },
    ]);
    checkResult('Host.ping2', true);
    expect(() => checkResult('VM.getStats', stats)).toThrow(ContractViolation);
    expect(() => checkResult('VM.getStats', [stats, stats])).toThrow(ContractViolation);
    expect(() => checkResult('Host.getVMList', [{ vmId: VM, vmName: 'demo', status: 'Up' }])).toThrow();
    checkResult('Host.ping', true);
    checkResult('VM.hotunplugMemory', {
      status: 'removed',
      alias: 'ua-1',
      memSize: 1024,
      memGuaranteedSize: 1024,
    });
    expect(() => checkResult('VM.getStats', [{ ...stats, extra: 1 }])).toThrow(ContractViolation);
    const { hash: _hash, ...noHash } = stats;
    expect(() => checkResult('VM.getStats', [noHash])).toThrow(/hash/);
    expect(() => checkResult('VM.getStats', [{ ...stats, memSize: '1280' }])).toThrow(/memSize/);
    expect(() => checkResult('VM.getStats', [{ ...stats, status: 'Running' }])).toThrow(/status/);
    expect(() => checkResult('Host.ping', false)).toThrow(ContractViolation);
    expect(() =>
      checkResult('VM.setMemory', {
        memSize: 1,
        memGuaranteedSize: 1,
        unplugged: [],
        failed: [{ alias: 'ua-1', reason: 'made-up' }],
        nextRun: { updated: false, memory: 1, guaranteed: 1 },
      }),
    ).toThrow(/reason/);
  });

  it('notifications are checked by kind; unknown kinds are violations', () => {
    checkNotification(`|virt|VM_status|${VM}`, { [VM]: stats, notify_time: 123 });
    expect(() => checkNotification(`|virt|VM_status|${VM}`, stats)).toThrow(ContractViolation);
    expect(() => checkNotification(`|virt|VM_status|${VM}`, { [VM]: stats })).toThrow(ContractViolation);
    checkNotification(`|virt|device_removed|${VM}`, { alias: 'ua-1', memSize: 1024, late: true });
    checkNotification(`|virt|device_removal_failed|${VM}`, { alias: 'ua-1', reason: 'guest-rejected' });
    expect(() => checkNotification(`|virt|device_removed|${VM}`, { alias: 'ua-1' })).toThrow(/memSize/);
    expect(() =>
      checkNotification(`|virt|device_removal_failed|${VM}`, { alias: 'a', reason: 'x' }),
    ).toThrow();
    expect(() => checkNotification('|virt|something_else|x', {})).toThrow(/not in the contract/);
  });

  it('errors: domain codes carry a reason of their code, -32602 names field and rule, 100 a correlation id', () => {
    checkError({ code: 85, message: 'x', data: { reason: 'timeout' } });
    checkError({ code: 70, message: 'x', data: { reason: 'no-free-slot' } });
    expect(() => checkError({ code: 70, message: 'x', data: { reason: 'timeout' } })).toThrow(
      ContractViolation,
    );
    expect(() => checkError({ code: 85, message: 'x' })).toThrow(ContractViolation);
    expect(() => checkError({ code: -32602, message: 'x', data: { field: 'params.x' } })).toThrow();
    expect(() => checkError({ code: 100, message: 'x', data: {} })).toThrow();
  });

  it('domain errors map to the contract codes with their reason', () => {
    const cases: [VirtError, number][] = [
      [new VirtError('no-such-vm', 'no-such-vm', 'm'), ErrorCode.NO_SUCH_VM],
      [new VirtError('migrating', 'migrating', 'm'), ErrorCode.MIGRATING],
      ...HOTPLUG_REASONS.map((r): [VirtError, number] => [
        new VirtError('hotplug', r, 'm'),
        ErrorCode.HOTPLUG_FAILED,
      ]),
      ...HOTUNPLUG_REASONS.map((r): [VirtError, number] => [
        new VirtError('hotunplug', r, 'm'),
        ErrorCode.HOTUNPLUG_FAILED,
      ]),
    ];
    for (const [virt, code] of cases) {
      const e = toRpcError(virt) as RpcError;
      expect(e.code).toBe(code);
      checkError(e.toJSON());
    }
    const invalid = toRpcError(
      new VirtError('invalid', 'invalid', 'bad', { field: 'memory.alias', rule: 'unique' }),
    );
    checkError((invalid as RpcError).toJSON());
  });

  it('every reason has an operator hint and a REST status', () => {
    for (const [code, reasons] of Object.entries(REASONS_BY_CODE)) {
      for (const reason of reasons) {
        expect(hintForReason(reason), reason).toBeTruthy();
        const status = statusForError({ code: Number(code), message: 'm', data: { reason } });
        expect(status, reason).toBeGreaterThanOrEqual(400);
      }
    }
    expect(statusForError({ code: 85, message: 'm', data: { reason: 'timeout' } })).toBe(504);
    expect(statusForError({ code: 85, message: 'm', data: { reason: 'no-suitable-device' } })).toBe(422);
    expect(statusForError({ code: 85, message: 'm', data: { reason: 'guest-rejected' } })).toBe(409);
    // A reason that belongs to another code is not trusted.
    expect(statusForError({ code: 70, message: 'm', data: { reason: 'timeout' } })).toBe(500);
  });
});
