// Hostile input at a RUNNING daemon (child process, the real method table)
// backed by the fake libvirtd: random and adversarial JSON-RPC requests (wrong
// types, huge numbers, deep nesting, prototype-pollution keys, XML
// metacharacters and unicode in every string field incl. vmID and alias,
// batches). No crash, every reply a well-formed JSON-RPC response with a
// JSON-RPC or API error or a valid result, exactly one reply per id, and
// nothing unvalidated reaches libvirt: every XML document the fake received is
// checked.

import fc from 'fast-check';
import { XMLValidator } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { ReceivedXml } from '../fakes/fake-libvirtd.js';
import { type FakeDaemon, FakeLibvirtd, startOnFake } from '../helpers/fake-daemon.js';
import { hostileValue, type JsonNode, jsonText, raw } from '../helpers/hostile-json.js';
import { replyProblem } from '../helpers/jsonrpc-reply.js';

const obj = (
  r: Record<string, JsonNode | undefined>,
  extra?: [string, JsonNode] | null,
  entries: [string, JsonNode][] = [],
): JsonNode => {
  for (const [k, v] of Object.entries(r)) if (v !== undefined) entries.push([k, v]);
  if (extra) entries.push(extra);
  return { t: 'obj', entries };
};

/** Every adversarial string carries "evil" or a character no valid field allows, so leaks are detectable. */
const EVIL_STRINGS = [
  "ua-x'/><evil",
  'ua-x"/><evil a="1"/>',
  'dimm0<evil/>',
  'ua-&evil;',
  'ua-]]>evil',
  '<![CDATA[evil]]>',
  'ua-evil\u0000',
  'ua-evil\n<x>',
  'ua-💥evil',
  'ua-\u202eevil',
  '\ud800evil',
  `ua-${'e'.repeat(65)}`,
  `dimm${'9'.repeat(5)}`,
  '__proto__',
  'constructor',
];
const LEAK = /evil|💥|\u202e|CDATA|__proto__|constructor|e{65}|9{5}/;
const NUL = String.fromCharCode(0);

const nastyString = fc.oneof(
  fc.constantFrom(...EVIL_STRINGS),
  // Always carries a character no alias allows, next to the marker.
  fc.string({ maxLength: 30 }).map((s) => `ua-evil'${s}`),
  fc.string({ unit: 'grapheme', maxLength: 20 }).map((s) => `${s}<evil`),
);

const nastyNumber: fc.Arbitrary<JsonNode> = fc.oneof(
  fc.integer().map(raw),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map(raw),
  fc
    .constantFrom(
      '1e400',
      '-1e400',
      '-0',
      '9007199254740993',
      '0.5',
      '127.99',
      '4.9e-324',
      '1e308',
      '16777217',
      '64',
      '-1',
      '0',
    )
    .map((t): JsonNode => ({ t: 'raw', text: t })),
);

const nastyKey = fc.constantFrom(
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  'alias',
  'vmId',
  "x'/><evil",
  '💥',
);

const value = hostileValue({
  strings: nastyString,
  numbers: nastyNumber,
  keys: nastyKey,
  deep: { min: 50, max: 5000 },
  maxLength: 4,
});

describe('hostile JSON-RPC at a running daemon on the fake libvirtd', () => {
  let fake: FakeLibvirtd;
  let fd: FakeDaemon;
  let received: ReceivedXml[];
  const vmIds: string[] = [];
  const aliases: string[] = [];

  beforeAll(async () => {
    fake = await FakeLibvirtd.start();
    received = fake.recordXml();
    const dimms = (p: string, n: number) =>
      Array.from({ length: n }, (_, i) => ({ alias: `ua-${p}${i}`, sizeMiB: 128 }));
    // Cooperative, rejecting, persistent (next-run path), stopped, and one with libvirt-named DIMMs.
    vmIds.push(fake.addDomain({ memoryMiB: 1024, dimms: dimms('f', 8), eventDelayMs: 0 }).uuid);
    vmIds.push(
      fake.addDomain({ memoryMiB: 1024, dimms: dimms('r', 2), unplug: 'reject', eventDelayMs: 0 }).uuid,
    );
    vmIds.push(
      fake.addDomain({ memoryMiB: 1024, dimms: dimms('p', 2), persistent: true, eventDelayMs: 0 }).uuid,
    );
    vmIds.push(fake.addDomain({ memoryMiB: 1024, running: false, persistent: true }).uuid);
    vmIds.push(
      fake.addDomain({
        memoryMiB: 1024,
        dimms: [
          { alias: 'dimm0', sizeMiB: 256 },
          { alias: 'ua-q0', sizeMiB: 128 },
        ],
        eventDelayMs: 0,
      }).uuid,
    );
    aliases.push(...['f', 'r', 'p'].flatMap((p) => dimms(p, 8).map((d) => d.alias)), 'dimm0', 'ua-q0');
    fd = await startOnFake(fake, { unplugTimeoutS: 5, logLevel: 'info' });
  });
  afterAll(async () => {
    await fd?.stop();
    await fake?.stop();
  });

  it('no crash, well-formed replies only, one per id, and only validated data reaches libvirt', async () => {
    // Each field is usually valid and sometimes hostile, so whole requests often pass the schema
    // and reach the VM manager (and libvirt) with one hostile field somewhere.
    const mostly = <T>(good: fc.Arbitrary<T>, bad: fc.Arbitrary<T>, goodWeight = 8) =>
      fc.oneof({ weight: goodWeight, arbitrary: good }, { weight: 1, arbitrary: bad });
    /** Absent except one time in `oneIn`. */
    const rare = <T>(a: fc.Arbitrary<T>, oneIn: number) =>
      fc.oneof(
        { weight: oneIn - 1, arbitrary: fc.constant(undefined) },
        { weight: 1, arbitrary: a as fc.Arbitrary<T | undefined> },
      );
    const hostileString = fc.oneof(nastyString.map(raw), value);
    const vmId = mostly(
      fc.oneof(
        { weight: 8, arbitrary: fc.constantFrom(...vmIds).map(raw) },
        { weight: 1, arbitrary: fc.constantFrom(...vmIds).map((u) => raw(u.toUpperCase())) },
        { weight: 1, arbitrary: fc.uuid().map(raw) },
      ),
      fc.oneof(
        fc.constantFrom(...vmIds).map((u) => raw(`${u}<evil/>`)),
        hostileString,
      ),
    );
    const alias = mostly(
      fc.oneof(
        { weight: 6, arbitrary: fc.constantFrom(...aliases).map(raw) },
        {
          weight: 1,
          // A valid alias may still spell a marker (fast-check favours names like
          // "constructor"); such an alias is allowed through, so it must not be generated.
          arbitrary: fc
            .stringMatching(/^ua-[A-Za-z0-9-]{1,20}$/)
            .filter((s) => !LEAK.test(s))
            .map(raw),
        },
      ),
      hostileString,
      5,
    );
    const size = mostly(fc.constantFrom(128, 128, 128, 256).map(raw), fc.oneof(nastyNumber, value));
    const node = mostly(fc.constant(raw(0)), fc.oneof(nastyNumber, value));
    const timeout = mostly(fc.constantFrom(0.2, 1, 2).map(raw), fc.oneof(nastyNumber, value));
    const bytes = mostly(
      fc.integer({ min: 4, max: 24 }).map((m) => raw(m * 128 * 1024 * 1024 + (m % 3) * 12345)),
      fc.oneof(nastyNumber, value),
    );
    const extra = rare(fc.tuple(nastyKey, value), 10);
    /** Present except one time in 12 (a missing required field). */
    const opt = <T>(a: fc.Arbitrary<T>) =>
      fc.oneof(
        { weight: 11, arbitrary: a as fc.Arbitrary<T | undefined> },
        { weight: 1, arbitrary: fc.constant(undefined) },
      );
    const address = fc
      .record({
        type: rare(mostly(fc.constant(raw('dimm')), hostileString), 2),
        slot: rare(mostly(fc.integer({ min: 0, max: 16 }).map(raw), nastyNumber), 2),
        base: rare(mostly(fc.constant(raw('0x100000000')), hostileString), 2),
      })
      .map((r) => obj(r));
    const memory = fc
      .record({ size: opt(size), node: opt(node), alias: opt(alias), extra })
      .map(({ extra: x, ...r }) => obj(r, x));
    // Only unplug takes an address; elsewhere it is a hostile extra now and then.
    const withAddress = (oneIn: number) =>
      fc
        .tuple(memory, rare(address, oneIn))
        .map(([m, a]) => (a && m.t === 'obj' ? obj({}, null, [...m.entries, ['address', a]]) : m));
    const inner = (addressOneIn: number) =>
      fc
        .record({
          vmId: opt(vmId),
          memory: mostly(withAddress(addressOneIn), value, 12),
          memGuaranteedSize: rare(size, 5),
          extra,
        })
        .map(({ extra: x, ...r }) => obj(r, x));
    // The same vmID in params.vmId most of the time, so requests get past the agreement check.
    const vmParams = (timeoutOneIn: number, addressOneIn: number) =>
      fc
        .record({
          id: vmId,
          inner: mostly(inner(addressOneIn), value, 12),
          same: mostly(fc.constant(true), fc.constant(false), 9),
          timeout: rare(timeout, timeoutOneIn),
          extra,
        })
        .map(({ id, inner: i, same, timeout: t, extra: x }) => {
          const ii =
            same && i.t === 'obj'
              ? {
                  ...i,
                  entries: [['vmId', id] as [string, JsonNode], ...i.entries.filter(([k]) => k !== 'vmId')],
                }
              : i;
          return obj({ vmID: id, params: ii, timeout: t }, x);
        });
    const methodAndParams: fc.Arbitrary<[string | JsonNode, JsonNode | undefined]> = fc.oneof(
      {
        weight: 1,
        arbitrary: fc.tuple(
          fc.constantFrom(
            'Host.ping',
            'Host.getCapabilities',
            'Host.getVMList',
            'Host.getAllVmStats',
            'rpc.discover',
          ),
          rare(value, 4),
        ),
      },
      {
        weight: 2,
        arbitrary: fc.tuple(
          fc.constant('VM.getStats'),
          mostly(
            fc.record({ vmID: vmId, extra }).map(({ vmID, extra: x }) => obj({ vmID }, x)),
            value,
          ),
        ),
      },
      // Hot plug takes no timeout: present only sometimes, as a hostile extra.
      { weight: 4, arbitrary: fc.tuple(fc.constant('VM.hotplugMemory'), vmParams(15, 15)) },
      { weight: 5, arbitrary: fc.tuple(fc.constant('VM.hotunplugMemory'), vmParams(2, 3)) },
      {
        weight: 3,
        arbitrary: fc.tuple(
          fc.constant('VM.setMemory'),
          fc
            .record({
              vmID: vmId,
              memory: opt(bytes),
              guaranteed: rare(bytes, 3),
              timeout: rare(timeout, 2),
              extra,
            })
            .map(({ extra: x, ...r }) => obj(r, x)),
        ),
      },
      {
        weight: 1,
        arbitrary: fc.tuple(
          fc.oneof(
            fc.constantFrom(
              '__proto__',
              'constructor',
              'VM.__proto__',
              'Host.constructor',
              'toString',
              'VM.hotunplugMemory<evil/>',
            ),
            nastyString,
            value,
          ),
          fc.option(value, { nil: undefined }),
        ),
      },
    );

    let nextId = 1;
    const envelope = fc
      .record({
        mp: methodAndParams,
        idKind: fc.constantFrom(...Array(12).fill('counter'), 'none', 'null', 'weird'),
        weirdId: value,
        jsonrpc: fc.oneof(
          { weight: 12, arbitrary: fc.constant(raw('2.0')) },
          { weight: 1, arbitrary: value },
        ),
        extra: rare(fc.tuple(nastyKey, value), 12),
      })
      .map((r) => {
        const [m, p] = r.mp;
        const entries: [string, JsonNode][] = [
          ['jsonrpc', r.jsonrpc],
          ['method', typeof m === 'string' ? raw(m) : m],
        ];
        let id: string | undefined;
        if (r.idKind === 'counter') {
          id = `fz#${nextId++}`;
          entries.push(['id', raw(id)]);
        } else if (r.idKind === 'null') entries.push(['id', raw(null)]);
        else if (r.idKind === 'weird') entries.push(['id', r.weirdId]);
        if (p) entries.push(['params', p]);
        if (r.extra) entries.push(r.extra);
        return { node: { t: 'obj', entries } as JsonNode, id };
      });
    const message = fc.oneof(
      { weight: 8, arbitrary: envelope.map((e) => ({ text: jsonText(e.node), ids: e.id ? [e.id] : [] })) },
      {
        weight: 2,
        arbitrary: fc
          .array(
            fc.oneof(
              { weight: 4, arbitrary: envelope },
              { weight: 1, arbitrary: value.map((node) => ({ node, id: undefined })) },
            ),
            { maxLength: 6 },
          )
          .map((items) => ({
            text: jsonText({ t: 'arr', items: items.map((i) => i.node) }),
            ids: items.flatMap((i) => (i.id ? [i.id] : [])),
          })),
      },
      { weight: 1, arbitrary: value.map((node) => ({ text: jsonText(node), ids: [] as string[] })) },
      { weight: 1, arbitrary: fc.string({ maxLength: 100 }).map((t) => ({ text: t, ids: [] as string[] })) },
    );

    const ws = await new Promise<WebSocket>((resolve, reject) => {
      const s = new WebSocket(fd.daemon.url);
      s.once('open', () => resolve(s));
      s.once('error', reject);
    });
    const problems: string[] = [];
    const replies = new Map<string, unknown[]>();
    const waiting = new Map<string, () => void>();
    const outcome = { results: 0, errors: new Map<number, number>() };
    ws.on('message', (data: Buffer) => {
      let msg: unknown;
      try {
        msg = JSON.parse(data.toString('utf8'));
      } catch {
        problems.push(`not JSON: ${data.toString('utf8').slice(0, 200)}`);
        return;
      }
      if (Array.isArray(msg) && msg.length === 0) problems.push('empty batch reply');
      for (const m of Array.isArray(msg) ? msg : [msg]) {
        const o = m as Record<string, unknown>;
        if (o !== null && typeof o === 'object' && !('id' in o) && typeof o.method === 'string') {
          if (o.jsonrpc !== '2.0' || !o.method.startsWith('|virt|'))
            problems.push(`bad notification ${JSON.stringify(o).slice(0, 200)}`);
          continue;
        }
        const p = wellFormed(o);
        if (p) problems.push(`${p}: ${JSON.stringify(o).slice(0, 300)}`);
        else if ('error' in o) {
          const code = (o.error as { code: number }).code;
          outcome.errors.set(code, (outcome.errors.get(code) ?? 0) + 1);
        } else outcome.results++;
        if (typeof o.id === 'string') {
          const list = replies.get(o.id) ?? [];
          list.push(o);
          replies.set(o.id, list);
          waiting.get(o.id)?.();
        }
      }
    });
    const expectReply = (id: string, ms = 15_000) =>
      new Promise<void>((resolve, reject) => {
        if (replies.has(id)) return resolve();
        const t = setTimeout(() => reject(new Error(`no reply to ${id} within ${ms} ms`)), ms);
        waiting.set(id, () => {
          clearTimeout(t);
          waiting.delete(id);
          resolve();
        });
      });

    let sentinel = 0;
    let sent = 0;
    const t0 = performance.now();
    await fc.assert(
      fc.asyncProperty(message, async (m) => {
        const waits = m.ids.map((id) => expectReply(id));
        ws.send(m.text);
        sent++;
        await Promise.all(waits);
        const id = `sentinel-${++sentinel}`;
        const done = expectReply(id);
        ws.send(JSON.stringify({ jsonrpc: '2.0', id, method: 'Host.ping' }));
        await done;
        expect(problems).toEqual([]);
      }),
      { numRuns: 1500, interruptAfterTimeLimit: 90_000 },
    );
    const elapsedMs = performance.now() - t0;

    // Alive and still answering, with the VMs intact.
    expect(fd.daemon.running).toBe(true);
    const list = await rpc(ws, replies, waiting, 'Host.getVMList');
    expect(list).toHaveLength(vmIds.length);
    expect(problems).toEqual([]);
    // Ids the fuzzer owns are unique per request: each must be answered exactly once.
    for (const [id, list2] of replies) {
      if (/^(fz#|sentinel-|final-)/.test(id) && list2.length !== 1)
        expect.fail(`id ${id} answered ${list2.length} times`);
    }
    // No unexpected-error (100) replies: every failure was a validation or API error.
    expect(outcome.errors.get(100) ?? 0).toBe(0);
    // The daemon logged nothing at error level (a handler crash would be).
    expect(fd.daemon.logs.filter((l) => l.level >= 50)).toEqual([]);

    // Nothing unvalidated reached libvirt.
    const attaches = received.filter((r) => r.proc === 'DOMAIN_ATTACH_DEVICE_FLAGS');
    const detaches = received.filter((r) => r.proc === 'DOMAIN_DETACH_DEVICE_FLAGS');
    for (const r of received) {
      expect(XMLValidator.validate(r.xml), `${r.proc}: ${r.xml}`).toBe(true);
      expect(r.xml, r.proc).not.toMatch(LEAK);
      expect(r.xml.includes(NUL), r.proc).toBe(false);
      expect(vmIds).toContain(r.uuid ?? vmIds[2]);
      for (const a of aliasesIn(r.xml))
        expect(a, `${r.proc}: ${r.xml}`).toMatch(/^ua-[A-Za-z0-9-]+$|^dimm\d+$/);
    }
    for (const r of [...attaches, ...detaches]) {
      const kib = Number(
        /<size unit="KiB">(\d+)<\/size>|<size unit='KiB'>(\d+)<\/size>/.exec(r.xml)?.slice(1).find(Boolean),
      );
      expect(kib % (128 * 1024), r.xml).toBe(0);
      expect(r.xml).toMatch(/<node>0<\/node>/);
    }
    console.log(
      `daemon fuzz: ${JSON.stringify({ messages: sent, elapsedMs: Math.round(elapsedMs), results: outcome.results, errors: Object.fromEntries(outcome.errors), attach: attaches.length, detach: detaches.length, xml: received.length })}`,
    );
    // Not vacuous: the generator got real operations through to libvirt.
    expect(attaches.length).toBeGreaterThan(3);
    expect(detaches.length).toBeGreaterThan(3);

    ws.close();
  });
});

const ALLOWED_CODES = new Set([-32700, -32600, -32601, -32602, 1, 51, 70, 85]);

function wellFormed(o: Record<string, unknown>): string | null {
  const problem = replyProblem(o, ALLOWED_CODES);
  if (problem) return problem;
  if ('error' in o) {
    const e = o.error as { code: number; data?: { reason?: unknown } };
    // API errors say why.
    if ([70, 85].includes(e.code) && typeof e.data?.reason !== 'string')
      return 'API error without data.reason';
  } else if (o.result === undefined) return 'result undefined';
  return null;
}

/** Alias values anywhere in an XML document: <alias name=…> and alias=… attributes (our metadata). */
function aliasesIn(xml: string): string[] {
  const out: string[] = [];
  for (const m of xml.matchAll(/(?:<alias\s+name|\salias)\s*=\s*(["'])(.*?)\1/g)) out.push(m[2] ?? '');
  return out;
}

async function rpc(
  ws: WebSocket,
  replies: Map<string, unknown[]>,
  waiting: Map<string, () => void>,
  method: string,
): Promise<unknown> {
  const id = `final-${method}`;
  const got = new Promise<void>((resolve) => waiting.set(id, resolve));
  ws.send(JSON.stringify({ jsonrpc: '2.0', id, method }));
  await got;
  return (replies.get(id)?.[0] as { result?: unknown } | undefined)?.result;
}
