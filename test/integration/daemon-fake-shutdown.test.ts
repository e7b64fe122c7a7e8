// SIGTERM with an unplug in flight: the daemon stops accepting, lets the
// operation finish (its reply and notification still go out), and exits 0;
// more signals during the drain change nothing; a stalled or broken stdout
// does not keep it from ending. On the fake libvirtd, whose guest releases
// the DIMM after a known delay or when the test says.
import { type ChildProcess, spawn } from 'node:child_process';
import { type AddressInfo, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { STOP_BOUND_MS } from '../../src/daemon.js';
import { type FakeDaemon, FakeLibvirtd, startOnFake, waitFor } from '../helpers/fake-daemon.js';
import { expectRpcError, TestRpcClient } from '../helpers/rpc-client.js';

const daemonEntry = fileURLToPath(new URL('../helpers/daemon-main.ts', import.meta.url));
const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

let fake: FakeLibvirtd;
let fd: FakeDaemon | undefined;
const children: ChildProcess[] = [];

beforeEach(async () => {
  fake = await FakeLibvirtd.start();
});
afterEach(async () => {
  for (const p of children.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await fd?.stop();
  fd = undefined;
  await fake.stop();
});

describe('daemon shutdown', () => {
  it('finishes an unplug in flight on SIGTERM, refuses new work, and exits 0', async () => {
    const vmId = fake.addDomain({
      memoryMiB: 1024,
      dimms: [
        { alias: 'ua-slow', sizeMiB: 128 },
        { alias: 'ua-other', sizeMiB: 128 },
      ],
      eventDelayMs: 1500,
    }).uuid;
    fd = await startOnFake(fake);
    const d = fd.daemon;
    const c = await TestRpcClient.connect(d.url);
    const unplug = (alias: string) =>
      c.call<{ status: string; memSize: number }>('VM.hotunplugMemory', {
        vmID: vmId,
        params: { vmId, memory: { size: 128, node: 0, alias } },
        timeout: 20,
      });
    const pending = unplug('ua-slow');
    await d.waitForLog((l) => l.msg === 'detach requested' && l.alias === 'ua-slow', 10_000);
    d.proc.kill('SIGTERM');
    await d.waitForLog((l) => l.msg === 'signal received', 5_000);

    // New work is refused while the running unplug drains.
    const refused = await expectRpcError(unplug('ua-other'));
    expect(refused.code).toBe(-32000);
    expect(refused.message).toMatch(/shutting down/);

    expect(await pending).toMatchObject({ status: 'removed', memSize: 1024 + 128 });
    await c.waitForNotification((n) => n.method === `|virt|device_removed|${vmId}`, 5_000);
    expect(await d.waitExit()).toBe(0);
    expect(fake.getDomainState(vmId)?.liveDimms).toEqual(['ua-other']);
    expect(d.logs.some((l) => l.msg === 'stopped')).toBe(true);
  });
});

describe('daemon stop: repeated signals and a stdout that does not take the log', () => {
  it('a second and third SIGTERM during the drain change nothing: the unplug reply still arrives, exit 0', async () => {
    const vmId = fake.addDomain({
      memoryMiB: 1024,
      dimms: [{ alias: 'ua-held', sizeMiB: 128 }],
      unplug: 'silent',
      silentDelayMs: 10,
    }).uuid;
    fd = await startOnFake(fake);
    const d = fd.daemon;
    const c = await TestRpcClient.connect(d.url);
    const pending = c.call<{ status: string }>('VM.hotunplugMemory', {
      vmID: vmId,
      params: { vmId, memory: { size: 128, node: 0, alias: 'ua-held' } },
      timeout: 60,
    });
    await d.waitForLog((l) => l.msg === 'detach requested' && l.alias === 'ua-held', 10_000);
    d.proc.kill('SIGTERM');
    await d.waitForLog((l) => l.msg === 'signal received', 5_000);
    d.proc.kill('SIGTERM');
    d.proc.kill('SIGINT');
    await d.waitForLog((l) => l.msg.startsWith('already stopping') && l.signal === 'SIGINT', 5_000);
    // Still draining: the guest releases the DIMM only now.
    expect(d.running).toBe(true);
    fake.emitDeviceRemoved(vmId, 'ua-held');
    expect(await pending).toMatchObject({ status: 'removed' });
    expect(await d.waitExit()).toBe(0);
    expect(d.logs.find((l) => l.msg === 'stopped')).toMatchObject({ drained: true });
  });

  /**
   * The daemon with stdout on a pipe to `sleep`, which never reads (stalled);
   * killing sleep closes the pipe's read end (broken: EPIPE). No log lines
   * reach the test, so readiness is a ping on a port chosen beforehand.
   */
  async function startWithStdoutTo(): Promise<{ proc: ChildProcess; sleeper: ChildProcess; url: string }> {
    const port = await freePort();
    const sleeper = spawn('sleep', ['600'], { stdio: ['pipe', 'ignore', 'ignore'] });
    const proc = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        daemonEntry,
        '--listen',
        `127.0.0.1:${port}`,
        '--log-level',
        'debug',
        '--no-console',
        '--libvirt-socket',
        fake.socketPath,
      ],
      { cwd: repoRoot, stdio: ['ignore', sleeper.stdin ?? 'ignore', 'ignore'] },
    );
    children.push(proc, sleeper);
    const url = `ws://127.0.0.1:${port}/jsonrpc`;
    const c = await waitFor(
      'the daemon to answer',
      () => TestRpcClient.connect(url).catch(() => undefined),
      60_000,
      100,
    );
    await c.close();
    return { proc, sleeper, url };
  }

  /** 64-entry batches of Host.ping, each logged at debug: far more log than a pipe holds. */
  async function floodLog(url: string, batches: number): Promise<void> {
    const c = await TestRpcClient.connect(url);
    const batch = JSON.stringify(
      Array.from({ length: 64 }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'Host.ping' })),
    );
    for (let i = 0; i < batches; i++) {
      const reply = (await c.raw(batch, 10_000)) as unknown[];
      expect(reply).toHaveLength(64);
    }
    await c.close();
  }

  function exitOf(proc: ChildProcess): Promise<number | null> {
    if (proc.exitCode !== null) return Promise.resolve(proc.exitCode);
    return new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
  }

  it('SIGTERM ends the daemon (exit 0) while stdout is stalled with megabytes of log pending', async () => {
    const { proc, url } = await startWithStdoutTo();
    await floodLog(url, 100); // 6,400 debug lines, about 1 MB: the pipe holds 64 KiB
    // The daemon kept serving although nothing reads its log: it is buffered.
    proc.kill('SIGTERM');
    const code = await Promise.race([exitOf(proc), deadline(STOP_BOUND_MS + 15_000, 'stalled stdout')]);
    expect(code).toBe(0);
  });

  it('SIGTERM ends the daemon (exit 0) when its stalled stdout breaks (EPIPE) during the stop', async () => {
    const { proc, sleeper, url } = await startWithStdoutTo();
    await floodLog(url, 100);
    proc.kill('SIGTERM');
    // The reader goes away while the daemon holds unwritten log: every write
    // from now on fails with EPIPE (issue 16: retried every 100 ms for ever).
    sleeper.kill('SIGKILL');
    const code = await Promise.race([exitOf(proc), deadline(STOP_BOUND_MS + 15_000, 'broken stdout')]);
    expect(code).toBe(0);
  });
});

function deadline(ms: number, what: string): Promise<never> {
  return new Promise((_, reject) => {
    setTimeout(() => reject(new Error(`daemon still running ${ms} ms after SIGTERM (${what})`)), ms).unref();
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}
