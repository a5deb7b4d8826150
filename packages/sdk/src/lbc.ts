/**
 * LbcBase: the class a tool subclasses (pylcc's ClbcBase). `start()` compiles (cache
 * first), opens, configures (globals, programs, maps, event types, the `beforeLoad` hook),
 * loads, attaches every program whose SEC() name says where, and exposes the maps by name;
 * `close()` releases everything. It composes the object API (openObject → ObjectSpec →
 * LoadedObject → Program) and adds nothing a user could not do with it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Link, PerfEventAttr } from '@tslcc/native';
import type { Btf } from './btf.js';
import { type CompiledObject, type CompileOptions, compile, defaultCacheDir, kernelBtfPath, splitFlags, writeAtomic } from './compile.js';
import { defaultMcpu, targetKernelRelease } from './toolchain.js';
import { configuredServer, fetchBtf } from './remote.js';
import { didYouMean, LbcError, NotFoundError, UnsupportedError, VerifierError } from './errors.js';
import { EventMap, type LbcMap } from './maps.js';
import type { LoadedObject } from './object/loaded.js';
import { findBinary, type KprobeOptions, type PerfEventOptions, type UprobeOptions, type UsdtOptions } from './object/program.js';
import { type ObjectSpec, openObject } from './object/spec.js';
import { explicitAttachHint } from './object/sections.js';

export type { KprobeOptions, PerfEventOptions, UprobeOptions, UsdtOptions } from './object/program.js';

/** Per-program decisions made before load. `false` is `{ autoload: false }`. */
export type ProgramOptions = false | {
  /** Load (and so attach) this program. Default: true. */
  autoload?: boolean;
  /** Kernel function / tracepoint / LSM hook for fentry, fexit, tp_btf, lsm programs (e.g. `SEC("fentry/dummy")`). */
  attachTarget?: string;
};

/** Per-map sizes set before load (for maps the C leaves at 0 or sizes for the host). */
export interface MapOptions {
  maxEntries?: number;
  /** e.g. a stack map's `perf_max_stack_depth * 8`. */
  valueSize?: number;
  keySize?: number;
}

export interface LbcOptions {
  /** The BPF C source (pylcc: bpf_str). */
  source?: string;
  /**
   * A .bpf.c file to read when no source is given. Default `<name>.bpf.c` in the cwd. Its
   * directory is an include directory (`#include "tool.h"` beside it works) and
   * diagnostics name this path.
   */
  path?: string;
  /** Extra clang flags, e.g. "-DLBC_DEBUG" (pylcc: env). Relative -I paths resolve against the cwd. */
  env?: string | string[];
  /** Include directories, relative to the cwd (also pylcc's LBC_INCLUDE). */
  includeDirs?: string[];
  /** Attach every program by its SEC() name at start (pylcc: attach=1). Default true. */
  attach?: boolean;
  /** Values for globals, set before load: `const volatile` (.rodata) config, .data and .bss initial values. */
  globals?: Record<string, unknown>;
  /** Per-program choices before load: `{ handle_fentry: false, dummy_fentry: { attachTarget: 'vfs_read' } }`. */
  programs?: Record<string, ProgramOptions>;
  /** Per-map sizes before load: `{ stacks: { valueSize: 127 * 8, maxEntries: 10240 } }`. */
  maps?: Record<string, MapOptions>;
  /**
   * The event type of event maps not declared with LBC_PERF_OUTPUT/LBC_RINGBUF:
   * `{ events: 'struct event' }`. With the source at hand the compile adds a type carrier,
   * so a struct used only as a local variable is found too.
   */
  events?: Record<string, string>;
  /**
   * Called with the opened object before load, to decide from the kernel's features:
   * `spec.features.fentryAttachable('vfs_read')`, `spec.programs.x.autoload = false`,
   * `spec.maps.m.maxEntries = n`, `spec.setGlobals({...})`.
   */
  beforeLoad?: (spec: ObjectSpec) => void | Promise<void>;
  /** Where warnings go (default: stderr, "tslcc: warning: ..."). */
  onWarning?: (message: string) => void;
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

/** What became of one program: the decisions made before load and its links. */
export interface ProgramState {
  name: string;
  section: string;
  /** libbpf's program type name. */
  typeName: string;
  /** Loaded (autoload). */
  autoload: boolean;
  /** The attach target set before load, else the SEC() name's. */
  attachTarget?: string;
  /** Live links. */
  links: number;
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

const KNOWN_OPTIONS = ['source', 'path', 'env', 'includeDirs', 'attach', 'globals', 'programs', 'maps', 'events', 'beforeLoad', 'onWarning', 'compile', 'object', 'int64', 'btfCustomPath'];

/**
 * Source lines that make each `events` type discoverable in BTF (LBC_EVENT_TYPE), after
 * the user's code so no line moves; a `#line` names them in diagnostics.
 */
export function eventCarriers(events: Record<string, string>): string {
  const lines = Object.entries(events).map(([map, type]) => {
    if (!/^\w+$/.test(map)) throw new LbcError('LBC_INVALID_ARGUMENT', `events: map name ${JSON.stringify(map)} is not a C identifier`);
    if (!/^(?:(?:struct|union|enum)\s+)?\w+$/.test(type.trim())) throw new LbcError('LBC_INVALID_ARGUMENT', `events.${map}: ${JSON.stringify(type)} is not a C type name like "struct event"`);
    return `LBC_EVENT_TYPE(${map}, ${type.trim()});`;
  });
  return lines.length ? `#line 1 "<events option>"\n${lines.join('\n')}\n` : '';
}

export class LbcBase<M extends object = AnyMaps> {
  /** Base name: the program's name in messages and the cache (pylcc: bpf). */
  readonly name: string;
  /** Maps by name, available after start(). */
  readonly maps: M = {} as M;
  /** The compiled object (after start). */
  compiled?: CompiledObject;
  /** Warnings given during start (also sent to onWarning / stderr). */
  readonly warnings: string[] = [];
  /** Programs left for an explicit attach call after start (their SEC() names no target). */
  readonly unattached: string[] = [];
  protected readonly options: LbcOptions;
  private spec?: ObjectSpec;
  private loaded?: LoadedObject;
  /** 'closing': links gone, buffered events still being delivered (maps still readable). */
  private state: 'new' | 'starting' | 'running' | 'closing' | 'closed' = 'new';

  constructor(name: string, options: LbcOptions = {}) {
    if (typeof name !== 'string' || !/^[A-Za-z_][\w.-]*$/.test(name)) {
      throw new LbcError('LBC_INVALID_ARGUMENT', `LbcBase: name must be a plain identifier like "runlatency", got ${JSON.stringify(name)}`);
    }
    for (const k of Object.keys(options)) {
      if (!KNOWN_OPTIONS.includes(k)) throw new LbcError('LBC_INVALID_ARGUMENT', `LbcBase "${name}": unknown option "${k}"${didYouMean(k, KNOWN_OPTIONS)}`);
    }
    this.name = name;
    this.options = options;
  }

  /** The object's BTF (after start). */
  get btf(): Btf {
    const spec = this.loaded?.spec ?? this.spec;
    if (!spec) throw new LbcError('LBC_CLOSED', `"${this.name}": not started; call start() first`);
    return spec.btf;
  }

  /** Programs of the object with the decisions made before load and their live links. */
  get programs(): readonly ProgramState[] {
    const spec = this.loaded?.spec ?? this.spec;
    if (!spec) return [];
    return Object.values(spec.programs).map((p) => ({
      name: p.name, section: p.section, typeName: p.type, autoload: p.autoload, attachTarget: p.attachTarget,
      links: this.loaded?.programs[p.name]?.linkCount ?? 0,
    }));
  }

  /** The loaded object (after start): programs with attach methods, maps, globals. */
  get object(): LoadedObject {
    if (!this.loaded) throw new LbcError('LBC_CLOSED', `"${this.name}": not started; call start() first`);
    return this.loaded;
  }

  private warn(message: string): void {
    this.warnings.push(message);
    (this.options.onWarning ?? ((m: string) => process.stderr.write(`tslcc: warning: ${m}\n`)))(message);
  }

  /**
   * Compile (cache first), open, configure, load and (unless attach: false) attach.
   * On any failure everything already created is released before the error is thrown.
   * @throws CompileError, VerifierError, PermissionError, UnsupportedError, NotFoundError
   */
  async start(): Promise<this> {
    if (this.state !== 'new') throw new LbcError('LBC_INVALID_ARGUMENT', `start "${this.name}": already ${this.state}`);
    this.state = 'starting';
    try {
      await this.resolveKernelBtf();
      let elf = this.options.object ?? (await this.compileSource()).elf;
      // An object that verified only at -mcpu=v2 before: go straight to its v2 build.
      const isaNote = this.compiled && this.defaultIsa() ? isaNotePath(this.compileCacheDir(), this.compiled.key) : undefined;
      if (isaNote && fs.existsSync(isaNote)) elf = (await this.compileSource(['-mcpu=v2'])).elf;
      try {
        this.loaded = (await this.prepare(elf)).load();
      } catch (e) {
        // clang 14 at -mcpu=v3 (our default for 5.1+) sometimes loses a bound through a
        // 32-bit compare that v2 code keeps; a program the verifier rejects at v3 is tried
        // once more at v2 before the error stands.
        if (!(e instanceof VerifierError) || !isaNote || fs.existsSync(isaNote)) throw e;
        this.spec?.close();
        const v2 = await this.compileSource(['-mcpu=v2']).catch(() => undefined);
        if (!v2) throw e;
        try {
          this.loaded = (await this.prepare(v2.elf)).load();
        } catch {
          throw e;
        }
        try { writeAtomic(isaNote!, 'v2\n'); } catch { /* only saves the v3 attempt next time */ }
        this.warn(`"${this.name}": the verifier rejected the program built with -mcpu=v3 (${e.message.replace(/ \(\d+ lines omitted\)$/, '')}); it loaded when built with -mcpu=v2, which is used. Pass env: '-mcpu=v2' to skip the first attempt`);
      }
      this.spec = undefined;
      Object.assign(this.maps, this.loaded.maps);
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

  /** Open the object and apply the options and the beforeLoad hook. */
  private async prepare(elf: Buffer): Promise<ObjectSpec> {
    const spec = openObject(elf, {
      name: this.name, btfCustomPath: this.btfPath, int64: this.options.int64, onWarning: (m) => this.warn(m),
      source: this.sourceText !== undefined ? { text: this.sourceText, file: this.sourceFile ?? `${this.name}.bpf.c` } : undefined,
    });
    this.spec = spec;
    this.configure(spec);
    if (this.options.beforeLoad) await this.options.beforeLoad(spec);
    return spec;
  }

  private compileCacheDir(): string {
    return this.options.compile?.cacheDir ?? defaultCacheDir();
  }

  /** Whether the object was compiled here with tslcc's default ISA level, v3 (no -mcpu of the user's). */
  private defaultIsa(): boolean {
    if (this.options.object || !this.compiled) return false;
    const flags = splitFlags(this.options.env);
    return !flags.some((f) => f.startsWith('-mcpu=')) && defaultMcpu(targetKernelRelease(this.btfPath)) === 'v3';
  }

  /** The options' pre-load decisions, applied to the opened object. */
  private configure(spec: ObjectSpec): void {
    for (const [name, o] of Object.entries(this.options.programs ?? {})) {
      const p = spec.program(name, 'programs option: program');
      if (o === false) { p.autoload = false; continue; }
      for (const k of Object.keys(o)) {
        if (k !== 'autoload' && k !== 'attachTarget') throw new LbcError('LBC_INVALID_ARGUMENT', `programs.${name}: unknown option "${k}"${didYouMean(k, ['autoload', 'attachTarget'])}`);
      }
      if (o.autoload !== undefined) p.autoload = o.autoload;
      if (o.attachTarget !== undefined) p.attachTarget = o.attachTarget;
    }
    for (const [name, o] of Object.entries(this.options.maps ?? {})) {
      const m = spec.map(name, 'maps option: map');
      for (const k of Object.keys(o)) {
        if (!['maxEntries', 'valueSize', 'keySize'].includes(k)) throw new LbcError('LBC_INVALID_ARGUMENT', `maps.${name}: unknown option "${k}"${didYouMean(k, ['maxEntries', 'valueSize', 'keySize'])}`);
      }
      if (o.maxEntries !== undefined) m.maxEntries = o.maxEntries;
      if (o.valueSize !== undefined) m.valueSize = o.valueSize;
      if (o.keySize !== undefined) m.keySize = o.keySize;
    }
    for (const [map, type] of Object.entries(this.options.events ?? {})) spec.setEventType(map, type);
    spec.setGlobals(this.options.globals ?? {});
  }

  /** Kernel BTF for CO-RE: the option, else the kernel's, else downloaded from the compile server. */
  private btfPath?: string;
  /** What was compiled, for messages that point at it. */
  private sourceText?: string;
  private sourceFile?: string;

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

  private async compileSource(extraFlags: string[] = []): Promise<CompiledObject> {
    let source = this.options.source;
    let sourcePath: string | undefined;
    if (source === undefined) {
      sourcePath = this.options.path ?? `${this.name}.bpf.c`;
      try {
        source = fs.readFileSync(path.resolve(sourcePath), 'utf8');
      } catch (e) {
        throw new NotFoundError(`start "${this.name}": no source given and cannot read "${sourcePath}": ${(e as Error).message}; pass { source } or { path }`);
      }
    }
    this.sourceText = source;
    this.sourceFile = sourcePath;
    const carriers = eventCarriers(this.options.events ?? {});
    if (carriers) source = `${source.endsWith('\n') ? source : `${source}\n`}${carriers}`;
    this.compiled = await compile(source, {
      btfPath: this.btfPath, ...this.options.compile, name: this.name, flags: [...splitFlags(this.options.env), ...extraFlags], sourcePath,
      includeDirs: [...(this.options.includeDirs ?? []), ...(this.options.compile?.includeDirs ?? [])],
      onWarning: (m) => this.warn(m),
    });
    return this.compiled;
  }

  /** Read a global variable while running (.bss, .data, .rodata). */
  readGlobal(name: string): unknown {
    return this.loadedFor(`read global "${name}"`).readGlobal(name);
  }

  /** Write a .bss or .data global while running. `const volatile` (.rodata) globals are set through `globals` before start. */
  writeGlobal(name: string, value: unknown): void {
    this.loadedFor(`write global "${name}"`).writeGlobal(name, value);
  }

  private loadedFor(what: string): LoadedObject {
    this.assertOpen(what);
    return this.loaded!;
  }

  /** Throws LBC_CLOSED unless loaded and not closed. */
  assertOpen(what: string): void {
    if (!this.loaded || this.state === 'closed') throw new LbcError('LBC_CLOSED', `${what}: "${this.name}" is ${this.loaded ? 'closed' : 'not started'}`);
  }

  /**
   * Attach every loaded program whose SEC() name says where. Programs whose SEC() names no
   * target (`SEC("uprobe")`, `SEC("perf_event")`) are left for explicit calls and listed in
   * `unattached` (with a warning for kinds that usually name one). A missing attach point
   * throws, naming the program and the point. Two programs on one kernel event through
   * different mechanisms (tp_btf/x and raw_tp/x, fentry/f and kprobe/f) get a warning:
   * both fire, so counts double.
   */
  attachAll(): void {
    const loaded = this.loadedFor('attach');
    const byEvent = new Map<string, string[]>();
    const bare: string[] = [];
    for (const p of Object.values(loaded.programs)) {
      const si = p.spec.sectionInfo;
      if (!si.autoAttach) {
        if (!this.unattached.includes(p.name)) this.unattached.push(p.name);
        if (si.targetExpected) bare.push(`${p.name} (SEC("${p.section}"): ${explicitAttachHint(si.kind)})`);
        continue;
      }
      p.attach();
      if (si.event) byEvent.set(si.event, [...(byEvent.get(si.event) ?? []), p.name]);
    }
    if (bare.length) this.warn(`"${this.name}": programs left for explicit attach, their SEC() names no complete target: ${bare.join(', ')}`);
    for (const [event, progs] of byEvent) {
      const kinds = new Set(progs.map((n) => loaded.programs[n]!.spec.sectionInfo.kind));
      if (progs.length > 1 && kinds.size > 1) {
        this.warn(`"${this.name}": programs ${progs.map((n) => `"${n}" (SEC("${loaded.programs[n]!.section}"))`).join(' and ')} all fire on ${event.replace(/^tp:/, 'tracepoint ').replace(/^fn:([^:]+):(\w+)/, '$2 of $1')}, so counts will double; ` +
          `load one of them: programs: { ${progs.slice(1).map((n) => `${n}: false`).join(', ')} }`);
      }
    }
  }

  /** Attach one program by its SEC() name. */
  attach(prog: string): Link {
    return this.loadedFor(`attach "${prog}"`).program(prog).attach();
  }

  /** Attach a kprobe (or kretprobe) program to a kernel function. pylcc: attachKprobe(func, sym). */
  attachKprobe(prog: string, func: string, opts: KprobeOptions = {}): Link {
    return this.loadedFor(`attach "${prog}"`).program(prog).attachKprobe(func, opts);
  }

  attachKretprobe(prog: string, func: string): Link {
    return this.attachKprobe(prog, func, { retprobe: true });
  }

  /**
   * Attach a uprobe to `binary` at a symbol name or a file offset. pylcc: attachUprobe(func, pid, path, offset).
   * @param target symbol name (resolved by libbpf in .symtab/.dynsym) or byte offset.
   */
  attachUprobe(prog: string, binary: string, target: string | number, opts: UprobeOptions = {}): Link {
    return this.loadedFor(`attach "${prog}"`).program(prog).attachUprobe(binary, target, opts);
  }

  attachUretprobe(prog: string, binary: string, target: string | number, opts: Omit<UprobeOptions, 'retprobe'> = {}): Link {
    return this.attachUprobe(prog, binary, target, { ...opts, retprobe: true });
  }

  /**
   * Attach a SEC("usdt") program to the USDT probe `provider:name` of a process (`{ pid }`)
   * or a binary (`{ binary }`); see Program.attachUsdt.
   * @example
   * ```ts
   * tool.attachUsdt('on_tick', { pid: child.pid }, 'tslcc', 'tick', { cookie: 7 });
   * ```
   */
  attachUsdt(prog: string, target: { pid?: number; binary?: string }, provider: string, name: string, opts: UsdtOptions = {}): Link {
    return this.loadedFor(`attach "${prog}"`).program(prog).attachUsdt(target, provider, name, opts);
  }

  /** Attach to tracepoint category/name (pylcc: attachTracepoint(func, category, name)). */
  attachTracepoint(prog: string, category: string, name: string): Link {
    return this.loadedFor(`attach "${prog}"`).program(prog).attachTracepoint(category, name);
  }

  attachRawTracepoint(prog: string, name: string): Link {
    return this.loadedFor(`attach "${prog}"`).program(prog).attachRawTracepoint(name);
  }

  /** Open a perf event and attach a SEC("perf_event") program to it. */
  attachPerfEvent(prog: string, attr: PerfEventAttr, opts: PerfEventOptions = {}): Link {
    return this.loadedFor(`attach "${prog}"`).program(prog).attachPerfEvent(attr, opts);
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
    const binary = findBinary(bin!, pid);
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
    return this.loadedFor(`attach "${prog}"`).program(prog).attachXdp(iface);
  }

  /** Attach a cgroup program to the cgroup at `cgroupPath` (e.g. /sys/fs/cgroup). */
  attachCgroup(prog: string, cgroupPath: string): Link {
    return this.loadedFor(`attach "${prog}"`).program(prog).attachCgroup(cgroupPath);
  }

  /** Attach a netns program (flow_dissector, sk_lookup) to a network namespace (default: ours). */
  attachNetns(prog: string, netnsPath = '/proc/self/ns/net'): Link {
    return this.loadedFor(`attach "${prog}"`).program(prog).attachNetns(netnsPath);
  }

  /** Detach every link of one program. */
  detach(prog: string): void {
    this.loaded?.detach(prog);
  }

  /** Number of live links (attachments). */
  get linkCount(): number {
    return this.loaded?.links.size ?? 0;
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
    try {
      this.loaded?.close();
    } finally {
      this.spec?.close();
      this.spec = undefined;
      this.state = 'closed';
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}

/** Marks an object (by its v3 cache key) that verifies only when built with -mcpu=v2. */
function isaNotePath(cacheDir: string, key: string): string {
  return path.join(cacheDir, 'isa', `${key}.v2`);
}

/** pylcc's name for LbcBase. */
export const ClbcBase = LbcBase;

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

