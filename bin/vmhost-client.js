#!/usr/bin/env node
// vmhost-client: the operator's command line for vmhostd (built code in dist/).
import { runCli } from '../dist/cli/main.js';

await runCli();
