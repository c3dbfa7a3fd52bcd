import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { YOUNG_GENERATION_FLAG, youngGenerationReexec } from '../../../src/runtime/v8-heap.js';

const base = {
  command: 'work',
  execArgv: [] as string[],
  nodeOptions: undefined,
  mainUrl: 'file:///app/dist/src/main.js',
  canExecve: true,
};

describe('youngGenerationReexec', () => {
  it('adds the semi-space cap for the long-running commands of the compiled CLI', () => {
    for (const command of ['start', 'serve', 'work']) {
      expect(youngGenerationReexec({ ...base, command })).toEqual([YOUNG_GENERATION_FLAG]);
    }
    expect(youngGenerationReexec({ ...base, execArgv: ['--enable-source-maps'] })).toEqual([
      YOUNG_GENERATION_FLAG,
      '--enable-source-maps',
    ]);
  });

  it('leaves short commands, tsx sources, an operator-chosen size and old runtimes alone', () => {
    expect(youngGenerationReexec({ ...base, command: 'replay' })).toBeUndefined();
    expect(youngGenerationReexec({ ...base, command: undefined })).toBeUndefined();
    expect(youngGenerationReexec({ ...base, mainUrl: 'file:///repo/src/main.ts' })).toBeUndefined();
    expect(youngGenerationReexec({ ...base, canExecve: false })).toBeUndefined();
    expect(
      youngGenerationReexec({ ...base, execArgv: ['--max-semi-space-size=32'] }),
    ).toBeUndefined();
    expect(
      youngGenerationReexec({
        ...base,
        nodeOptions: '--max-old-space-size=512 --max_semi_space_size=4',
      }),
    ).toBeUndefined();
    expect(youngGenerationReexec({ ...base, nodeOptions: '--max-old-space-size=512' })).toEqual([
      YOUNG_GENERATION_FLAG,
    ]);
  });
});

describe('reexecWithYoungGenerationCap', () => {
  it('restarts a compiled entry point with a 16 MiB young generation, same PID, arguments kept', () => {
    // A compiled-style entry (.js) that calls the function, then reports its heap and argv.
    const dir = mkdtempSync(join(tmpdir(), 'memq-v8-heap-'));
    try {
      writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
      const entry = join(dir, 'main.js');
      const module = pathToFileURL(join(process.cwd(), 'src/runtime/v8-heap.ts')).href;
      writeFileSync(
        entry,
        `const { reexecWithYoungGenerationCap } = await import(${JSON.stringify(module)});
const pid = process.env.FIRST_PID ?? String(process.pid);
process.env.FIRST_PID = pid;
reexecWithYoungGenerationCap(process.argv[2], import.meta.url);
const v8 = await import('node:v8');
let keep = [];
for (let i = 0; i < 3e6; i++) { keep.push({ i, s: 'x' + i }); if (keep.length > 20000) keep = []; }
console.log(JSON.stringify({ samePid: pid === String(process.pid), argv: process.argv.slice(2), execArgv: process.execArgv, youngMiB: v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size / 2 ** 20 }));
`,
      );
      const run = (command: string, nodeOptions = '') => {
        const result = spawnSync(process.execPath, ['--import', 'tsx', entry, command, '--x'], {
          encoding: 'utf8',
          env: { ...process.env, NODE_OPTIONS: nodeOptions },
        });
        expect(result.stderr).toBe('');
        return JSON.parse(result.stdout) as {
          samePid: boolean;
          argv: string[];
          execArgv: string[];
          youngMiB: number;
        };
      };
      const work = run('work');
      expect(work.samePid).toBe(true);
      expect(work.argv).toEqual(['work', '--x']);
      expect(work.execArgv).toContain(YOUNG_GENERATION_FLAG);
      expect(work.youngMiB).toBeLessThanOrEqual(16);
      const replay = run('replay');
      expect(replay.samePid).toBe(true);
      expect(replay.execArgv).not.toContain(YOUNG_GENERATION_FLAG);
      // An operator's own size is kept (and V8 then grows the young generation past 16 MiB,
      // whatever the machine's memory: 32 MiB semi-spaces are asked for explicitly).
      const chosen = run('work', '--max-semi-space-size=32');
      expect(chosen.execArgv).not.toContain(YOUNG_GENERATION_FLAG);
      expect(chosen.youngMiB).toBeGreaterThan(16);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
