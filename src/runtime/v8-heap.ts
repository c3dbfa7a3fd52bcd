/**
 * V8 heap settings for memq's long-running processes (`memq start`, `serve`, `work`). V8 sizes
 * the young generation from the machine's memory: on 64-bit Node 24 each of its semi-spaces may
 * grow to 32 MiB (`new_space` 64 MiB), which a worker's append path fills with short-lived
 * garbage and which the process's RSS keeps afterwards. `--max-semi-space-size=8` caps it at 16
 * MiB; measured with bench/worker-memory.ts over a replay of the whole ham corpus, a compiled
 * `memq work` then peaks at 227-254 MiB (four runs) instead of 288-297 MiB, with no measurable CPU cost
 * (docs/benchmarks.md, "Worker memory"). Unlike `--max-old-space-size`, it is no hard limit:
 * a process never crashes because of it.
 *
 * The flag can only be given when the process starts (`v8.setFlagsFromString` does not resize a
 * running heap), so the compiled CLI re-executes itself with it, in the same process
 * (`process.execve`, Node >= 22.15, experimental in Node 24; the PID, standard streams and
 * signals stay the same).
 */

/** The flag memq adds: each young-generation semi-space at most 8 MiB. */
export const YOUNG_GENERATION_FLAG = '--max-semi-space-size=8';

/** What {@link youngGenerationReexec} looks at. */
export interface ReexecContext {
  /** The memq command (`start`, `work`, ...), undefined when none was given. */
  readonly command: string | undefined;
  /** `process.execArgv`: the flags node was started with. */
  readonly execArgv: readonly string[];
  /** `NODE_OPTIONS`, if set. */
  readonly nodeOptions: string | undefined;
  /** The URL of the running main module: only compiled JavaScript (`.js`) re-executes. */
  readonly mainUrl: string;
  /** Whether the runtime has `process.execve` (Node >= 22.15 on POSIX systems). */
  readonly canExecve: boolean;
}

/** Commands whose process lives long enough for its heap size to matter. */
const LONG_RUNNING: ReadonlySet<string> = new Set(['start', 'serve', 'work']);

/**
 * The node arguments to re-execute with (`[YOUNG_GENERATION_FLAG, ...execArgv]`), or undefined
 * when the process should run as it is: a command other than `start`, `serve` or `work`; a
 * semi-space size already chosen by the operator (in `execArgv` or `NODE_OPTIONS`, either
 * `--max-semi-space-size` or `--max-semi-space-size=...`); sources run through tsx (a `.ts`
 * main module: tsx's loader process is left alone); or no `process.execve`. Pure.
 */
export function youngGenerationReexec(context: ReexecContext): string[] | undefined {
  if (context.command === undefined || !LONG_RUNNING.has(context.command)) return undefined;
  if (!context.canExecve || !context.mainUrl.endsWith('.js')) return undefined;
  const chosen = (flag: string) => /^--max[-_]semi[-_]space[-_]size(=|$)/.test(flag);
  if (context.execArgv.some(chosen)) return undefined;
  if ((context.nodeOptions ?? '').split(/\s+/).some(chosen)) return undefined;
  return [YOUNG_GENERATION_FLAG, ...context.execArgv];
}

/**
 * Re-executes the running process with {@link YOUNG_GENERATION_FLAG} when
 * {@link youngGenerationReexec} says so; returns (doing nothing) otherwise. On success it does
 * not return: the process image is replaced. Never throws: if `execve` fails, the process goes
 * on with V8's default sizes.
 * @param command The memq command from argv.
 * @param mainUrl `import.meta.url` of the main module.
 */
export function reexecWithYoungGenerationCap(command: string | undefined, mainUrl: string): void {
  const execve = (
    process as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never }
  ).execve;
  const nodeArgs = youngGenerationReexec({
    command,
    execArgv: process.execArgv,
    nodeOptions: process.env.NODE_OPTIONS,
    mainUrl,
    canExecve: typeof execve === 'function',
  });
  if (nodeArgs === undefined || execve === undefined) return;
  try {
    execve.call(
      process,
      process.execPath,
      [process.execPath, ...nodeArgs, ...process.argv.slice(1)],
      process.env,
    );
  } catch {
    // execve refused (e.g. a sandbox without it): default heap sizes.
  }
}
