// Local compile: diagnostics at the user's own lines, and the content-addressed cache
// (a hit never runs clang; counted through a wrapper script around the real clang).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { CompileError, compile, kernelArch, NotFoundError } from '@tslcc/sdk';
import { tempDir } from '../helpers';

const GOOD = 'SEC("tp/syscalls/sys_enter_getppid") int p(void *ctx) { return 0; }';

/** A clang that logs every invocation, then runs the real one. */
function countingClang(): { clang: string; runs: () => string[] } {
  const dir = tempDir('clang');
  const log = path.join(dir, 'runs.log');
  const real = ['/usr/bin/clang', '/usr/local/bin/clang'].find((p) => fs.existsSync(p))!;
  const clang = path.join(dir, 'clang');
  fs.writeFileSync(clang, `#!/bin/sh\necho "$*" >> ${log}\nexec ${real} "$@"\n`, { mode: 0o755 });
  return { clang, runs: () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n') : []) };
}

describe('compile', () => {
  test('errors point at the user\'s own file, line and column', async () => {
    const src = [
      'struct ev { u32 pid; };',              // 1
      'LBC_PERF_OUTPUT(events, struct ev, 8);', // 2
      'SEC("tp/syscalls/sys_enter_getppid")',   // 3
      'int p(void *ctx) {',                     // 4
      '  struct ev e = {};',                    // 5
      '  e.pid = undeclared_thing + 1;',        // 6
      '  return 0;',                            // 7
      '}',
    ].join('\n');
    const err = await compile(src, { name: 'mytool', cacheDir: tempDir('cerr') }).catch((e) => e);
    expect(err).toBeInstanceOf(CompileError);
    expect(err.code).toBe('LBC_COMPILE');
    expect(err.diagnostics[0]).toEqual({
      file: 'mytool.bpf.c', line: 6, column: 11, severity: 'error',
      message: "use of undeclared identifier 'undeclared_thing'",
    });
    expect(err.message).toBe("compile \"mytool.bpf.c\": 1 error; mytool.bpf.c:6:11: use of undeclared identifier 'undeclared_thing'");
    expect(err.log).toContain('mytool.bpf.c:6:11');
  });

  test('several errors are all reported, in order', async () => {
    const src = 'int a(void) { return x; }\nint b(void) { return y; }\n';
    const err = await compile(src, { name: 'two', cacheDir: tempDir('cerr2') }).catch((e) => e) as CompileError;
    expect(err.diagnostics.filter((d) => d.severity === 'error').map((d) => [d.line, d.column])).toEqual([[1, 22], [2, 22]]);
    expect(err.message).toMatch(/^compile "two.bpf.c": 2 errors; two.bpf.c:1:22: /);
  });

  test('BPF backend errors still point at the user\'s line', async () => {
    const src = 'SEC("tp/syscalls/sys_enter_lseek")\nint f(struct trace_event_raw_sys_enter *ctx) {\n  s64 off = ctx->args[1];\n  return off % 4;\n}';
    const err = await compile(src, { name: 'sdiv', cacheDir: tempDir('sdiv') }).catch((e) => e) as CompileError;
    expect(err).toBeInstanceOf(CompileError);
    expect(err.diagnostics).toEqual([{
      file: 'sdiv.bpf.c', line: 4, column: 14, severity: 'error',
      message: 'signed division or modulo is not supported by the BPF backend; use unsigned operands (e.g. (u64)x % 4)',
    }]);
  });

  test('a cache hit returns the same object without running clang', async () => {
    const cacheDir = tempDir('cache');
    const { clang, runs } = countingClang();
    const first = await compile(GOOD, { name: 'c1', cacheDir, clang });
    expect(first.from).toBe('local');
    const compiles = runs().filter((r) => r.includes('-target bpf') && / -c /.test(r));
    expect(compiles).toHaveLength(1);
    expect(runs().filter((r) => r.includes('-x c-header'))).toHaveLength(1); // the precompiled lbc.h, once
    const again = await compile(GOOD, { name: 'c1', cacheDir, clang });
    expect(again.from).toBe('cache');
    expect(again.key).toBe(first.key);
    expect(again.elf.equals(first.elf)).toBe(true);
    expect(runs()).toHaveLength(3); // --version (identity, remembered), the PCH, the compile: nothing on the hit
    const other = await compile(`${GOOD} // other`, { name: 'c1', cacheDir, clang });
    expect(other.from).toBe('local');
    expect(runs()).toHaveLength(4); // a new source reuses the PCH: one more compile, nothing else
  });

  test('a PCH built for other flags is never used: -DLBC_DEBUG still turns lbc_debug on', async () => {
    const cacheDir = tempDir('pchflags');
    const src = 'SEC("tp/syscalls/sys_enter_getppid") int p(void *ctx) { lbc_debug("hi %d", 1); return 0; }';
    const off = await compile(src, { name: 'pf', cacheDir });
    const on = await compile(src, { name: 'pf', cacheDir, flags: '-DLBC_DEBUG' });
    // BTF line info carries the source line either way; only bpf_printk adds the format to .rodata.
    const copies = (elf: Buffer) => (elf.toString('latin1').match(/hi %d/g) ?? []).length;
    expect(copies(on.elf)).toBe(copies(off.elf) + 1);
  });

  test('the key covers flags, source, arch; a change misses', async () => {
    const cacheDir = tempDir('cache2');
    const base = await compile(GOOD, { name: 'k', cacheDir });
    const flags = await compile(GOOD, { name: 'k', cacheDir, flags: '-DFOO=1' });
    const source = await compile(`${GOOD} // changed`, { name: 'k', cacheDir });
    const arch = await compile(GOOD, { name: 'k', cacheDir, arch: 'arm64' });
    expect(new Set([base.key, flags.key, source.key, arch.key]).size).toBe(4);
    expect([flags.from, source.from, arch.from]).toEqual(['local', 'local', 'local']);
    expect((await compile(GOOD, { name: 'k', cacheDir, flags: ['-DFOO=1'] })).from).toBe('cache');
  });

  test('no clang: a NotFoundError that says how to get one', async () => {
    const err = await compile(GOOD, { name: 'nc', cacheDir: tempDir('nc'), clang: '/nonexistent/clang' }).catch((e) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toBe('compile "nc.bpf.c": clang not found in PATH; install it (apt-get install clang llvm libbpf-dev), set TSLCC_CLANG to its path, or use a compile server (TSLCC_SERVER)');
  });

  test('arch names', () => {
    expect(['x64', 'x86_64', 'arm64', 'aarch64', 's390x', 'riscv64'].map((a) => kernelArch(a))).toEqual(['x86', 'x86', 'arm64', 'arm64', 's390', 'riscv']);
    expect(() => kernelArch('vax')).toThrow(/unknown target arch "vax"/);
  });
});
