// The tslcc command, run as a user runs it.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { hasKprobes, kernelProbes } from '@tslcc/sdk';
import { isRoot, REPO, rodataU32, tempDir } from '../helpers';

const BIN = path.join(REPO, 'packages/cli/bin/tslcc.js');
const run = (args: string[], env: Record<string, string> = {}, cwd?: string) =>
  spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env }, cwd });

describe('tslcc', () => {
  const dir = tempDir('cli');
  const env = { TSLCC_CACHE_DIR: path.join(dir, 'cache') };

  test('compile writes the object and --json describes it', () => {
    const src = path.join(dir, 'tool.bpf.c');
    fs.writeFileSync(src, [
      'struct ev { u32 pid; char comm[16]; };',
      'LBC_RINGBUF(events, struct ev, 1 << 16);',
      'LBC_HASH(counts, u32, u64, 128);',
      'const volatile u32 min_us = 10;',
      'SEC("tp/sched/sched_wakeup") int on_wakeup(void *ctx) { struct ev e = {}; lbc_ringbuf_output(events, &e, sizeof(e)); return 0; }',
    ].join('\n'));
    const r = run(['compile', src, '--json'], env);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.output).toBe(path.join(dir, 'tool.bpf.o'));
    expect(fs.readFileSync(out.output).subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    expect(out.from).toBe('local');
    expect(out.programs.map((p: { name: string; section: string }) => [p.name, p.section])).toEqual([['on_wakeup', 'tp/sched/sched_wakeup']]);
    expect(out.maps.map((m: { name: string; type: string; eventType?: string; keyType?: string }) => [m.name, m.type, m.eventType ?? m.keyType]))
      .toEqual([['events', 'ringbuf', 'struct ev'], ['counts', 'hash', 'u32']]);
    expect(run(['compile', src, '--json'], env).stdout).toContain('"from": "cache"');
  });

  test('compile errors: diagnostics at the user\'s line, exit 1', () => {
    const src = path.join(dir, 'bad.bpf.c');
    fs.writeFileSync(src, 'SEC("tp/x/y")\nint f(void *ctx) { return oops; }\n');
    const r = run(['compile', src], env);
    expect(r.status).toBe(1);
    expect(r.stderr.split('\n')[0]).toBe(`${src}:2:27: error: use of undeclared identifier 'oops'`); // the path as given
  });

  test('compile syntax.c: errors name the file as given, at its line and column', () => {
    const d = tempDir('cli-syntax');
    fs.writeFileSync(path.join(d, 'syntax.c'), [
      'SEC("tp/syscalls/sys_enter_getppid")', // 1
      'int f(void *ctx) {',                   // 2
      '  return 1 + oops;',                   // 3: 'oops' at column 14
      '}',
    ].join('\n'));
    const r = run(['compile', 'syntax.c'], env, d);
    expect(r.status).toBe(1);
    expect(r.stderr.split('\n')[0]).toBe("syntax.c:3:14: error: use of undeclared identifier 'oops'");
    expect(r.stderr).toContain('tslcc: compile "syntax.c": 1 error; syntax.c:3:14: use of undeclared identifier \'oops\'');
  });

  test('compile -I: include directories relative to the current directory, repeatable; the source\'s dir is one', () => {
    const d = tempDir('cli-inc');
    fs.mkdirSync(path.join(d, 'inc'));
    fs.mkdirSync(path.join(d, 'inc2'));
    fs.writeFileSync(path.join(d, 'inc', 'a.h'), '#define A 20\n');
    fs.writeFileSync(path.join(d, 'inc2', 'b.h'), '#define B 3\n');
    fs.writeFileSync(path.join(d, 'tool.h'), '#define C 100\n');
    fs.writeFileSync(path.join(d, 'tool.bpf.c'), '#include <a.h>\n#include "b.h"\n#include "tool.h"\nconst volatile u32 v = A + B + C;\nSEC("tp/syscalls/sys_enter_getppid") int f(void *ctx) { return v; }\n');
    const r = run(['compile', 'tool.bpf.c', '-I', 'inc', '--include', 'inc2', '--json'], env, d);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.output).toBe('tool.bpf.o');
    expect(rodataU32(fs.readFileSync(path.join(d, 'tool.bpf.o')), 'v')).toBe(123);
    const missing = run(['compile', 'tool.bpf.c', '-I', 'inc'], env, d);
    expect(missing.status).toBe(1);
    expect(missing.stderr.split('\n')[0]).toBe("tool.bpf.c:2:10: fatal error: 'b.h' file not found");
    // From elsewhere, the file named with its directory: the source's dir is still an include dir.
    const other = run(['compile', path.join(d, 'tool.bpf.c'), '-I', path.join(d, 'inc'), '-I', path.join(d, 'inc2'), '-o', path.join(d, 'o2.bpf.o')], env, os.tmpdir());
    expect(other.status).toBe(0);
    expect(rodataU32(fs.readFileSync(path.join(d, 'o2.bpf.o')), 'v')).toBe(123);
  });

  test('compile --types writes TypeScript types beside the object', () => {
    const d = tempDir('cli-types');
    fs.writeFileSync(path.join(d, 'ty.bpf.c'), 'struct ev { u32 pid; };\nLBC_RINGBUF(events, struct ev, 1 << 16);\nSEC("tp/syscalls/sys_enter_getppid") int f(void *ctx) { return 0; }\n');
    const r = run(['compile', 'ty.bpf.c', '--types'], env, d);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('✓ ty.types.ts (types from BTF)');
    expect(fs.readFileSync(path.join(d, 'ty.types.ts'), 'utf8')).toMatch(/pid: number/);
  });

  test('doctor --json lists the checks', () => {
    const r = run(['doctor', '--json']);
    const checks = JSON.parse(r.stdout) as Array<{ name: string; ok: boolean }>;
    expect(checks.map((c) => c.name)).toEqual(expect.arrayContaining(['kernel', 'privileges', 'kernel BTF', 'tracefs', 'kprobes', 'clang (local compile)']));
    expect(checks.find((c) => c.name === 'kernel BTF')!.ok).toBe(fs.existsSync('/sys/kernel/btf/vmlinux'));
    // What this kernel can do, as the feature probes find it: kprobes and fentry differ between
    // the CI kernel (neither) and the VM suite's Debian kernels (both).
    expect(checks.find((c) => c.name === 'kprobes')!.ok).toBe(hasKprobes());
    if (isRoot) expect(checks.find((c) => c.name === 'fentry/fexit')!.ok).toBe(kernelProbes().trampolines);
    expect(r.status).toBe(checks.some((c) => !c.ok && ['privileges', 'kernel BTF', 'tracepoint programs'].includes(c.name)) ? 1 : 0);
  });

  test('serve, then compile --server against it', async (ctx) => {
    if (spawnSync('bwrap', ['--version']).status !== 0) ctx.skip('bubblewrap is not installed: tslcc serve could not be exercised; npm test installs it');
    const { spawn } = await import('node:child_process');
    // A generous compile limit: under QEMU's TCG (the VM suite) building the PCH takes minutes.
    const srv = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--timeout', '600', '--data-dir', path.join(dir, 'srv')], { stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let err = '';
        srv.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; const m = /listening on (\S+)/.exec(err); if (m) resolve(m[1]!); });
        srv.on('exit', () => reject(new Error(err)));
      });
      expect(((await (await fetch(`${url}/healthz`)).json()) as { status: string }).status).toBe('ok');
      const src = path.join(dir, 'remote.bpf.c');
      fs.writeFileSync(src, 'SEC("tp/syscalls/sys_enter_getppid") int f(void *ctx) { return 0; }\n');
      const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const c = spawn(process.execPath, [BIN, 'compile', src, '--server', url, '--no-cache'], { env: { ...process.env, ...env } });
        let out = '';
        let errOut = '';
        c.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
        c.stderr.setEncoding('utf8').on('data', (d: string) => { errOut += d; });
        c.on('close', (code) => resolve({ code, out: code ? errOut : out }));
      });
      expect({ code: r.code, out: r.code ? r.out : '' }).toEqual({ code: 0, out: '' });
      expect(r.out).toMatch(new RegExp(`^✓ ${path.join(dir, 'remote.bpf.o')} \\(\\d+ bytes, compiled remotely in \\d+ ms, key [0-9a-f]{12}\\)`));
    } finally {
      srv.kill();
    }
  });

  test('tools lists the examples as npx commands', () => {
    expect(run(['tools']).stdout).toMatch(/^npx tslcc-softirqdelay +Trace softirqs/m);
  });
});
