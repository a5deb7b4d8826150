/**
 * TypeScript declarations generated from an object's BTF (what bpf2go and libbpf-rs
 * skeletons do for Go and Rust): an interface per struct/union reachable from the maps,
 * the event types and the globals; the enumerators as `as const` objects; a `<Name>Maps`
 * interface for `LbcBase<M>` and a `<Name>Globals` interface. Every type is exactly what
 * decode.ts produces for the same BTF and `int64` option, so a misspelt field or a u64
 * read as `number` fails to type-check instead of misbehaving at run time.
 *
 * Pure over (BTF, map list): generateTypes() only opens the ELF, never the kernel.
 */
import type { BtfType, MapInfo } from '@tslcc/native';
import { Btf } from './btf.js';
import { isCharArray } from './decode.js';
import { MapType } from './maps.js';
import { native } from './native.js';

export interface TypegenOptions {
  /** Program name: prefixes the `<Name>Maps` and `<Name>Globals` interfaces. Default "prog". */
  name?: string;
  /** Must match the `int64` option given to LbcBase/CodecFactory. Default 'bigint'. */
  int64?: 'bigint' | 'number';
  /** The command that generated the file, for the header. Default "tslcc compile --types". */
  command?: string;
}

/** The SDK classes a generated module may name; never used for a C type. */
const SDK_NAMES = ['EventMap', 'KeyValueMap', 'HistMap', 'StackMap', 'LbcMap'] as const;
const PERCPU = new Set<number>([MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH]);
const IDENT = /^[A-Za-z_$][\w$]*$/;

/**
 * A TypeScript module (declarations plus const enumerator objects) describing what the
 * SDK decodes from the object `elf`: import it next to the program and write
 * `class T extends LbcBase<NameMaps>`.
 *
 * Naming: `struct event` → `Event`, `struct data_t` → `Data` (snake_case to PascalCase, a
 * trailing `_t` dropped); an anonymous struct named by a typedef takes the typedef's name;
 * other anonymous structs are written inline. A name already taken (by another C type or
 * by an SDK class the module imports) keeps its `_t` (`DataT`), else gets the C kind
 * appended (`EventMapStruct`), then a number. Output is deterministic: types in
 * BTF id order, maps by name, globals in section order.
 *
 * @throws the native open error if `elf` is not a BPF object.
 * @example
 * ```ts
 * fs.writeFileSync('opensnoop.types.ts', generateTypes(compiled.elf, { name: 'opensnoop' }));
 * ```
 */
export function generateTypes(elf: Buffer, opts: TypegenOptions = {}): string {
  const obj = new (native().BpfObject)(elf, opts.name ?? 'prog', {});
  try {
    return generateTypesFromBtf(new Btf(obj.btf() ?? [null]), obj.maps(), opts);
  } finally {
    obj.close();
  }
}

/** generateTypes() over already-parsed BTF and libbpf's map list (no ELF, no addon). */
export function generateTypesFromBtf(btf: Btf, maps: MapInfo[], opts: TypegenOptions = {}): string {
  return new TypeGen(btf, maps, opts).run();
}

/** snake_case C name to a PascalCase TypeScript name (`data_t` → `Data`); "" if nothing usable is left. */
export function pascalName(c: string): string {
  const words = c.replace(/_t$/, '').split(/[^A-Za-z0-9]+/).filter(Boolean);
  // TCP_STATE → TcpState, as tcp_state would be; mixedCase words keep their case.
  const s = words.map((w) => w[0]!.toUpperCase() + (w === w.toUpperCase() ? w.slice(1).toLowerCase() : w.slice(1))).join('');
  return /^[0-9]/.test(s) ? `T${s}` : s;
}

const prop = (n: string) => (IDENT.test(n) ? n : JSON.stringify(n));

class TypeGen {
  private readonly big: boolean;
  private readonly prefix: string;
  /** Anonymous struct/union/enum id → the first typedef naming it. */
  private readonly typedefNames = new Map<number, string>();
  /** Named struct/union/enum ids reachable from the maps and globals. */
  private readonly reached = new Set<number>();
  private readonly names = new Map<number, string>();
  private readonly sdkUsed = new Set<string>();

  constructor(private readonly btf: Btf, private readonly maps: MapInfo[], private readonly opts: TypegenOptions) {
    this.big = (opts.int64 ?? 'bigint') === 'bigint';
    this.prefix = pascalName(opts.name ?? 'prog') || 'Prog';
    for (const t of btf.types) {
      if (t?.kind !== 'typedef') continue;
      const target = this.btf.resolve(t.id);
      if (target && !target.name && isNamedKind(target) && !this.typedefNames.has(target.id)) this.typedefNames.set(target.id, t.name);
    }
  }

  run(): string {
    const mapLines = this.mapEntries();
    const globals = this.globalEntries();
    // Names are assigned in BTF id order, so the same object always gives the same names.
    const ids = [...this.reached].sort((a, b) => a - b);
    const taken = new Set<string>([...SDK_NAMES, `${this.prefix}Maps`, `${this.prefix}Globals`]);
    for (const id of ids) {
      const t = this.btf.get(id)!;
      const c = t.name || this.typedefNames.get(id) || '';
      const base = pascalName(c) || 'Anon';
      // Taken: keep the `_t` (data_t → DataT beside struct data), then name the kind, then count.
      let n = base;
      if (taken.has(n) && /_t$/.test(c)) n = pascalName(`${c}_`) || base;
      if (taken.has(n)) n = `${base}${kindWord(t)}`;
      for (let i = 2; taken.has(n); i++) n = `${base}${i}`;
      taken.add(n);
      this.names.set(id, n);
    }

    const out: string[] = [];
    const cmd = this.opts.command ?? 'tslcc compile --types';
    out.push(`// Generated from the BTF of "${this.opts.name ?? 'prog'}" by \`${cmd}\` (generateTypes() of @tslcc/sdk). Do not edit.`);
    out.push(`// Decoded with int64: '${this.big ? 'bigint' : 'number'}': pass the same option to LbcBase.`);
    const sdk = SDK_NAMES.filter((n) => this.sdkUsed.has(n));
    if (sdk.length) out.push(`import type { ${sdk.join(', ')} } from '@tslcc/sdk';`);
    for (const id of ids) {
      const t = this.btf.get(id)!;
      out.push('');
      out.push(t.kind === 'enum' || t.kind === 'enum64' ? this.enumConst(t) : this.iface(t));
    }
    out.push('');
    out.push(`/** The maps of "${this.opts.name ?? 'prog'}" as LbcBase exposes them: \`class T extends LbcBase<${this.prefix}Maps>\`. */`);
    out.push(`export interface ${this.prefix}Maps {`, ...mapLines.map((l) => this.fill(l)), '}');
    out.push('');
    out.push(`/** The globals of "${this.opts.name ?? 'prog'}" as readGlobal() decodes them${this.big ? ' (writes also take numbers for bigint fields)' : ''}. */`);
    out.push(`export interface ${this.prefix}Globals {`, ...globals.map((l) => this.fill(l)), '}');
    return `${out.join('\n')}\n`;
  }

  /** Same choice of class as LbcBase.buildMaps(). */
  private mapEntries(): string[] {
    const lines: string[] = [];
    for (const m of [...this.maps].filter((x) => !x.internal).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const carrier = this.btf.lbcCarrier(m.name);
      let ts: string;
      let cls: (typeof SDK_NAMES)[number];
      switch (m.type) {
        case MapType.PERF_EVENT_ARRAY:
        case MapType.RINGBUF:
          cls = 'EventMap';
          // Without an LBC_* carrier the SDK hands out the raw record as hex.
          ts = `EventMap<${carrier.eventType ? this.type(carrier.eventType, '  ') : 'string'}>`;
          break;
        case MapType.STACK_TRACE:
          cls = 'StackMap';
          ts = 'StackMap';
          break;
        default:
          if (carrier.hist) {
            cls = 'HistMap';
            ts = 'HistMap';
          } else if (m.btfKeyTypeId && m.btfValueTypeId) {
            cls = 'KeyValueMap';
            const v = this.type(m.btfValueTypeId, '  ');
            ts = `KeyValueMap<${this.type(m.btfKeyTypeId, '  ')}, ${PERCPU.has(m.type) ? arrayOf(v) : v}>`;
          } else {
            cls = 'LbcMap';
            ts = 'LbcMap';
          }
      }
      this.sdkUsed.add(cls);
      lines.push(`  ${prop(m.name)}: ${ts}; // ${m.typeName}${carrier.eventType ? ` of ${this.btf.typeName(carrier.eventType)}` : ''}`);
    }
    return lines;
  }

  private globalEntries(): string[] {
    const lines: string[] = [];
    for (const m of this.maps) {
      if (!m.internal) continue;
      const sec = this.btf.get(m.btfValueTypeId);
      if (sec?.kind !== 'datasec') continue;
      for (const v of this.btf.sectionVars(sec.name).values()) {
        if (v.name.startsWith('__lbc_')) continue;
        lines.push(`  ${prop(v.name)}: ${this.type(v.type, '  ')}; // ${this.cType(v.type)} (${sec.name})`);
      }
    }
    return lines;
  }

  private intType(size: number | undefined): string {
    switch (size) {
      case 1: case 2: case 4: return 'number';
      case 8: case 16: return this.big ? 'bigint' : 'number';
      default: return 'null';
    }
  }

  /** The TS type of what expr() in decode.ts yields for type `id`. */
  private type(id: number, indent: string): string {
    const t = this.btf.resolve(id);
    if (!t) return 'null';
    switch (t.kind) {
      case 'int': return t.bool ? 'boolean' : this.intType(t.size);
      case 'ptr': return this.big ? 'bigint' : 'number';
      case 'float': return t.size === 4 || t.size === 8 ? 'number' : 'null';
      case 'enum': case 'enum64':
        if (this.named(t)) this.reached.add(t.id);
        return this.intType(t.size ?? 4);
      case 'array': {
        const et = this.btf.resolve(t.type ?? 0);
        if (et?.kind === 'int' && et.size === 1 && isCharArray(this.btf, t.type ?? 0)) return 'string';
        return arrayOf(this.type(t.type ?? 0, indent));
      }
      case 'struct': case 'union':
        if (this.named(t)) {
          if (!this.reached.has(t.id)) {
            this.reached.add(t.id);
            this.fields(t, '  '); // reach what its members name
          }
          return `\u0001${t.id}\u0002`;
        }
        return `{\n${this.fields(t, `${indent}  `).join('\n')}\n${indent}}`;
      default:
        return 'null';
    }
  }

  /** The C spelling for a comment; an enum points at its enumerator object. */
  private cType(id: number): string {
    const t = this.btf.resolve(id);
    if ((t?.kind !== 'enum' && t?.kind !== 'enum64') || !this.named(t)) return this.btf.typeName(id);
    this.reached.add(t.id); // also for bitfields, which never reach type()
    return `${this.btf.typeName(id)}: see \u0001${t.id}\u0002`;
  }

  private named(t: BtfType): boolean {
    return !!t.name || this.typedefNames.has(t.id);
  }

  /** Property lines of a struct/union, anonymous members flattened as the decoder does. */
  private fields(t: BtfType, indent: string): string[] {
    const lines: string[] = [];
    for (const m of t.members ?? []) {
      if (!m.name) {
        const mt = this.btf.resolve(m.type);
        if (mt?.kind === 'struct' || mt?.kind === 'union') lines.push(...this.fields(mt, indent));
        continue; // unnamed bitfield padding: the decoder spreads a number, which adds nothing
      }
      const c = this.cType(m.type);
      if (m.bitSize) {
        lines.push(`${indent}${prop(m.name)}: ${this.big && m.bitSize > 32 ? 'bigint' : 'number'}; // ${c} : ${m.bitSize}`);
        continue;
      }
      lines.push(`${indent}${prop(m.name)}: ${this.type(m.type, indent)}; // ${c}`);
    }
    return lines;
  }

  private iface(t: BtfType): string {
    const body = this.fields(t, '  ').map((l) => this.fill(l));
    const c = t.name ? `${t.kind} ${t.name}` : `${t.kind} (anon), typedef ${this.typedefNames.get(t.id)}`;
    return [`/** ${c}: ${t.size ?? 0} bytes. */`, `export interface ${this.names.get(t.id)} {`, ...body, '}'].join('\n');
  }

  private enumConst(t: BtfType): string {
    const c = t.name ? `enum ${t.name}` : `enum (anon), typedef ${this.typedefNames.get(t.id)}`;
    const lines = [`/** ${c}: its fields decode to the value; compare with these. */`, `export const ${this.names.get(t.id)} = {`];
    const bigLit = this.big && t.size === 8;
    for (const v of t.values ?? []) lines.push(`  ${prop(v.name)}: ${String(v.value)}${bigLit ? 'n' : ''},`);
    lines.push('} as const;');
    return lines.join('\n');
  }

  /** Replace the placeholders of named types, known only once every name is assigned. */
  private fill(s: string): string {
    return s.replace(/\u0001(\d+)\u0002/g, (_, id: string) => this.names.get(Number(id)) ?? 'unknown');
  }
}

function isNamedKind(t: BtfType): boolean {
  return t.kind === 'struct' || t.kind === 'union' || t.kind === 'enum' || t.kind === 'enum64';
}

function kindWord(t: BtfType): string {
  return t.kind === 'union' ? 'Union' : t.kind === 'struct' ? 'Struct' : 'Enum';
}

function arrayOf(t: string): string {
  return t.includes('|') ? `(${t})[]` : `${t}[]`;
}
