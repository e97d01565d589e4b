#!/usr/bin/env node
import { Command } from 'commander';
import { registerClientCommands } from './cli/client/commands.js';
import { registerServeCommand } from './cli/serve.js';

/** The `targetd` command: the daemon (`serve`) and the API client (`call` and friends). */
const program = new Command();
program.name('targetd').description('Remotely managed block storage array (targetd JSON-RPC API, iSCSI)');
registerServeCommand(program);
registerClientCommands(program);
await program.parseAsync(process.argv);
