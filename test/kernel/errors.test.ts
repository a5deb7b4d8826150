// Every failure gets a clear error and leaves nothing attached or loaded.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import {
  CompileError, compile, hasKprobes, LbcBase, NotFoundError, UnsupportedError, VerifierError,
} from '@tslcc/sdk';
import { bpfFds, isRoot, REPO, ROOT_SKIP, tempDir } from '../helpers';

const cacheDir = tempDir('errors');
// This process's BPF fds: a failed start must leave none, whatever other BPF users do.
const kernelObjects = () => JSON.stringify(bpfFds().all);

async function startFails(name: string, source: string, opts: Record<string, unknown> = {}): Promise<Error> {
  const t = new LbcBase(name, { source, compile: { cacheDir }, ...opts });
  const err = await t.start().then(() => undefined, (e: Error) => e);
  if (!err) {
    t.close();
    throw new Error(`start "${name}" succeeded`);
  }
  expect(t.linkCount).toBe(0);
  return err;
}

const GOOD_TP = 'SEC("tp/syscalls/sys_enter_getppid") int ok(void *ctx) { return 0; }\n';

describe.skipIf(!isRoot)('errors leave nothing behind', () => {
  let before = '';
  beforeEach(async () => {
    before = kernelObjects();
  });
  afterEach(async () => {
    expect(kernelObjects()).toBe(before);
  });

  test('malformed C: CompileError at the user\'s line', async () => {
    const err = await startFails('bad_c', `${GOOD_TP}int broken(void) { return nope; }\n`);
    expect(err).toBeInstanceOf(CompileError);
    expect((err as CompileError).diagnostics[0]).toMatchObject({ file: 'bad_c.bpf.c', line: 2, column: 27 });
  });

  test('verifier rejection: a summary naming the line, the full log kept', async () => {
    const src = [
      'LBC_HASH(h, u32, u64, 16);',
      GOOD_TP.trim(),
      'SEC("tp/syscalls/sys_enter_getpid")',
      'int deref(void *ctx) {',
      '  u32 k = 0;',
      '  u64 *v = bpf_map_lookup_elem(&h, &k);',
      '  return *v;',
      '}',
    ].join('\n');
    const err = await startFails('verif', src) as VerifierError;
    expect(err).toBeInstanceOf(VerifierError);
    expect(err.program).toBe('deref');
    expect(err.message).toMatch(/^load program "deref" \(SEC\("tp\/syscalls\/sys_enter_getpid"\)\): verifier rejected it at verif\.bpf\.c:7: R0 invalid mem access 'map_value_or_null' \(\d+ lines omitted\)$/);
    expect(err.log).toContain("R0 invalid mem access 'map_value_or_null'");
    // Newer kernels annotate "; return *v; @ verif.bpf.c:7"; 6.1 prints "; return *v;" and the
    // SDK finds the line in the source.
    expect(err.log).toMatch(/; return \*v;( @ verif\.bpf\.c:7)?\n/);
  });

  test('not root: PermissionError naming the capabilities and how to run', async () => {
    const obj = path.join(tempDir('nobody'), 'ok.bpf.o');
    fs.writeFileSync(obj, (await compile(GOOD_TP, { name: 'ok', cacheDir })).elf, { mode: 0o644 });
    fs.chmodSync(path.dirname(obj), 0o755);
    const script = `
      const { LbcBase } = await import(${JSON.stringify(path.join(REPO, 'packages/sdk/dist/index.js'))});
      const fs = await import('node:fs');
      try { await new LbcBase('ok', { object: fs.readFileSync(${JSON.stringify(obj)}) }).start(); console.log('started'); }
      catch (e) { console.log(JSON.stringify({ code: e.code, name: e.name, capability: e.capability, message: e.message })); }`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, encoding: 'utf8', cwd: '/' });
    const out = JSON.parse(r.stdout.trim());
    expect(out).toEqual({
      code: 'LBC_PERMISSION', name: 'PermissionError', capability: 'CAP_BPF and CAP_PERFMON',
      message: 'load "ok": missing CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); run as root (sudo) or grant them: sudo setcap cap_bpf,cap_perfmon+ep "$(readlink -f "$(which node)")"',
    });
  });

  test('kprobe: attaches where the kernel has kprobes, else names CONFIG_KPROBES', async (ctx) => {
    const src = 'SEC("kprobe/do_nanosleep") int kp(struct pt_regs *ctx) { return 0; }';
    if (hasKprobes()) {
      const t = await new LbcBase('kp', { source: src, compile: { cacheDir } }).start();
      expect(t.linkCount).toBe(1);
      t.close();
      return;
    }
    const err = await startFails('kp', src) as UnsupportedError;
    expect(err).toBeInstanceOf(UnsupportedError);
    expect(err.feature).toBe('CONFIG_KPROBES');
    expect(err.message).toBe('attach kprobe "do_nanosleep" (program "kp"): kernel has no kprobe support (CONFIG_KPROBES is off: no kprobe PMU, no kprobe_events); this kernel accepts: tracepoints (tp/category/name), raw_tp');
    ctx.skip('CONFIG_KPROBES is off on this kernel: asserted the UnsupportedError; the kprobe attach itself could not be exercised');
  });

  test('kprobe on a kernel function that does not exist', async (ctx) => {
    const src = 'SEC("kprobe/no_such_function_xyz") int kp(struct pt_regs *ctx) { return 0; }';
    const err = await startFails('kpmissing', src);
    if (hasKprobes()) {
      expect(err).toBeInstanceOf(NotFoundError);
      expect(err.message).toBe('attach kprobe "no_such_function_xyz" (program "kp"): no kernel function "no_such_function_xyz" in /proc/kallsyms; check the name (grep no_such_function_xyz /proc/kallsyms); skip it with programs: { kp: false }');
      return;
    }
    expect(err).toBeInstanceOf(UnsupportedError);
    ctx.skip('CONFIG_KPROBES is off on this kernel: asserted the UnsupportedError; the missing-function NotFoundError of a kprobe-capable kernel could not be exercised');
  });

  test('explicit attachKprobe with attach: false gives the same clear error', async (ctx) => {
    const t = await new LbcBase('kpx', { source: 'SEC("kprobe") int kp(struct pt_regs *ctx) { return 0; }', compile: { cacheDir }, attach: false }).start();
    try {
      if (hasKprobes()) {
        t.attachKprobe('kp', 'do_nanosleep');
        expect(t.linkCount).toBe(1);
        return;
      }
      expect(() => t.attachKprobe('kp', 'do_nanosleep')).toThrow(UnsupportedError);
      expect(() => t.attachKretprobe('kp', 'do_nanosleep')).toThrow(/^attach kretprobe "do_nanosleep" \(program "kp"\): kernel has no kprobe support/);
      expect(t.linkCount).toBe(0);
    } finally {
      t.close();
    }
    ctx.skip('CONFIG_KPROBES is off on this kernel: asserted the UnsupportedError of attachKprobe/attachKretprobe; the attach itself could not be exercised');
  });

  test('a tracepoint that does not exist: NotFoundError with a suggestion', async () => {
    const err = await startFails('tpmissing', 'SEC("tp/sched/sched_switchh") int t(void *ctx) { return 0; }');
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toBe('attach tracepoint "sched/sched_switchh" (program "t"): no such event in "sched"; did you mean "sched_switch"?; list them with: ls /sys/kernel/tracing/events/sched; skip it with programs: { t: false }');
  });

  test('a raw tracepoint that does not exist', async () => {
    const err = await startFails('rawmissing', `${GOOD_TP}SEC("raw_tp/no_such_tp") int r(void *ctx) { return 0; }`);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toBe('attach raw tracepoint "no_such_tp" (program "r"): this kernel has no tracepoint "no_such_tp"; raw tracepoints are named like their event without the category (ls /sys/kernel/tracing/events/*/); skip it with programs: { r: false }');
  });

  /** Programs on BPF trampolines: attached where the kernel allows them, else a clear UnsupportedError. */
  const trampoline: Array<[string, string, string, string]> = [
    ['fentry', 'SEC("fentry/do_nanosleep") int BPF_PROG(fe, void *t) { return 0; }', 'BPF trampoline (fentry/fexit)', 'fe'],
    ['lsm', 'SEC("lsm/file_open") int BPF_PROG(lsm_open, struct file *file) { return 0; }', 'CONFIG_BPF_LSM', 'lsm_open'],
  ];
  for (const [kind, src, feature, prog] of trampoline) {
    test(`${kind}: runs where the kernel allows it, else a clear UnsupportedError`, async (ctx) => {
      const t = new LbcBase(`${kind}_t`, { source: src, compile: { cacheDir } });
      const err = await t.start().then(() => undefined, (e: Error) => e);
      if (!err) {
        expect(t.linkCount).toBe(1);
        t.close();
        return;
      }
      expect(err).toBeInstanceOf(UnsupportedError);
      expect((err as UnsupportedError).feature).toBe(feature);
      expect(err.message).toMatch(new RegExp(`^load program "${prog}" \\(SEC\\("${kind}/[a-z_]+"\\)\\): kernel refused ${kind} programs \\(.*\\); BPF trampolines need CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS`));
      ctx.skip(`this kernel refuses ${kind} programs (EPERM at load): asserted the UnsupportedError; the ${kind} attach itself could not be exercised`);
    });
  }

  test('tracefs not mounted: the SDK mounts it (as root) and attaches', async (ctx) => {
    if (fs.existsSync('/sys/kernel/debug/tracing/events')) {
      ctx.skip('debugfs is mounted and exposes tracefs at /sys/kernel/debug/tracing, so tracefs cannot be made absent here');
    }
    const um = spawnSync('umount', ['/sys/kernel/tracing']);
    if (um.status !== 0) ctx.skip(`cannot unmount /sys/kernel/tracing to test this: ${um.stderr}`);
    expect(fs.existsSync('/sys/kernel/tracing/events')).toBe(false);
    const t = await new LbcBase('tracefs', { source: GOOD_TP, compile: { cacheDir } }).start();
    expect(fs.existsSync('/sys/kernel/tracing/events/syscalls/sys_enter_getppid/id')).toBe(true);
    expect(t.linkCount).toBe(1);
    t.close();
  });
});

if (!isRoot) test('errors leave nothing behind', (ctx) => ctx.skip(ROOT_SKIP));
