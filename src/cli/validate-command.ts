import { checkMemoryResources } from '../config/load-memories.js';

/**
 * `memq validate [dir]`: checks every memory resource file in `dir` in one pass.
 * Prints each problem on its own line to `err` and returns exit code 1, or prints a summary to
 * `out` and returns 0.
 */
export async function validateCommand(
  dir: string,
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  const { resources, problems } = await checkMemoryResources(dir);
  if (problems.length > 0) {
    for (const problem of problems) err(problem.message);
    err(`memq validate: ${problems.length} problem(s) in ${dir}`);
    return 1;
  }
  out(
    `memq validate: ${resources.length} memory resource(s) OK in ${dir}: ${resources.map((r) => r.id).join(', ')}`,
  );
  return 0;
}
