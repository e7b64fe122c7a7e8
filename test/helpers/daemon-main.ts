// Runs the daemon from source (through tsx) so tests need no prior build.
import { main } from '../../src/daemon.js';

await main(process.argv.slice(2));
