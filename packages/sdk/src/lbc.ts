/**
 * LbcBase: the class a tool subclasses (pylcc's ClbcBase). `start()` compiles (cache
 * first), opens, sets globals, loads, attaches every program by its SEC() name and exposes
 * the maps by name; `close()` releases everything.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BpfObject, Link, MapInfo, PerfEventAttr, ProgramInfo } from '@tslcc/native';
import { Btf } from './btf.js';
import { type CompiledObject, type CompileOptions, compile, defaultCacheDir, kernelBtfPath } from './compile.js';
import { configuredServer, fetchBtf } from './remote.js';
import { CodecFactory } from './decode.js';
import {
  didYouMean, isNativeFailure, LbcError, NotFoundError, PermissionError, UnsupportedError, VerifierError,
  type NativeFailure,
} from './errors.js';
import { EventMap, HistMap, KeyValueMap, LbcMap, type MapContext, MapType, StackMap } from './maps.js';
import { kernelSymbols } from './kallsyms.js';
import { native } from './native.js';
import { checkBpfPermission, checkKprobes, checkTracepoint, kernelFunctionExists } from './system.js';
import { listUsdtProbes } from './usdt.js';

export interface LbcOptions {
  /** The BPF C source (pylcc: bpf_str). */
  source?: string;
  /** A .bpf.c file to read when no source is given. Default `<name>.bpf.c` beside the script's cwd. */
  path?: string;
  /** Extra clang flags, e.g. "-DLBC_DEBUG" (pylcc: env). */
  env?: string | string[];
  /** Attach every program by its SEC() name at start (pylcc: attach=1). Default true. */
  attach?: boolean;
  /** Values for globals, set before load: `const volatile` (.rodata) config, .data and .bss initial values. */
  globals?: Record<string, unknown>;
  /** Compile options (mode, server, protocol, token, cacheDir, clang, arch). */
  compile?: Omit<CompileOptions, 'name' | 'flags'>;
  /** A precompiled CO-RE object to load instead of compiling. */
  object?: Buffer;
  /** How 64-bit integers decode: 'bigint' (default, lossless) or 'number'. */
  int64?: 'bigint' | 'number';
  /**
   * Kernel BTF for CO-RE relocation instead of /sys/kernel/btf/vmlinux. On a kernel without
   * BTF and with a compile server configured, it is downloaded from the server's BTF store.
   */
  btfCustomPath?: string;
}

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

/** Default shape of `maps`: any map by name, checked at run time. Give LbcBase a type argument for static types. */
export type AnyMaps = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const live = new Set<LbcBase<object>>();
let hooksInstalled = false;

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    for (const t of [...live]) t.close();
  });
  // On a signal nobody else handles, close and exit as the default action would. A tool
  // with its own SIGINT handler (or waitInterrupt) owns its shutdown; exit still closes.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    const handler = () => {
      if (process.listenerCount(sig) > 1) return;
      for (const t of [...live]) t.close();
      process.removeListener(sig, handler);
      process.kill(process.pid, sig);
    };
    process.on(sig, handler);
  }
}

const KPROBE_SEC = /^(kprobe|kretprobe|ksyscall|kretsyscall)\/(.+)$/;
const RAW_TP_SEC = /^raw_(?:tp|tracepoint)(?:\.w)?\/(.+)$/;
const TP_SEC = /^(?:tp|tracepoint)\/([^/]+)\/([^/]+)$/;
/** libbpf's own SEC("usdt/BINARY:PROVIDER:NAME") syntax (sscanf "usdt/%m[^:]:%m[^:]:%m[^:]"). */
const USDT_SEC = /^usdt\/([^:]+):([^:]+):([^:]+)$/;
const TRAMPOLINE_SEC = /^(fentry|fexit|fmod_ret|lsm|lsm\.s|fentry\.s|fexit\.s|fmod_ret\.s|freplace|tp_btf|iter)(\/|$)/;
const EOPNOTSUPP = 95;
/** Debian's multiarch library directory names, by Node.js arch. */
const MULTIARCH: Record<string, string> = {
  x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu', s390x: 's390x-linux-gnu', ppc64: 'powerpc64le-linux-gnu', riscv64: 'riscv64-linux-gnu',
};

interface GlobalSection {
  map: MapInfo;
  section: string;
  vars: Map<string, { name: string; type: number; offset: number; size: number }>;
  /** Our shared mapping of the loaded map (see BpfObject.globalData), while open. */
  live?: { buf: Buffer; dv: DataView; mapped: boolean };
}

export class LbcBase<M extends object = AnyMaps> {
  /** Base name: the program's name in messages and the cache (pylcc: bpf). */
  readonly name: string;
  /** Maps by name, available after start(). */
  readonly maps: M = {} as M;
  /** The compiled object (after start). */
  compiled?: CompiledObject;
  protected readonly options: LbcOptions;
  private obj?: BpfObject;
  private btfView?: Btf;
  private codecs?: CodecFactory;
  private readonly links = new Map<string, { prog: string; link: Link }>();
  private readonly resources = new Set<{ close(): void }>();
  private globalSections = new Map<string, GlobalSection>();
  private progInfo: ProgramInfo[] = [];
  /** 'closing': links gone, buffered events still being delivered (maps still readable). */
  private state: 'new' | 'starting' | 'running' | 'closing' | 'closed' = 'new';

  constructor(name: string, options: LbcOptions = {}) {
    if (typeof name !== 'string' || !/^[A-Za-z_][\w.-]*$/.test(name)) {
      throw new LbcError('LBC_INVALID_ARGUMENT', `LbcBase: name must be a plain identifier like "runlatency", got ${JSON.stringify(name)}`);
    }
    const known = ['source', 'path', 'env', 'attach', 'globals', 'compile', 'object', 'int64', 'btfCustomPath'];
    for (const k of Object.keys(options)) {
      if (!known.includes(k)) throw new LbcError('LBC_INVALID_ARGUMENT', `LbcBase "${name}": unknown option "${k}"${didYouMean(k, known)}`);
    }
    this.name = name;
    this.options = options;
  }

  /** The object's BTF (after start). */
  get btf(): Btf {
    if (!this.btfView) throw new LbcError('LBC_CLOSED', `"${this.name}": not started; call start() first`);
    return this.btfView;
  }

  /** Programs of the object: name, SEC() name, type. */
  get programs(): readonly ProgramInfo[] {
    return this.progInfo;
  }

  /**
   * Compile (cache first), open, set globals, load and (unless attach: false) attach.
   * On any failure everything already created is released before the error is thrown.
   * @throws CompileError, VerifierError, PermissionError, UnsupportedError, NotFoundError
   */
  async start(): Promise<this> {
    if (this.state !== 'new') throw new LbcError('LBC_INVALID_ARGUMENT', `start "${this.name}": already ${this.state}`);
    this.state = 'starting';
    try {
      await this.resolveKernelBtf();
      const elf = this.options.object ?? (await this.compileSource()).elf;
      this.open(elf);
      this.load();
      live.add(this);
      installExitHooks();
      if (this.options.attach !== false) this.attachAll();
      this.state = 'running';
      return this;
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** Kernel BTF for CO-RE: the option, else the kernel's, else downloaded from the compile server. */
  private btfPath?: string;

  private async resolveKernelBtf(): Promise<void> {
    if (this.options.btfCustomPath) {
      this.btfPath = this.options.btfCustomPath;
      return;
    }
    const kernel = kernelBtfPath();
    if (fs.existsSync(kernel)) {
      if (kernel !== '/sys/kernel/btf/vmlinux') this.btfPath = kernel;
      return;
    }
    const c = this.options.compile ?? {};
    if (!configuredServer(c)) {
      throw new UnsupportedError(
        `start "${this.name}": this kernel has no BTF (${kernel}; CONFIG_DEBUG_INFO_BTF is off); set TSLCC_SERVER to fetch it from a compile server, or pass btfCustomPath (a BTFHub file)`,
        'CONFIG_DEBUG_INFO_BTF', ['compile server BTF service', 'btfCustomPath']);
    }
    this.btfPath = await fetchBtf(c.cacheDir ?? defaultCacheDir(), c);
  }

  private async compileSource(): Promise<CompiledObject> {
    let source = this.options.source;
    if (source === undefined) {
      const file = this.options.path ?? path.resolve(`${this.name}.bpf.c`);
      try {
        source = fs.readFileSync(file, 'utf8');
      } catch (e) {
        throw new NotFoundError(`start "${this.name}": no source given and cannot read "${file}": ${(e as Error).message}; pass { source } or { path }`);
      }
    }
    this.compiled = await compile(source, { btfPath: this.btfPath, ...this.options.compile, name: this.name, flags: this.options.env });
    return this.compiled;
  }

  private open(elf: Buffer): void {
    try {
      this.obj = new (native().BpfObject)(elf, this.name, { btfCustomPath: this.btfPath });
    } catch (e) {
      throw wrapNative(e, `open "${this.name}"`);
    }
    const types = this.obj.btf();
    if (!types) throw new LbcError('LBC_LOAD', `open "${this.name}": the object has no BTF; compile with -g`);
    this.btfView = new Btf(types);
    this.codecs = new CodecFactory(this.btfView, { int64: this.options.int64 });
    this.progInfo = this.obj.programs();
    for (const m of this.obj.maps()) {
      if (!m.internal) continue;
      const sec = this.btfView.get(m.btfValueTypeId);
      if (sec?.kind !== 'datasec') continue;
      this.globalSections.set(sec.name, { map: m, section: sec.name, vars: this.btfView.sectionVars(sec.name) });
    }
    // Ring buffers must be a power-of-two number of pages; round up what the user asked for.
    for (const m of this.obj.maps()) {
      if (m.type === MapType.RINGBUF) {
        let n = 4096;
        while (n < m.maxEntries) n *= 2;
        if (n !== m.maxEntries) this.obj.setMapMaxEntries(m.name, n);
      }
    }
    this.applyGlobals(this.options.globals ?? {});
  }

  private applyGlobals(values: Record<string, unknown>): void {
    const obj = this.obj!;
    const pending = new Map<string, Buffer>();
    for (const [name, value] of Object.entries(values)) {
      const hit = this.findGlobal(name);
      if (!hit) {
        const all = [...this.globalSections.values()].flatMap((s) => [...s.vars.keys()]).filter((n) => !n.startsWith('__lbc_'));
        throw new LbcError('LBC_INVALID_ARGUMENT',
          `set global "${name}" of "${this.name}": no such global${didYouMean(name, all)}; globals: ${all.join(', ') || '(none)'}`);
      }
      const { sec, v } = hit;
      let buf = pending.get(sec.map.name);
      if (!buf) {
        buf = obj.initialValue(sec.map.name) ?? Buffer.alloc(sec.map.valueSize);
        pending.set(sec.map.name, buf);
      }
      this.codecs!.encoder(v.type)(value, buf, new DataView(buf.buffer, buf.byteOffset, buf.byteLength), v.offset);
    }
    for (const [map, buf] of pending) obj.setInitialValue(map, buf);
  }

  private findGlobal(name: string): { sec: GlobalSection; v: { type: number; offset: number; size: number } } | undefined {
    for (const sec of this.globalSections.values()) {
      const v = sec.vars.get(name);
      if (v) return { sec, v };
    }
    return undefined;
  }

  /**
   * The live bytes of a global-data section: libbpf's mapping of the kernel map when it is
   * mmapable (reads and writes are plain memory), else a copy read with one lookup.
   */
  private sectionData(sec: GlobalSection): { buf: Buffer; dv: DataView; mapped: boolean } {
    if (sec.live) return sec.live;
    const mapped = this.obj!.globalData(sec.map.name);
    let buf = mapped;
    if (!buf) {
      buf = Buffer.alloc(sec.map.valueSize);
      native().mapLookup(this.obj!.mapFd(sec.map.name), Buffer.alloc(4), buf);
    }
    const live = { buf, dv: new DataView(buf.buffer, buf.byteOffset, buf.byteLength), mapped: !!mapped };
    if (mapped) sec.live = live; // valid until close(), which drops it
    return live;
  }

  /** Read a global variable while running (.bss, .data, .rodata). */
  readGlobal(name: string): unknown {
    this.assertOpen(`read global "${name}"`);
    const hit = this.findGlobal(name);
    if (!hit) throw new NotFoundError(`read global "${name}" of "${this.name}": no such global`);
    const { buf, dv } = this.sectionData(hit.sec);
    return this.codecs!.decoder(hit.v.type)(buf, dv, hit.v.offset);
  }

  /** Write a .bss or .data global while running. `const volatile` (.rodata) globals are set through `globals` before start. */
  writeGlobal(name: string, value: unknown): void {
    this.assertOpen(`write global "${name}"`);
    const hit = this.findGlobal(name);
    if (!hit) throw new NotFoundError(`write global "${name}" of "${this.name}": no such global`);
    if (hit.sec.section.startsWith('.rodata')) {
      throw new LbcError('LBC_INVALID_ARGUMENT', `write global "${name}" of "${this.name}": it is const (.rodata) and frozen after load; pass it in { globals } before start()`);
    }
    const live = this.sectionData(hit.sec);
    if (live.mapped) {
      // Straight into the kernel map's memory; the field's bytes are written in place.
      this.codecs!.encoder(hit.v.type)(value, live.buf, live.dv, hit.v.offset);
      return;
    }
    this.codecs!.encoder(hit.v.type)(value, live.buf, live.dv, hit.v.offset);
    native().mapUpdate(this.obj!.mapFd(hit.sec.map.name), Buffer.alloc(4), live.buf, 0);
  }

  private load(): void {
    checkBpfPermission(`load "${this.name}"`);
    try {
      this.obj!.load();
    } catch (e) {
      throw this.loadError(e);
    }
    kernelSymbols().invalidate(); // our programs' [bpf] symbols are new
    this.buildMaps();
  }

  private loadError(e: unknown): LbcError {
    if (!isNativeFailure(e)) return e as LbcError;
    const log = e.libbpfLog ?? '';
    const m = /prog '([^']+)': -- BEGIN PROG LOAD LOG --\n([\s\S]*?)-- END PROG LOAD LOG --/.exec(log);
    const failedProg = m?.[1] ?? /prog '([^']+)': (?:BPF program load failed|failed to load)/.exec(log)?.[1];
    const info = this.progInfo.find((p) => p.name === failedProg);
    const sec = info ? ` (SEC("${info.section}"))` : '';
    if (info && TRAMPOLINE_SEC.test(info.section) && (e.errno === 1 || e.errno === 524 || e.errno === EOPNOTSUPP || e.errno === 22) && !m?.[2]?.includes('R0')) {
      const kind = info.section.split('/')[0]!;
      return new UnsupportedError(
        `load program "${info.name}"${sec}: kernel refused ${kind} programs (${e.message}); BPF trampolines need ` +
        'CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS (fentry/fexit) and CONFIG_BPF_LSM with "bpf" in lsm= (LSM); ' +
        'use a tracepoint (tp/...) or raw_tp instead',
        kind === 'lsm' || kind === 'lsm.s' ? 'CONFIG_BPF_LSM' : 'BPF trampoline (fentry/fexit)',
        ['tracepoint', 'raw_tp'], { errno: e.errno, libbpfLog: log });
    }
    if (m && m[2]!.trim()) {
      const vlog = m[2]!;
      const lines = vlog.trimEnd().split('\n');
      const meaningful = lines.filter((l) => l.trim() && !/^processed \d+ insns|^verification time|^stack depth|^\s*$/.test(l));
      const last = meaningful[meaningful.length - 1] ?? lines[lines.length - 1] ?? '';
      const where = [...lines].reverse().find((l) => /@ \S+:\d+\s*$/.test(l));
      const loc = where ? ` at ${/@ (\S+:\d+)\s*$/.exec(where)![1]}` : '';
      return new VerifierError(
        `load program "${failedProg}"${sec}: verifier rejected it${loc}: ${last.trim()} (${Math.max(0, lines.length - 1)} lines omitted)`,
        failedProg!, vlog, e.errno);
    }
    if (e.errno === 1 || e.errno === 13) {
      return new PermissionError(`load "${this.name}": ${e.message}; run as root or with CAP_BPF and CAP_PERFMON`, 'CAP_BPF', { errno: e.errno, libbpfLog: log });
    }
    const tail = log.trim().split('\n').slice(-3).join('; ');
    return new LbcError('LBC_LOAD', `load "${this.name}": ${e.message}${tail ? `; libbpf: ${tail}` : ''}`, { errno: e.errno, libbpfLog: log });
  }

  private buildMaps(): void {
    const btf = this.btfView!;
    const ctx: MapContext = {
      btf,
      codecs: this.codecs!,
      assertOpen: (what) => this.assertOpen(what),
      readGlobal: (name) => this.readGlobal(name),
      track: (c) => this.resources.add(c),
    };
    const maps = this.maps as Record<string, LbcMap>;
    for (const info of this.obj!.maps()) {
      if (info.internal) continue;
      const carrier = btf.lbcCarrier(info.name);
      let m: LbcMap;
      switch (info.type) {
        case MapType.PERF_EVENT_ARRAY:
        case MapType.RINGBUF:
          m = new EventMap(ctx, info, carrier.eventType ?? 0, carrier.eventN || 64);
          break;
        case MapType.STACK_TRACE:
          m = new StackMap(ctx, info);
          break;
        default:
          if (carrier.hist) m = new HistMap(ctx, info, carrier.hist);
          else if (info.btfKeyTypeId && info.btfValueTypeId) m = new KeyValueMap(ctx, info);
          else m = new LbcMap(ctx, info);
      }
      maps[info.name] = m;
    }
  }

  /** Throws LBC_CLOSED unless loaded and not closed. */
  assertOpen(what: string): void {
    if (!this.obj || this.state === 'closed') throw new LbcError('LBC_CLOSED', `${what}: "${this.name}" is ${this.obj ? 'closed' : 'not started'}`);
  }

  private prog(name: string): ProgramInfo {
    this.assertOpen(`attach "${name}"`);
    const p = this.progInfo.find((x) => x.name === name);
    if (!p) throw new NotFoundError(`attach "${name}": no program of that name in "${this.name}"${didYouMean(name, this.progInfo.map((x) => x.name))}`);
    return p;
  }

  private keep(key: string, prog: string, make: () => Link): Link {
    const existing = this.links.get(key);
    if (existing) return existing.link; // attaching twice never creates (or leaks) a second link
    const link = make();
    this.links.set(key, { prog, link });
    return link;
  }

  /** Attach every program whose SEC() name says where (programs that need a target are left for explicit calls). */
  attachAll(): void {
    for (const p of this.progInfo) {
      if (!p.autoload) continue;
      try {
        this.attach(p.name);
      } catch (e) {
        if (e instanceof LbcError && e.errno === EOPNOTSUPP && e.code === 'LBC_ATTACH') continue;
        throw e;
      }
    }
  }

  /** Attach one program by its SEC() name. */
  attach(prog: string): Link {
    const p = this.prog(prog);
    const k = KPROBE_SEC.exec(p.section);
    if (k) {
      const what = `attach ${k[1]} "${k[2]}" (program "${prog}")`;
      checkKprobes(what);
      if (k[1]!.startsWith('k') && !k[1]!.includes('syscall') && !kernelFunctionExists(k[2]!.split('+')[0]!)) {
        throw new NotFoundError(`${what}: no kernel function "${k[2]}" in /proc/kallsyms; check the name (grep ${k[2]} /proc/kallsyms) or use a tracepoint`);
      }
    }
    if (p.section === 'usdt') {
      // libbpf does not auto-attach a bare SEC("usdt") either; EOPNOTSUPP makes attachAll() skip it.
      throw new LbcError('LBC_ATTACH', `attach program "${prog}" (SEC("usdt")): the section names no probe; call attachUsdt("${prog}", { pid } or { binary }, provider, name) or write SEC("usdt/BINARY:PROVIDER:NAME")`, { errno: EOPNOTSUPP });
    }
    const u = USDT_SEC.exec(p.section);
    if (u) {
      const what = `attach usdt "${u[1]}:${u[2]}:${u[3]}" (program "${prog}")`;
      const binary = this.usdtBinary(what, u[1]!);
      this.checkUsdtProbe(what, binary, u[2]!, u[3]!);
      return this.keep(usdtKey(prog, binary, u[2]!, u[3]!, -1, 0), prog,
        () => this.usdtAttach(what, () => this.obj!.attach(prog)));
    }
    const t = TP_SEC.exec(p.section);
    if (t) checkTracepoint(t[1]!, t[2]!);
    const raw = RAW_TP_SEC.exec(p.section);
    const what = raw ? `attach raw tracepoint "${raw[1]}" (program "${prog}")` : `attach program "${prog}" (SEC("${p.section}"))`;
    // The same key as the explicit call for the same target, so attach() and
    // attachTracepoint() on one tracepoint share one link instead of failing with EEXIST.
    const key = t ? `tp:${prog}:${t[1]}/${t[2]}` : raw ? `raw_tp:${prog}:${raw[1]}`
      : k && !k[1]!.includes('syscall') ? `${k[1]}:${prog}:${k[2]}:0` : `sec:${prog}`;
    try {
      return this.keep(key, prog, () => this.nativeAttach(what, () => this.obj!.attach(prog)));
    } catch (e) {
      if (raw && e instanceof NotFoundError) {
        throw new NotFoundError(`${what}: this kernel has no tracepoint "${raw[1]}"; raw tracepoints are named like their event without the category (ls /sys/kernel/tracing/events/*/)`, { errno: e.errno, libbpfLog: e.libbpfLog });
      }
      throw e;
    }
  }

  /** Attach a kprobe (or kretprobe) program to a kernel function. pylcc: attachKprobe(func, sym). */
  attachKprobe(prog: string, func: string, opts: KprobeOptions = {}): Link {
    this.prog(prog);
    const kind = opts.retprobe ? 'kretprobe' : 'kprobe';
    const what = `attach ${kind} "${func}" (program "${prog}")`;
    checkKprobes(what);
    if (!kernelFunctionExists(func)) throw new NotFoundError(`${what}: no kernel function "${func}" in /proc/kallsyms; check the name or use a tracepoint`);
    return this.keep(`${kind}:${prog}:${func}:${opts.offset ?? 0}`, prog,
      () => this.nativeAttach(what, () => this.obj!.attachKprobe(prog, func, !!opts.retprobe, opts.offset ?? 0)));
  }

  attachKretprobe(prog: string, func: string): Link {
    return this.attachKprobe(prog, func, { retprobe: true });
  }

  /**
   * Attach a uprobe to `binary` at a symbol name or a file offset. pylcc: attachUprobe(func, pid, path, offset).
   * @param target symbol name (resolved by libbpf in .symtab/.dynsym) or byte offset.
   */
  attachUprobe(prog: string, binary: string, target: string | number, opts: UprobeOptions = {}): Link {
    this.prog(prog);
    const kind = opts.retprobe ? 'uretprobe' : 'uprobe';
    const at = `${target}${opts.offset ? `+${opts.offset}` : ''}`;
    const what = `attach ${kind} "${binary}:${at}" (program "${prog}")`;
    if (!fs.existsSync(binary)) throw new NotFoundError(`${what}: no such file "${binary}"`);
    return this.keep(`${kind}:${prog}:${binary}:${at}:${opts.pid ?? -1}`, prog,
      () => this.nativeAttach(what, () => this.obj!.attachUprobe(prog, !!opts.retprobe, opts.pid ?? -1, binary,
        (typeof target === 'number' ? target : 0) + (opts.offset ?? 0), typeof target === 'string' ? target : null)));
  }

  attachUretprobe(prog: string, binary: string, target: string | number, opts: Omit<UprobeOptions, 'retprobe'> = {}): Link {
    return this.attachUprobe(prog, binary, target, { ...opts, retprobe: true });
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
   * tool.attachUsdt('on_tick', { pid: child.pid }, 'tslcc', 'tick', { cookie: 7 });
   * ```
   */
  attachUsdt(prog: string, target: { pid?: number; binary?: string }, provider: string, name: string, opts: UsdtOptions = {}): Link {
    this.prog(prog);
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
    return this.keep(usdtKey(prog, binary, provider, name, pid, cookie), prog,
      () => this.usdtAttach(what, () => this.obj!.attachUsdt(prog, pid, binary, provider, name, cookie)));
  }

  /**
   * The file a USDT target names, found as libbpf finds it: a name without a slash in PATH
   * (then /usr/bin:/usr/sbin), a library name (".so") among the files process `pid` maps,
   * else in LD_LIBRARY_PATH and the library directories; a relative path against the cwd.
   */
  private usdtBinary(what: string, binary: string, pid = -1): string {
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

  private checkUsdtProbe(what: string, binary: string, provider: string, name: string): void {
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

  private usdtAttach(what: string, f: () => Link): Link {
    try {
      return this.nativeAttach(what, f);
    } catch (e) {
      // libbpf: "usdt: failed to find USDT support BPF map, did you forget to include bpf/usdt.bpf.h?" (ESRCH)
      if (e instanceof LbcError && /usdt\.bpf\.h/.test(e.libbpfLog ?? '')) {
        throw new LbcError('LBC_ATTACH', `${what}: the object has no USDT support maps; #include <bpf/usdt.bpf.h> in the program`, { errno: e.errno, libbpfLog: e.libbpfLog });
      }
      throw e;
    }
  }

  /** Attach to tracepoint category/name (pylcc: attachTracepoint(func, category, name)). */
  attachTracepoint(prog: string, category: string, name: string): Link {
    this.prog(prog);
    checkTracepoint(category, name);
    return this.keep(`tp:${prog}:${category}/${name}`, prog,
      () => this.nativeAttach(`attach tracepoint "${category}/${name}" (program "${prog}")`, () => this.obj!.attachTracepoint(prog, category, name)));
  }

  attachRawTracepoint(prog: string, name: string): Link {
    this.prog(prog);
    return this.keep(`raw_tp:${prog}:${name}`, prog,
      () => this.nativeAttach(`attach raw tracepoint "${name}" (program "${prog}")`, () => this.obj!.attachRawTracepoint(prog, name)));
  }

  /** Open a perf event and attach a SEC("perf_event") program to it. */
  attachPerfEvent(prog: string, attr: PerfEventAttr, opts: PerfEventOptions = {}): Link {
    this.prog(prog);
    const pid = opts.pid ?? -1;
    const cpu = opts.cpu ?? 0;
    const what = `attach perf event type ${attr.type} config ${attr.config} on cpu ${cpu} pid ${pid} (program "${prog}")`;
    // The whole attr is the target: two breakpoints differ only in bpAddr, two samplers in frequency.
    const attrKey = JSON.stringify(attr, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
    return this.keep(`perf:${prog}:${attrKey}:${pid}:${cpu}`, prog, () => {
      let fd: number;
      try {
        fd = native().perfEventOpen(attr, pid, cpu, -1, 0);
      } catch (e) {
        throw wrapNative(e, what);
      }
      try {
        return this.nativeAttach(what, () => this.obj!.attachPerfEvent(prog, fd));
      } catch (e) {
        native().closeFd(fd);
        throw e;
      }
    });
  }

  /** attachPerfEvent on every online CPU (pylcc: attachAllCpuPerf). */
  attachAllCpuPerf(prog: string, attr: PerfEventAttr, opts: { pid?: number } = {}): Link[] {
    return onlineCpus().map((cpu) => this.attachPerfEvent(prog, attr, { pid: opts.pid ?? -1, cpu }));
  }

  /**
   * attachPerfEvent on every thread of process `pid` (pylcc: attachPerfEvents): one event per
   * thread that exists now, each following its thread on any CPU.
   */
  attachPerfEvents(prog: string, attr: PerfEventAttr, pid: number): Link[] {
    let tids: number[];
    try {
      tids = fs.readdirSync(`/proc/${pid}/task`).map(Number);
    } catch {
      throw new NotFoundError(`attach perf events to the threads of ${pid} (program "${prog}"): no such process`);
    }
    return tids.map((tid) => this.attachPerfEvent(prog, attr, { pid: tid, cpu: -1 }));
  }

  /**
   * pylcc's traceUprobes(func, pid, "bin:func"): a uprobe from a "binary:function[+offset]"
   * spec. A binary without a slash is looked up among the files process `pid` maps (e.g.
   * "libc.so.6"), then in PATH.
   */
  traceUprobes(prog: string, pid: number, spec: string, opts: { retprobe?: boolean } = {}): Link {
    const m = /^(.+?):([^:+]+)(?:\+(0x[0-9a-f]+|\d+))?$/i.exec(spec);
    if (!m) throw new LbcError('LBC_INVALID_ARGUMENT', `trace uprobe "${spec}": expected "binary:function" or "binary:function+offset"`);
    const [, bin, func, off] = m;
    let binary = bin!;
    if (!binary.includes('/')) {
      const mapped = pid > 0 ? readMappedFiles(pid).find((f) => path.basename(f) === binary || path.basename(f).startsWith(`${binary}.`)) : undefined;
      const inPath = (process.env.PATH ?? '').split(':').map((d) => path.join(d, binary)).find((f) => fs.existsSync(f));
      binary = mapped ? `/proc/${pid}/root${mapped}` : inPath ?? binary;
    }
    return this.attachUprobe(prog, binary, func!, { pid: pid > 0 ? pid : -1, retprobe: opts.retprobe, offset: off ? Number(off) : undefined });
  }

  /**
   * pylcc's attachJavaSym: break on a JIT-compiled function (a JVM, Node.js with
   * --perf-basic-prof) found by name in /tmp/perf-PID.map: an execute hardware breakpoint,
   * delivered to a SEC("perf_event") program. A JIT keeps several code objects for one
   * function (tiers, on-stack-replacement entries), so every address the map names for it
   * gets one, the most recent first, up to the 4 breakpoint registers of x86 and arm64.
   * A function the JIT inlined into its callers runs inside their code, so its own address
   * never executes: for Node.js, --no-turbo-inlining keeps functions out of line.
   */
  attachJavaSym(prog: string, pid: number, symbol: string): Link[] {
    const file = [`/proc/${pid}/root/tmp/perf-${pid}.map`, `/tmp/perf-${pid}.map`].find((f) => fs.existsSync(f));
    const what = `attach breakpoint on JIT symbol "${symbol}" of ${pid} (program "${prog}")`;
    if (!file) throw new NotFoundError(`${what}: no /tmp/perf-${pid}.map; start the process with its perf map on (node --perf-basic-prof, java -XX:+PreserveFramePointer with perf-map-agent)`);
    const exact: bigint[] = [];
    const named: bigint[] = [];
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      const s1 = line.indexOf(' ');
      const s2 = line.indexOf(' ', s1 + 1);
      if (s2 < 0) continue;
      const name = line.slice(s2 + 1);
      const addr = BigInt(`0x${line.slice(0, s1)}`);
      if (name === symbol) exact.push(addr);
      else if (name.split(/[ :*~^+]+/).includes(symbol)) named.push(addr);
    }
    const addrs = [...new Set((exact.length ? exact : named).reverse())].slice(0, 4);
    if (!addrs.length) throw new NotFoundError(`${what}: not in ${file}; the function may not be compiled yet`);
    return addrs.map((addr) => this.attachPerfEvent(prog, { type: 5 /* PERF_TYPE_BREAKPOINT */, config: 0, bpType: 4 /* HW_BREAKPOINT_X */, bpAddr: addr, bpLen: 8, samplePeriod: 1 }, { pid, cpu: -1 }));
  }

  /** pylcc's getMap(name, data): decode a raw record of event map `name`. */
  getMap(name: string, data: Buffer): unknown {
    const m = (this.maps as Record<string, LbcMap>)[name];
    if (!(m instanceof EventMap)) throw new NotFoundError(`decode a record of "${name}": no event map of that name in "${this.name}"`);
    return m.decode(data);
  }

  /** Attach an XDP program to an interface (index or name). */
  attachXdp(prog: string, iface: number | string): Link {
    this.prog(prog);
    const ifindex = typeof iface === 'number' ? iface : Number(readTrim(`/sys/class/net/${iface}/ifindex`, `attach xdp to "${iface}": no such interface`));
    return this.keep(`xdp:${prog}:${ifindex}`, prog, () => this.nativeAttach(`attach xdp to ifindex ${ifindex} (program "${prog}")`, () => this.obj!.attachXdp(prog, ifindex)));
  }

  /** Attach a cgroup program to the cgroup at `cgroupPath` (e.g. /sys/fs/cgroup). */
  attachCgroup(prog: string, cgroupPath: string): Link {
    return this.attachByFd(prog, cgroupPath, 'cgroup', (fd) => this.obj!.attachCgroup(prog, fd));
  }

  /** Attach a netns program (flow_dissector, sk_lookup) to a network namespace (default: ours). */
  attachNetns(prog: string, netnsPath = '/proc/self/ns/net'): Link {
    return this.attachByFd(prog, netnsPath, 'netns', (fd) => this.obj!.attachNetns(prog, fd));
  }

  private attachByFd(prog: string, file: string, kind: string, f: (fd: number) => Link): Link {
    this.prog(prog);
    const what = `attach ${kind} "${file}" (program "${prog}")`;
    return this.keep(`${kind}:${prog}:${file}`, prog, () => {
      let fd: number;
      try {
        fd = fs.openSync(file, 'r');
      } catch (e) {
        throw new NotFoundError(`${what}: ${(e as Error).message}`);
      }
      try {
        return this.nativeAttach(what, () => f(fd));
      } finally {
        fs.closeSync(fd);
      }
    });
  }

  private nativeAttach(what: string, f: () => Link): Link {
    try {
      return f();
    } catch (e) {
      throw wrapNative(e, what);
    }
  }

  /** Detach every link of one program. */
  detach(prog: string): void {
    for (const [k, v] of this.links) {
      if (v.prog === prog) {
        v.link.destroy();
        this.links.delete(k);
      }
    }
  }

  /** Number of live links (attachments). */
  get linkCount(): number {
    return this.links.size;
  }

  /** Resolves on SIGINT or SIGTERM (pylcc: waitInterrupt). The tool then prints and closes. */
  waitInterrupt(): Promise<NodeJS.Signals> {
    return new Promise((resolve) => {
      const on = (sig: NodeJS.Signals) => {
        process.removeListener('SIGINT', on);
        process.removeListener('SIGTERM', on);
        resolve(sig);
      };
      process.on('SIGINT', on);
      process.on('SIGTERM', on);
    });
  }

  /** Detach every link, stop every consumer, free every map and program. Idempotent. */
  close(): void {
    if (this.state === 'closed' || this.state === 'closing') return;
    this.state = 'closing';
    live.delete(this as LbcBase<object>);
    // Stop the producers first, then deliver what is still buffered while the maps can
    // still be read (a callback may symbolize a stack), then free the kernel objects.
    for (const { link } of this.links.values()) link.destroy();
    this.links.clear();
    const errors: unknown[] = [];
    for (const r of this.resources) {
      try { r.close(); } catch (e) { errors.push(e); }
    }
    this.resources.clear();
    this.state = 'closed';
    for (const sec of this.globalSections.values()) sec.live = undefined; // unmapped by close
    this.obj?.close();
    if (errors.length) throw errors[0];
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}

/** pylcc's name for LbcBase. */
export const ClbcBase = LbcBase;

function wrapNative(e: unknown, what: string): LbcError {
  if (!isNativeFailure(e)) return e as LbcError;
  const f = e as NativeFailure;
  const reason = f.message.replace(/^\S+(?: \S+)?: /, '');
  const opts = { errno: f.errno, libbpfLog: f.libbpfLog };
  switch (f.errno) {
    case 2: return new NotFoundError(`${what}: ${reason}`, opts);
    case 1: case 13: return new PermissionError(`${what}: ${reason}; run as root or with CAP_BPF and CAP_PERFMON`, 'CAP_BPF', opts);
    case 17: return new LbcError('LBC_ATTACH', `${what}: the program is already attached there (by another process or object); detach it first`, opts);
    default: return new LbcError('LBC_ATTACH', `${what}: ${reason}`, opts);
  }
}

/** One link per program, file, probe, pid and cookie; the explicit call and the SEC() name share it. */
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
function readMappedFiles(pid: number): string[] {
  try {
    return [...new Set(fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').map((l) => l.split(/\s+/)[5] ?? '').filter((p) => p.startsWith('/')))];
  } catch {
    return [];
  }
}

/** Online CPU numbers from /sys/devices/system/cpu/online ("0-3,6"). */
export function onlineCpus(text?: string): number[] {
  const s = text ?? fs.readFileSync('/sys/devices/system/cpu/online', 'utf8');
  const out: number[] = [];
  for (const part of s.trim().split(',')) {
    const [a, b] = part.split('-').map(Number);
    for (let c = a!; c <= (b ?? a!); c++) out.push(c);
  }
  return out;
}

