/**
 * `npx tsx bench/worker-memory.ts` (docs/benchmarks.md, "Worker memory"): the resident set of a
 * separate, compiled `memq work` process while another process replays the whole ham corpus into
 * it (`memq replay --no-workers`).
 *
 *   npm run build && npx tsx bench/worker-memory.ts   # one run
 *   npx tsx bench/worker-memory.ts --runs 3            # three, each with a fresh Redis and worker
 *
 * Each run starts a private redis-server (`startBenchRedis`, bench/harness.ts: a free loopback
 * port, AOF everysec as `npm start`; stopped and its directory removed afterwards), then `node dist/src/main.js work` (compiled:
 * `npm run build` first; log level warn) and waits for its start line. The worker's RSS
 * (`VmRSS`, /proc/<pid>/status) is sampled every 100 ms throughout; a preload (`--import`, a
 * temporary file) has the worker append its own `process.memoryUsage()` every 100 ms, so the main
 * isolate's heap can be told from the rest (the counting thread's isolate, native memory, code).
 * Idle = the median RSS of the 5 s before the replay (the worker has been up 5 s by then); peak
 * = the highest sample from the replay's start to 5 s after it exits; after = the median of the
 * last second of a further 10 s. Worker CPU = its user + system time (all threads,
 * /proc/<pid>/stat) from the replay's start to 5 s after it exits.
 * `node dist/src/main.js replay --no-workers` runs with the same
 * `REDIS_URL`, `MEMQ_KEY_PREFIX` and `MEMQ_QUEUE_PREFIX`, and the rest of this environment.
 *
 * Diagnostics (each changes what it measures a little):
 *   --timeline              the worker's RSS, heapTotal, heapUsed and external once a second
 *   --smaps                 the worker's resident memory by mapping kind, at the end of the replay
 *   --snapshots DIR         heap snapshots of the main isolate (`--heapsnapshot-signal=SIGUSR2`):
 *                           at idle and once RSS reaches idle + `--peak-at` MiB (default 120), and
 *                           the 25 constructors whose retained self size grew most in between.
 *                           A snapshot stops the worker for seconds and costs RSS itself.
 *   --alloc-profile FILE    the main isolate's sampled allocations, collected garbage included
 *                           (inspector `HeapProfiler.startSampling`), for `MEMQ_BENCH_ALLOC_MS`
 *                           (default 45,000) ms from the worker's start, as a .heapprofile JSON
 *   --node-flags "..."      extra node flags for the worker (e.g. `--max-semi-space-size=2`)
 *   --runtime-flags "..."   V8 flags the worker sets at start with `v8.setFlagsFromString`
 *   --worker-stdout FILE    the worker's stdout (e.g. with `--node-flags=--trace-gc`)
 *   --limit N               replay at most N messages
 *
 * Prints one line per run and a JSON summary; exits 1 when a replay fails.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  createReadStream,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startBenchRedis } from './harness.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1' },
    snapshots: { type: 'string' },
    'peak-at': { type: 'string', default: '120' },
    limit: { type: 'string' },
    timeline: { type: 'boolean', default: false },
    smaps: { type: 'boolean', default: false },
    'node-flags': { type: 'string', default: '' },
    'worker-stdout': { type: 'string' },
    'runtime-flags': { type: 'string', default: '' },
    'alloc-profile': { type: 'string' },
  },
});
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs: expected a positive integer`);
const peakAtMiB = Number(values['peak-at']);

const MAIN = resolve('dist/src/main.js');
const SAMPLE_MS = 100;
const MiB = 2 ** 20;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
};

/** `VmRSS` of `pid`, bytes; 0 once the process is gone. */
function rssOf(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

/** CPU time `pid` has used so far (all its threads, user + system), seconds. */
function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command (in parentheses): state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The worker's own `process.memoryUsage()` line, written by the preload. */
interface UsageLine {
  t: number;
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

const PROBE = `
import { appendFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
for (const flag of (process.env.MEMQ_BENCH_V8_FLAGS ?? '').split(' ').filter(Boolean)) setFlagsFromString(flag);
const file = process.env.MEMQ_BENCH_PROBE_FILE;
if (file) {
  const timer = setInterval(() => {
    const u = process.memoryUsage();
    appendFileSync(file, JSON.stringify({ t: Date.now(), ...u }) + '\\n');
  }, ${SAMPLE_MS});
  timer.unref();
}
const profile = process.env.MEMQ_BENCH_ALLOC_PROFILE;
if (profile) {
  const { Session } = await import('node:inspector');
  const { writeFileSync } = await import('node:fs');
  const session = new Session();
  session.connect();
  session.post('HeapProfiler.startSampling', {
    samplingInterval: 16384,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  setTimeout(() => {
    session.post('HeapProfiler.stopSampling', (error, result) => {
      if (!error) writeFileSync(profile, JSON.stringify(result.profile));
    });
  }, Number(process.env.MEMQ_BENCH_ALLOC_MS ?? 45000)).unref();
}
`;

/** Self size per constructor (`node` name of type object/closure/...) of a heap snapshot. */
async function summarize(file: string): Promise<Map<string, { count: number; size: number }>> {
  const chunks: Buffer[] = [];
  for await (const chunk of createReadStream(file)) chunks.push(chunk as Buffer);
  const snap = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const byName = new Map<string, { count: number; size: number }>();
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt]!]!;
    const name =
      type === 'object' || type === 'native' ? snap.strings[snap.nodes[i + nameAt]!]! : `(${type})`;
    const entry = byName.get(name) ?? { count: 0, size: 0 };
    entry.count += 1;
    entry.size += snap.nodes[i + sizeAt]!;
    byName.set(name, entry);
  }
  return byName;
}

async function snapshot(worker: ChildProcess, dir: string, label: string): Promise<string> {
  const before = new Set(readdirSync(dir));
  worker.kill('SIGUSR2');
  for (let i = 0; i < 600; i++) {
    await sleep(100);
    const added = readdirSync(dir).filter((f) => !before.has(f) && f.endsWith('.heapsnapshot'));
    if (added.length > 0) {
      // Written while the process is stopped: wait until its size is non-zero and stays put 1 s.
      const path = join(dir, added[0]!);
      let size = -1;
      for (;;) {
        await sleep(1000);
        const now = statSync(path).size;
        if (now === size && now > 0) break;
        size = now;
      }
      console.log(`snapshot ${label}: ${path} (${Math.round(size / MiB)} MiB)`);
      return path;
    }
  }
  throw new Error(`snapshot ${label}: none written within 60 s`);
}

/** Prints `pid`'s resident memory by mapping kind (/proc/<pid>/smaps): what RSS is made of. */
function printSmaps(pid: number): void {
  const text = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  const maps: Array<{ range: string; name: string; size: number; rss: number }> = [];
  let current: (typeof maps)[number] | undefined;
  for (const line of text.split('\n')) {
    const head = /^([0-9a-f]+-[0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      current = { range: head[1]!, name: head[2] || '[anon]', size: 0, rss: 0 };
      maps.push(current);
      continue;
    }
    const field = /^(Size|Rss):\s+(\d+) kB/.exec(line);
    if (field && current) current[field[1] === 'Size' ? 'size' : 'rss'] = Number(field[2]) * 1024;
  }
  const byName = new Map<string, number>();
  for (const m of maps) {
    const kind = m.name.startsWith('/') ? 'files' : m.name;
    byName.set(kind, (byName.get(kind) ?? 0) + m.rss);
  }
  console.log(
    'smaps by kind (MiB):',
    [...byName].map(([k, v]) => `${k} ${Math.round(v / MiB)}`).join(', '),
  );
  const anon = maps.filter((m) => m.name === '[anon]').sort((a, b) => b.rss - a.rss);
  const bySize = new Map<number, { n: number; rss: number }>();
  for (const m of anon) {
    const e = bySize.get(m.size) ?? { n: 0, rss: 0 };
    e.n += 1;
    e.rss += m.rss;
    bySize.set(m.size, e);
  }
  console.log(
    'anon mappings by size (size KiB x count: rss MiB):',
    [...bySize]
      .sort((a, b) => b[1].rss - a[1].rss)
      .slice(0, 12)
      .map(([size, e]) => `${size / 1024}x${e.n}: ${Math.round(e.rss / MiB)}`)
      .join(', '),
  );
}

interface RunResult {
  idle_rss_mib: number;
  peak_rss_mib: number;
  after_rss_mib: number;
  peak_heap_used_mib: number;
  idle_heap_used_mib: number;
  peak_external_mib: number;
  peak_non_heap_mib: number;
  replay_seconds: number;
  worker_cpu_seconds: number;
  replay_exit: number | null;
}

async function run(index: number): Promise<RunResult> {
  const dir = mkdtempSync(join(tmpdir(), 'memq-bench-worker-memory-'));
  const probeFile = join(dir, 'probe.mjs');
  writeFileSync(probeFile, PROBE);
  const usageFile = join(dir, 'usage.jsonl');
  const redis = await startBenchRedis(`worker-memory-${index}`);
  const prefix = `wm${index}`;
  const env = {
    ...process.env,
    REDIS_URL: redis.url,
    MEMQ_KEY_PREFIX: `${prefix}:`,
    MEMQ_QUEUE_PREFIX: `{${prefix}}`,
    MEMQ_LOG_LEVEL: 'warn',
  };
  const snapDir = values.snapshots ? resolve(values.snapshots) : undefined;
  if (snapDir) mkdirSync(snapDir, { recursive: true });
  const worker = spawn(
    process.execPath,
    [
      ...(snapDir ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${snapDir}`] : []),
      ...values['node-flags'].split(' ').filter((f) => f !== ''),
      '--import',
      probeFile,
      MAIN,
      'work',
    ],
    {
      env: {
        ...env,
        MEMQ_BENCH_PROBE_FILE: usageFile,
        MEMQ_BENCH_V8_FLAGS: values['runtime-flags'],
        ...(values['alloc-profile'] ? { MEMQ_BENCH_ALLOC_PROFILE: values['alloc-profile'] } : {}),
      },
      stdio: [
        'ignore',
        values['worker-stdout'] ? openSync(values['worker-stdout'], 'w') : 'ignore',
        'pipe',
      ],
    },
  );
  let stderr = '';
  worker.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const samples: Array<{ t: number; rss: number }> = [];
  const sampler = setInterval(
    () => samples.push({ t: Date.now(), rss: rssOf(worker.pid!) }),
    SAMPLE_MS,
  );
  try {
    const deadline = Date.now() + 60_000;
    while (!stderr.includes('Ctrl-C to stop')) {
      if (Date.now() > deadline || worker.exitCode !== null) {
        throw new Error(`memq work did not start:\n${stderr}`);
      }
      await sleep(50);
    }
    await sleep(5000);
    const idleFrom = Date.now();
    await sleep(5000);
    const snaps: string[] = [];
    if (snapDir) snaps.push(await snapshot(worker, snapDir, 'idle'));
    const idleRss = median(samples.filter((s) => s.t >= idleFrom).map((s) => s.rss));
    const replayStart = Date.now();
    const cpuBefore = cpuSecondsOf(worker.pid!);
    const replay = spawn(
      process.execPath,
      [MAIN, 'replay', '--no-workers', ...(values.limit ? ['--limit', values.limit] : [])],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let replayOut = '';
    replay.stdout.on('data', (d: Buffer) => (replayOut += d.toString()));
    replay.stderr.on('data', (d: Buffer) => (replayOut += d.toString()));
    const replayExit = new Promise<number | null>((r) => replay.once('exit', r));
    let peakSnap: Promise<string> | undefined;
    while (replay.exitCode === null) {
      if (snapDir && !peakSnap && rssOf(worker.pid!) >= idleRss + peakAtMiB * MiB) {
        peakSnap = snapshot(worker, snapDir, 'peak');
      }
      await sleep(50);
    }
    const code = await replayExit;
    const replaySeconds = (Date.now() - replayStart) / 1000;
    if (peakSnap) snaps.push(await peakSnap);
    const replayEnd = Date.now();
    await sleep(5000);
    const workerCpu = cpuSecondsOf(worker.pid!) - cpuBefore;
    if (values.smaps) printSmaps(worker.pid!);
    const peakRss = Math.max(...samples.filter((s) => s.t >= replayStart).map((s) => s.rss));
    await sleep(5000);
    const afterRss = median(samples.filter((s) => s.t >= Date.now() - 1000).map((s) => s.rss));
    const usage = readFileSync(usageFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as UsageLine);
    const during = usage.filter((u) => u.t >= replayStart && u.t <= replayEnd + 5000);
    const idleUsage = usage.filter((u) => u.t >= idleFrom && u.t < replayStart);
    const result: RunResult = {
      idle_rss_mib: Math.round(idleRss / MiB),
      peak_rss_mib: Math.round(peakRss / MiB),
      after_rss_mib: Math.round(afterRss / MiB),
      idle_heap_used_mib: Math.round(median(idleUsage.map((u) => u.heapUsed)) / MiB),
      peak_heap_used_mib: Math.round(Math.max(...during.map((u) => u.heapUsed)) / MiB),
      peak_external_mib: Math.round(Math.max(...during.map((u) => u.external)) / MiB),
      peak_non_heap_mib: Math.round(Math.max(...during.map((u) => u.rss - u.heapTotal)) / MiB),
      replay_seconds: Math.round(replaySeconds * 10) / 10,
      worker_cpu_seconds: Math.round(workerCpu * 10) / 10,
      replay_exit: code,
    };
    console.log(
      `run ${index + 1}: idle ${result.idle_rss_mib} MiB, peak ${result.peak_rss_mib} MiB, 10 s after ${result.after_rss_mib} MiB; main heap used idle ${result.idle_heap_used_mib} / peak ${result.peak_heap_used_mib} MiB, external peak ${result.peak_external_mib} MiB, rss - heapTotal peak ${result.peak_non_heap_mib} MiB; replay ${result.replay_seconds} s (worker CPU ${result.worker_cpu_seconds} s), exit ${code}`,
    );
    if (code !== 0) console.log(replayOut.slice(-2000));
    if (values.timeline) {
      console.log('s since replay start | rss | heapTotal | heapUsed | external (MiB)');
      let next = idleFrom;
      for (const u of usage) {
        if (u.t < next) continue;
        next = u.t + 1000;
        const m = (n: number) => Math.round(n / MiB);
        console.log(
          `${((u.t - replayStart) / 1000).toFixed(1)} | ${m(u.rss)} | ${m(u.heapTotal)} | ${m(u.heapUsed)} | ${m(u.external)}`,
        );
      }
    }
    if (snaps.length === 2) {
      const [a, b] = await Promise.all(snaps.map((s) => summarize(s)));
      const rows = [...b!.entries()]
        .map(([name, v]) => ({
          name,
          count: v.count - (a!.get(name)?.count ?? 0),
          grew: v.size - (a!.get(name)?.size ?? 0),
          size: v.size,
        }))
        .sort((x, y) => y.grew - x.grew)
        .slice(0, 25);
      console.log('constructor | count delta | self size delta (KiB) | self size at peak (KiB)');
      for (const r of rows) {
        console.log(
          `${r.name.slice(0, 60)} | ${r.count} | ${Math.round(r.grew / 1024)} | ${Math.round(r.size / 1024)}`,
        );
      }
    }
    return result;
  } finally {
    clearInterval(sampler);
    if (worker.exitCode === null) {
      worker.kill('SIGTERM');
      await Promise.race([new Promise((r) => worker.once('exit', r)), sleep(15_000)]);
      if (worker.exitCode === null) worker.kill('SIGKILL');
    }
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const results: RunResult[] = [];
for (let i = 0; i < runs; i++) results.push(await run(i));
console.log(JSON.stringify({ runs: results }, null, 2));
if (results.some((r) => r.replay_exit !== 0)) process.exitCode = 1;
