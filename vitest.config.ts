import { defineConfig } from 'vitest/config';

// Kernel tests load real BPF programs and share the kernel's tracepoints, so files run one
// at a time in forked processes (the addon is loaded once per process, never in a worker thread).
// Inside the VM suite (scripts/vmtest.sh, QEMU's TCG) everything runs 20-50x slower.
const vm = !!process.env.TSLCC_VM;

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: vm ? 600_000 : 60_000,
    hookTimeout: vm ? 600_000 : 120_000,
    reporters: ['default'],
  },
});
