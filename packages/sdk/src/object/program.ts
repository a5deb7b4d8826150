/**
 * A loaded program and its attach methods. Every attach returns a Link; attaching the same
 * program to the same target twice returns the first link (never a second, leaked one).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Link, PerfEventAttr } from '@tslcc/native';
import { LbcError, NotFoundError } from '../errors.js';
import { native } from '../native.js';
import { checkKprobes, checkTracepoint, kernelFunctionExists } from '../system.js';
import { kernelProbes } from './features.js';
import { alternativesFor, type LoadedObject, wrapNative } from './loaded.js';
import { explicitAttachHint } from './sections.js';
import { listUsdtProbes } from '../usdt.js';
import type { ProgramSpec } from './spec.js';

/** Options for attachUprobe. */
export interface UprobeOptions {
  /** Only this process (default -1: every process running the binary). */
  pid?: number;
  retprobe?: boolean;
  /** Bytes past the symbol (symbol+offset), e.g. past the prologue so the caller shows in the stack. */
  offset?: number;
}

/** Options for attachUsdt. */
export interface UsdtOptions {
  /** A value the program reads with bpf_usdt_cookie(ctx), e.g. to tell attachments apart. Default 0. */
  cookie?: number | bigint;
}

/** Debian's multiarch library directory names, by Node.js arch. */
const MULTIARCH: Record<string, string> = {
  x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu', s390x: 's390x-linux-gnu', ppc64: 'powerpc64le-linux-gnu', riscv64: 'riscv64-linux-gnu',
};
/** libbpf's own SEC("usdt/BINARY:PROVIDER:NAME") syntax (sscanf "usdt/%m[^:]:%m[^:]:%m[^:]"). */
const USDT_SEC = /^usdt\/([^:]+):([^:]+):([^:]+)$/;

/** Options for attachKprobe. */
export interface KprobeOptions {
  /** Byte offset into the function. */
  offset?: number;
  retprobe?: boolean;
}

/** Options for attachPerfEvent. */
export interface PerfEventOptions {
  /** Process to sample (-1: all). Default -1. */
  pid?: number;
  /** CPU (-1 with a pid: any). Default 0. */
  cpu?: number;
}

const KPROBE_SEC = /^(kprobe|kretprobe|ksyscall|kretsyscall)\/(.+)$/;
const RAW_TP_SEC = /^raw_(?:tp|tracepoint)(?:\.w)?\/(.+)$/;
const TP_SEC = /^(?:tp|tracepoint)\/([^/]+)\/([^/]+)$/;
const EOPNOTSUPP = 95;

export class Program {
  readonly name: string;
  readonly section: string;
  /** libbpf's program type name. */
  readonly type: string;
  /** @internal */
  readonly spec: ProgramSpec;
  private readonly obj: LoadedObject;

  /** @internal */
  constructor(obj: LoadedObject, spec: ProgramSpec) {
    this.obj = obj;
    this.spec = spec;
    this.name = spec.name;
    this.section = spec.section;
    this.type = spec.type;
  }

  /** The program's fd (valid until close). */
  get fd(): number {
    return this.obj.native.programFd(this.name);
  }

  /** Live links of this program. */
  get linkCount(): number {
    let n = 0;
    for (const v of this.obj.links.values()) if (v.prog === this.name) n++;
    return n;
  }

  private run(what: string, f: () => Link): Link {
    try {
      return f();
    } catch (e) {
      throw wrapNative(e, what);
    }
  }

  private keep(key: string, make: () => Link): Link {
    this.obj.assertOpen(`attach "${this.name}"`);
    return this.obj.keep(key, this.name, make);
  }

  /**
   * Attach where the SEC() name says (libbpf's bpf_program__attach).
   * @throws NotFoundError naming the program and the missing attach point; LbcError (EOPNOTSUPP)
   *   when the SEC() names no target (attach it with an explicit call).
   */
  attach(): Link {
    const p = this.spec;
    const k = KPROBE_SEC.exec(p.section);
    const skip = `; skip it with programs: { ${this.name}: false }`;
    if (k) {
      const what = `attach ${k[1]} "${k[2]}" (program "${this.name}")`;
      if (!kernelProbes().kprobes) checkKprobes(what, alternativesFor(k[1]!, k[2]));
      if (k[1]!.startsWith('k') && !k[1]!.includes('syscall') && !kernelFunctionExists(k[2]!.split('+')[0]!)) {
        throw new NotFoundError(`${what}: no kernel function "${k[2]}" in /proc/kallsyms; check the name (grep ${k[2]} /proc/kallsyms)${skip}`);
      }
    }
    const u = USDT_SEC.exec(p.section);
    if (u) {
      const what = `attach usdt "${u[1]}:${u[2]}:${u[3]}" (program "${this.name}")`;
      const binary = this.usdtBinary(what, u[1]!);
      this.checkUsdtProbe(what, binary, u[2]!, u[3]!);
      return this.keep(usdtKey(this.name, binary, u[2]!, u[3]!, -1, 0), () => this.usdtAttach(what, () => this.obj.native.attach(this.name)));
    }
    const t = TP_SEC.exec(p.section);
    if (t) {
      try {
        checkTracepoint(t[1]!, t[2]!);
      } catch (e) {
        if (e instanceof NotFoundError) throw new NotFoundError(`${e.message.replace(/^(attach tracepoint "[^"]+")/, `$1 (program "${this.name}")`)}${skip}`);
        throw e;
      }
    }
    const raw = RAW_TP_SEC.exec(p.section);
    if (raw && !kernelProbes().rawTracepoint(raw[1]!)) {
      throw new NotFoundError(`attach raw tracepoint "${raw[1]}" (program "${this.name}"): this kernel has no tracepoint "${raw[1]}"; raw tracepoints are named like their event without the category (ls /sys/kernel/tracing/events/*/)${skip}`);
    }
    const what = raw ? `attach raw tracepoint "${raw[1]}" (program "${this.name}")` : `attach program "${this.name}" (SEC("${p.section}"))`;
    // The same key as the explicit call for the same target, so attach() and
    // attachTracepoint() on one tracepoint share one link instead of failing with EEXIST.
    const key = t ? `tp:${this.name}:${t[1]}/${t[2]}` : raw ? `raw_tp:${this.name}:${raw[1]}`
      : k && !k[1]!.includes('syscall') ? `${k[1]}:${this.name}:${k[2]}:0` : `sec:${this.name}`;
    try {
      return this.keep(key, () => this.run(what, () => this.obj.native.attach(this.name)));
    } catch (e) {
      if (e instanceof LbcError && e.errno === EOPNOTSUPP) {
        throw new LbcError('LBC_ATTACH', `${what}: the SEC() name has no attach target; attach it with ${explicitAttachHint(p.sectionInfo.kind)}`, { errno: e.errno, libbpfLog: e.libbpfLog });
      }
      throw e;
    }
  }

  /** Attach a kprobe (or kretprobe) program to a kernel function. */
  attachKprobe(func: string, opts: KprobeOptions = {}): Link {
    const kind = opts.retprobe ? 'kretprobe' : 'kprobe';
    const what = `attach ${kind} "${func}" (program "${this.name}")`;
    if (!kernelProbes().kprobes) checkKprobes(what, alternativesFor(kind, func));
    if (!kernelFunctionExists(func)) throw new NotFoundError(`${what}: no kernel function "${func}" in /proc/kallsyms; check the name or use a tracepoint`);
    return this.keep(`${kind}:${this.name}:${func}:${opts.offset ?? 0}`,
      () => this.run(what, () => this.obj.native.attachKprobe(this.name, func, !!opts.retprobe, opts.offset ?? 0)));
  }

  /**
   * Attach a uprobe to `binary` at a symbol name or a file offset.
   * @param target symbol name (resolved by libbpf in .symtab/.dynsym) or byte offset.
   * @throws NotFoundError naming the binary, or the symbol that is not in it
   */
  attachUprobe(binary: string, target: string | number, opts: UprobeOptions = {}): Link {
    const kind = opts.retprobe ? 'uretprobe' : 'uprobe';
    const at = `${target}${opts.offset ? `+${opts.offset}` : ''}`;
    const what = `attach ${kind} "${binary}:${at}" (program "${this.name}")`;
    if (!fs.existsSync(binary)) throw new NotFoundError(`${what}: no such file "${binary}"; give the binary's path (which NAME, or ldconfig -p | grep NAME for a library)`);
    return this.keep(`${kind}:${this.name}:${binary}:${at}:${opts.pid ?? -1}`, () => {
      try {
        return this.obj.native.attachUprobe(this.name, !!opts.retprobe, opts.pid ?? -1, binary,
          (typeof target === 'number' ? target : 0) + (opts.offset ?? 0), typeof target === 'string' ? target : null);
      } catch (e) {
        const err = wrapNative(e, what);
        if (typeof target === 'string' && err.errno === 2) {
          throw new NotFoundError(`${what}: no function "${target}" in "${binary}" (.symtab or .dynsym); list them with: nm -D --defined-only ${binary} | grep ${target}`,
            { errno: err.errno, libbpfLog: err.libbpfLog });
        }
        throw err;
      }
    });
  }

  /**
   * Attach a SEC("usdt") program to the USDT probe `provider:name` (a `<sys/sdt.h>`
   * DTRACE_PROBEn / STAP_PROBEn site) through libbpf's bpf_program__attach_usdt. The
   * program includes `<bpf/usdt.bpf.h>` and reads the arguments with BPF_USDT(...) or
   * bpf_usdt_arg(); opts.cookie is read with bpf_usdt_cookie(ctx). Attaching the same
   * target again returns the same Link.
   *
   * @param target `{ pid }`: only that process, in its executable (/proc/PID/exe);
   *   `{ binary }`: every process running the binary or library (a name without a slash is
   *   searched in PATH, a relative path resolves against the cwd); both: that process, in that file.
   * @throws NotFoundError naming the missing process or file, or the probes the binary does
   *   have when it has no `provider:name`; LbcError LBC_INVALID_ARGUMENT without pid and binary.
   * Minimum kernel: 4.17 (uprobes through perf_event_open); BPF cookies (5.15) spare a lookup map.
   * @example
   * ```ts
   * tool.object.programs.on_tick.attachUsdt({ pid: child.pid }, 'tslcc', 'tick', { cookie: 7 });
   * ```
   */
  attachUsdt(target: { pid?: number; binary?: string }, provider: string, name: string, opts: UsdtOptions = {}): Link {
    const prog = this.name;
    const pid = target.pid ?? -1;
    const cookie = opts.cookie ?? 0;
    const file = target.binary ?? (target.pid !== undefined ? safeReadlink(`/proc/${target.pid}/exe`) : '?');
    const what = `attach usdt "${file}:${provider}:${name}" (program "${prog}"${target.pid !== undefined ? `, pid ${target.pid}` : ''})`;
    let binary: string;
    if (target.binary !== undefined) {
      binary = this.usdtBinary(what, target.binary, pid);
    } else if (target.pid !== undefined) {
      if (!Number.isInteger(target.pid) || target.pid <= 0) {
        throw new LbcError('LBC_INVALID_ARGUMENT', `${what}: pid must be a positive integer, got ${target.pid}`);
      }
      if (!fs.existsSync(`/proc/${target.pid}`)) throw new NotFoundError(`${what}: no process ${target.pid}`, { errno: 3 });
      // /proc/PID/exe reaches the executable even in another mount namespace or after it was replaced on disk.
      binary = `/proc/${target.pid}/exe`;
    } else {
      throw new LbcError('LBC_INVALID_ARGUMENT', `${what}: give target.pid, target.binary or both`);
    }
    this.checkUsdtProbe(what, binary, provider, name);
    return this.keep(usdtKey(prog, binary, provider, name, pid, cookie),
      () => this.usdtAttach(what, () => this.obj.native.attachUsdt(prog, pid, binary, provider, name, cookie)));
  }

  /**
   * The file a USDT target names, found as libbpf finds it: a name without a slash in PATH
   * (then /usr/bin:/usr/sbin), a library name (".so") among the files process `pid` maps,
   * else in LD_LIBRARY_PATH and the library directories; a relative path against the cwd.
   */
  /** @internal */
  usdtBinary(what: string, binary: string, pid = -1): string {
    if (!binary.includes('/')) {
      const lib = /\.so($|\.)/.test(binary);
      if (lib && pid > 0) {
        const mapped = readMappedFiles(pid).find((f) => path.basename(f) === binary);
        if (mapped) return mapped;
      }
      const multiarch = MULTIARCH[process.arch];
      const dirs = lib
        ? [process.env.LD_LIBRARY_PATH ?? '', '/usr/lib64:/usr/lib', multiarch ? `/lib/${multiarch}:/usr/lib/${multiarch}` : '']
        : [process.env.PATH ?? '', '/usr/bin:/usr/sbin'];
      for (const dir of dirs.join(':').split(':').filter(Boolean)) {
        const f = path.join(dir, binary);
        try {
          if (fs.statSync(f).isFile()) return path.resolve(f);
        } catch { /* not in this directory */ }
      }
      throw new NotFoundError(`${what}: no file "${binary}" in ${lib ? 'LD_LIBRARY_PATH or the library directories' : 'PATH'}; give its path`, { errno: 2 });
    }
    const abs = path.resolve(binary);
    if (!fs.existsSync(abs)) throw new NotFoundError(`${what}: no such file "${abs}"`, { errno: 2 });
    return abs;
  }

  /** @internal */
  checkUsdtProbe(what: string, binary: string, provider: string, name: string): void {
    let probes;
    try {
      probes = listUsdtProbes(binary);
    } catch (e) {
      if (e instanceof LbcError) throw new LbcError(e.code, `${what}: ${e.message.replace(/^[^:]*: /, '')} (${binary})`, { errno: e.errno });
      throw e;
    }
    if (probes.some((p) => p.provider === provider && p.name === name)) return;
    const shown = binary.startsWith('/proc/') ? `${binary} (${safeReadlink(binary)})` : binary;
    const have = [...new Set(probes.map((p) => `${p.provider}:${p.name}`))];
    throw new NotFoundError(`${what}: no USDT probe "${provider}:${name}" in ${shown}; ${have.length ? `it has: ${have.join(', ')}` : 'it has no USDT probes (no .note.stapsdt section)'}`);
  }

  /** @internal */
  usdtAttach(what: string, f: () => Link): Link {
    try {
      return this.run(what, f);
    } catch (e) {
      // libbpf: "usdt: failed to find USDT support BPF map, did you forget to include bpf/usdt.bpf.h?" (ESRCH)
      if (e instanceof LbcError && /usdt\.bpf\.h/.test(e.libbpfLog ?? '')) {
        throw new LbcError('LBC_ATTACH', `${what}: the object has no USDT support maps; #include <bpf/usdt.bpf.h> in the program`, { errno: e.errno, libbpfLog: e.libbpfLog });
      }
      throw e;
    }
  }

  /** Attach to tracepoint category/name. */
  attachTracepoint(category: string, name: string): Link {
    checkTracepoint(category, name);
    return this.keep(`tp:${this.name}:${category}/${name}`,
      () => this.run(`attach tracepoint "${category}/${name}" (program "${this.name}")`, () => this.obj.native.attachTracepoint(this.name, category, name)));
  }

  attachRawTracepoint(name: string): Link {
    return this.keep(`raw_tp:${this.name}:${name}`,
      () => this.run(`attach raw tracepoint "${name}" (program "${this.name}")`, () => this.obj.native.attachRawTracepoint(this.name, name)));
  }

  /** Open a perf event and attach this SEC("perf_event") program to it. */
  attachPerfEvent(attr: PerfEventAttr, opts: PerfEventOptions = {}): Link {
    const pid = opts.pid ?? -1;
    const cpu = opts.cpu ?? 0;
    const what = `attach perf event type ${attr.type} config ${attr.config} on cpu ${cpu} pid ${pid} (program "${this.name}")`;
    // The whole attr is the target: two breakpoints differ only in bpAddr, two samplers in frequency.
    const attrKey = JSON.stringify(attr, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
    return this.keep(`perf:${this.name}:${attrKey}:${pid}:${cpu}`, () => {
      let fd: number;
      try {
        fd = native().perfEventOpen(attr, pid, cpu, -1, 0);
      } catch (e) {
        throw wrapNative(e, what);
      }
      try {
        return this.run(what, () => this.obj.native.attachPerfEvent(this.name, fd));
      } catch (e) {
        native().closeFd(fd);
        throw e;
      }
    });
  }

  /** Attach an XDP program to an interface (index or name). */
  attachXdp(iface: number | string): Link {
    const ifindex = typeof iface === 'number' ? iface : Number(readTrim(`/sys/class/net/${iface}/ifindex`, `attach xdp to "${iface}": no such interface`));
    return this.keep(`xdp:${this.name}:${ifindex}`, () => this.run(`attach xdp to ifindex ${ifindex} (program "${this.name}")`, () => this.obj.native.attachXdp(this.name, ifindex)));
  }

  /** Attach a cgroup program to the cgroup at `cgroupPath` (e.g. /sys/fs/cgroup). */
  attachCgroup(cgroupPath: string): Link {
    return this.attachByFd(cgroupPath, 'cgroup', (fd) => this.obj.native.attachCgroup(this.name, fd));
  }

  /** Attach a netns program (flow_dissector, sk_lookup) to a network namespace (default: ours). */
  attachNetns(netnsPath = '/proc/self/ns/net'): Link {
    return this.attachByFd(netnsPath, 'netns', (fd) => this.obj.native.attachNetns(this.name, fd));
  }

  /** Attach a SEC("iter/...") program (read it through the link's fd). */
  attachIter(): Link {
    return this.keep(`iter:${this.name}`, () => this.run(`attach iterator (program "${this.name}")`, () => this.obj.native.attachIter(this.name)));
  }

  private attachByFd(file: string, kind: string, f: (fd: number) => Link): Link {
    const what = `attach ${kind} "${file}" (program "${this.name}")`;
    return this.keep(`${kind}:${this.name}:${file}`, () => {
      let fd: number;
      try {
        fd = fs.openSync(file, 'r');
      } catch (e) {
        throw new NotFoundError(`${what}: ${(e as Error).message}`);
      }
      try {
        return this.run(what, () => f(fd));
      } finally {
        fs.closeSync(fd);
      }
    });
  }

  /** Detach every link of this program. */
  detach(): void {
    this.obj.detach(this.name);
  }
}

function usdtKey(prog: string, binary: string, provider: string, name: string, pid: number, cookie: number | bigint): string {
  let file = binary;
  try { file = fs.realpathSync(binary); } catch { /* the attach itself reports it */ }
  return `usdt:${prog}:${file}:${provider}:${name}:${pid}:${BigInt(cookie)}`;
}

function safeReadlink(p: string): string {
  try { return fs.readlinkSync(p); } catch { return '?'; }
}

function readTrim(file: string, err: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    throw new NotFoundError(err);
  }
}

/** Files mapped by process `pid` (from /proc/PID/maps). */
export function readMappedFiles(pid: number): string[] {
  try {
    return [...new Set(fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').map((l) => l.split(/\s+/)[5] ?? '').filter((p) => p.startsWith('/')))];
  } catch {
    return [];
  }
}

/** A binary for a uprobe spec: a path, else a file process `pid` maps, else PATH. */
export function findBinary(bin: string, pid: number): string {
  if (bin.includes('/')) return path.resolve(bin);
  const mapped = pid > 0 ? readMappedFiles(pid).find((f) => path.basename(f) === bin || path.basename(f).startsWith(`${bin}.`)) : undefined;
  const inPath = (process.env.PATH ?? '').split(':').map((d) => path.join(d, bin)).find((f) => fs.existsSync(f));
  return mapped ? `/proc/${pid}/root${mapped}` : inPath ?? bin;
}
