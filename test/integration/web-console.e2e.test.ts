// The web console in a real browser (Debian's chromium driven by
// playwright-core) against the real daemon, a real libvirtd and a real
// cooperative guest: the page lists the VM and its DIMMs, removes one through
// its Remove button, and follows a hot plug made elsewhere without a reload.
// playwright-core has no `expect`; its locators' waitFor/waitForFunction are
// the auto-waiting checks (no sleeps).
import { type Browser, chromium, type Dialog, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTENT_SECURITY_POLICY } from '../../src/rpc/static-files.js';
import type { Stats } from '../helpers/api-types.js';
import { type DaemonProcess, startDaemon } from '../helpers/daemon.js';
import { type Guest, hostReady, useGuests } from '../helpers/guest.js';
import { TestRpcClient } from '../helpers/rpc-client.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
// Playwright waits: generous for a loaded 2-core host, far below the test timeout.
const UI_WAIT_MS = 20_000;
const MiB = 1024;

// Turns CSP violations into console errors even if the browser would only report them.
const REPORT_CSP_VIOLATIONS = `document.addEventListener('securitypolicyviolation', (e) => {
  console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI);
});`;

function plug(c: TestRpcClient, vmId: string, size: number): Promise<Stats> {
  return c.call<Stats>('VM.hotplugMemory', { vmID: vmId, params: { vmId, memory: { size, node: 0 } } });
}

/** The "Memory N MiB" fact of the VM's section. */
function memoryFact(vm: Locator, memSize: number): Locator {
  return vm.locator('p.facts span', { hasText: new RegExp(`^Memory ${memSize} MiB$`) });
}

describe('web console (VM Devices view) in headless chromium', () => {
  const guests = useGuests();
  let guest: Guest;
  let daemon: DaemonProcess | undefined;
  let rpc: TestRpcClient | undefined;
  let launching: Promise<Browser> | undefined;
  let browser: Browser | undefined;
  let page: Page;
  const problems: string[] = [];
  const dialogs: string[] = [];

  beforeAll(async () => {
    await hostReady();
    // The guest boot is the slow part: launch the browser meanwhile.
    launching = chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    launching.catch(() => {}); // awaited below; a failed guest start must not leave it unhandled
    guest = await guests.start({ kind: 'cooperative', namePrefix: 'web-console' });
    browser = await launching;
    daemon = await startDaemon({ console: true, domainPrefix: 'vmhostd-test-web-' });
    rpc = await TestRpcClient.connect(daemon.url);
  });

  afterAll(async () => {
    // Also a browser still launching when the set-up failed.
    await (await launching?.catch(() => undefined))?.close();
    await rpc?.close();
    await daemon?.stop();
  });

  it('shows the VM and its DIMMs, removes one with its button, and follows a later hot plug live', async () => {
    if (!browser || !daemon || !rpc) throw new Error('set-up did not complete');
    const vmId = guest.uuid;
    const base = await rpc.stats(vmId);
    const memTotal0 = await guest.memTotalKiB();
    await plug(rpc, vmId, 128);
    const plugged = await plug(rpc, vmId, 256);
    expect(plugged.memoryDevices.map((d) => d.size).sort((a, b) => a - b)).toEqual([128, 256]);
    // The guest onlines both before we ask it to give one back.
    await guest.waitForMemTotal((k) => k >= memTotal0 + 384 * MiB - 1024, 60_000);
    const small = plugged.memoryDevices.find((d) => d.size === 128);
    const big = plugged.memoryDevices.find((d) => d.size === 256);
    if (!small || !big) throw new Error(`unexpected devices ${JSON.stringify(plugged.memoryDevices)}`);

    page = await browser.newPage();
    page.setDefaultTimeout(UI_WAIT_MS);
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('response', (r) => {
      if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`);
    });
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    page.on('dialog', (d: Dialog) => {
      dialogs.push(d.message());
      void d.accept();
    });
    await page.addInitScript(REPORT_CSP_VIOLATIONS);

    const origin = new URL(daemon.url.replace(/^ws/, 'http')).origin;
    const response = await page.goto(`${origin}/`);
    expect(response?.status()).toBe(200);
    expect(response?.headers()['content-security-policy']).toBe(CONTENT_SECURITY_POLICY);
    // The page's own marker: a reload or navigation would drop it.
    await page.evaluate('window.__vmhostdSamePage = true');

    await page.locator('#connection.up', { hasText: /^connected$/ }).waitFor();
    const vm = page.locator('section.vm', { has: page.locator('h2', { hasText: guest.name }) });
    await vm.waitFor();
    expect(await vm.locator('p.facts span.mono').textContent()).toBe(vmId);
    await memoryFact(vm, base.memSize + 384).waitFor();

    const row = (alias: string) => vm.locator('tbody tr', { has: page.getByText(alias, { exact: true }) });
    for (const d of [small, big]) {
      await row(d.alias).waitFor();
      expect(await row(d.alias).locator('td.alias').textContent()).toBe(d.alias);
      expect(await row(d.alias).locator('td').nth(1).textContent()).toBe(`${d.size} MiB`);
      // This guest has no agent: the zone it holds the DIMM in is unknown.
      expect(await row(d.alias).locator('td.zone').textContent()).toBe('unknown');
      expect(await row(d.alias).locator('button.remove').isEnabled()).toBe(true);
    }
    expect(await vm.locator('tbody tr').count()).toBe(2);

    // Remove the 128 MiB DIMM through the page.
    await row(small.alias).locator('button.remove').click();
    await row(small.alias).waitFor({ state: 'detached' });
    expect(dialogs).toHaveLength(1);
    expect(dialogs[0]).toContain(small.alias);
    await page
      .locator('#events li', { hasText: `${guest.name}: DIMM ${small.alias} removed` })
      .first()
      .waitFor();
    await memoryFact(vm, base.memSize + 256).waitFor();
    await row(big.alias).waitFor();

    const afterUnplug = await rpc.stats(vmId);
    expect(afterUnplug.memoryDevices.map((d) => d.alias)).toEqual([big.alias]);
    expect(afterUnplug.memSize).toBe(plugged.memSize - small.size);

    // A hot plug by another client shows up on the page by itself.
    const replugged = await plug(rpc, vmId, 128);
    const added = replugged.memoryDevices.find((d) => d.alias !== big.alias);
    if (!added) throw new Error(`no new DIMM in ${JSON.stringify(replugged.memoryDevices)}`);
    await row(added.alias).waitFor();
    expect(await row(added.alias).locator('td').nth(1).textContent()).toBe('128 MiB');
    await memoryFact(vm, replugged.memSize).waitFor();
    expect(await vm.locator('tbody tr').count()).toBe(2);
    expect(await page.evaluate('window.__vmhostdSamePage === true')).toBe(true);

    expect(problems).toEqual([]);
  });
});
