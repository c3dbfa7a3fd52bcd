// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * Import direction (STYLE.md): src/core <- src/config <- src/{redis,store,metrics,providers} <- queues/ <-
 * processors/ <- src/{http,cli,runtime,replay}. Each layer lists what it must not import.
 * dependency-cruiser (.dependency-cruiser.cjs) checks the same plus cycles.
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
            'imports flow one way: src/core <- src/config <- src/{redis,store,metrics,providers} <- queues <- processors <- src/{http,cli,runtime,replay} (STYLE.md)',
        })),
      },
    ],
  },
});

const upper = [
  '**/src/http/**',
  '**/src/cli/**',
  '**/src/runtime/**',
  '**/src/replay/**',
  '**/src/main*',
];

export default tseslint.config(
  { ignores: ['node_modules/**', '.memq/**', 'coverage/**', 'bin/**', 'bench/results/**'] },
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
  layer(
    ['src/core/**'],
    [
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
    ],
  ),
  layer(
    ['src/config/**'],
    [
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
    ['src/redis/**', 'src/store/**', 'src/metrics/**', 'src/providers/**'],
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
    files: ['**/*.js', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['**/*.cjs'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: { module: 'writable', require: 'readonly' },
    },
  },
);
