// vmhost-client's entry: parse, connect, run, and map every failure to its
// exit code with one clear message (see USAGE for the codes).

import { createInterface } from 'node:readline/promises';
import { pathToFileURL } from 'node:url';
import { packageVersion } from '../config/config.js';
import { type GlobalOptions, parseCli, USAGE } from './args.js';
import { type CliIo, runCommand } from './commands.js';
import { ConnectError, EXIT, OperationError, RpcCallError, UsageError } from './errors.js';
import { explainRpcError } from './explain.js';
import { RpcClient } from './rpc-client.js';

function describeCommand(argv: readonly string[]): string {
  const words = argv.filter((a) => !a.startsWith('-') && !a.includes('='));
  return words.slice(0, 2).join(' ') || 'the call';
}

export async function main(
  argv: readonly string[],
  env: Record<string, string | undefined>,
  io: CliIo,
): Promise<number> {
  const err = (s: string): void => {
    io.stderr.write(`vmhost-client: ${s}\n`);
  };
  // --json promises {"error":…} on stdout for every failure, even one found
  // before the options were fully parsed.
  const wantsJson = (): boolean => global?.json ?? argv.includes('--json');
  const jsonError = (kind: string, fields: Record<string, unknown>): void => {
    if (wantsJson()) io.stdout.write(`${JSON.stringify({ error: { kind, ...fields } })}\n`);
  };
  let global: GlobalOptions | undefined;
  let client: RpcClient | undefined;
  try {
    const parsed = parseCli(argv, env);
    global = parsed.global;
    if (parsed.command.kind === 'help') {
      io.stdout.write(USAGE);
      return EXIT.OK;
    }
    if (parsed.command.kind === 'version') {
      io.stdout.write(`vmhost-client ${packageVersion()}\n`);
      return EXIT.OK;
    }
    client = await RpcClient.connect({
      url: global.url,
      ...(global.tlsCert !== undefined ? { tlsCert: global.tlsCert } : {}),
      ...(global.tlsKey !== undefined ? { tlsKey: global.tlsKey } : {}),
      ...(global.tlsCa !== undefined ? { tlsCa: global.tlsCa } : {}),
    });
    return await runCommand(client, parsed.command, global, io);
  } catch (e) {
    if (e instanceof UsageError) {
      jsonError('usage', { message: e.message });
      err(e.message);
      io.stderr.write('(see: vmhost-client --help)\n');
      return EXIT.USAGE;
    }
    if (e instanceof ConnectError) {
      jsonError('connect', { message: e.message });
      err(e.message);
      return EXIT.CONNECT;
    }
    if (e instanceof RpcCallError) {
      const what = e.method.startsWith('VM.resizeMemoryDevice')
        ? 'virtio-mem resize'
        : e.method.startsWith('VM.hotunplug')
          ? 'hot unplug'
          : e.method.startsWith('VM.hotplug')
            ? 'hot plug'
            : e.method;
      const x = explainRpcError(e, what === e.method ? describeCommand(argv) : what);
      jsonError('rpc', { code: e.code, message: e.message, data: e.data });
      err(x.message);
      if (x.hint) io.stderr.write(`  hint: ${x.hint}\n`);
      return EXIT.FAILED;
    }
    if (e instanceof OperationError) {
      jsonError('operation', { message: e.message });
      err(e.message);
      if (e.hint) io.stderr.write(`  hint: ${e.hint}\n`);
      return EXIT.FAILED;
    }
    jsonError('unexpected', { message: e instanceof Error ? e.message : String(e) });
    err(`unexpected error: ${e instanceof Error ? e.message : String(e)}`);
    return EXIT.FAILED;
  } finally {
    await client?.close();
  }
}

/** A y/N question on the terminal (stderr, so --json output stays clean). */
async function askOnTerminal(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(question);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

/** For bin/vmhost-client.js: real stdio, Ctrl-C ends `events` cleanly. */
export async function runCli(): Promise<void> {
  let onInt: () => void = () => {};
  const interrupted = new Promise<void>((resolve) => {
    onInt = resolve;
  });
  process.once('SIGINT', onInt);
  process.once('SIGTERM', onInt);
  const code = await main(process.argv.slice(2), process.env, {
    stdout: process.stdout,
    stderr: process.stderr,
    interrupted,
    ...(process.stdin.isTTY && process.stderr.isTTY ? { confirm: askOnTerminal } : {}),
  });
  process.off('SIGINT', onInt);
  process.off('SIGTERM', onInt);
  process.exitCode = code;
}

// Also runnable directly: node --import tsx src/cli/main.ts …
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void runCli();
}
