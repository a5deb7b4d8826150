// The toolchain around clang (no kernel): kfunc prototypes in vmlinux.h, the macros newer
// libbpf headers added, the BPF ISA level, stripped objects, implicit declarations as errors.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  clangArgs, CompileError, compile, defaultMcpu, describeObject, findClang, findStrip, INCLUDE_DIR, kernelArch,
  stripDebug, targetKernelRelease, toolchainFlags, vmlinuxDirName, vmlinuxHeaderDir, wrapSource,
} from '@tslcc/sdk';
import { tempDir } from '../helpers';

const cacheDir = tempDir('toolchain');
const haveBtf = fs.existsSync('/sys/kernel/btf/vmlinux');

/** Section names of an ELF object, as llvm-objdump lists them. */
function sections(file: string): string[] {
  const out = execFileSync('llvm-objdump', ['-h', file], { encoding: 'utf8' });
  return out.split('\n').map((l) => /^\s*\d+\s+(\S+)/.exec(l)?.[1]).filter((s): s is string => !!s);
}

function objFile(elf: Buffer, name: string): string {
  const f = path.join(cacheDir, `${name}.o`);
  fs.writeFileSync(f, elf);
  return f;
}

const KFUNCS = `
u64 found = 0;
SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct task_struct *t = bpf_task_from_pid(p->pid);
	if (t) {
		__sync_fetch_and_add(&found, 1);
		bpf_task_release(t);
	}
	bpf_rcu_read_lock();
	bpf_rcu_read_unlock();
	return 0;
}
`;

describe.skipIf(!haveBtf)('kfunc prototypes in vmlinux.h', () => {
  let header: string;
  beforeAll(() => {
    header = fs.readFileSync(path.join(vmlinuxHeaderDir(cacheDir), 'vmlinux.h'), 'utf8');
  });

  test('vmlinux.h declares every bpf_kfunc-tagged FUNC, weak, guarded by BPF_NO_KFUNC_PROTOTYPES', () => {
    const lines = header.split('\n');
    expect(lines).toContain('extern struct task_struct *bpf_task_from_pid(s32 pid) __weak __ksym;');
    expect(lines).toContain('extern void bpf_task_release(struct task_struct *p) __weak __ksym;');
    expect(lines).toContain('extern void bpf_rcu_read_lock(void) __weak __ksym;');
    const start = lines.indexOf('#ifndef BPF_NO_KFUNC_PROTOTYPES');
    const end = lines.indexOf('#endif /* BPF_NO_KFUNC_PROTOTYPES */');
    expect(start).toBeGreaterThan(0);
    const protos = lines.slice(start + 1, end);
    expect(protos.length).toBeGreaterThan(50);
    expect(protos.every((l) => l.startsWith('extern ') && l.endsWith(' __weak __ksym;'))).toBe(true);
    // as many as bpftool counts tags (each FUNC once)
    const tagged = execFileSync('bpftool', ['btf', 'dump', 'file', '/sys/kernel/btf/vmlinux'], { encoding: 'utf8', maxBuffer: 1 << 30 })
      .split('\n').filter((l) => / DECL_TAG 'bpf_kfunc' type_id=\d+ component_idx=-1$/.test(l)).map((l) => /type_id=(\d+)/.exec(l)![1]);
    expect(protos.length).toBe(new Set(tagged).size);
    // __ksym and __weak are usable before bpf_helpers.h (lbc.h includes vmlinux.h first)
    expect(header.indexOf('#define __ksym __attribute__((section(".ksyms")))')).toBeLessThan(header.indexOf(protos[0]!));
    expect(header.indexOf('#define __weak __attribute__((weak))')).toBeLessThan(header.indexOf(protos[0]!));
  });

  test('the cache directory of vmlinux.h carries its format version', () => {
    expect(fs.existsSync(path.join(cacheDir, 'vmlinux'))).toBe(true);
    const dirs = fs.readdirSync(path.join(cacheDir, 'vmlinux'));
    expect(dirs).toHaveLength(1);
    expect(dirs[0]).toMatch(/^v2-[0-9a-f]{32}$/);
    expect(vmlinuxDirName('ab'.repeat(32))).toBe(`v2-${'ab'.repeat(16)}`);
  });

  test('a program calling kfuncs compiles with no warning and references them as externs', async () => {
    const c = await compile(KFUNCS, { name: 'kfuncs', cacheDir, mode: 'local' });
    expect(c.warnings).toEqual([]);
    const syms = execFileSync('llvm-objdump', ['-t', objFile(c.elf, 'kfuncs')], { encoding: 'utf8' });
    for (const k of ['bpf_task_from_pid', 'bpf_task_release', 'bpf_rcu_read_lock', 'bpf_rcu_read_unlock']) {
      expect(syms).toMatch(new RegExp(`\\*UND\\*\\s+0+ ${k}$`, 'm'));
    }
  });

  test('a program with its own kfunc declarations still compiles, with or without BPF_NO_KFUNC_PROTOTYPES', async () => {
    const own = `extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym;\nextern void bpf_task_release(struct task_struct *p) __ksym;\n` +
      'extern void bpf_rcu_read_lock(void) __ksym;\nextern void bpf_rcu_read_unlock(void) __ksym;\n';
    const a = await compile(own + KFUNCS, { name: 'ownkf', cacheDir, mode: 'local' });
    expect(a.warnings).toEqual([]);
    const b = await compile(own + KFUNCS, { name: 'ownkf', cacheDir, mode: 'local', flags: ['-DBPF_NO_KFUNC_PROTOTYPES'] });
    expect(b.warnings).toEqual([]);
    const err = await compile(KFUNCS, { name: 'nokf', cacheDir, mode: 'local', flags: ['-DBPF_NO_KFUNC_PROTOTYPES'] }).catch((e) => e);
    expect(err).toBeInstanceOf(CompileError);
    expect(err.diagnostics[0]).toMatchObject({ file: 'nokf.bpf.c', line: 6, severity: 'error' });
    expect(err.diagnostics[0].message).toContain("'bpf_task_from_pid'");
  });
});

describe('macros of libbpf headers newer than 1.1 (lbc_compat.h)', () => {
  test('BPF_UPROBE / BPF_URETPROBE with six arguments: the programs are in the object', async () => {
    const src = `
      s64 got[6];
      long rv;
      SEC("uprobe") int BPF_UPROBE(on_entry, int a, long b, u16 c, char *d, long e, long f) {
        got[0] = a; got[1] = b; got[2] = c; got[3] = (long)d; got[4] = e; got[5] = f;
        return 0;
      }
      SEC("uretprobe") int BPF_URETPROBE(on_return, long ret) { rv = ret; return 0; }`;
    const c = await compile(src, { name: 'uprobes', cacheDir, mode: 'local' });
    expect(c.warnings).toEqual([]);
    const d = describeObject(c.elf, 'uprobes');
    expect(d.programs.map((p) => [p.name, p.section]).sort()).toEqual([['on_entry', 'uprobe'], ['on_return', 'uretprobe']]);
    // the sixth argument is read from r9 (x86-64 SysV), the fifth from r8
    if (kernelArch() === 'x86') {
      const asm = execFileSync('llvm-objdump', ['-d', '--no-show-raw-insn', objFile(c.elf, 'uprobes')], { encoding: 'utf8' });
      const on = asm.slice(asm.indexOf('<on_entry>'), asm.indexOf('<on_return>') > 0 ? asm.indexOf('<on_return>') : undefined);
      expect(on).toContain('= *(u64 *)(r1 + 64)'); // r9: pt_regs' 9th word
      expect(on).toContain('= *(u64 *)(r1 + 72)'); // r8
    }
  });

  test('bpf_for, bpf_repeat, bpf_for_each, bpf_ksym_exists, bpf_core_cast, __arg_ctx and the kptr tags compile', async () => {
    const src = `
      struct holder { struct task_struct __kptr_untrusted *u; u64 __percpu_kptr *pc; };
      u64 total = 0, has_lock = 0, pid_seen = 0;
      __noinline int global_sub(void *ctx __arg_ctx) { return ctx != 0; }
      SEC("tp_btf/sched_switch")
      int BPF_PROG(sw, bool preempt, struct task_struct *prev, struct task_struct *next) {
        int i;
        bpf_for(i, 0, 10) total += i;
        bpf_repeat(3) total++;
        int *v;
        bpf_for_each(num, v, 0, 2) total += *v;
        has_lock = bpf_ksym_exists(bpf_rcu_read_lock);
        struct task_struct *t = bpf_core_cast(prev, struct task_struct);
        pid_seen = t->pid;
        return global_sub(ctx);
      }`;
    const c = await compile(src, { name: 'newmacros', cacheDir, mode: 'local' });
    expect(c.warnings).toEqual([]);
    expect(describeObject(c.elf, 'newmacros').programs.map((p) => p.name)).toEqual(['sw']);
  });

  test('a kfunc declared without __weak is refused by bpf_ksym_exists at compile time', async () => {
    const src = `
      extern void bpf_some_strong_kfunc(void) __ksym;
      u64 x;
      SEC("tp_btf/sched_switch") int BPF_PROG(sw) { x = bpf_ksym_exists(bpf_some_strong_kfunc); return 0; }`;
    const err = await compile(src, { name: 'strong', cacheDir, mode: 'local' }).catch((e) => e);
    expect(err).toBeInstanceOf(CompileError);
    expect(err.diagnostics[0]).toMatchObject({ file: 'strong.bpf.c', line: 4, severity: 'error' });
    expect(err.diagnostics[0].message).toContain('bpf_some_strong_kfunc must be declared __weak');
  });
});

describe('BPF ISA level (-mcpu)', () => {
  test('v3 from 5.1, v2 from 4.14, else the compiler default', () => {
    expect(['6.18.44-fc', '5.1.0', '5.0.21', '4.14.0-1', '4.9.337', 'garbage'].map(defaultMcpu)).toEqual(['v3', 'v3', 'v2', 'v2', undefined, undefined]);
    expect(defaultMcpu(undefined)).toBeUndefined();
  });

  test('the target kernel: uname for the running kernel, else the release in a BTF file name', () => {
    expect(targetKernelRelease('/sys/kernel/btf/vmlinux')).toBe(os.release());
    expect(targetKernelRelease('/srv/btfhub/ubuntu/20.04/x86_64/5.4.0-91-generic.btf')).toBe('5.4.0-91-generic');
    expect(targetKernelRelease('/srv/btfhub/centos/7/x86_64/3.10.0-1160.el7.x86_64.btf')).toBe('3.10.0-1160.el7.x86_64');
    expect(targetKernelRelease('/tmp/custom-vmlinux')).toBeUndefined();
  });

  test('defaults come first, a user -mcpu replaces the default, and applying twice adds nothing', () => {
    expect(toolchainFlags(['-DX'], '6.1.0')).toEqual(['-Werror=implicit-function-declaration', '-mcpu=v3', '-DX']);
    expect(toolchainFlags(['-mcpu=v2'], '6.1.0')).toEqual(['-Werror=implicit-function-declaration', '-mcpu=v2']);
    expect(toolchainFlags([], '4.19.0')).toEqual(['-Werror=implicit-function-declaration', '-mcpu=v2']);
    expect(toolchainFlags([], undefined)).toEqual(['-Werror=implicit-function-declaration']);
    const once = toolchainFlags([], '6.1.0');
    expect(toolchainFlags(once, '6.1.0')).toEqual(once);
  });

  const LOOP = `
    u32 hits = 0;
    SEC("tp/syscalls/sys_enter_getppid") int p(void *ctx) {
      u32 pid = bpf_get_current_pid_tgid() >> 32;
      if (pid > 100 && pid < 100000) hits++;
      return 0;
    }`;
  const jmp32 = (elf: Buffer, n: string) => execFileSync('llvm-objdump', ['-d', '--no-show-raw-insn', objFile(elf, n)], { encoding: 'utf8' })
    .split('\n').filter((l) => /\bif w\d+ /.test(l)).length;

  test.skipIf(!haveBtf)('this kernel (>= 5.1) gets -mcpu=v3: 32-bit compares (JMP32) in the object', async () => {
    const c = await compile(LOOP, { name: 'isa', cacheDir, mode: 'local' });
    expect(jmp32(c.elf, 'isa3')).toBeGreaterThan(0);
  });

  test.skipIf(!haveBtf)('the user\'s -mcpu=v2 wins: no JMP32', async () => {
    const c = await compile(LOOP, { name: 'isa', cacheDir, mode: 'local', flags: ['-mcpu=v2'] });
    expect(jmp32(c.elf, 'isa2')).toBe(0);
  });
});

describe.skipIf(!haveBtf)('objects without DWARF', () => {
  const TASK = `
    u32 out_pid;
    SEC("tp_btf/sched_switch")
    int BPF_PROG(sw, bool preempt, struct task_struct *prev, struct task_struct *next) {
      if (prev->pid > 1) out_pid = BPF_CORE_READ(next, real_parent, tgid);
      return 0;
    }`;

  test('compile strips .debug_* and keeps .BTF and .BTF.ext; a twentieth of the size', async () => {
    expect(findStrip(findClang())).toBeDefined();
    const c = await compile(TASK, { name: 'task', cacheDir, mode: 'local' });
    const stripped = sections(objFile(c.elf, 'task'));
    expect(stripped.filter((s) => s.startsWith('.debug'))).toEqual([]);
    expect(stripped).toEqual(expect.arrayContaining(['.BTF', '.BTF.ext', 'tp_btf/sched_switch', '.symtab', 'license']));
    // the same compile without the strip step
    const work = tempDir('unstripped');
    fs.writeFileSync(path.join(work, 'task.bpf.c'), wrapSource(TASK));
    const vmlinuxDir = vmlinuxHeaderDir(cacheDir);
    execFileSync(findClang()!, clangArgs({
      arch: kernelArch(), src: 'task.bpf.c', out: 'full.o', includeDir: INCLUDE_DIR, vmlinuxDir,
      flags: toolchainFlags([], os.release()),
    }), { cwd: work });
    const full = path.join(work, 'full.o');
    expect(sections(full)).toEqual(expect.arrayContaining(['.debug_info', '.debug_abbrev', '.debug_str', '.debug_line', '.BTF', '.BTF.ext']));
    const fullSize = fs.statSync(full).size;
    expect(c.elf.length).toBeLessThan(fullSize / 5);
    // stripping leaves the BTF (types and line info) byte for byte as clang wrote it
    fs.copyFileSync(full, path.join(work, 'stripped.o'));
    expect(await stripDebug(path.join(work, 'stripped.o'), findClang())).toBe(true);
    const dump = (f: string) => {
      execFileSync('llvm-objcopy', ['--dump-section', `.BTF=${f}.btf`, '--dump-section', `.BTF.ext=${f}.ext`, f, `${f}.tmp`], { cwd: work });
      return Buffer.concat([fs.readFileSync(path.join(work, `${f}.btf`)), fs.readFileSync(path.join(work, `${f}.ext`))]);
    };
    expect(dump('stripped.o').equals(dump('full.o'))).toBe(true);
    expect(sections(path.join(work, 'stripped.o'))).toEqual(stripped);
    process.stdout.write(`task_struct program: ${fullSize} bytes unstripped, ${c.elf.length} stripped\n`);
  });
});

describe('implicit function declarations', () => {
  test('a misspelled helper is a CompileError at the user\'s line naming the function', async () => {
    const src = [
      'u64 n = 0;',                                // 1
      'SEC("tp/syscalls/sys_enter_getppid")',      // 2
      'int p(void *ctx) {',                        // 3
      '  n = bpf_ktime_get_nss();',                // 4
      '  return 0;',                               // 5
      '}',
    ].join('\n');
    const err = await compile(src, { name: 'typo', cacheDir: tempDir('typo'), mode: 'local' }).catch((e) => e);
    expect(err).toBeInstanceOf(CompileError);
    expect(err.diagnostics[0]).toEqual({
      file: 'typo.bpf.c', line: 4, column: 7, severity: 'error',
      message: "implicit declaration of function 'bpf_ktime_get_nss' is invalid in C99 [-Werror,-Wimplicit-function-declaration]",
    });
    expect(err.message).toContain("typo.bpf.c:4:7: implicit declaration of function 'bpf_ktime_get_nss'");
  });

  test('-Wno-error=implicit-function-declaration in flags turns it back into a warning', async () => {
    const src = 'u64 n = 0;\nSEC("tp/syscalls/sys_enter_getppid") int p(void *ctx) { n = bpf_ktime_get_nss(); return 0; }';
    const c = await compile(src, { name: 'typo2', cacheDir: tempDir('typo2'), mode: 'local', flags: ['-Wno-error=implicit-function-declaration'] });
    expect(c.warnings[0]).toMatchObject({ file: 'typo2.bpf.c', line: 2, severity: 'warning' });
  });
});
