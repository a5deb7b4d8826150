// What the toolchain changes mean on a real kernel: kfuncs declared by vmlinux.h load and
// run, BPF_UPROBE reads exact arguments (six, the sixth from the backfilled PT_REGS_PARM6),
// and stripped -mcpu=v3 objects load.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import * as native from '@tslcc/native';
import { LbcBase } from '@tslcc/sdk';
import { isRoot, ROOT_SKIP, tempDir } from '../helpers';

const cacheDir = tempDir('ktoolchain');

/** Whether the running kernel's BTF tags `name` as a kfunc (what vmlinux.h declares from). */
function kfuncInKernel(name: string): boolean {
  return native.kernelBtfFind(name, 12) > 0 && dumpHasKfunc(name);
}
let kfuncDump: string | undefined;
function dumpHasKfunc(name: string): boolean {
  kfuncDump ??= native.dumpBtfAsC(null);
  return kfuncDump.includes(` ${name}(`) && new RegExp(`^extern .*\\b${name}\\(.*__ksym;$`, 'm').test(kfuncDump);
}

const ARGS_C = `
#include <stdio.h>
__attribute__((noinline)) long tc_args(int a, long b, unsigned short c, const char *d, long e, long f) {
  __asm__ volatile("" ::: "memory");
  return a + b + c + e + f + d[0];
}
int main(void) {
  static const char s[] = "x";
  long r = tc_args(-7, 0x1122334455667788L, 65535, s, -5, 0x600000006L);
  printf("%ld %lu\\n", r, (unsigned long)s);
  return 0;
}
`;

describe.skipIf(!isRoot)('toolchain on the kernel', () => {
  test('tp_btf program calling bpf_task_from_pid/bpf_task_release and bpf_rcu_read_lock/unlock loads and runs', async (ctx) => {
    const missing = ['bpf_task_from_pid', 'bpf_task_release', 'bpf_rcu_read_lock'].filter((f) => !kfuncInKernel(f));
    if (missing.length) ctx.skip(`kernel ${os.release()} has no kfunc ${missing.join(', ')} tagged in its BTF (bpf_task_from_pid came in 6.2; kfunc tags need pahole 1.26): nothing to declare`);
    const src = `
      const volatile u32 parent_tgid = 0;
      u64 found = 0, execs = 0;
      SEC("tp_btf/sched_process_exec")
      int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm) {
        if (p->real_parent->tgid != parent_tgid) return 0;
        __sync_fetch_and_add(&execs, 1);
        struct task_struct *t = bpf_task_from_pid(p->pid);
        if (t) {
          if (t->tgid == p->tgid) __sync_fetch_and_add(&found, 1);
          bpf_task_release(t);
        }
        bpf_rcu_read_lock();
        bpf_rcu_read_unlock();
        return 0;
      }`;
    const t = await new LbcBase('kfuncs', { source: src, globals: { parent_tgid: process.pid }, compile: { cacheDir } }).start();
    try {
      for (let i = 0; i < 3; i++) expect(spawnSync('/bin/true').status).toBe(0);
      expect([t.readGlobal('execs'), t.readGlobal('found')]).toEqual([3n, 3n]);
    } finally {
      t.close();
    }
  });

  test('bpf_for, bpf_repeat, bpf_for_each, bpf_ksym_exists and bpf_core_cast (lbc_compat.h) verify and compute', async (ctx) => {
    const missing = ['bpf_iter_num_new', 'bpf_rdonly_cast'].filter((f) => !kfuncInKernel(f));
    if (missing.length) ctx.skip(`kernel ${os.release()} has no ${missing.join(', ')} kfunc in its BTF (open-coded iterators came in 6.4, bpf_rdonly_cast in 6.2)`);
    const src = `
      const volatile u32 my_tgid = 0;
      u64 for_sum, repeats, each_sum, has_rcu_lock, has_missing, cast_tgid;
      extern void bpf_no_such_kfunc_tslcc(void) __weak __ksym;
      SEC("tp_btf/sched_switch")
      int BPF_PROG(sw, bool preempt, struct task_struct *prev, struct task_struct *next) {
        if (prev->tgid != my_tgid) return 0;
        u64 s = 0, r = 0, e = 0;
        int i, *v;
        bpf_for(i, 0, 10) s += i;
        bpf_repeat(3) r++;
        bpf_for_each(num, v, 5, 8) e += *v;
        for_sum = s; repeats = r; each_sum = e;
        has_rcu_lock = bpf_ksym_exists(bpf_rcu_read_lock);
        has_missing = bpf_ksym_exists(bpf_no_such_kfunc_tslcc);
        struct task_struct *t = bpf_core_cast(prev, struct task_struct);
        cast_tgid = t->tgid;
        return 0;
      }`;
    const t = await new LbcBase('compat', { source: src, globals: { my_tgid: process.pid }, compile: { cacheDir } }).start();
    try {
      await new Promise((r) => setTimeout(r, 50)); // this process sleeps: a context switch away from it
      expect(['for_sum', 'repeats', 'each_sum', 'has_rcu_lock', 'has_missing', 'cast_tgid'].map((g) => t.readGlobal(g)))
        .toEqual([45n, 3n, 18n, 1n, 0n, BigInt(process.pid)]);
    } finally {
      t.close();
    }
  });

  test('SEC("uprobe") int BPF_UPROBE(f, int a, long b, ...) reads the exact six arguments; BPF_URETPROBE the return value', async () => {
    const dir = tempDir('uprobe-args');
    fs.writeFileSync(path.join(dir, 'args.c'), ARGS_C);
    const bin = path.join(dir, 'tslcc-args');
    execFileSync('gcc', ['-O1', '-o', bin, path.join(dir, 'args.c')]);
    const src = `
      s32 g_a; s64 g_b; u16 g_c; u64 g_d; s64 g_e, g_f, g_ret; u64 calls;
      SEC("uprobe")
      int BPF_UPROBE(on_args, int a, long b, unsigned short c, const char *d, long e, long f) {
        g_a = a; g_b = b; g_c = c; g_d = (u64)d; g_e = e; g_f = f;
        __sync_fetch_and_add(&calls, 1);
        return 0;
      }
      SEC("uretprobe")
      int BPF_URETPROBE(on_args_ret, long ret) { g_ret = ret; return 0; }`;
    const t = await new LbcBase('uprobe_args', { source: src, attach: false, compile: { cacheDir } }).start();
    try {
      t.attachUprobe('on_args', bin, 'tc_args');
      t.attachUretprobe('on_args_ret', bin, 'tc_args');
      const [ret, ptr] = execFileSync(bin, { encoding: 'utf8' }).trim().split(' ');
      expect(t.readGlobal('calls')).toBe(1n);
      expect([t.readGlobal('g_a'), t.readGlobal('g_b'), t.readGlobal('g_c'), t.readGlobal('g_d'), t.readGlobal('g_e'), t.readGlobal('g_f')])
        .toEqual([-7, 0x1122334455667788n, 65535, BigInt(ptr!), -5n, 0x600000006n]);
      expect(t.readGlobal('g_ret')).toBe(BigInt(ret!));
      expect(BigInt(ret!)).toBe(-7n + 0x1122334455667788n + 65535n - 5n + 0x600000006n + 120n);
    } finally {
      t.close();
    }
  });
});

if (!isRoot) test('toolchain on the kernel', (ctx) => ctx.skip(ROOT_SKIP));
