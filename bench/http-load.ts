/**
 * `npm run bench:http`: HTTP load on one `memq start` process (docs/benchmarks.md, "HTTP load: npm run bench:http").
 *
 *   npm run bench:http                         # 32 connections for 20 s
 *   npm run bench:http -- --connections 64 --duration 30
 *   npm run bench:http -- --quick              # 32 connections for 5 s, for development
 *   npm run bench:http -- --rate-limits        # with memq's default per-key rate limits
 *   (--built: dist/ is already compiled, skip `npm run -s build`)
 *
 * Compiles memq (`npm run -s build`) and runs `node dist/src/main.js start` (HTTP API and workers
 * in one process, as `npm start`) on a private redis-server, with one API key, memq's defaults
 * otherwise (request log at info; backpressure: 10,000 messages for all projects, 2,500 per
 * project) and the per-key rate limits off unless `--rate-limits`, so that the 429s say what the
 * pipeline takes, not what one key may send. autocannon then keeps `--connections` connections
 * busy for `--duration` seconds with single-message appends (`POST
 * /v1/memories/customer-support/<key>/messages`, the key one of {@link MEMORIES} in turn, a new
 * ULID message id per request, the content real e-mail text from the replay corpus). Other memq
 * variables pass through from the environment, e.g. `MEMQ_BACKPRESSURE_HIGH_WATER=20
 * MEMQ_BACKPRESSURE_LOW_WATER=10 npm run bench:http` to meet the backlog bound.
 *
 * Reports accepted appends/s (202), refused/s (429, by code: `BACKPRESSURE` by bound from
 * `memq_backpressure_rejections_total`, `RATE_LIMITED` by limit from `memq_rate_limited_total`),
 * any other status, the latency p50/p99 of every answer and of the 202s and 429s apart, the
 * messages the workers committed during the run, the backlog left right after it (append jobs
 * and their messages not yet started, read from the queue), and the `route` labels `/metrics`
 * gives the append route (one is right). One JSON line, then a table; also
 * bench/results/http-latest.json.
 *
 * On this project's 2-core machine autocannon, memq (HTTP and workers) and Redis share two cores,
 * so the rates say what one process does next to its load generator, not on a machine of its own.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { Queue } from 'bullmq';
import { monotonicFactory } from 'ulid';
import { QUEUES } from '../queues/names.js';
import {
  buildDist,
  corpusTexts,
  messagesOf,
  nearestRank,
  startBenchRedis,
  startCompiledMemq,
} from './harness.js';

/** Memory instances the appends go to, in turn (`load-0` .. `load-49` of customer-support). */
const MEMORIES = 50;
/** The run's one API key (project `bench`). */
const API_KEY = 'bench-http-load-key-0123456789';
/** The append route's label on `memq_http_requests_total`. */
const APPEND_ROUTE = '/v1/memories/:resource/:key/messages';

/** What the command line asks for. */
interface Options {
  /** Connections autocannon keeps busy, 1-1024 (default 32). */
  readonly connections: number;
  /** Seconds of load, 1-600 (default 20; 5 with --quick). */
  readonly duration: number;
  /** Keep memq's default per-key rate limits (default off). */
  readonly rateLimits: boolean;
  /** dist/ is compiled already. */
  readonly built: boolean;
}

/**
 * Parses the command line (see the module comment).
 * @throws Error naming the option and what is allowed (unknown options too).
 */
function parseOptions(argv: readonly string[]): Options {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      connections: { type: 'string' },
      duration: { type: 'string' },
      quick: { type: 'boolean', default: false },
      'rate-limits': { type: 'boolean', default: false },
      built: { type: 'boolean', default: false },
    },
  });
  const integer = (name: string, text: string | undefined, fallback: number, max: number) => {
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!/^\d+$/.test(text) || value < 1 || value > max) {
      throw new Error(`--${name}: expected an integer in 1-${max}, got ${JSON.stringify(text)}`);
    }
    return value;
  };
  return {
    connections: integer('connections', values.connections, 32, 1024),
    duration: integer('duration', values.duration, values.quick ? 5 : 20, 600),
    rateLimits: values['rate-limits'],
    built: values.built,
  };
}

/** One sample of a Prometheus text exposition: its labels and value. */
interface Sample {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The samples of metric `name` in a `/metrics` text (label values without escapes, as memq's are). */
function samplesOf(text: string, name: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const match = new RegExp(`^${name}(?:\\{([^}]*)\\})? (\\S+)$`).exec(line);
    if (!match) continue;
    const labels = Object.fromEntries(
      [...(match[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]),
    );
    samples.push({ labels, value: Number(match[2]) });
  }
  return samples;
}

/** `{ <label value>: <sum of values> }` of `samples` by `label`. */
function sumBy(samples: readonly Sample[], label: string): Record<string, number> {
  const sums: Record<string, number> = {};
  for (const s of samples) sums[s.labels[label]!] = (sums[s.labels[label]!] ?? 0) + s.value;
  return sums;
}

/** p50 and p99 of `latencies` (ms), rounded to 0.1 ms; null when there are none. */
function latencyOf(latencies: number[]): { p50: number | null; p99: number | null } {
  const sorted = latencies.sort((a, b) => a - b);
  const round = (v: number | undefined) => (v === undefined ? null : Math.round(v * 10) / 10);
  return { p50: round(nearestRank(sorted, 50)), p99: round(nearestRank(sorted, 99)) };
}

const options = parseOptions(process.argv.slice(2));
const texts = await corpusTexts(2_000);
if (!options.built) buildDist();
const redis = await startBenchRedis('http');
const prefix = 'bench-http';
const memq = await startCompiledMemq('start', {
  ...process.env,
  REDIS_URL: redis.url,
  PORT: '0',
  MEMQ_KEY_PREFIX: `${prefix}:`,
  MEMQ_QUEUE_PREFIX: `{${prefix}}`,
  MEMQ_API_KEYS: `${API_KEY}:bench`,
  MEMQ_BOARD_PASSWORD: 'bench-http-board',
  MEMQ_LOG_LEVEL: 'info',
  ...(options.rateLimits
    ? {}
    : { MEMQ_RATE_LIMIT_REQUESTS_PER_SECOND: '0', MEMQ_RATE_LIMIT_MESSAGES_PER_SECOND: '0' }),
});
const queue = new Queue(QUEUES.append, { connection: redis.connect(), prefix: `{${prefix}}` });
try {
  const base = memq.base!;
  const ulid = monotonicFactory();
  let sent = 0;
  let bodyBytes = 0;
  const headers = { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' };
  const latencies = new Map<number, number[]>();
  console.log(
    `HTTP load: ${options.connections} connections for ${options.duration} s on one memq start (${base}), rate limits ${options.rateLimits ? 'on (defaults)' : 'off'}`,
  );
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: base,
        connections: options.connections,
        duration: options.duration,
        requests: [
          {
            method: 'POST',
            setupRequest: (request) => {
              const i = sent++;
              const body = JSON.stringify({
                messages: [
                  {
                    id: ulid(),
                    role: i % 2 ? 'assistant' : 'user',
                    content: texts[i % texts.length]!,
                  },
                ],
              });
              bodyBytes += Buffer.byteLength(body);
              return {
                ...request,
                path: `/v1/memories/customer-support/load-${i % MEMORIES}/messages`,
                headers,
                body,
              };
            },
          },
        ],
      },
      (error, done) => (error ? reject(error as Error) : resolve(done)),
    );
    instance.on('response', (_client, status, _bytes, ms) => {
      const list = latencies.get(status) ?? [];
      list.push(ms);
      latencies.set(status, list);
    });
  });

  // Right after the run: the backlog it leaves, then the process's counters.
  const left = await queue.getJobCounts('waiting', 'prioritized', 'delayed');
  const waitingJobs = await queue.getJobs(['waiting', 'prioritized', 'delayed']);
  const backlogMessages = waitingJobs.reduce((sum, job) => sum + messagesOf(job), 0);
  const metricsText = await (await fetch(`${base}/metrics`)).text();
  if (!memq.alive()) throw new Error(`memq start exited during the run:\n${memq.stderr()}`);

  const answered = [...latencies.values()].reduce((sum, l) => sum + l.length, 0);
  const count = (status: number) => latencies.get(status)?.length ?? 0;
  const perSecond = (n: number) => Math.round(n / options.duration);
  const others = Object.fromEntries(
    [...latencies.entries()]
      .filter(([status]) => status !== 202 && status !== 429)
      .map(([status, l]) => [String(status), l.length]),
  );
  const appendRoutes = new Set(
    samplesOf(metricsText, 'memq_http_requests_total')
      .filter((s) => s.labels.method === 'POST')
      .map((s) => s.labels.route!),
  );
  const committed = sumBy(samplesOf(metricsText, 'memq_messages_appended_total'), 'resource');
  const summary = {
    bench: 'http-load',
    when: new Date().toISOString(),
    node: process.version,
    connections: options.connections,
    duration_s: options.duration,
    rate_limits: options.rateLimits,
    memories: MEMORIES,
    mean_body_bytes: Math.round(bodyBytes / Math.max(1, sent)),
    requests: answered,
    accepted_per_s: perSecond(count(202)),
    refused_429_per_s: perSecond(count(429)),
    accepted: count(202),
    refused_429: count(429),
    other_statuses: others,
    errors: result.errors,
    timeouts: result.timeouts,
    backpressure_by_bound: sumBy(
      samplesOf(metricsText, 'memq_backpressure_rejections_total'),
      'bound',
    ),
    rate_limited_by_limit: sumBy(samplesOf(metricsText, 'memq_rate_limited_total'), 'limit'),
    latency_ms: {
      all: { p50: result.latency.p50, p99: result.latency.p99 },
      accepted: latencyOf(latencies.get(202) ?? []),
      refused_429: latencyOf(latencies.get(429) ?? []),
    },
    committed_messages_per_s: perSecond(committed['customer-support'] ?? 0),
    backlog_after: {
      append_jobs: (left.waiting ?? 0) + (left.prioritized ?? 0) + (left.delayed ?? 0),
      messages: backlogMessages,
    },
    append_route_labels: [...appendRoutes],
  };
  console.log(JSON.stringify(summary));
  const rows: [string, string][] = [
    ['accepted (202)', `${summary.accepted_per_s}/s (${summary.accepted})`],
    ['refused (429)', `${summary.refused_429_per_s}/s (${summary.refused_429})`],
    ['  BACKPRESSURE by bound', JSON.stringify(summary.backpressure_by_bound)],
    ['  RATE_LIMITED by limit', JSON.stringify(summary.rate_limited_by_limit)],
    ['other statuses', JSON.stringify(others)],
    ['errors / timeouts', `${result.errors} / ${result.timeouts}`],
    ['latency p50 / p99, all', `${result.latency.p50} / ${result.latency.p99} ms`],
    [
      'latency p50 / p99, 202',
      `${summary.latency_ms.accepted.p50} / ${summary.latency_ms.accepted.p99} ms`,
    ],
    [
      'latency p50 / p99, 429',
      `${summary.latency_ms.refused_429.p50} / ${summary.latency_ms.refused_429.p99} ms`,
    ],
    ['committed by the workers', `${summary.committed_messages_per_s} messages/s`],
    [
      'backlog after the run',
      `${summary.backlog_after.append_jobs} append jobs, ${summary.backlog_after.messages} messages`,
    ],
    ['mean request body', `${summary.mean_body_bytes} bytes`],
    [
      `route label of the append route`,
      summary.append_route_labels.length === 1 && summary.append_route_labels[0] === APPEND_ROUTE
        ? `${APPEND_ROUTE} (one, for every status)`
        : `MORE THAN ONE: ${summary.append_route_labels.join(', ')}`,
    ],
  ];
  const width = Math.max(...rows.map(([name]) => name.length));
  for (const [name, value] of rows) console.log(`  ${name.padEnd(width)}  ${value}`);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/http-latest.json', JSON.stringify(summary, null, 2) + '\n');
} finally {
  await queue.close();
  await memq.stop();
  await redis.stop();
}
