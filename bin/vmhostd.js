#!/usr/bin/env node
// Thin launcher: the daemon is compiled to dist/ by `npm run build`.
import { main } from '../dist/daemon.js';

await main(process.argv.slice(2));
