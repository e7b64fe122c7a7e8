// Mutation testing of the pure modules (npm run mutate; not in CI: it takes
// minutes). The report lands in .cache/mutation/.
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutate.config.ts' },
  mutate: [
    'src/virt/planner.ts',
    'src/virt/device-lifecycle.ts',
    'src/virt/dimm-xml.ts',
    'src/virt/domain-xml.ts',
    'src/virt/metadata.ts',
    'src/virt/next-run-xml.ts',
    'src/libvirt/xdr.ts',
    'src/libvirt/packet.ts',
  ],
  coverageAnalysis: 'perTest',
  concurrency: 2,
  reporters: ['clear-text', 'progress', 'json'],
  jsonReporter: { fileName: '.cache/mutation/mutation.json' },
  tempDirName: '.cache/stryker-tmp',
  thresholds: { high: 95, low: 90, break: null },
  timeoutMS: 10_000,
  // TypeScript 7 has no JS API for Stryker's tsconfig rewriting; vitest needs none.
  tsconfigFile: 'stryker-no-tsconfig.json',
};
