// The tslcc command, run as a user runs it.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { REPO, tempDir } from '../helpers';

const BIN = path.join(REPO, 'packages/cli/bin/tslcc.js');
const run = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });

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
    expect(r.stderr.split('\n')[0]).toBe("bad.bpf.c:2:27: error: use of undeclared identifier 'oops'");
  });

  test('doctor --json lists the checks', () => {
    const r = run(['doctor', '--json']);
    const checks = JSON.parse(r.stdout) as Array<{ name: string; ok: boolean }>;
    expect(checks.map((c) => c.name)).toEqual(expect.arrayContaining(['kernel', 'privileges', 'kernel BTF', 'tracefs', 'kprobes', 'clang (local compile)']));
    expect(checks.find((c) => c.name === 'kernel BTF')!.ok).toBe(fs.existsSync('/sys/kernel/btf/vmlinux'));
    expect(r.status).toBe(checks.some((c) => !c.ok && ['privileges', 'kernel BTF', 'tracepoint programs'].includes(c.name)) ? 1 : 0);
  });

  test('tools lists the examples as npx commands', () => {
    expect(run(['tools']).stdout).toMatch(/^npx tslcc-softirqdelay +Trace softirqs/m);
  });
});
