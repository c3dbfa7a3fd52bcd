/**
 * Failover (docs/reliability.md, "Failover"): real e-mail threads replayed through memq on a
 * Redis Sentinel deployment -- a primary, one replica and three sentinels, each a local process
 * (test/helpers/redis-sentinel.ts) -- while the primary is SIGKILLed with its replica lagging
 * ({@link LAG_MS}); Sentinel promotes the replica, the `memq work` processes and the in-process
 * producer (all with `REDIS_SENTINELS`) follow it, the killed node comes back empty as the new
 * primary's replica, the replay goes on, and the independent audit then counts what is missing.
 *
 * Replication is asynchronous: with `MEMQ_WAIT_REPLICAS=0` an append the primary acknowledged
 * but no replica had copied is lost, so that mode prints how many the audit finds missing (every
 * append the replay saw vanish with its job among them) and asserts only what a failover cannot
 * break. With `MEMQ_WAIT_REPLICAS=1`, every replica there is, nothing acknowledged is missing.
 * (With two replicas and `MEMQ_WAIT_REPLICAS=1`, Sentinel may promote the replica that had not
 * confirmed a write: its choice of the most up-to-date replica is best effort; one of three such
 * runs lost 1 of 1,200.)
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { AuditViolation } from '../../src/replay/replay-audit.js';
import { startTestSentinels, type TestSentinels } from '../helpers/redis-sentinel.js';
import {
  between,
  expectNothingLost,
  sleep,
  startReplayScenario,
  type ReplayScenario,
} from './scenario.js';

/** Messages replayed per mode, and the enqueue rate (messages/s): about 15 s of appends. */
const LIMIT = 1_200;
const RATE = 80;
/**
 * Replication lag before the kill, ms: the replicas stop receiving the primary's writes this long
 * before it is killed (`holdReplication`), so what it acknowledges in between is on it alone --
 * what a primary lost with lagging replicas leaves. On loopback without lag replicas copy a write
 * within a millisecond: two runs with a bare SIGKILL lost nothing in either mode.
 */
const LAG_MS = 300;
/** `MEMQ_WAIT_REPLICAS_TIMEOUT_MS` of the producer and the workers. */
const WAIT_TIMEOUT_MS = 1_000;
/** Audit findings a failover must never cause, whatever the mode. */
const NEVER: readonly AuditViolation['kind'][] = [
  'duplicate',
  'order',
  'content',
  'unexpected',
  'personal_data',
];

let deployment: TestSentinels | undefined;
let scenario: ReplayScenario | undefined;
afterEach(async () => {
  await scenario?.close();
  await deployment?.stop();
  scenario = undefined;
  deployment = undefined;
});

describe('chaos: failover of the Redis primary (Sentinel)', () => {
  it.each([0, 1])(
    'MEMQ_WAIT_REPLICAS=%i: the primary is SIGKILLed mid-replay while its replicas lag, a replica is promoted, the replay goes on',
    async (waitReplicas) => {
      deployment = await startTestSentinels({
        replicas: 1,
        downAfterMs: 1_000,
        failoverTimeoutMs: 3_000,
      });
      const primaryPort = await deployment.primaryPort();
      scenario = await startReplayScenario(
        {
          url: `redis://127.0.0.1:${primaryPort}`,
          sentinel: { nodes: deployment.sentinels, name: deployment.name },
        },
        {
          workers: 2,
          workerEnv: {
            MEMQ_WAIT_REPLICAS: String(waitReplicas),
            MEMQ_WAIT_REPLICAS_TIMEOUT_MS: String(WAIT_TIMEOUT_MS),
          },
          ...(waitReplicas > 0
            ? { waitReplicas: { replicas: waitReplicas, timeoutMs: WAIT_TIMEOUT_MS } }
            : {}),
        },
      );
      const replay = scenario.replay(LIMIT, RATE, { countVanishedJobsAsLost: true });
      let failoverMs = 0;
      let killedAt = 0;
      const chaos = (async () => {
        await replay.started;
        await sleep(between(3_000, 8_000));
        const held = await deployment.holdReplication(primaryPort);
        expect(held.links).toBe(1);
        await sleep(LAG_MS);
        killedAt = Date.now();
        await deployment.nodes.find((node) => node.port === primaryPort)!.halt('SIGKILL');
        await held.release();
        const promoted = await deployment.waitForFailover(primaryPort);
        failoverMs = Date.now() - killedAt;
        expect(promoted).not.toBe(primaryPort);
        // The killed node comes back, empty, as the promoted one's replica: WAIT has a replica
        // to confirm again.
        await deployment.rejoin(primaryPort, promoted);
      })();
      // A failure of the fault injection must not wait, unhandled, for the replay to end.
      chaos.catch(() => undefined);
      const report = await replay.done;
      const replayEndedAt = Date.now();
      await chaos;
      const audit = await scenario.audit(LIMIT);
      const missing = audit.violations.filter((v) => v.kind === 'missing').length;
      console.info(
        `chaos failover, MEMQ_WAIT_REPLICAS=${waitReplicas}: ${missing} acknowledged appends missing ` +
          `(${report.lostAppends} in ${report.lostJobs} vanished jobs), failover in ${failoverMs} ms, ` +
          `${report.unavailableRetries} Redis-unavailable retries, ${report.duplicates} duplicates, ` +
          `audit ${audit.messages} messages / ${audit.violations.length} violations ` +
          `(${[...new Set(audit.violations.map((v) => v.kind))].join(', ') || 'none'})`,
      );
      // The primary was killed while the replay was still sending.
      expect(killedAt).toBeGreaterThan(0);
      expect(killedAt).toBeLessThan(replayEndedAt);
      expect(report.unavailableRetries).toBeGreaterThan(0); // the producer did see it
      if (waitReplicas > 0) {
        expectNothingLost(`failover, MEMQ_WAIT_REPLICAS=${waitReplicas}`, report, audit, LIMIT);
        expect(missing).toBe(0);
        expect(await scenario.failedJobs()).toBe(0);
        return;
      }
      // Asynchronous replication: the loss is measured (by the audit, against the corpus), not
      // asserted away. It covers the appends whose job vanished before it finished (the replay's
      // lostAppends) and those whose job the old primary completed before it died (the replay
      // saw them commit; the promoted replica never had them).
      expect(missing).toBeGreaterThanOrEqual(report.lostAppends);
      expect(report.enqueueErrors).toBe(0);
      expect(report.failedAppends).toBe(0);
      expect(audit.violations.filter((v) => NEVER.includes(v.kind))).toEqual([]);
    },
    180_000,
  );
});
