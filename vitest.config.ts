import { defineConfig } from 'vitest/config';

// Two projects: fast pure-logic tests, and integration tests that drive a real
// libvirtd with real QEMU guests (or our fake libvirtd). Integration files run
// with limited parallelism: each real guest costs a TCG vCPU on a 2-core host.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          sequence: { groupOrder: 0 },
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'integration',
          sequence: { groupOrder: 1 },
          include: ['test/integration/**/*.test.ts'],
          exclude: ['test/integration/**/*.disruptive.test.ts'],
          testTimeout: 180_000,
          hookTimeout: 180_000,
          maxWorkers: 2,
          fileParallelism: true,
        },
      },
      {
        // Tests that restart libvirtd, or run a daemon that manages every
        // domain (the demo): they would disturb other real-guest tests
        // running at the same time, so they run alone, after.
        test: {
          name: 'disruptive',
          sequence: { groupOrder: 2 },
          include: ['test/integration/**/*.disruptive.test.ts'],
          testTimeout: 240_000,
          hookTimeout: 240_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
