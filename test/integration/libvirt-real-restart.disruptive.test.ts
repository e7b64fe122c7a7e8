// Restarting the real libvirtd under a connected client: it notices, fails
// fast, reconnects with backoff, registers its event callbacks again, and
// events flow again. Disruptive: it runs alone (see vitest.config.ts).

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DomainAffect,
  defaultSocketPath,
  LibvirtClient,
  LibvirtConnectionError,
  LifecycleEvent,
} from '../../src/libvirt/index.js';
import { hostReady, useGuests } from '../helpers/guest.js';
import { restartLibvirtd, startLibvirtd } from '../helpers/libvirtd.js';

let client: LibvirtClient;
const guests = useGuests();

beforeAll(async () => {
  await hostReady();
  client = await LibvirtClient.connect({
    socketPath: defaultSocketPath(),
    reconnect: { initialDelayMs: 100, maxDelayMs: 2_000 },
  });
});

afterAll(async () => {
  await startLibvirtd(); // leave the host as we found it even if the test failed midway
  await client?.close();
});

function waitEvent<T extends unknown[]>(
  subscribe: (fn: (...args: T) => void) => () => void,
  what: string,
  ms = 60_000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${what} within ${ms} ms`));
    }, ms);
    const off = subscribe((...args) => {
      clearTimeout(timer);
      off();
      resolve(args);
    });
  });
}

describe('libvirt client across a libvirtd restart', () => {
  it('reconnects, re-registers event callbacks, and events flow again', async () => {
    const g = await guests.start({ kind: 'cooperative', namePrefix: 'lv-restart' });
    const dom = await client.lookupByUUID(g.uuid);

    const disconnected = waitEvent<[Error]>((fn) => {
      client.on('disconnected', fn);
      return () => client.off('disconnected', fn);
    }, "'disconnected'");
    const reconnected = waitEvent<[]>((fn) => {
      client.on('reconnected', fn);
      return () => client.off('reconnected', fn);
    }, "'reconnected'");
    await restartLibvirtd();
    expect((await disconnected)[0]).toBeInstanceOf(LibvirtConnectionError);
    await reconnected;
    expect(client.connected).toBe(true);

    // Calls work on the new connection, and the guest survived the restart.
    expect((await client.lookupByUUID(g.uuid)).name).toBe(g.name);

    // Device events arrive through the callbacks registered on the new connection.
    const alias = `ua-${randomUUID()}`;
    const xml = `<memory model='dimm'><target><size unit='MiB'>128</size><node>0</node></target><alias name='${alias}'/></memory>`;
    const removed = waitEvent<[{ alias: string; domain: { uuid: string } }]>((fn) => {
      const l = (e: { alias: string; domain: { uuid: string } }) => {
        if (e.domain.uuid === g.uuid && e.alias === alias) fn(e);
      };
      client.on('deviceRemoved', l);
      return () => client.off('deviceRemoved', l);
    }, "'deviceRemoved'");
    const before = await g.memTotalKiB();
    await client.attachDeviceFlags(dom, xml, DomainAffect.LIVE);
    await g.waitForMemTotal((kib) => kib >= before + 127 * 1024);
    await client.detachDeviceFlags(dom, xml, DomainAffect.LIVE);
    await removed;

    const stopped = waitEvent<[{ event: number }]>((fn) => {
      const l = (e: { domain: { uuid: string }; event: number }) => {
        if (e.domain.uuid === g.uuid && e.event === LifecycleEvent.STOPPED) fn(e);
      };
      client.on('lifecycle', l);
      return () => client.off('lifecycle', l);
    }, 'lifecycle STOPPED');
    await g.destroy();
    await stopped;
  });
});
