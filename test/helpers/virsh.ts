// Test-only access to the host's libvirt through virsh: an observer that is
// independent of our own client, for asserting what libvirt really holds.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export async function virsh(...args: string[]): Promise<string> {
  const { stdout } = await run('virsh', ['-c', 'qemu:///system', ...args], { timeout: 60_000 });
  return stdout;
}

/** Aliases of the DIMMs in the domain's live XML. */
export async function liveDimmAliases(domain: string): Promise<string[]> {
  const xml = await virsh('dumpxml', domain);
  const out: string[] = [];
  for (const m of xml.matchAll(/<memory model='dimm'[\s\S]*?<alias name='([^']+)'\/>[\s\S]*?<\/memory>/g)) {
    out.push(m[1]!);
  }
  return out;
}
