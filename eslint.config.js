// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * Import direction (docs/architecture.md, "Layers"): src/core <- src/{flush,tokens (pure part)} <-
 * src/config <- src/{redis,store,metrics,providers,tokens (I/O part)} <- queues/ <- processors/ <-
 * src/{http,cli,runtime,replay,client,langchain}, src/main.ts, src/index.ts (the surfaces). The
 * pure part of src/tokens is counter.ts and bpe-merge.ts; the rest of it (remote providers, the counting thread, per-resource counters) does I/O. Each layer
 * lists what it must not import. dependency-cruiser (.dependency-cruiser.cjs) checks the same plus
 * cycles.
 */
const layer = (files, forbidden) => ({
  files,
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: forbidden.map((group) => ({
          group: [group],
          message:
            'imports flow one way: src/core <- src/{flush,tokens pure} <- src/config <- src/{redis,store,metrics,providers,tokens I/O} <- queues <- processors <- src/{http,cli,runtime,replay,client,langchain} (docs/architecture.md)',
        })),
      },
    ],
  },
});

/** The I/O part of src/tokens: at the level of src/{redis,store,metrics,providers}. */
const tokensIo = [
  '**/tokens/remote-providers*',
  '**/tokens/counting-thread*',
  '**/tokens/resource-counters*',
];

const upper = [
  '**/src/http/**',
  '**/src/cli/**',
  '**/src/runtime/**',
  '**/src/replay/**',
  '**/src/client/**',
  '**/src/langchain/**',
  '**/src/main*',
  '**/src/index*',
];

/** What the pure layers (src/core and the algorithms above it) must not import: I/O and up. */
const aboveAlgorithms = [
  '**/config/**',
  '**/redis/**',
  '**/store/**',
  '**/metrics/**',
  '**/providers/**',
  '**/queues/**',
  '**/processors/**',
  ...upper,
  'ioredis',
  'bullmq',
  'node:fs',
  'node:fs/*',
  'node:net',
  'node:child_process',
];

export default tseslint.config(
  {
    ignores: [
      'node_modules/**',
      '.memq/**',
      'coverage/**',
      'bin/**',
      'bench/results/**',
      'dist/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
  layer(['src/core/**'], ['**/flush/**', '**/tokens/**', ...aboveAlgorithms]),
  layer(
    ['src/flush/**', 'src/tokens/counter.ts', 'src/tokens/bpe-merge.ts'],
    [...tokensIo, ...aboveAlgorithms],
  ),
  layer(
    ['src/config/**'],
    [
      ...tokensIo,
      '**/redis/**',
      '**/store/**',
      '**/metrics/**',
      '**/providers/**',
      '**/queues/**',
      '**/processors/**',
      ...upper,
    ],
  ),
  layer(
    [
      'src/redis/**',
      'src/store/**',
      'src/metrics/**',
      'src/providers/**',
      'src/tokens/remote-providers.ts',
      'src/tokens/counting-thread*.ts',
      'src/tokens/resource-counters.ts',
    ],
    ['**/queues/**', '**/processors/**', ...upper],
  ),
  layer(['queues/**'], ['**/processors/**', ...upper]),
  layer(['processors/**'], upper),
  {
    // supertest's `res.body` is parsed JSON typed `any`; these tests assert its shape field by field.
    files: ['test/integration/http-*.test.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    // The examples are plain Node ESM programs: Node's globals, no type information.
    files: ['examples/**/*.mjs'],
    languageOptions: {
      globals: {
        console: 'readonly',
        process: 'readonly',
        setTimeout: 'readonly',
        URL: 'readonly',
      },
    },
  },
  {
    files: ['**/*.cjs'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: { module: 'writable', require: 'readonly' },
    },
  },
);
