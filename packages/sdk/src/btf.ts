/**
 * Read-only view over an object's BTF as exported by the native layer.
 * Pure: works on plain data, so it is testable without the kernel.
 */
import type { BtfType, BtfTypes } from '@tslcc/native';

const MODIFIERS = new Set(['typedef', 'const', 'volatile', 'restrict', 'type_tag']);

export class Btf {
  readonly types: BtfTypes;
  private byName?: Map<string, BtfType[]>;
  private carriers?: Map<string, { name: string; type: number; offset: number; size: number }>;

  constructor(types: BtfTypes) {
    this.types = types;
  }

  get(id: number): BtfType | null {
    return this.types[id] ?? null;
  }

  /** Follow typedefs and qualifiers to the underlying type; null for void. */
  resolve(id: number): BtfType | null {
    let t = this.get(id);
    for (let n = 0; t && MODIFIERS.has(t.kind) && n < 64; n++) t = this.get(t.type ?? 0);
    return t;
  }

  /** Size in bytes of a type id (0 for void/func). */
  sizeof(id: number): number {
    const t = this.resolve(id);
    if (!t) return 0;
    switch (t.kind) {
      case 'ptr': return 8;
      case 'array': return (t.nelems ?? 0) * this.sizeof(t.type ?? 0);
      case 'var': return this.sizeof(t.type ?? 0);
      default: return t.size ?? 0;
    }
  }

  /** C spelling of a type, for messages and generated docs: "struct data_t", "u32 *", "char[16]". */
  typeName(id: number): string {
    const t = this.get(id);
    if (!t) return 'void';
    switch (t.kind) {
      case 'struct': case 'union': case 'enum': case 'enum64':
        return `${t.kind === 'enum64' ? 'enum' : t.kind} ${t.name || '(anon)'}`;
      case 'ptr': return `${this.typeName(t.type ?? 0)} *`;
      case 'array': return `${this.typeName(t.type ?? 0)}[${t.nelems}]`;
      case 'const': case 'volatile': case 'restrict': return `${t.kind} ${this.typeName(t.type ?? 0)}`;
      case 'type_tag': return this.typeName(t.type ?? 0);
      case 'func_proto': return 'function';
      default: return t.name || t.kind;
    }
  }

  named(name: string, kind?: BtfType['kind']): BtfType | undefined {
    if (!this.byName) {
      this.byName = new Map();
      for (const t of this.types) {
        if (!t || !t.name) continue;
        const list = this.byName.get(t.name);
        if (list) list.push(t); else this.byName.set(t.name, [t]);
      }
    }
    return this.byName.get(name)?.find((t) => !kind || t.kind === kind);
  }

  /** The variables of a data section (".rodata", ".bss", ".lbc.types", ...), by name. */
  sectionVars(section: string): Map<string, { name: string; type: number; offset: number; size: number }> {
    const out = new Map<string, { name: string; type: number; offset: number; size: number }>();
    for (const t of this.types) {
      if (!t || t.kind !== 'datasec' || t.name !== section) continue;
      for (const v of t.vars ?? []) {
        const vt = this.get(v.type);
        if (vt?.kind === 'var') out.set(vt.name, { name: vt.name, type: vt.type ?? 0, offset: v.offset, size: v.size });
      }
    }
    return out;
  }

  /**
   * What the LBC_* macros left in ".lbc.types" for a map: the event type of an event map
   * (`T (*__lbc_event_NAME)[N]`, with N) or the base of a histogram.
   */
  lbcCarrier(map: string): { eventType?: number; eventN?: number; hist?: 2 | 10 } {
    this.carriers ??= this.sectionVars('.lbc.types');
    const ev = this.carriers.get(`__lbc_event_${map}`);
    if (ev) {
      const arr = this.resolve(this.resolve(ev.type)?.type ?? 0);
      if (arr?.kind === 'array') return { eventType: arr.type ?? 0, eventN: arr.nelems ?? 0 };
    }
    if (this.carriers.has(`__lbc_hist2_${map}`)) return { hist: 2 };
    if (this.carriers.has(`__lbc_hist10_${map}`)) return { hist: 10 };
    return {};
  }
}
