// The attach types this CI kernel lacks (kprobes, fentry/fexit, LSM, kprobe.multi, module
// functions), asserted with exact values. They run in the VM suite (scripts/vmtest.sh) on
// Debian's 6.1 and 6.12 kernels; on a kernel without the feature each test skips, naming
// the kernel and what it lacks.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { hasKprobes, kernelProbes, LbcBase, LbcError } from '@tslcc/sdk';
import { CHILDREN_FILTER, isRoot, runProbe, tempDir } from '../helpers';

const cacheDir = tempDir('trampoline');
const KERNEL = `kernel ${os.release()}`;
const VM = 'it runs in the VM suite (npm run test:vm)';

// Only the children of this test process count, so other processes' syscalls never do.
const MINE = CHILDREN_FILTER;

const tools: LbcBase[] = [];
afterAll(() => { for (const t of tools) t.close(); });

async function start(name: string, source: string, opts: Record<string, unknown> = {}): Promise<LbcBase> {
  const t = new LbcBase(name, { source, compile: { cacheDir }, globals: { parent_tgid: process.pid }, onWarning: () => {}, ...opts });
  tools.push(t);
  return t.start();
}

/** A regular file to lseek in: lseek then returns the offset asked for. */
function seekFile(): string {
  const f = path.join(tempDir('seek'), 'data');
  fs.writeFileSync(f, Buffer.alloc(8192));
  return f;
}

const OFFSETS = ['5', '77', '4096'];
// The lseek syscall's own function: always called out of line (through the syscall table),
// where vfs_llseek and ksys_lseek may be inlined into it.
const SYS_LSEEK = process.arch === 'arm64' ? '__arm64_sys_lseek' : '__x64_sys_lseek';

// The event of every test: which probe, the offset argument, whence, and the return value.
const EV = `
  struct ev { u32 kind; u32 whence; s64 off; s64 ret; };
  LBC_RINGBUF(evs, struct ev, 1 << 16);
  static __always_inline void emit(u32 kind, s64 off, u32 whence, s64 ret) {
    struct ev e = { .kind = kind, .whence = whence, .off = off, .ret = ret };
    lbc_ringbuf_output(evs, &e, sizeof(e));
  }`;

/** Entry then exit for each offset, in call order. */
const entryExit = (entry: number, exit: number) => OFFSETS.flatMap((o) => [
  { kind: entry, whence: 0, off: BigInt(o), ret: 0n },
  { kind: exit, whence: 0, off: 0n, ret: BigInt(o) },
]);

async function collect(t: LbcBase, run: () => void): Promise<unknown[]> {
  const got: unknown[] = [];
  t.maps.evs.on((e: unknown) => got.push(e));
  run();
  t.maps.evs.drain();
  return got;
}

describe.skipIf(!isRoot)('kprobes, trampolines, LSM', () => {
  test('kprobe and kretprobe on the lseek syscall: exact arguments and return values, by SEC and explicitly', async (ctx) => {
    if (!hasKprobes()) ctx.skip(`${KERNEL} has no kprobes (CONFIG_KPROBES off): the attach cannot be exercised here; ${VM}`);
    // ksyscall/kretsyscall: libbpf finds the arch's wrapper and BPF_KSYSCALL reads the
    // arguments from the pt_regs the wrapper gets.
    const src = `${MINE}${EV}
      SEC("ksyscall/lseek") int BPF_KSYSCALL(on_lseek, int fd, long off, int whence) { if (mine()) emit(1, off, whence, 0); return 0; }
      SEC("kretsyscall/lseek") int BPF_KRETPROBE(on_lseek_ret, long ret) { if (mine()) emit(2, 0, 0, ret); return 0; }
      SEC("kprobe") int BPF_KPROBE(kp, struct pt_regs *regs) { if (mine()) emit(1, PT_REGS_PARM2_CORE(regs), PT_REGS_PARM3_CORE(regs), 0); return 0; }
      SEC("kretprobe") int BPF_KRETPROBE(krp, long ret) { if (mine()) emit(2, 0, 0, ret); return 0; }`;
    const file = seekFile();
    const t = await start('kprobes', src);
    expect(t.programs.map((p) => [p.name, p.links])).toEqual([['on_lseek', 1], ['on_lseek_ret', 1], ['kp', 0], ['krp', 0]]);
    expect(await collect(t, () => runProbe('lseekf', file, ...OFFSETS))).toEqual(entryExit(1, 2));
    t.close();
    const t2 = await start('kprobes2', src, { attach: false });
    t2.attachKprobe('kp', SYS_LSEEK);
    t2.attachKretprobe('krp', SYS_LSEEK);
    expect(t2.attachKprobe('kp', SYS_LSEEK)).toBe(t2.attachKprobe('kp', SYS_LSEEK));
    expect(t2.linkCount).toBe(2);
    expect(await collect(t2, () => runProbe('lseekf', file, ...OFFSETS))).toEqual(entryExit(1, 2));
  });

  test('fentry and fexit on the lseek syscall: exact arguments and return values', async (ctx) => {
    if (!kernelProbes().fentryAttachable(SYS_LSEEK)) ctx.skip(`${KERNEL} refuses fentry programs on ${SYS_LSEEK} (no BPF trampoline): the attach cannot be exercised here; ${VM}`);
    const src = `${MINE}${EV}
      SEC("fentry/${SYS_LSEEK}") int BPF_PROG(fe, struct pt_regs *regs) { if (mine()) emit(3, PT_REGS_PARM2_CORE(regs), PT_REGS_PARM3_CORE(regs), 0); return 0; }
      SEC("fexit/${SYS_LSEEK}") int BPF_PROG(fx, struct pt_regs *regs, long ret) { if (mine()) emit(4, 0, 0, ret); return 0; }`;
    const t = await start('trampolines', src);
    expect(t.programs.map((p) => [p.name, p.links])).toEqual([['fe', 1], ['fx', 1]]);
    expect(await collect(t, () => runProbe('lseekf', seekFile(), ...OFFSETS))).toEqual(entryExit(3, 4));
  });

  test('fentry with a kprobe fallback: the probe picks what this kernel has, and the count is exact', async (ctx) => {
    const f = kernelProbes();
    if (!f.fentryAttachable(SYS_LSEEK) && !f.kprobes) ctx.skip(`${KERNEL} has neither fentry nor kprobes: nothing to choose; ${VM}`);
    const src = `${MINE}
      u64 calls = 0;
      SEC("fentry/${SYS_LSEEK}") int BPF_PROG(via_fentry) { if (mine()) __sync_fetch_and_add(&calls, 1); return 0; }
      SEC("kprobe/${SYS_LSEEK}") int BPF_KPROBE(via_kprobe) { if (mine()) __sync_fetch_and_add(&calls, 1); return 0; }`;
    const useFentry = f.fentryAttachable(SYS_LSEEK);
    const t = await start('fallback', src, { programs: useFentry ? { via_kprobe: false } : { via_fentry: false } });
    expect(t.programs.filter((p) => p.links).map((p) => p.name)).toEqual([useFentry ? 'via_fentry' : 'via_kprobe']);
    runProbe('lseekf', seekFile(), ...OFFSETS);
    expect(t.readGlobal('calls')).toBe(3n);
  });

  test('LSM: a bpf program on the file_open hook sees exactly the files a child opens', async (ctx) => {
    const lsms = (() => { try { return fs.readFileSync('/sys/kernel/security/lsm', 'utf8').trim(); } catch { return ''; } })();
    if (!lsms.split(',').includes('bpf')) ctx.skip(`${KERNEL} has no BPF LSM active (/sys/kernel/security/lsm: "${lsms || 'unreadable'}"): the attach cannot be exercised here; ${VM}`);
    const src = `${MINE}
      struct open_ev { char name[32]; };
      LBC_RINGBUF(opens, struct open_ev, 1 << 16);
      SEC("lsm/file_open") int BPF_PROG(on_open, struct file *file) {
        if (!mine()) return 0;
        struct open_ev e = {};
        bpf_probe_read_kernel_str(e.name, sizeof(e.name), BPF_CORE_READ(file, f_path.dentry, d_name.name));
        lbc_ringbuf_output(opens, &e, sizeof(e));
        return 0;
      }`;
    let t: LbcBase;
    try {
      t = await start('lsm', src);
    } catch (e) {
      if (e instanceof LbcError && e.code === 'LBC_UNSUPPORTED') ctx.skip(`${KERNEL} refused the LSM program (${e.message}); ${VM}`);
      throw e;
    }
    const dir = tempDir('lsm');
    fs.writeFileSync(path.join(dir, 'lsm-target-file'), 'x');
    const got: unknown[] = [];
    t.maps.opens.on((e: unknown) => got.push(e));
    runProbe('openat', path.join(dir, 'lsm-target-file'));
    t.maps.opens.drain();
    // The dynamic loader opens libraries first; the probe's own open is the last one.
    expect(got.at(-1)).toEqual({ name: 'lsm-target-file' });
  });

  test('kprobe.multi on the lseek syscall: one link, every call counted', async (ctx) => {
    if (!hasKprobes()) ctx.skip(`${KERNEL} has no kprobes (CONFIG_KPROBES off); ${VM}`);
    const src = `${MINE}
      u64 calls = 0;
      SEC("kprobe.multi/${SYS_LSEEK}") int multi(struct pt_regs *ctx) { if (mine()) __sync_fetch_and_add(&calls, 1); return 0; }`;
    let t: LbcBase;
    try {
      t = await start('kmulti', src);
    } catch (e) {
      // fprobe (CONFIG_FPROBE) came in 5.18 and is off in Debian's 6.1.
      if (e instanceof LbcError && (e.errno === 95 || e.errno === 524)) ctx.skip(`${KERNEL} has no fprobe (CONFIG_FPROBE off), so kprobe.multi cannot attach: ${e.message}`);
      throw e;
    }
    expect(t.linkCount).toBe(1);
    runProbe('lseekf', seekFile(), ...OFFSETS);
    expect(t.readGlobal('calls')).toBe(3n);
  });

  test.skip('uprobe.multi: not available, libbpf 1.1 (Debian 12) has no uprobe.multi sections or attach (libbpf 1.3+, kernel 6.6+)', () => {});

  test('a kprobe on a module function, with [module] frames in the stack', async (ctx) => {
    const overlayRoot = fs.readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === '/' && l.split(' ')[2] === 'overlay');
    if (!hasKprobes() || !fs.existsSync('/sys/module/overlay') || !overlayRoot) {
      ctx.skip(`${KERNEL}: needs kprobes and an overlayfs root from the overlay module (the VM guest's), to kprobe ovl_getattr; ${VM}`);
    }
    const src = `
      const volatile u32 self = 0;
      LBC_STACK(stacks, 64);
      LBC_ARRAY(last, u32, s32, 1);
      SEC("kprobe/ovl_getattr") int on_getattr(struct pt_regs *ctx) {
        if ((bpf_get_current_pid_tgid() >> 32) != self) return 0;
        u32 k = 0;
        s32 id = bpf_get_stackid(ctx, &stacks, 0);
        bpf_map_update_elem(&last, &k, &id, 0);
        return 0;
      }`;
    const t = await start('modkp', src, { globals: { self: process.pid } });
    fs.statSync('/etc/hostname');
    const id = t.maps.last.get(0) as number;
    expect(id).toBeGreaterThanOrEqual(0);
    const frames: string[] = t.maps.stacks.getStacks(id);
    expect(frames[0]).toMatch(/^ovl_getattr\+0x[0-9a-f]+ \[overlay\]$/);
    expect(frames.some((f) => /^vfs_statx|^vfs_getattr|^do_statx|^__do_sys_newfstatat|^vfs_fstatat/.test(f))).toBe(true);
  });

  test('the mission\'s canonical program: a kprobe with PT_REGS_PARM arguments, a stack id, a perf output, decoded fields and the symbolized stack', async (ctx) => {
    if (!hasKprobes()) ctx.skip(`${KERNEL} has no kprobes (CONFIG_KPROBES off); ${VM}`);
    // do_sys_openat2(int dfd, const char __user *filename, struct open_how *how): the
    // function BCC's opensnoop probes, out of line in every kernel since 5.6.
    const src = `${MINE}
      struct data_t { int cpu; int dfd; u32 stack_id; char filename[64]; };
      LBC_PERF_OUTPUT(e_out, struct data_t, 128);
      LBC_STACK(call_stack, 256);
      SEC("kprobe/do_sys_openat2")
      int j_do_sys_openat2(struct pt_regs *ctx) {
        if (!mine()) return 0;
        struct data_t data = {};
        data.cpu = bpf_get_smp_processor_id();
        data.dfd = PT_REGS_PARM1(ctx);
        bpf_probe_read_user_str(data.filename, sizeof(data.filename), (void *)PT_REGS_PARM2(ctx));
        data.stack_id = bpf_get_stackid(ctx, &call_stack, KERN_STACKID_FLAGS);
        bpf_perf_event_output(ctx, &e_out, BPF_F_CURRENT_CPU, &data, sizeof(data));
        return 0;
      }`;
    const t = await start('canonical', src);
    const lines: string[] = [];
    const got: Array<{ dfd: number; filename: string; stack: string[] }> = [];
    t.maps.e_out.on((e: { cpu: number; dfd: number; stack_id: number; filename: string }) => {
      const stack = t.maps.call_stack.getStacks(e.stack_id);
      lines.push(`cpu ${e.cpu} dfd ${e.dfd} ${e.filename}`, ...stack.map((s: string) => `    ${s}`));
      got.push({ dfd: e.dfd, filename: e.filename, stack });
    });
    const target = path.join(tempDir('canon'), 'canonical-target');
    fs.writeFileSync(target, '');
    runProbe('openat', target);
    t.maps.e_out.drain();
    // The dynamic loader's opens come first; the probe's own openat(AT_FDCWD, target) is last.
    const last = got.at(-1)!;
    expect([last.dfd, last.filename]).toEqual([-100, target]);
    expect(last.stack[0]).toMatch(/^do_sys_openat2\+0x[0-9a-f]+$/);
    expect(last.stack.some((f) => /^(__x64_sys_openat|__arm64_sys_openat|__do_sys_openat|do_sys_open)\+/.test(f))).toBe(true);
    expect(last.stack.some((f) => f.startsWith('do_syscall_64+') || f.startsWith('el0_svc'))).toBe(true);
    expect(lines.some((l) => l.endsWith(` dfd -100 ${target}`))).toBe(true);
  });
});
