import { existsSync, mkdirSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOBS } from '../../queues/names.js';
import { listen, type HttpServer } from '../../src/http/app.js';
import { BOARD, KEYS, startHttp, type TestHttp } from '../helpers/http.js';
import { shippedMemories } from '../helpers/memories.js';
import { createRedisNamespace, type RedisNamespace } from '../helpers/redis-namespace.js';

/** Debian's chromium package (the CI script installs it with apt when missing). */
const CHROMIUM = '/usr/bin/chromium';
/** Where the screenshot is kept (a test artifact; gitignored). */
const ARTIFACTS = 'test-results';
/**
 * Chromium is required in CI (`CI` set, as `.ci/run` sets it after installing the package): a
 * missing browser fails the suite there. Elsewhere a machine without it skips this file, saying why.
 */
const CHROMIUM_REQUIRED =
  process.env.CI !== undefined && !['', '0', 'false'].includes(process.env.CI.toLowerCase());
const MISSING = `${CHROMIUM} is missing: apt-get install chromium (.ci/run does this)`;
const SKIP = !existsSync(CHROMIUM) && !CHROMIUM_REQUIRED;
if (SKIP) console.warn(`board-browser: skipped, ${MISSING}; with CI set it is required`);

describe.skipIf(SKIP)(
  `Bull Board in a real browser${SKIP ? ` (skipped: ${MISSING}; with CI set it is required)` : ''}`,
  () => {
    let ns: RedisNamespace;
    let http: TestHttp;
    let server: HttpServer;
    let browser: Browser;

    beforeAll(async () => {
      if (!existsSync(CHROMIUM)) throw new Error(`${MISSING} (required: CI is set)`);
      ns = createRedisNamespace();
      http = await startHttp(ns, await shippedMemories());
      server = await listen(http.app, 0, '127.0.0.1');
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: [
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
      });
    }, 60_000);
    afterAll(async () => {
      await browser?.close();
      await server?.close();
      await http?.close();
      await ns?.cleanup();
    });

    it('renders the four queues and a job whose data is shown redacted; keeps a screenshot', async () => {
      const base = `http://127.0.0.1:${server.port}`;
      for (const content of ['my order #4411 is late', 'can you check it today?']) {
        const res = await fetch(
          `${base}/v1/memories/customer-support/board-demo/messages?wait=true`,
          {
            method: 'POST',
            headers: { Authorization: `Bearer ${KEYS.acme}`, 'Content-Type': 'application/json' },
            body: JSON.stringify({ messages: [{ role: 'user', content }] }),
          },
        );
        expect(res.status).toBe(200);
      }
      // A job enqueued around MemoryClient, raw content inside: the board must not show it raw.
      await http.pipeline.workers.queues.append.pause();
      const raw = await http.pipeline.workers.queues.append.add(JOBS.append, {
        ref: { project: 'acme', resource: 'customer-support', key: 'board-raw' },
        messages: [
          {
            id: '01JC0000000000000000000002',
            role: 'user',
            content: 'reach me at carol@example.net or +1 (555) 987-6543',
            created_at: new Date().toISOString(),
          },
        ],
      });
      try {
        const context = await browser.newContext({
          httpCredentials: { username: BOARD.user, password: BOARD.password },
          viewport: { width: 1280, height: 800 },
        });
        const page = await context.newPage();
        // The write guard is an allowlist: nothing the UI loads or polls while browsing may hit it.
        const refused: string[] = [];
        page.on('response', (response) => {
          if (response.status() === 403) refused.push(response.url());
        });
        await page.goto(`${base}/admin/queues`);
        /** Waits until the page's visible text contains every string of `wanted`. */
        const untilText = async (wanted: string[]) => {
          const deadline = Date.now() + 15_000;
          let text = '';
          while (Date.now() < deadline) {
            text = await page.locator('body').innerText();
            if (wanted.every((w) => text.includes(w))) return text;
            await page.waitForTimeout(100);
          }
          throw new Error(
            `timed out waiting for ${JSON.stringify(wanted)}; the page shows: ${text.slice(0, 500)}`,
          );
        };
        await untilText(['memory-append', 'memory-token-count', 'memory-flush', 'memory-cleanup']);
        /** Expands every collapsed node of the board's JSON viewers (job data is shown collapsed). */
        const expandAll = async () => {
          const collapsed = page.locator('[aria-label="expand JSON"]');
          for (let i = 0; i < 50 && (await collapsed.count()) > 0; i++)
            await collapsed.first().click();
        };
        await page.goto(`${base}/admin/queues/queue/memory-append?status=waiting`);
        await untilText([raw.id!]);
        await expandAll();
        const waiting = await page.locator('body').innerText();
        expect(waiting).toContain('reach me at [REDACTED] or [REDACTED]');
        expect(waiting).not.toContain('carol@example.net');
        expect(waiting).not.toContain('987-6543');
        mkdirSync(ARTIFACTS, { recursive: true });
        await page.getByText('reach me at [REDACTED]').first().scrollIntoViewIfNeeded();
        await page.screenshot({ path: `${ARTIFACTS}/bull-board.png` });
        expect(existsSync(`${ARTIFACTS}/bull-board.png`)).toBe(true);
        await page.goto(`${base}/admin/queues/queue/memory-append?status=completed`);
        await untilText(['board-demo']);
        await expandAll();
        await untilText(['my order #4411 is late']);
        expect(refused).toEqual([]);
        await context.close();
      } finally {
        await http.pipeline.workers.queues.append.obliterate({ force: true });
        await http.pipeline.workers.queues.append.resume();
      }
    }, 90_000);
  },
);
