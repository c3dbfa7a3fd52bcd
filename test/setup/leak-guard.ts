import { afterAll } from 'vitest';

/**
 * Fails a test file that leaves a Redis connection, worker, queue or server open: after the
 * file's own teardown no TCP socket or server may remain in this test process.
 */
afterAll(async () => {
  const open = () =>
    process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TCPServerWrap');
  const deadline = Date.now() + 2000;
  while (open().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const left = open();
  if (left.length > 0) {
    throw new Error(
      `leak guard: ${left.length} TCP handle(s) left open (${left.join(', ')}); close every worker, queue, connection and server the test opened`,
    );
  }
});
