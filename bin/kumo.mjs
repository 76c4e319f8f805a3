#!/usr/bin/env node
// The `kumo` command (package.json "bin"): runs the TypeScript CLI in cli/ through
// tsx, found in this project's node_modules next to this file.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
