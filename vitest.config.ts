import { defineConfig } from 'vitest/config';

// Kernel tests load real BPF programs and share the kernel's tracepoints, so files run one
// at a time in forked processes (the addon is loaded once per process, never in a worker thread).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
