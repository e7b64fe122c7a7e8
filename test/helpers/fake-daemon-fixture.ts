// One fake libvirtd per test, and the daemons and clients a test starts on
// it, all stopped after the test whatever it did (vitest hooks): the set-up
// the fake-daemon test files shared line for line.
import { afterEach, beforeEach } from 'vitest';
import { type FakeDaemon, type FakeDaemonOptions, FakeLibvirtd, startOnFake } from './fake-daemon.js';
import { TestRpcClient } from './rpc-client.js';

export interface FakeDaemonTest {
  /** This test's fake libvirtd: a fresh one for each test. */
  readonly fake: FakeLibvirtd;
  /**
   * Starts a daemon on the fake (add domains first) and connects a client.
   * A test may start several (a restart after a kill); each is stopped after it.
   */
  start(o?: FakeDaemonOptions): Promise<{ fd: FakeDaemon; c: TestRpcClient }>;
}

/** Registers the hooks of the calling test file; call it once at its top level. */
export function fakeDaemonPerTest(): FakeDaemonTest {
  let fake: FakeLibvirtd | undefined;
  const daemons: FakeDaemon[] = [];
  const clients: TestRpcClient[] = [];
  beforeEach(async () => {
    fake = await FakeLibvirtd.start();
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close();
    for (const fd of daemons.splice(0)) await fd.stop();
    await fake?.stop();
    fake = undefined;
  });
  const t: FakeDaemonTest = {
    get fake(): FakeLibvirtd {
      if (!fake) throw new Error('the fake libvirtd exists only while a test runs');
      return fake;
    },
    async start(o = {}) {
      const fd = await startOnFake(t.fake, o);
      daemons.push(fd);
      const c = await TestRpcClient.connect(fd.daemon.url);
      clients.push(c);
      return { fd, c };
    },
  };
  return t;
}
