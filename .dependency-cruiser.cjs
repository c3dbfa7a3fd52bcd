/** Import direction and cycle check (docs/architecture.md, "Layers"); eslint.config.js checks the same. */
const upper = '^(src/(http|cli|runtime|replay|client|langchain)|src/main|src/index)';
/** The pure part of src/tokens (the exact counter and its BPE merge), at the level of src/flush. */
const tokensPure = 'src/tokens/(counter|bpe-merge)\\.ts$';
/** The rest of src/tokens does I/O (remote providers, the counting thread, per-resource counters). */
const tokensIo =
  'src/tokens/(remote-providers|counting-thread|counting-thread-entry|resource-counters)\\.ts$';
const io = '^(src/(redis|store|metrics|providers)|' + tokensIo + ')';
module.exports = {
  forbidden: [
    { name: 'no-cycles', severity: 'error', from: {}, to: { circular: true } },
    {
      name: 'core-is-pure',
      severity: 'error',
      from: { path: '^src/core' },
      to: {
        path:
          '^(src/(flush|tokens|config|redis|store|metrics|providers)|queues|processors)|' +
          upper.slice(1),
      },
    },
    {
      name: 'algorithms-are-pure',
      severity: 'error',
      from: { path: '^(src/flush|' + tokensPure + ')' },
      to: { path: '^(src/config|queues|processors)|' + io.slice(1) + '|' + upper.slice(1) },
    },
    {
      name: 'config-below-io',
      severity: 'error',
      from: { path: '^src/config' },
      to: { path: '^(queues|processors)|' + io.slice(1) + '|' + upper.slice(1) },
    },
    {
      name: 'io-below-queues',
      severity: 'error',
      from: { path: io },
      to: { path: '^(queues|processors)|' + upper.slice(1) },
    },
    {
      name: 'queues-below-processors',
      severity: 'error',
      from: { path: '^queues' },
      to: { path: '^processors|' + upper.slice(1) },
    },
    {
      name: 'processors-below-surfaces',
      severity: 'error',
      from: { path: '^processors' },
      to: { path: upper },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
  },
};
