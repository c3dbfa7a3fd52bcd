#!/usr/bin/env node
// The `memq` command of the package: runs the compiled CLI in dist/ (`npm run build` writes it;
// an installed package ships it). From a git checkout without a build, `npm run memq -- <args>`
// runs the TypeScript sources through tsx instead.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/src/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write(
    `memq: ${fileURLToPath(main)} is missing: run \`npm run build\` first, or \`npm run memq -- <command>\` to run the sources through tsx\n`,
  );
  process.exit(1);
}
await import(main.href);
