/**
 * The `memq` command line. The only module that reads `process.env` and argv and installs signal
 * handlers (docs/architecture.md, "Lifecycle"). Every command takes `--help`.
 *
 * Exit codes: 0 success; 1 failure (configuration, Redis, a failed replay, an error, a shutdown
 * that abandoned work at its deadline); 2 usage (unknown command or option); 130 forced exit
 * after a second SIGINT/SIGTERM.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AppError } from './core/errors.js';
import { loadEnvConfig, retiredEnvVariables } from './config/env.js';
import type { ProcessMode } from './cli/run-command.js';
import { createLogger } from './runtime/logger.js';
import { reexecWithYoungGenerationCap } from './runtime/v8-heap.js';

// Commands are imported when run: a `memq work` process need not hold the HTTP stack, the corpus
// parser or the audit's tokenizer in memory (worker RSS, docs/benchmarks.md).

const USAGE = `usage: memq <command> [options]   (memq <command> --help for its options)

commands:
  start              everything in one process: HTTP API, Bull Board, /metrics, health, workers
                     and the maintenance schedule (what npm start runs)
  serve              HTTP only (API, Bull Board, /metrics, health): scale-out front ends
  work               workers and the maintenance schedule only: scale-out back ends
  validate [dir]     check memory resource files (default: $MEMQ_MEMORIES_DIR or memories)
  list <resource>    the instances of a resource in one project, most recently active first
  inspect <r> <key>  one memory instance: window, summary, counters, TTL, lock holder
  jobs               job counts per queue and state, failed jobs and their reasons, --retry
  replay [options]   replay e-mail threads (the SpamAssassin ham corpus, or --mbox FILE / --eml DIR) through memq and report
  audit [options]    check what a replay left in Redis against the corpus (exit 1 on violations)
  bench [--quick]    run the pipeline benchmark (npm run bench; a git checkout with tsx)
  help               this text
  --version, -v      the package version

exit codes: 0 success, 1 failure (or a shutdown that abandoned work), 2 usage error, 130 forced
exit (second Ctrl-C)`;

const PROCESS_HELP: Record<ProcessMode, string> = {
  start: `usage: memq start

Runs the HTTP server on $HOST:$PORT (default 127.0.0.1:3000, loopback only; HOST=0.0.0.0 to
accept remote connections: /v1 API, /admin/queues Bull Board, /metrics, /healthz, /readyz,
/openapi.json), the workers of all four queues and the maintenance schedule.
Redis: $REDIS_URL, else redis://127.0.0.1:6379 if it answers, else a private redis-server.
API keys: $MEMQ_API_KEYS or $MEMQ_API_KEYS_FILE, else .memq/api-key (created once).
Bull Board: $MEMQ_BOARD_USER / $MEMQ_BOARD_PASSWORD, else .memq/board-password (created once).
The first SIGINT/SIGTERM drains: /readyz answers 503, the workers finish their jobs, then HTTP
and Redis close, all within $MEMQ_SHUTDOWN_GRACE_MS (default 25000); a second forces.
exit codes: 0 stopped cleanly, 1 could not start or abandoned work at the deadline, 130 forced`,
  serve: `usage: memq serve

As memq start without workers or schedule: the HTTP server only (run memq work elsewhere).
exit codes: 0 stopped cleanly, 1 could not start or abandoned work at the deadline, 130 forced`,
  work: `usage: memq work

As memq start without the HTTP server: workers and the maintenance schedule only.
exit codes: 0 stopped cleanly, 1 could not start or abandoned work at the deadline, 130 forced`,
};

const VALIDATE_HELP = `usage: memq validate [dir]

Checks every memory resource file in dir (default: $MEMQ_MEMORIES_DIR or memories) in one pass;
one line per problem naming file, field, what is allowed and what was found.
exit codes: 0 all valid, 1 any problem, 2 usage`;

const BENCH_HELP = `usage: memq bench [--quick]

Runs bench/pipeline.ts (npm run bench): BullMQ no-op ceiling against memq appends on a private
redis-server; writes bench/results/latest.json. --quick: fewer jobs. The benchmark is TypeScript
in a git checkout of memq (not in the npm package) and runs through tsx (a devDependency).
exit codes: the benchmark's; 1 when bench/ or tsx is missing`;

/**
 * The root of the memq package: the nearest directory above this module holding a package.json
 * named memq (the repository root from src/main.ts, the package root from dist/src/main.js).
 * @throws Error when there is none (a broken installation).
 */
function packageRoot(): { dir: string; version: string } {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'memq' && typeof pkg.version === 'string')
        return { dir, version: pkg.version };
    }
    const parent = path.dirname(dir);
    if (parent === dir)
      throw new Error(`no memq package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/** Whether `tsx` resolves from this module (a devDependency: present in a checkout, not in the package). */
function tsxAvailable(): boolean {
  try {
    import.meta.resolve('tsx');
    return true;
  } catch {
    return false;
  }
}

const out = (line: string) => process.stdout.write(line + '\n');
const err = (line: string) => process.stderr.write(line + '\n');
const wantsHelp = (args: string[]) => args.includes('--help') || args.includes('-h');

/**
 * Runs `memq start` / `serve` / `work` until a signal. The first SIGINT/SIGTERM stops it within
 * `MEMQ_SHUTDOWN_GRACE_MS` (docs/operations.md, "Shutdown"): 0 when everything closed in time,
 * 1 when something was abandoned at the deadline or failed to close; at the deadline the process
 * exits whatever still runs. A second signal exits 130 at once.
 */
async function runProcess(mode: ProcessMode, rest: string[]): Promise<number> {
  if (wantsHelp(rest)) {
    out(PROCESS_HELP[mode]);
    return 0;
  }
  parseArgs({ args: rest, strict: true });
  const env = loadEnvConfig(process.env);
  const log = createLogger(env.logLevel);
  for (const warning of retiredEnvVariables(process.env)) log.warn(warning);
  const { runMemq } = await import('./cli/run-command.js');
  const running = await runMemq(mode, env, log, err);
  const parts = [
    ...(running.runtime.http
      ? [
          `http://localhost:${running.runtime.http.port} (listening on ${env.host}: API /v1, Bull Board /admin/queues, /metrics)`,
        ]
      : []),
    ...(running.runtime.workers
      ? [`workers (append x${env.appendConcurrency}, token-count x${env.tokenCountConcurrency})`]
      : []),
  ];
  err(`memq ${mode}: ${parts.join('; ')}; Ctrl-C to stop`);
  return new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals += 1;
      if (signals === 1) {
        const graceMs = env.shutdownGraceMs;
        const started = Date.now();
        err(`memq: ${signal}: draining (deadline ${graceMs} ms); send again to force`);
        let code: number | undefined;
        // The last resort: whatever still holds the event loop at the deadline (a socket, a
        // timer of a library) does not hold the process. Referenced until the stop settles, so
        // the process cannot end with 0 while a step is still pending.
        const deadline = setTimeout(() => {
          const open = process
            .getActiveResourcesInfo()
            .filter((resource) => resource !== 'TTYWrap');
          err(
            `memq: shutdown deadline (${graceMs} ms) reached with ${open.join(', ') || 'nothing'} still open; exiting`,
          );
          process.exit(code ?? 1);
        }, graceMs);
        void running.stop(Math.max(0, graceMs - exitReserveMs(graceMs))).then((outcome) => {
          code = outcome.clean ? 0 : 1;
          err(
            outcome.clean
              ? `memq: stopped cleanly in ${Date.now() - started} ms`
              : `memq: shutdown incomplete after ${Date.now() - started} ms: ${[
                  ...(outcome.abandoned.length > 0
                    ? [`abandoned ${outcome.abandoned.join(', ')}`]
                    : []),
                  ...(outcome.failed.length > 0 ? [`failed ${outcome.failed.join(', ')}`] : []),
                ].join('; ')} (unfinished jobs return to waiting when their locks expire); exit 1`,
          );
          // Abandoned work leaves sockets and timers of what was cut off: exit now rather than
          // wait for them (a clean stop ends when the event loop is empty).
          if (code !== 0) process.exit(code);
          // Clean: the deadline no longer holds the process, but still ends it if something lingers.
          deadline.unref();
          resolve(code);
        });
      } else {
        err(`memq: ${signal} again: forcing exit`);
        void running.abandon().finally(() => process.exit(130));
      }
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/**
 * The part of `MEMQ_SHUTDOWN_GRACE_MS` kept back from the runtime's shutdown for what comes after
 * it -- stopping the private redis-server, if memq started one, and the exit -- ms: 500, or a
 * tenth of the grace when that is less.
 */
function exitReserveMs(graceMs: number): number {
  return Math.min(500, graceMs / 10);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    out(USAGE);
    return command === undefined ? 2 : 0;
  }
  switch (command) {
    case '--version':
    case '-v':
      out(packageRoot().version);
      return 0;
    case 'start':
    case 'serve':
    case 'work':
      return runProcess(command, rest);
    case 'validate': {
      if (wantsHelp(rest)) {
        out(VALIDATE_HELP);
        return 0;
      }
      const env = loadEnvConfig(process.env);
      const { positionals } = parseArgs({ args: rest, allowPositionals: true, strict: true });
      const { validateCommand } = await import('./cli/validate-command.js');
      return validateCommand(positionals[0] ?? env.memoriesDir, out, err);
    }
    case 'replay': {
      const { replayCommand, REPLAY_HELP } = await import('./cli/replay-command.js');
      if (wantsHelp(rest)) {
        out(
          `usage: memq replay [options]\n\n${REPLAY_HELP}\n\nexit codes: 0 every message not skipped was committed and no job failed (at least one replayed), 1 otherwise, 2 usage`,
        );
        return 0;
      }
      return replayCommand(rest, loadEnvConfig(process.env), out, err);
    }
    case 'audit': {
      const { auditCommand } = await import('./cli/audit-command.js');
      return auditCommand(rest, loadEnvConfig(process.env), out, err);
    }
    case 'list': {
      const { listCommand } = await import('./cli/list-command.js');
      return listCommand(rest, loadEnvConfig(process.env), out);
    }
    case 'inspect': {
      const { inspectCommand } = await import('./cli/inspect-command.js');
      return inspectCommand(rest, loadEnvConfig(process.env), out);
    }
    case 'jobs': {
      const { jobsCommand } = await import('./cli/jobs-command.js');
      return jobsCommand(rest, loadEnvConfig(process.env), out);
    }
    case 'bench': {
      if (wantsHelp(rest)) {
        out(BENCH_HELP);
        return 0;
      }
      const script = path.join(packageRoot().dir, 'bench', 'pipeline.ts');
      if (!existsSync(script)) {
        err(
          `memq bench: ${script} is missing: the benchmark runs from a git checkout of memq (npm run bench), not from the npm package`,
        );
        return 1;
      }
      if (!tsxAvailable()) {
        err(
          'memq bench: tsx is missing: run npm install in the memq checkout (tsx is a devDependency)',
        );
        return 1;
      }
      const result = spawnSync(process.execPath, ['--import', 'tsx', script, ...rest], {
        stdio: 'inherit',
      });
      return result.status ?? 1;
    }
    default:
      err(`memq: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
      return 2;
  }
}

// start/serve/work of the compiled CLI re-execute once with a capped young generation (worker RSS).
reexecWithYoungGenerationCap(process.argv[2], import.meta.url);

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (
      error instanceof TypeError &&
      'code' in error &&
      String(error.code).startsWith('ERR_PARSE_ARGS')
    ) {
      err(`memq: ${error.message}\n\n${USAGE}`);
      process.exitCode = 2;
      return;
    }
    if (error instanceof AppError) err(`memq: ${error.code}: ${error.message}`);
    else err(`memq: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exitCode = error instanceof AppError && error.code === 'PAYLOAD_INVALID' ? 2 : 1;
  },
);
