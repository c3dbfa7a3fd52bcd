/**
 * `npm run bench:privacy` (this file): redaction cost per message on the real corpus.
 *
 *   npm run bench:privacy
 *
 * Applies two policies to every ham message of the SpamAssassin corpus (~3,870 real e-mails),
 * one message per call, after one untimed pass: (a) every built-in detector (email, phone,
 * credit_card, us_ssn, ipv4, ipv6, api_key), action `redact`; (b) the shipped customer-support
 * policy (its two RE2 patterns). Reports median and p99 microseconds per message and the
 * redactions made. Writes bench/results/privacy-latest.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadMemoryResources } from '../src/config/load-memories.js';
import { applyPrivacy, DETECTORS, type RedactionPolicy } from '../src/core/privacy.js';
import { buildConversations } from '../src/replay/corpus.js';

const messages = (await buildConversations()).conversations.flatMap((c) => c.messages);
const chars = messages.reduce((sum, m) => sum + m.content.length, 0);
const registry = await loadMemoryResources('memories');

const policies: Array<[string, RedactionPolicy]> = [
  [
    'all built-in detectors',
    {
      redactPatterns: [],
      detectors: [...DETECTORS],
      nonPersistableMessageTypes: [],
      defaultRedactionString: '[REDACTED]',
    },
  ],
  ['customer-support patterns', registry.get('customer-support').privacyPolicy!],
];

const figures: Record<string, { median_us: number; p99_us: number; redactions: number }> = {};
for (const [name, policy] of policies) {
  for (const m of messages) applyPrivacy(policy, [m]);
  const samples: number[] = [];
  let redactions = 0;
  for (const m of messages) {
    const t0 = performance.now();
    redactions += applyPrivacy(policy, [m]).redactions;
    samples.push((performance.now() - t0) * 1000);
  }
  samples.sort((a, b) => a - b);
  figures[name] = {
    median_us: Number(samples[Math.floor(samples.length / 2)]!.toFixed(1)),
    p99_us: Number(samples[Math.floor(samples.length * 0.99)]!.toFixed(1)),
    redactions,
  };
}

// Worst cases per message: redaction is linear in the text (RE2), so a size bound on messages is
// a time bound. (1) 1 MiB dense with e-mail addresses and phone numbers, every detector;
// (2) the classic catastrophic-backtracking pattern on 50 KB built to defeat it.
const dense = 'mail jane.doe@example.com or +1 (555) 123-4567, ref 4111 1111 1111 1111. '
  .repeat(Math.ceil(2 ** 20 / 75))
  .slice(0, 2 ** 20);
const worst: Record<string, { ms: number; chars: number }> = {};
for (const [name, policy, text] of [
  ['1 MiB dense, every detector', policies[0]![1], dense],
  [
    '(a+)+$ on 50 KB adversarial',
    { ...policies[0]![1], detectors: [], redactPatterns: ['(a+)+$'] },
    'a'.repeat(50_000) + 'b',
  ],
] as const) {
  const t0 = performance.now();
  applyPrivacy(policy, [{ role: 'user', content: text }]);
  worst[name] = { ms: Number((performance.now() - t0).toFixed(1)), chars: text.length };
}

console.log(
  `memq privacy bench (${messages.length} corpus messages, ${Math.round(chars / messages.length)} characters on average, ${process.version})`,
);
for (const [name, f] of Object.entries(figures)) {
  console.log(
    `  ${name.padEnd(28)} median ${f.median_us} us, p99 ${f.p99_us} us per message (${f.redactions} redactions)`,
  );
}
for (const [name, w] of Object.entries(worst)) {
  console.log(`  worst case: ${name.padEnd(30)} ${w.ms} ms (${w.chars} characters)`);
}
mkdirSync('bench/results', { recursive: true });
writeFileSync(
  'bench/results/privacy-latest.json',
  JSON.stringify(
    {
      when: new Date().toISOString(),
      node: process.version,
      messages: messages.length,
      figures,
      worst_case: worst,
    },
    null,
    2,
  ) + '\n',
);
