/**
 * The loaded object: programs verified, maps created. Programs are objects with attach
 * methods (libbpf-rs `Program::attach_*`, cilium/ebpf `link.Kprobe`); maps are the typed
 * map objects of maps.ts; globals are read and written through an mmap of their map.
 */
import type { BpfObject, Link } from '@tslcc/native';
import {
  isNativeFailure, LbcError, NotFoundError, PermissionError, UnsupportedError, VerifierError, type LbcErrorCode, type NativeFailure,
} from '../errors.js';
import { kernelSymbols } from '../kallsyms.js';
import { EventMap, HistMap, KeyValueMap, LbcMap, type MapContext, MapType, StackMap } from '../maps.js';
import { native } from '../native.js';
import { kernelProbes } from './features.js';
import { Program } from './program.js';
import { externError, type GlobalSection, type ObjectSpec } from './spec.js';
import { sectionInfo } from './sections.js';

const EOPNOTSUPP = 95;

/** The loaded object. `close()` releases links, consumers, maps and programs. */
export class LoadedObject {
  readonly name: string;
  /** Programs by name (only those that were loaded). */
  readonly programs: Readonly<Record<string, Program>>;
  /** Typed maps by name. */
  readonly maps: Readonly<Record<string, LbcMap>>;
  /** @internal */
  readonly spec: ObjectSpec;
  /** @internal every link of every program, keyed by target */
  readonly links = new Map<string, { prog: string; link: Link }>();
  private readonly resources = new Set<{ close(): void }>();
  private obj?: BpfObject;
  private state: 'open' | 'closing' | 'closed' = 'open';

  /** @internal use ObjectSpec.load() */
  constructor(obj: BpfObject, spec: ObjectSpec) {
    this.obj = obj;
    this.spec = spec;
    this.name = spec.name;
    kernelSymbols().invalidate(); // our programs' [bpf] symbols are new
    const programs: Record<string, Program> = {};
    for (const p of Object.values(spec.programs)) {
      if (p.autoload) programs[p.name] = new Program(this, p);
    }
    this.programs = programs;
    this.maps = this.buildMaps();
  }

  /** @internal */
  get native(): BpfObject {
    this.assertOpen('use');
    return this.obj!;
  }

  /** Whether close() has begun. */
  get closed(): boolean {
    return this.state !== 'open';
  }

  /** The loaded program named `name`. */
  program(name: string): Program {
    this.assertOpen(`attach "${name}"`);
    const p = this.programs[name];
    if (p) return p;
    const spec = this.spec.programs[name];
    if (spec) throw new LbcError('LBC_INVALID_ARGUMENT', `attach "${name}" of "${this.name}": the program was not loaded (autoload off); enable it with programs: { ${name}: { autoload: true } }`);
    this.spec.program(name, 'attach'); // throws NotFoundError with did-you-mean
    throw new NotFoundError(`attach "${name}": no such program`);
  }

  private buildMaps(): Record<string, LbcMap> {
    const btf = this.spec.btf;
    const ctx: MapContext = {
      btf,
      codecs: this.spec.codecs,
      assertOpen: (what) => this.assertOpen(what, true),
      readGlobal: (name) => this.readGlobal(name),
      track: (c) => this.resources.add(c),
      warn: this.spec.warn,
      structTypes: (size) => this.spec.structTypes(size).map((s) => s.name),
    };
    const maps: Record<string, LbcMap> = {};
    for (const info of this.obj!.maps()) {
      if (info.internal) continue;
      const carrier = btf.lbcCarrier(info.name);
      let m: LbcMap;
      switch (info.type) {
        case MapType.PERF_EVENT_ARRAY:
        case MapType.RINGBUF:
          m = new EventMap(ctx, info, this.spec.eventTypes.get(info.name) ?? carrier.eventType ?? 0, carrier.eventN || 64);
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
    return maps;
  }

  /** Throws LBC_CLOSED once closed (maps stay readable while close() delivers buffered events). */
  assertOpen(what: string, allowClosing = false): void {
    if (!this.obj || this.state === 'closed' || (this.state === 'closing' && !allowClosing)) {
      throw new LbcError('LBC_CLOSED', `${what}: "${this.name}" is closed`);
    }
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
    this.assertOpen(`read global "${name}"`, true);
    const hit = this.spec.findGlobal(name);
    if (!hit) throw new NotFoundError(`read global "${name}" of "${this.name}": no such global`);
    const { buf, dv } = this.sectionData(hit.sec);
    return this.spec.codecs.decoder(hit.v.type)(buf, dv, hit.v.offset);
  }

  /** Write a .bss or .data global while running. `const volatile` (.rodata) globals are set before load. */
  writeGlobal(name: string, value: unknown): void {
    this.assertOpen(`write global "${name}"`);
    const hit = this.spec.findGlobal(name);
    if (!hit) throw new NotFoundError(`write global "${name}" of "${this.name}": no such global`);
    if (hit.sec.section.startsWith('.rodata')) {
      throw new LbcError('LBC_INVALID_ARGUMENT', `write global "${name}" of "${this.name}": it is const (.rodata) and frozen after load; pass it in { globals } before start()`);
    }
    const live = this.sectionData(hit.sec);
    this.spec.codecs.encoder(hit.v.type)(value, live.buf, live.dv, hit.v.offset);
    if (!live.mapped) native().mapUpdate(this.obj!.mapFd(hit.sec.map.name), Buffer.alloc(4), live.buf, 0);
  }

  /** @internal keep one link per (program, target): attaching twice returns the first link. */
  keep(key: string, prog: string, make: () => Link): Link {
    const existing = this.links.get(key);
    if (existing) return existing.link;
    const link = make();
    this.links.set(key, { prog, link });
    return link;
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

  /** Detach every link, stop every consumer (delivering what is buffered), free maps and programs. Idempotent. */
  close(): void {
    if (this.state !== 'open') return;
    this.state = 'closing';
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
    for (const sec of this.spec.globalSections.values()) sec.live = undefined; // unmapped by close
    this.obj?.close();
    this.obj = undefined;
    if (errors.length) throw errors[0];
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}

/** libbpf log lines that name a cause (not the generic "failed to load object" ones). */
export function causeLines(log: string, max = 3): string[] {
  const out: string[] = [];
  for (const raw of log.split('\n')) {
    const l = raw.replace(/^libbpf: /, '').trim();
    if (!l || /-- (BEGIN|END) PROG LOAD LOG --/.test(l)) continue;
    if (/failed to load object|failed to load BPF skeleton|^prog '[^']+': failed to load: /.test(l)) continue;
    if (/fail|error|invalid|not found|unsupported|unknown|can't|cannot|missing|mismatch|unrecognized|no such|too large|not supported|doesn't|isn't/i.test(l)) {
      if (!out.includes(l)) out.push(l);
      if (out.length >= max) break;
    }
  }
  return out;
}

/** The error for a failed bpf_object__load: the verifier's summary, the missing feature, or libbpf's cause line. */
export function loadError(e: unknown, spec: ObjectSpec): LbcError {
  if (!isNativeFailure(e)) return e as LbcError;
  const log = e.libbpfLog ?? '';
  // The verifier log sits between markers; a huge log may have lost its beginning.
  const begin = /prog '([^']+)': -- BEGIN PROG LOAD LOG --\n/.exec(log);
  const endAt = log.indexOf('-- END PROG LOAD LOG --');
  const vlog = begin ? log.slice(begin.index + begin[0].length, endAt > begin.index ? endAt : undefined)
    : endAt >= 0 ? log.slice(0, endAt) : '';
  const failedProg = begin?.[1] ?? /prog '([^']+)': (?:BPF program load failed|failed to load)/.exec(log)?.[1]
    ?? /prog '([^']+)': /.exec(log)?.[1];
  const info = failedProg ? spec.programs[failedProg] : undefined;
  const sec = info ? ` (SEC("${info.section}"))` : '';
  const what = `load program "${failedProg}"${sec}`;
  const causes = causeLines(log);
  const kind = info ? sectionInfo(info.section).kind : '';
  const ext = externError(e, `load "${spec.name}"`);
  if (ext) return ext;
  // A missing attach target of fentry/fexit/tp_btf/lsm: libbpf names it before loading.
  const missingTarget = /failed to find kernel BTF type ID of '([^']+)'|attach target '([^']+)' not found|failed to resolve target BTF/.exec(log);
  if (info && missingTarget) {
    const target = missingTarget[1] ?? missingTarget[2] ?? info.attachTarget ?? '?';
    const isTp = kind === 'tp_btf';
    return new NotFoundError(
      `${what}: this kernel has no ${isTp ? 'tracepoint' : 'function'} "${target}" in its BTF (libbpf: ${causes[0] ?? missingTarget[0]}); ` +
      `skip it with programs: { ${info.name}: false }${isTp ? ', or use its raw_tp/tp twin' : ', or set another one with programs: { ' + info.name + ': { attachTarget: "func" } }'}`,
      { errno: e.errno, libbpfLog: log });
  }
  if (info && !info.attachTarget && ['fentry', 'fexit', 'fmod_ret', 'tp_btf', 'lsm'].includes(kind) && /attach|target/i.test(causes.join(' '))) {
    return new LbcError('LBC_LOAD',
      `${what}: no attach target (SEC("${kind}") names none); set it before load: programs: { ${info.name}: { attachTarget: "func" } } (libbpf: ${causes[0]})`,
      { errno: e.errno, libbpfLog: log });
  }
  const TRAMPOLINE = ['fentry', 'fexit', 'fmod_ret', 'lsm', 'lsm.s', 'fentry.s', 'fexit.s', 'fmod_ret.s', 'freplace', 'tp_btf', 'iter'];
  if (info && TRAMPOLINE.includes(kind) && (e.errno === 1 || e.errno === 524 || e.errno === EOPNOTSUPP || e.errno === 22) && !/R\d/.test(vlog)) {
    const alternatives = alternativesFor(kind, info.attachTarget);
    return new UnsupportedError(
      `${what}: kernel refused ${kind} programs (${e.message}); BPF trampolines need ` +
      'CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS (fentry/fexit) and CONFIG_BPF_LSM with "bpf" in lsm= (LSM)' +
      (alternatives.length ? `; this kernel accepts: ${alternatives.join(', ')}` : '') +
      `; or skip it with programs: { ${info.name}: false }`,
      kind.startsWith('lsm') ? 'CONFIG_BPF_LSM' : 'BPF trampoline (fentry/fexit)',
      alternatives, { errno: e.errno, libbpfLog: log });
  }
  if (vlog.trim()) {
    const lines = vlog.trimEnd().split('\n');
    const meaningful = lines.filter((l) => l.trim() && !/^processed \d+ insns|^verification time|^stack depth|^\s*$|^mark_precise|^last_idx|^regs=/.test(l));
    // "BPF program is too large" / loops: the verifier says so once, not on the last line.
    const special = lines.find((l) => /BPF program is too large|infinite loop detected|back-edge from insn|unreachable insn|loop is not bounded/.test(l));
    const last = special ?? meaningful[meaningful.length - 1] ?? lines[lines.length - 1] ?? '';
    const where = [...lines].reverse().find((l) => /@ \S+:\d+\s*$/.test(l));
    const loc = where ? ` at ${/@ (\S+:\d+)\s*$/.exec(where)![1]}` : sourceLine(lines, spec.options.source);
    const hint = e.errno === 7 || /too large/.test(last) ? '; the verifier gave up after 1M instructions: bound the loop (a constant trip count, bpf_loop(), or #pragma unroll)' : '';
    return new VerifierError(
      `load program "${failedProg}"${sec}: verifier rejected it${loc}: ${last.trim()}${hint} (${Math.max(0, lines.length - 1)} lines omitted)`,
      failedProg ?? '?', vlog, e.errno);
  }
  if (e.errno === 1 || e.errno === 13) {
    return new PermissionError(`load "${spec.name}": ${e.message}; run as root or with CAP_BPF and CAP_PERFMON`, 'CAP_BPF', { errno: e.errno, libbpfLog: log });
  }
  const tail = causes.length ? causes : log.trim().split('\n').slice(-3).map((l) => l.replace(/^libbpf: /, ''));
  return new LbcError('LBC_LOAD', `load "${spec.name}": ${e.message}${tail.length ? `; libbpf: ${tail.join('; ')}` : ''}`, { errno: e.errno, libbpfLog: log });
}

/**
 * " at file:line" from the last source annotation of a verifier log that has no "@ file:line"
 * (older kernels print only "; return *v;"): the line of the source holding that text, when
 * exactly one does.
 */
function sourceLine(lines: string[], source?: { text: string; file: string }): string {
  if (!source) return '';
  const ann = [...lines].reverse().find((l) => /^; \S/.test(l));
  const code = ann?.slice(2).trim();
  if (!code) return '';
  const hits = source.text.split('\n').map((l, i) => [l.trim(), i + 1] as const).filter(([l]) => l === code || l.includes(code));
  return hits.length === 1 ? ` at ${source.file}:${hits[0]![1]}` : '';
}

/** Alternatives this kernel accepts for a program kind, asked of the feature probes. */
export function alternativesFor(kind: string, target?: string): string[] {
  const f = kernelProbes();
  const out: string[] = [];
  const fn = target?.split('+')[0];
  const entry = kind === 'kprobe' || kind === 'fentry' || kind === 'fentry.s';
  const exit = kind === 'kretprobe' || kind === 'fexit' || kind === 'fexit.s';
  if ((entry || exit) && fn) {
    if (!kind.startsWith('k') && f.kprobes && f.kprobeAttachable(fn)) out.push(`${entry ? 'kprobe' : 'kretprobe'}/${fn}`);
    if (kind.startsWith('k') && (entry ? f.fentryAttachable(fn) : f.fexitAttachable(fn))) out.push(`${entry ? 'fentry' : 'fexit'}/${fn}`);
  }
  if (kind === 'tp_btf' && target) {
    if (f.rawTracepoint(target)) out.push(`raw_tp/${target}`);
  }
  out.push('tracepoints (tp/category/name)');
  if (kind !== 'tp_btf' && kind !== 'raw_tp') out.push('raw_tp');
  return out;
}

/** An LbcError for a failed native call: errno picks the class; the message names `what` and the cause. */
export function wrapNative(e: unknown, what: string, fallback: LbcErrorCode = 'LBC_ATTACH'): LbcError {
  if (!isNativeFailure(e)) return e as LbcError;
  const f = e as NativeFailure;
  const reason = f.message.replace(/^\S+(?: \S+)?: /, '');
  const causes = causeLines(f.libbpfLog ?? '');
  const detail = causes.length ? ` (libbpf: ${causes.join('; ')})` : '';
  const opts = { errno: f.errno, libbpfLog: f.libbpfLog };
  switch (f.errno) {
    case 2: return new NotFoundError(`${what}: ${reason}${detail}`, opts);
    case 1: case 13: return new PermissionError(`${what}: ${reason}${detail}; run as root or with CAP_BPF and CAP_PERFMON`, 'CAP_BPF', opts);
    case 17: return new LbcError(fallback, `${what}: the program is already attached there (by another process or object); detach it first`, opts);
    default: return new LbcError(fallback, `${what}: ${reason}${detail}`, opts);
  }
}
