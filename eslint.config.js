// Lint: the rules that keep Kumo's layers and Temporal's determinism honest.
import tseslint from 'typescript-eslint';

const nodeBuiltins = ['node:*', 'fs', 'fs/*', 'path', 'os', 'crypto', 'http', 'https', 'net', 'child_process', 'url', 'stream', 'timers', 'process'];

/** `no-restricted-imports` patterns: a layer may import types from these, never code. */
const forbid = (groups, message) => ({
  '@typescript-eslint/no-restricted-imports': ['error', { patterns: [{ group: groups, message, allowTypeImports: true }] }],
});

export default tseslint.config(
  { ignores: ['node_modules/**', '.tools/**', '.data/**', 'test/histories/**', 'eslint.config.js'] },
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // Every promise is awaited, returned or handled: a forgotten one loses errors silently.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Workflows are replayed: no I/O, no Node built-ins, no code from the layers that do I/O.
    files: ['workflows/**/*.ts'],
    rules: forbid([...nodeBuiltins, '../activities/*', '../providers/*', '../store/*', '../api/*', '@kubernetes/*', 'pg', 'better-sqlite3'], 'workflows are deterministic: import types only from I/O layers, and no Node built-ins'),
  },
  {
    files: ['domain/**/*.ts'],
    rules: forbid(['../api/*', '../workflows/*', '../activities/*', '../providers/*', '../store/*', '../workers/*'], 'domain/ imports nothing of the other layers'),
  },
  {
    files: ['providers/**/*.ts'],
    rules: forbid(['../api/*', '../workflows/*', '../activities/*', '../store/*', '../workers/*'], 'providers/ sit below activities and the store'),
  },
  {
    files: ['store/**/*.ts'],
    rules: forbid(['../api/*', '../workflows/*', '../activities/*', '../providers/*', '../workers/*'], 'store/ imports only domain/'),
  },
  {
    files: ['activities/**/*.ts'],
    rules: forbid(['../api/*', '../workflows/*', '../workers/*'], 'activities/ sit below workflows and the API'),
  },
  {
    files: ['api/**/*.ts'],
    rules: forbid(['../activities/*', '../../activities/*', '../providers/*', '../../providers/*'], 'the API never does the work itself: it starts workflows'),
  },
  {
    files: ['sim/**/*.ts'],
    rules: forbid(['../api/*', '../workflows/*', '../activities/*', '../providers/*', '../store/*', '../workers/*', '../domain/*'], 'the simulator is reached by URL only and imports nothing of Kumo'),
  },
  {
    // The `kumo` bin shim is plain JavaScript outside the TypeScript project: linted without type information.
    files: ['bin/**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    // Tests and tools use loose JSON from HTTP answers on purpose; node:test's
    // test() and describe() return promises the runner itself awaits.
    files: ['test/**/*.ts', 'bench/**/*.ts', 'scripts/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-floating-promises': 'off' },
  },
);
