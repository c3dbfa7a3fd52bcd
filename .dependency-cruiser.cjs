/** Import direction and cycle check (STYLE.md "Layout and direction of imports"). */
const upper = '^(src/(http|cli|runtime|replay)|src/main)';
module.exports = {
  forbidden: [
    { name: 'no-cycles', severity: 'error', from: {}, to: { circular: true } },
    {
      name: 'core-is-pure',
      severity: 'error',
      from: { path: '^src/core' },
      to: {
        path: '^(src/(config|redis|store|metrics|providers)|queues|processors)|' + upper.slice(1),
      },
    },
    {
      name: 'config-below-io',
      severity: 'error',
      from: { path: '^src/config' },
      to: { path: '^(src/(redis|store|metrics|providers)|queues|processors)|' + upper.slice(1) },
    },
    {
      name: 'store-below-queues',
      severity: 'error',
      from: { path: '^src/(redis|store|metrics|providers)' },
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
