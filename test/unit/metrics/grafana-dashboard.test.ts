/**
 * docs/grafana-dashboard.json against the registry memq creates: a metric or label renamed in
 * src/metrics/metrics.ts without the dashboard fails here instead of leaving empty panels.
 */
import { readFileSync } from 'node:fs';
import type { Metric } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../../src/metrics/metrics.js';

const DASHBOARD_FILE = 'docs/grafana-dashboard.json';
const DATASOURCE = { type: 'prometheus', uid: '${DS_PROMETHEUS}' };

interface Target {
  readonly expr: string;
  readonly datasource?: unknown;
}
interface Panel {
  readonly type: string;
  readonly title: string;
  readonly datasource?: unknown;
  readonly targets?: readonly Target[];
  readonly panels?: readonly Panel[];
}
interface Dashboard {
  readonly schemaVersion: number;
  readonly title: string;
  readonly uid: string;
  readonly __inputs: ReadonlyArray<{ name: string; type: string; pluginId: string }>;
  readonly panels: readonly Panel[];
  readonly templating: {
    readonly list: ReadonlyArray<{ definition?: string; datasource?: unknown }>;
  };
}

const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as Dashboard;
/** Every panel, rows' nested ones included. */
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queryPanels = panels.filter((p) => p.type !== 'row');
/** Every PromQL expression: panel targets and template variable queries. */
const expressions = [
  ...queryPanels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: p.title, expr: t.expr }))),
  ...dashboard.templating.list.flatMap((v) => {
    if (v.definition === undefined) return [];
    // Grafana's `label_values(selector, label)` as the PromQL `count by (label) (selector)`.
    const labelValues = /^label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)$/.exec(v.definition);
    const expr = labelValues ? `count by (${labelValues[2]}) (${labelValues[1]})` : v.definition;
    return [{ where: `variable ${v.definition}`, expr }];
  }),
];

/** Labels Prometheus attaches to every scraped series, and a histogram bucket's bound. */
const SCRAPE_LABELS = new Set(['job', 'instance']);
const PROMQL_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const PROMQL_WORDS_BINARY = new Set(['and', 'or', 'unless', 'bool', 'offset']);

/**
 * The metric names and label names an expression uses. Names: identifiers that are not a
 * function call, a keyword, a label list or a string. Labels: those of `{...}` matchers and of
 * `by (...)` clauses.
 */
function parse(expr: string): { names: string[]; labels: string[] } {
  const labels: string[] = [];
  let rest = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  rest = rest.replace(/\b(?:by|without|on|ignoring)\s*\(([^)]*)\)/g, (_m, list: string) => {
    labels.push(
      ...list
        .split(',')
        .map((l) => l.trim())
        .filter(Boolean),
    );
    return ' ';
  });
  rest = rest.replace(/\{([^}]*)\}/g, (_m, list: string) => {
    for (const m of list.matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)/g)) labels.push(m[1]!);
    return ' ';
  });
  rest = rest.replace(/\[[^\]]*\]/g, ' ');
  const names = [...rest.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?/g)]
    .filter((m) => m[2] === undefined)
    .map((m) => m[1]!)
    .filter((n) => !PROMQL_WORDS.has(n) && !PROMQL_WORDS_BINARY.has(n));
  return { names, labels };
}

const registry = createMetrics().registry;
/** What a test reads of a registered metric (prom-client keeps these on the instance). */
interface Registered {
  readonly name: string;
  readonly type: string;
  readonly labelNames: readonly string[];
}
/** The registered metric a series name belongs to (`x_bucket`, `x_sum`, `x_count` of a histogram). */
function metricOf(series: string): Registered | undefined {
  const registered = (metric: Metric | undefined) => metric as unknown as Registered | undefined;
  const exact = registered(registry.getSingleMetric(series));
  if (exact) return exact;
  const base = /^(.*)_(bucket|sum|count)$/.exec(series)?.[1];
  const histogram = base === undefined ? undefined : registered(registry.getSingleMetric(base));
  return histogram?.type === 'histogram' ? histogram : undefined;
}

describe('the Grafana dashboard', () => {
  it('is an importable dashboard on a ${DS_PROMETHEUS} input', () => {
    expect(dashboard.schemaVersion).toBe(39);
    expect(dashboard.title).toBe('memq');
    expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    expect(dashboard.__inputs).toEqual([
      expect.objectContaining({
        name: 'DS_PROMETHEUS',
        type: 'datasource',
        pluginId: 'prometheus',
      }),
    ]);
    expect(queryPanels.length).toBeGreaterThanOrEqual(15);
    for (const panel of queryPanels) {
      expect(panel.datasource, panel.title).toEqual(DATASOURCE);
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets ?? []) expect(target.datasource).toEqual(DATASOURCE);
    }
    for (const variable of dashboard.templating.list)
      expect(variable.datasource).toEqual(DATASOURCE);
  });

  it('queries only metrics and labels the registry memq creates', () => {
    const used = new Set<string>();
    for (const { where, expr } of expressions) {
      const { names, labels } = parse(expr);
      expect(names.length, `${where}: ${expr}`).toBeGreaterThan(0);
      const metrics = names.map((name) => {
        const metric = metricOf(name);
        expect(metric, `${where}: ${name} is not a metric of createMetrics()`).toBeDefined();
        used.add(metric!.name);
        return metric!;
      });
      const known = new Set([...SCRAPE_LABELS, ...metrics.flatMap((m) => m.labelNames)]);
      if (names.some((n) => n.endsWith('_bucket'))) known.add('le');
      for (const label of labels) {
        expect(
          known.has(label),
          `${where}: label ${label} is not one of ${[...known].join(', ')}`,
        ).toBe(true);
      }
    }
    // The brief of the dashboard: every area has its panel.
    expect([...used]).toEqual(
      expect.arrayContaining([
        'memq_queue_jobs',
        'memq_jobs_total',
        'memq_job_duration_seconds',
        'memq_tokens_counted_total',
        'memq_tokens_saved_total',
        'memq_redactions_total',
        'memq_backpressure_rejections_total',
        'memq_rate_limited_total',
        'memq_breaker_state',
        'memq_lock_events_total',
        'memq_http_requests_total',
      ]),
    );
  });

  it('catches a renamed metric or label (the check above is not vacuous)', () => {
    expect(metricOf('memq_token_cache_hit_ratio')).toBeUndefined();
    expect(metricOf('memq_queue_jobs_bucket')).toBeUndefined();
    expect(
      parse('sum by (queue, le) (rate(memq_job_wait_seconds_bucket{job=~"$job"}[5m]))'),
    ).toEqual({
      names: ['memq_job_wait_seconds_bucket'],
      labels: ['queue', 'le', 'job'],
    });
    expect(metricOf('memq_http_requests_total')?.labelNames).toEqual(['method', 'route', 'status']);
  });
});
