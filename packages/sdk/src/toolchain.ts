/**
 * The toolchain choices every compile shares, local and on a compile server: the default
 * flags (BPF ISA level for the target kernel, implicit declarations as errors), the
 * vmlinux.h format, and stripping DWARF from objects.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * Version of the generated vmlinux.h, part of its cache directory's name (here and on the
 * server): 2 adds the kfunc prototypes and the __ksym/__weak fallbacks.
 */
export const VMLINUX_FORMAT = 2;

/** Cache directory name of the vmlinux.h for a kernel BTF with this sha256. */
export function vmlinuxDirName(btfHash: string): string {
  return `v${VMLINUX_FORMAT}-${btfHash.slice(0, 32)}`;
}

/**
 * The kernel release a compile targets, when it can be known: the running kernel's for its
 * own BTF (/sys/kernel/btf/vmlinux), else one read from a BTF file's name
 * (BTFHub: `5.4.0-91-generic.btf`). Undefined otherwise.
 */
export function targetKernelRelease(btfPath?: string): string | undefined {
  const file = btfPath ?? (process.env.TSLCC_KERNEL_BTF || '/sys/kernel/btf/vmlinux');
  if (file === '/sys/kernel/btf/vmlinux') return os.release();
  const m = /^(\d+\.\d+(?:\.\d+)?[^/]*?)(?:\.btf)?(?:\.tar\.xz|\.gz)?$/.exec(path.basename(file));
  return m?.[1];
}

/** [major, minor] of a kernel release string ("6.1.0-18-amd64" → [6, 1]). */
export function kernelVersion(release: string): [number, number] | undefined {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/**
 * The BPF ISA level for a kernel: v3 (JMP32, 5.1+), v2 (4.14+), else undefined (the
 * compiler's default, v1 for clang 14). v3 matters: with 32-bit compares clang keeps
 * bounds on 32-bit values that v1 code loses in shifts, and loops the verifier rejects at
 * v1 pass. An unknown kernel gets the compiler's default.
 */
export function defaultMcpu(release: string | undefined): string | undefined {
  const v = release ? kernelVersion(release) : undefined;
  if (!v) return undefined;
  const [major, minor] = v;
  if (major > 5 || (major === 5 && minor >= 1)) return 'v3';
  if (major > 4 || (major === 4 && minor >= 14)) return 'v2';
  return undefined;
}

/**
 * The flags of one compile: tslcc's defaults, then the user's (so theirs win on conflict).
 * Defaults: `-Werror=implicit-function-declaration` (a misspelled helper or kfunc is a
 * compile error at the user's line, not a failed open or load later) and `-mcpu=` for the
 * target kernel unless the user chose one. Idempotent: applying it twice adds nothing.
 */
export function toolchainFlags(flags: string[], kernelRelease: string | undefined): string[] {
  const defaults: string[] = [];
  if (!flags.includes('-Werror=implicit-function-declaration')) defaults.push('-Werror=implicit-function-declaration');
  const mcpu = defaultMcpu(kernelRelease);
  if (mcpu && !flags.some((f) => f.startsWith('-mcpu='))) defaults.push(`-mcpu=${mcpu}`);
  return [...defaults, ...flags];
}

const strips = new Map<string, string | undefined>();

/**
 * llvm-strip: next to clang (the same LLVM), else llvm-strip or llvm-strip-<N> in PATH,
 * newest first. Undefined if there is none.
 */
export function findStrip(clang?: string): string | undefined {
  const id = clang ?? '';
  if (strips.has(id)) return strips.get(id);
  const candidates: string[] = [];
  if (clang) {
    try {
      const dir = path.dirname(fs.realpathSync(clang));
      candidates.push(path.join(dir, 'llvm-strip'));
      const v = /clang-(\d+)$/.exec(path.basename(clang));
      if (v) candidates.push(path.join(dir, `llvm-strip-${v[1]}`));
    } catch { /* clang vanished: PATH below */ }
  }
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    candidates.push(path.join(dir || '.', 'llvm-strip'));
    let names: string[] = [];
    try { names = fs.readdirSync(dir || '.'); } catch { /* unreadable */ }
    const versioned = names.filter((n) => /^llvm-strip-\d+$/.test(n)).sort((a, b) => Number(b.slice(11)) - Number(a.slice(11)));
    candidates.push(...versioned.map((n) => path.join(dir || '.', n)));
  }
  let found: string | undefined;
  for (const c of candidates) {
    try {
      fs.accessSync(c, fs.constants.X_OK);
      found = fs.realpathSync(c);
      break;
    } catch { /* next */ }
  }
  strips.set(id, found);
  return found;
}

/** The arguments of the strip step: DWARF goes; .BTF, .BTF.ext (line info) and symbols stay. */
export function stripArgs(file: string): string[] {
  return ['-g', file];
}

let warnedNoStrip = false;

/**
 * Remove DWARF from a compiled object in place, as libbpf-tools do (`llvm-strip -g`): a
 * program reading task_struct shrinks about twentyfold, and BTF with its line info (what
 * the verifier's source annotations and CO-RE use) stays. Without llvm-strip the object is
 * kept as it is, with one warning per process. Returns whether it was stripped.
 */
export async function stripDebug(file: string, clang?: string): Promise<boolean> {
  const strip = findStrip(clang);
  if (!strip) {
    if (!warnedNoStrip) {
      warnedNoStrip = true;
      process.emitWarning('llvm-strip not found (apt-get install llvm); BPF objects keep their DWARF (larger cache files, same programs)', { code: 'TSLCC_NO_STRIP' });
    }
    return false;
  }
  const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(strip, stripArgs(file), { stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('error', (e) => resolve({ code: null, stderr: e.message }));
    child.on('close', (code) => resolve({ code, stderr }));
  });
  if (r.code !== 0) {
    process.emitWarning(`strip "${file}": ${strip} failed (${r.stderr.trim() || `exit ${r.code}`}); keeping the object with its DWARF`, { code: 'TSLCC_STRIP_FAILED' });
    return false;
  }
  return true;
}
