/**
 * The opened object before load: programs, maps, BTF types and globals, all still
 * changeable (libbpf's bpf_object between open and load). Nothing here touches the kernel
 * except the feature probes a `beforeLoad` hook chooses to ask.
 *
 * @example
 * ```ts
 * const spec = openObject(elf, { name: 'biolatency' });
 * if (!spec.features.tpBtf('block_rq_issue')) spec.programs.block_rq_issue_btf.autoload = false;
 * spec.maps.starts.maxEntries = 10240;
 * const obj = spec.load();
 * obj.programs.block_rq_issue.attach();
 * ```
 */
import type { BpfObject, MapInfo, ProgramInfo } from '@tslcc/native';
import { Btf } from '../btf.js';
import { CodecFactory } from '../decode.js';
import { didYouMean, LbcError, NotFoundError } from '../errors.js';
import { MapType } from '../maps.js';
import { native } from '../native.js';
import { checkBpfPermission } from '../system.js';
import { kernelProbes, type KernelProbes } from './features.js';
import { LoadedObject, loadError, wrapNative } from './loaded.js';
import { sectionInfo, type SectionInfo } from './sections.js';

export interface OpenObjectOptions {
  /** Object name (messages, kernel program names). Default "prog". */
  name?: string;
  /** Kernel BTF to relocate against instead of /sys/kernel/btf/vmlinux. */
  btfCustomPath?: string;
  /** How 64-bit integers decode: 'bigint' (default, lossless) or 'number'. */
  int64?: 'bigint' | 'number';
  /** Where warnings go (default: stderr, prefixed "tslcc: warning:"). */
  onWarning?: (message: string) => void;
  /**
   * The source the object was compiled from, and its name in messages: older kernels (6.1) print
   * verifier source annotations without "@ file:line", so the line is found in the text.
   */
  source?: { text: string; file: string };
}

/** One program before load. Setting a property changes what load() does. */
export class ProgramSpec {
  readonly name: string;
  readonly section: string;
  /** libbpf's program type name ("kprobe", "tracing", "raw_tracepoint", ...). */
  readonly type: string;
  private _autoload: boolean;
  private _attachTarget?: string;
  private readonly obj: BpfObject;
  private readonly owner: string;

  /** @internal */
  constructor(obj: BpfObject, info: ProgramInfo, owner: string) {
    this.obj = obj;
    this.owner = owner;
    this.name = info.name;
    this.section = info.section;
    this.type = info.typeName;
    this._autoload = info.autoload;
  }

  /** Load this program (default: true). A program not loaded is not attached either. */
  get autoload(): boolean {
    return this._autoload;
  }
  set autoload(v: boolean) {
    try {
      this.obj.setAutoload(this.name, !!v);
    } catch (e) {
      throw wrapNative(e, `set autoload of program "${this.name}" of "${this.owner}"`);
    }
    this._autoload = !!v;
  }

  /**
   * The kernel function (fentry/fexit/fmod_ret), tracepoint (tp_btf) or LSM hook this
   * program attaches to, overriding the SEC() name: libbpf-tools' bpf_program__set_attach_target
   * for `SEC("fentry/dummy")` programs whose target is chosen at run time.
   */
  get attachTarget(): string | undefined {
    return this._attachTarget ?? sectionInfo(this.section).target;
  }
  set attachTarget(func: string | undefined) {
    if (!func) return;
    try {
      this.obj.setAttachTarget(this.name, func);
    } catch (e) {
      throw wrapNative(e, `set attach target of program "${this.name}" of "${this.owner}" to "${func}"`);
    }
    this._attachTarget = func;
  }

  /** @internal the explicitly set target, if any */
  get explicitTarget(): string | undefined {
    return this._attachTarget;
  }

  /** What the SEC() name (and attach target) say about attaching it. */
  get sectionInfo(): SectionInfo {
    return sectionInfo(this.section, this._attachTarget);
  }
}

/** One map before load. */
export class MapSpec {
  readonly name: string;
  /** libbpf's map type name ("hash", "perf_event_array", ...). */
  readonly type: string;
  /** uapi map type number. */
  readonly typeId: number;
  private info: MapInfo;
  private readonly obj: BpfObject;
  private readonly owner: string;

  /** @internal */
  constructor(obj: BpfObject, info: MapInfo, owner: string) {
    this.obj = obj;
    this.owner = owner;
    this.info = info;
    this.name = info.name;
    this.type = info.typeName;
    this.typeId = info.type;
  }

  private set(what: string, f: () => void): void {
    try {
      f();
    } catch (e) {
      throw wrapNative(e, `set ${what} of map "${this.name}" of "${this.owner}"`);
    }
    this.info = this.obj.maps().find((m) => m.name === this.name) ?? this.info;
  }

  get maxEntries(): number {
    return this.info.maxEntries;
  }
  /** bpf_map__set_max_entries: e.g. a map declared with max_entries 0 in the C, sized by the loader. */
  set maxEntries(n: number) {
    checkSize('max_entries', this.name, n);
    this.set(`max_entries to ${n}`, () => this.obj.setMapMaxEntries(this.name, n));
  }

  get valueSize(): number {
    return this.info.valueSize;
  }
  /** bpf_map__set_value_size: e.g. a stack map's `perf_max_stack_depth * sizeof(u64)`. */
  set valueSize(n: number) {
    checkSize('value_size', this.name, n);
    this.set(`value_size to ${n}`, () => this.obj.setMapValueSize(this.name, n));
  }

  get keySize(): number {
    return this.info.keySize;
  }
  set keySize(n: number) {
    checkSize('key_size', this.name, n);
    this.set(`key_size to ${n}`, () => this.obj.setMapKeySize(this.name, n));
  }
}

function checkSize(what: string, map: string, n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new LbcError('LBC_INVALID_ARGUMENT', `set ${what} of map "${map}": expected an integer from 0 to 2^32-1, got ${String(n)}`);
  }
}

export interface GlobalVar { name: string; type: number; offset: number; size: number }

/** A global-data section (.rodata, .data, .bss, .data.custom) and its variables. */
export interface GlobalSection {
  map: MapInfo;
  section: string;
  vars: Map<string, GlobalVar>;
  /** Our shared mapping of the loaded map, while loaded. */
  live?: { buf: Buffer; dv: DataView; mapped: boolean };
}

/** The opened, not yet loaded object. `load()` hands it to the kernel. */
export class ObjectSpec {
  readonly name: string;
  /** The object's BTF: every map key/value type, event type carrier, global and function. */
  readonly btf: Btf;
  /** Feature probes of the running kernel. */
  readonly features: KernelProbes = kernelProbes();
  /** Programs by name. */
  readonly programs: Readonly<Record<string, ProgramSpec>>;
  /** Maps by name (global-data maps excluded). */
  readonly maps: Readonly<Record<string, MapSpec>>;
  /** @internal */
  readonly codecs: CodecFactory;
  /** @internal */
  readonly globalSections = new Map<string, GlobalSection>();
  /** @internal event type ids chosen with setEventType */
  readonly eventTypes = new Map<string, number>();
  /** @internal */
  readonly warn: (message: string) => void;
  private obj?: BpfObject;
  private readonly opts: OpenObjectOptions;

  /** @internal use openObject() */
  constructor(obj: BpfObject, opts: OpenObjectOptions) {
    this.obj = obj;
    this.opts = opts;
    this.name = opts.name ?? 'prog';
    this.warn = opts.onWarning ?? ((m) => process.stderr.write(`tslcc: warning: ${m}\n`));
    const types = obj.btf();
    if (!types) throw new LbcError('LBC_LOAD', `open "${this.name}": the object has no BTF; compile with -g`);
    this.btf = new Btf(types);
    this.codecs = new CodecFactory(this.btf, { int64: opts.int64 });
    const programs: Record<string, ProgramSpec> = {};
    for (const p of obj.programs()) programs[p.name] = new ProgramSpec(obj, p, this.name);
    this.programs = programs;
    const maps: Record<string, MapSpec> = {};
    for (const m of obj.maps()) {
      if (m.internal) {
        const sec = this.btf.get(m.btfValueTypeId);
        if (sec?.kind === 'datasec') this.globalSections.set(sec.name, { map: m, section: sec.name, vars: this.btf.sectionVars(sec.name) });
        continue;
      }
      maps[m.name] = new MapSpec(obj, m, this.name);
      // Ring buffers must be a power-of-two number of pages; round up what the C asked for.
      if (m.type === MapType.RINGBUF) {
        let n = 4096;
        while (n < m.maxEntries) n *= 2;
        if (n !== m.maxEntries) obj.setMapMaxEntries(m.name, n);
      }
    }
    this.maps = maps;
  }

  /** @internal the native object, until load() takes it */
  get native(): BpfObject {
    if (!this.obj) throw new LbcError('LBC_CLOSED', `"${this.name}": the spec was loaded or closed; use the loaded object`);
    return this.obj;
  }

  /** The program named `name`, or a NotFoundError with did-you-mean. */
  program(name: string, what = 'configure program'): ProgramSpec {
    const p = this.programs[name];
    if (!p) throw new NotFoundError(`${what} "${name}" of "${this.name}": no such program${didYouMean(name, Object.keys(this.programs))}; programs: ${Object.keys(this.programs).join(', ') || '(none)'}`);
    return p;
  }

  /** The map named `name`, or a NotFoundError with did-you-mean. */
  map(name: string, what = 'configure map'): MapSpec {
    const m = this.maps[name];
    if (!m) throw new NotFoundError(`${what} "${name}" of "${this.name}": no such map${didYouMean(name, Object.keys(this.maps))}; maps: ${Object.keys(this.maps).join(', ') || '(none)'}`);
    return m;
  }

  /** Names of the globals a program may be configured with (.rodata, .data, .bss), `__lbc_*` excluded. */
  get globalNames(): string[] {
    return [...this.globalSections.values()].flatMap((s) => [...s.vars.keys()]).filter((n) => !n.startsWith('__lbc_'));
  }

  /** @internal */
  findGlobal(name: string): { sec: GlobalSection; v: GlobalVar } | undefined {
    for (const sec of this.globalSections.values()) {
      const v = sec.vars.get(name);
      if (v) return { sec, v };
    }
    return undefined;
  }

  /** Set initial values of globals (`const volatile` config in .rodata, .data, .bss) before load. */
  setGlobals(values: Record<string, unknown>): void {
    const obj = this.native;
    const pending = new Map<string, Buffer>();
    for (const [name, value] of Object.entries(values)) {
      const hit = this.findGlobal(name);
      if (!hit) {
        const all = this.globalNames;
        throw new LbcError('LBC_INVALID_ARGUMENT',
          `set global "${name}" of "${this.name}": no such global${didYouMean(name, all)}; globals: ${all.join(', ') || '(none)'}`);
      }
      const { sec, v } = hit;
      let buf = pending.get(sec.map.name);
      if (!buf) {
        buf = obj.initialValue(sec.map.name) ?? Buffer.alloc(sec.map.valueSize);
        pending.set(sec.map.name, buf);
      }
      try {
        this.codecs.encoder(v.type)(value, buf, new DataView(buf.buffer, buf.byteOffset, buf.byteLength), v.offset);
      } catch (e) {
        throw new LbcError('LBC_INVALID_ARGUMENT', `set global "${name}" of "${this.name}" (${this.btf.typeName(v.type)}): ${(e as Error).message}`);
      }
    }
    for (const [map, buf] of pending) obj.setInitialValue(map, buf);
  }

  /**
   * The type records of event map `map` carry, by C name ("struct event", "event", a
   * typedef). For maps declared without LBC_PERF_OUTPUT/LBC_RINGBUF (libbpf-style programs).
   * @throws NotFoundError listing the object's struct types when `typeName` is not in its BTF
   *   (a struct used only as a local variable is not: compile with `events` on LbcBase, which
   *   adds a carrier, or put LBC_EVENT_TYPE(map, T) in the source).
   */
  setEventType(map: string, typeName: string): void {
    const m = this.map(map, 'set event type of map');
    if (m.typeId !== MapType.PERF_EVENT_ARRAY && m.typeId !== MapType.RINGBUF) {
      throw new LbcError('LBC_INVALID_ARGUMENT', `set event type of map "${map}" of "${this.name}": it is a ${m.type} map, not a perf event array or ring buffer`);
    }
    const id = this.findType(typeName);
    if (!id) {
      const structs = this.structTypes().map((s) => `${s.name} (${s.size} bytes)`);
      throw new NotFoundError(
        `set event type of map "${map}" of "${this.name}": no type "${typeName}" in the object's BTF` +
        `${didYouMean(typeName.replace(/^struct /, ''), this.structTypes().map((s) => s.name.replace(/^struct /, '')))}; ` +
        'a struct used only as a local variable leaves no BTF: pass it in LbcBase\'s { events } with the source at hand, or add LBC_EVENT_TYPE(map, T) to the source; ' +
        `struct types in the object: ${structs.join(', ') || '(none)'}`);
    }
    this.eventTypes.set(map, id);
  }

  /**
   * Struct and union types the object's BTF defines (named), with their sizes: the
   * program's own, not the kernel types CO-RE reads pulled in (those the kernel's BTF has).
   */
  structTypes(size?: number): Array<{ name: string; size: number; id: number }> {
    const out: Array<{ name: string; size: number; id: number }> = [];
    for (const t of this.btf.types) {
      if (!t || (t.kind !== 'struct' && t.kind !== 'union') || !t.name || t.name.startsWith('__lbc') || t.name.startsWith('____btf')) continue;
      if (size !== undefined && t.size !== size) continue;
      if (isKernelType(t.name, t.kind === 'union' ? 5 : 4)) continue;
      out.push({ name: `${t.kind} ${t.name}`, size: t.size ?? 0, id: t.id });
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  private findType(name: string): number {
    const m = /^(struct|union|enum)\s+(\w+)$/.exec(name.trim());
    if (m) return this.btf.named(m[2]!, m[1] as 'struct')?.id ?? 0;
    const t = this.btf.named(name.trim());
    return t && t.kind !== 'func' && t.kind !== 'var' ? t.id : 0;
  }

  /**
   * Create the maps, load and verify the programs.
   * @throws VerifierError (summary, full log), UnsupportedError, PermissionError, LbcError('LBC_LOAD')
   */
  load(): LoadedObject {
    const obj = this.native;
    this.checkSizes();
    checkBpfPermission(`load "${this.name}"`);
    try {
      obj.load();
    } catch (e) {
      throw loadError(e, this);
    }
    this.obj = undefined;
    return new LoadedObject(obj, this);
  }

  /**
   * Sizes the C left for the loader to set (libbpf-tools size maps from pid_max or the
   * stack depth at run time): the kernel's EINVAL would not say which, so say it here.
   */
  private checkSizes(): void {
    for (const m of Object.values(this.maps)) {
      if (m.maxEntries === 0 && !ZERO_ENTRIES_OK.has(m.typeId)) {
        throw new LbcError('LBC_INVALID_ARGUMENT',
          `load "${this.name}": map "${m.name}" (${m.type}) has max_entries 0: the C leaves it to the loader; set it before load with maps: { ${m.name}: { maxEntries: N } } (or spec.maps.${m.name}.maxEntries in beforeLoad)`);
      }
      if (m.valueSize === 0 && m.typeId === MapType.STACK_TRACE) {
        throw new LbcError('LBC_INVALID_ARGUMENT',
          `load "${this.name}": stack map "${m.name}" has value_size 0: the C leaves the stack depth to the loader; set it with maps: { ${m.name}: { valueSize: 127 * 8 } } (frames × 8 bytes)`);
      }
    }
  }

  /** Release the object without loading it. Idempotent. */
  close(): void {
    this.obj?.close();
    this.obj = undefined;
  }

  /** @internal options the spec was opened with */
  get options(): OpenObjectOptions {
    return this.opts;
  }
}

/**
 * Map types whose max_entries may be 0 before load: libbpf sizes perf event arrays to the
 * CPUs, struct_ops maps to 1, and local storage maps must be 0.
 */
const ZERO_ENTRIES_OK = new Set([MapType.PERF_EVENT_ARRAY, 24 /* sk_storage */, 26 /* struct_ops */, 28 /* inode_storage */, 29 /* task_storage */, 32 /* cgrp_storage */]);

const kernelTypes = new Map<string, boolean>();
/** Whether the running kernel's BTF has a struct (kind 4) or union (5) of this name. */
function isKernelType(name: string, kind: number): boolean {
  const k = `${kind}:${name}`;
  let v = kernelTypes.get(k);
  if (v === undefined) {
    try { v = native().kernelBtfFind(name, kind) > 0; } catch { v = false; }
    kernelTypes.set(k, v);
  }
  return v;
}

/** An extern the program declares and nothing provides (libbpf fails at open or load): name it and the guard. */
export function externError(e: unknown, what: string): NotFoundError | undefined {
  const log = (e as { libbpfLog?: string }).libbpfLog ?? '';
  const ext = /failed to find BTF for extern '([^']+)'[^\n]*|extern \((?:func |var )?ksym\) '([^']+)': not found in kernel[^\n]*/.exec(log);
  if (!ext) return undefined;
  const sym = ext[1] ?? ext[2]!;
  return new NotFoundError(
    `${what}: the program uses "${sym}", declared extern, which is neither in the object nor a kfunc or kernel symbol of this kernel (libbpf: ${ext[0].replace(/: -?\d+$/, '')}); ` +
    `check the name, or declare it __weak and test bpf_ksym_exists(${sym}) before calling it`,
    { errno: (e as { errno?: number }).errno, libbpfLog: log });
}

/**
 * Open a compiled CO-RE object (ELF bytes): parse its programs, maps and BTF. No kernel
 * access. Configure the returned spec, then `load()` it.
 * @throws LbcError when the bytes are not a BPF object (naming libbpf's reason)
 */
export function openObject(elf: Buffer, opts: OpenObjectOptions = {}): ObjectSpec {
  const name = opts.name ?? 'prog';
  let obj: BpfObject;
  try {
    obj = new (native().BpfObject)(elf, name, { btfCustomPath: opts.btfCustomPath });
  } catch (e) {
    throw externError(e, `open "${name}"`) ?? wrapNative(e, `open "${name}"`, 'LBC_LOAD');
  }
  try {
    return new ObjectSpec(obj, opts);
  } catch (e) {
    obj.close();
    throw e;
  }
}
