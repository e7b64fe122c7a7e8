import { defineConfig } from 'vitest/config';

// Mutation testing (npm run mutate): Stryker runs the unit tests only, against
// the pure modules listed in stryker.config.mjs.
export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts'],
    testTimeout: 20_000,
  },
});
