/**
 * The `memq` command line. The only module that reads `process.env` and argv and installs signal
 * handlers (STYLE.md).
 *
 *   memq start                 workers (+ API and Bull Board once they exist) in one process
 *   memq work                  workers only (scale-out)
 *   memq validate [dir]        check memory resource files (default: MEMQ_MEMORIES_DIR)
 *   memq replay [options]      stream the SpamAssassin ham threads through memq (see --help)
 */
import { parseArgs } from 'node:util';
import { AppError } from './core/errors.js';
import { loadEnvConfig } from './config/env.js';
import { runWorkers } from './cli/serve-workers.js';
import { validateCommand } from './cli/validate.js';
import { replayCommand, REPLAY_HELP } from './cli/replay-command.js';
import { createLogger } from './runtime/logger.js';

const USAGE = `usage: memq <command> [options]

commands:
  start              run memq: workers for every queue (API and Bull Board join later)
  work               run workers only (scale-out; same as start without the API)
  validate [dir]     check memory resource files (default: $MEMQ_MEMORIES_DIR or memories)
  replay [options]   stream the SpamAssassin ham e-mail threads through memq and report
  help               this text

replay options:
${REPLAY_HELP}`;

const out = (line: string) => process.stdout.write(line + '\n');
const err = (line: string) => process.stderr.write(line + '\n');

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    out(USAGE);
    return command === undefined ? 1 : 0;
  }
  const env = loadEnvConfig(process.env);
  switch (command) {
    case 'validate': {
      const { positionals } = parseArgs({ args: rest, allowPositionals: true, strict: true });
      return validateCommand(positionals[0] ?? env.memoriesDir, out, err);
    }
    case 'start':
    case 'work': {
      parseArgs({ args: rest, strict: true });
      const log = createLogger(env.logLevel);
      const running = await runWorkers(env, log, err);
      err(
        `memq ${command}: workers running (append x${env.appendConcurrency}, token-count x${env.tokenCountConcurrency}); Ctrl-C to stop`,
      );
      await new Promise<void>((resolve) => {
        let signals = 0;
        const onSignal = (signal: NodeJS.Signals) => {
          signals += 1;
          if (signals === 1) {
            err(
              `memq: ${signal}: draining active jobs (grace ${env.shutdownGraceMs} ms); send again to force`,
            );
            void running.stop().then(resolve);
          } else {
            err(`memq: ${signal} again: forcing exit`);
            void running.abandon().finally(() => process.exit(130));
          }
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
      });
      return 0;
    }
    case 'replay':
      return replayCommand(rest, env, out, err);
    default:
      err(`memq: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof AppError) err(`memq: ${error.code}: ${error.message}`);
    else if (
      error instanceof TypeError &&
      'code' in error &&
      String(error.code).startsWith('ERR_PARSE_ARGS')
    )
      err(`memq: ${error.message}\n\n${USAGE}`);
    else err(`memq: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exitCode = 1;
  },
);
