// ExecStartPost of vmhostd.service: returns once the daemon accepts
// connections on its listen address, so `systemctl start vmhostd` (and units
// ordered After= it) wait until the daemon serves. Node has no sd_notify
// (AF_UNIX datagrams), and a `systemd-notify` child races its own exit on
// systemd 252; polling the listener is the dependable equivalent.
//
//   node wait-ready.mjs [--config PATH] [--listen HOST:PORT]
// Reads the listen address as the daemon does (flag, then config file, then
// the default). Exits 0 when a TCP connection succeeds; 1 when the main
// process ($MAINPID) is gone first. systemd's TimeoutStartSec bounds it.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { parse } from 'smol-toml';

const args = process.argv.slice(2);
const flag = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const configPath = flag('--config') ?? process.env.VMHOSTD_CONFIG ?? '/etc/vmhostd/vmhostd.toml';
let host = '127.0.0.1';
let port = 54321;
try {
  const listen = parse(readFileSync(configPath, 'utf8')).listen ?? {};
  if (typeof listen.host === 'string') host = listen.host;
  if (typeof listen.port === 'number') port = listen.port;
} catch {
  // no or unreadable config: the daemon itself reports that (and exits 2)
}
const listenFlag = flag('--listen');
if (listenFlag) {
  const i = listenFlag.lastIndexOf(':');
  host = listenFlag.slice(0, i).replace(/^\[|\]$/g, '');
  port = Number(listenFlag.slice(i + 1));
}
// A wildcard listener is reachable on loopback.
if (host === '0.0.0.0' || host === '') host = '127.0.0.1';
if (host === '::') host = '::1';
if (port === 0) process.exit(0); // any free port: nothing to wait for

const mainPid = Number(process.env.MAINPID);
const alive = () => {
  if (!mainPid) return true;
  try {
    process.kill(mainPid, 0);
    return true;
  } catch {
    return false;
  }
};

const tryConnect = () =>
  new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });

for (;;) {
  if (await tryConnect()) process.exit(0);
  if (!alive()) {
    console.error(`vmhostd (pid ${mainPid}) exited before listening on ${host}:${port}`);
    process.exit(1);
  }
  await new Promise((r) => setTimeout(r, 100));
}
