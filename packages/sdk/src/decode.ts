/**
 * Decoders and encoders generated from BTF, once per type, as straight-line JavaScript:
 * structs (nested, anonymous members flattened as in C), unions (every member), arrays,
 * char arrays as strings, enums, bitfields, pointers, floats.
 * 64-bit integers and pointers are BigInt by default (lossless); `int64: 'number'` trades
 * precision above 2^53 for speed.
 *
 * Enums decode to their integer value, as in C, whether or not an enumerator has that
 * value: a number, or for an 8-byte enum (BTF_KIND_ENUM64) a value that follows `int64`
 * (BigInt by default). One type per field means a generated TypeScript type can be exact
 * (see typegen.ts, which also exports the enumerators as `as const` objects, so code reads
 * `e.state === TaskState.TASK_RUNNING`); a name-or-number union could not be compared
 * without a typeof test. Encoders take a number, a BigInt or an enumerator name.
 */
import type { BtfType } from '@tslcc/native';
import { Btf } from './btf.js';

export interface CodecOptions {
  /** How 64-bit integers and pointers decode. Default 'bigint' (lossless). */
  int64?: 'bigint' | 'number';
}

/** Reads a value at byte offset `off` of `buf`. */
export type Decoder<T = unknown> = (buf: Buffer, dv: DataView, off: number) => T;
/** Writes `value` at byte offset `off` of `buf`. */
export type Encoder = (value: unknown, buf: Buffer, dv: DataView, off: number) => void;

const CHAR_NAMES = new Set(['char', 'signed char', 'unsigned char']);
const BYTE_TYPEDEFS = new Set(['u8', '__u8', 'uint8_t', 's8', '__s8', 'int8_t', 'u_char', 'unsigned char']);

function cstr(buf: Buffer, off: number, n: number): string {
  let end = buf.indexOf(0, off);
  if (end < 0 || end > off + n) end = off + n;
  return buf.toString('utf8', off, end);
}

/** Bitfield of up to 64 bits at bit offset `bit` from byte `off`; little-endian targets. */
function bitfield(buf: Buffer, off: number, bit: number, bits: number, signed: boolean, big: boolean): number | bigint {
  const first = off + (bit >> 3);
  const shift = bit & 7;
  const nbytes = (shift + bits + 7) >> 3;
  let v = 0n;
  for (let i = nbytes - 1; i >= 0; i--) v = (v << 8n) | BigInt(buf[first + i] ?? 0);
  v = (v >> BigInt(shift)) & ((1n << BigInt(bits)) - 1n);
  if (signed && v & (1n << BigInt(bits - 1))) v -= 1n << BigInt(bits);
  return big && bits > 32 ? v : Number(v);
}

function u128(dv: DataView, off: number, signed: boolean): bigint {
  const lo = dv.getBigUint64(off, true);
  const hi = signed ? dv.getBigInt64(off + 8, true) : dv.getBigUint64(off + 8, true);
  return (hi << 64n) | lo;
}

interface Gen {
  btf: Btf;
  big: boolean;
  fns: Map<number, string>;
  defs: string[];
}

export class CodecFactory {
  private readonly btf: Btf;
  private readonly big: boolean;
  private readonly decoders = new Map<number, Decoder>();
  private readonly encoders = new Map<number, Encoder>();

  constructor(btf: Btf, opts: CodecOptions = {}) {
    this.btf = btf;
    this.big = (opts.int64 ?? 'bigint') === 'bigint';
  }

  /** The decoder for a BTF type id, generated on first use. */
  decoder<T = unknown>(id: number): Decoder<T> {
    let d = this.decoders.get(id);
    if (!d) {
      d = this.buildDecoder(id);
      this.decoders.set(id, d);
    }
    return d as Decoder<T>;
  }

  /** The encoder for a BTF type id, generated on first use. */
  encoder(id: number): Encoder {
    let e = this.encoders.get(id);
    if (!e) {
      e = this.buildEncoder(id);
      this.encoders.set(id, e);
    }
    return e;
  }

  /** Generated source of the decoder (for inspection and tests). */
  decoderSource(id: number): string {
    return this.generate(id).src;
  }

  private generate(id: number): { src: string } {
    const g: Gen = { btf: this.btf, big: this.big, fns: new Map(), defs: [] };
    const root = fnFor(g, id);
    const src = `"use strict";\n${g.defs.join('\n')}\nreturn ${root};`;
    return { src };
  }

  private buildDecoder(id: number): Decoder {
    const { src } = this.generate(id);
    // eslint-disable-next-line @typescript-eslint/no-implied-eval
    return new Function('cstr', 'bitfield', 'u128', src)(cstr, bitfield, u128) as Decoder;
  }

  private buildEncoder(id: number): Encoder {
    const btf = this.btf;
    const build = (tid: number, path: string): Encoder => {
      const t = btf.resolve(tid);
      if (!t) return () => {};
      switch (t.kind) {
        case 'int': return intEncoder(t, path);
        case 'ptr': return (v, _b, dv, o) => dv.setBigUint64(o, toBig(v ?? 0, path), true);
        case 'float': return t.size === 4 ? (v, _b, dv, o) => dv.setFloat32(o, Number(v ?? 0), true) : (v, _b, dv, o) => dv.setFloat64(o, Number(v ?? 0), true);
        case 'enum': case 'enum64': {
          const byName = new Map((t.values ?? []).map((x) => [x.name, x.value]));
          const size = t.size ?? 4;
          return (v, _b, dv, o) => {
            const raw = typeof v === 'string' ? byName.get(v) : v;
            if (raw === undefined) throw new TypeError(`encode ${path}: unknown enumerator "${String(v)}"; expected one of ${[...byName.keys()].join(', ')}`);
            writeInt(dv, o, size, toBig(raw, path));
          };
        }
        case 'array': {
          const n = t.nelems ?? 0;
          const et = btf.resolve(t.type ?? 0);
          const es = btf.sizeof(t.type ?? 0);
          if (et?.kind === 'int' && et.size === 1 && isCharArray(btf, t.type ?? 0)) {
            return (v, b, _dv, o) => {
              b.fill(0, o, o + n);
              if (typeof v === 'string') b.write(v.slice(0, n), o, n, 'utf8');
              else if (v instanceof Uint8Array || Array.isArray(v)) for (let i = 0; i < Math.min(n, v.length); i++) b[o + i] = Number(v[i]);
            };
          }
          const el = build(t.type ?? 0, `${path}[]`);
          return (v, b, dv, o) => {
            const arr = (v ?? []) as ArrayLike<unknown>;
            for (let i = 0; i < n; i++) el(arr[i] ?? 0, b, dv, o + i * es);
          };
        }
        case 'struct': case 'union': {
          const fields: Array<{ name: string; off: number; enc: Encoder; bits: number; bitOff: number; flatten: boolean }> = [];
          for (const m of t.members ?? []) {
            fields.push({ name: m.name, off: m.bitOffset >> 3, bitOff: m.bitOffset, bits: m.bitSize, enc: build(m.type, `${path}.${m.name}`), flatten: !m.name });
          }
          return (v, b, dv, o) => {
            const obj = (v ?? {}) as Record<string, unknown>;
            for (const f of fields) {
              if (f.flatten) { f.enc(obj, b, dv, o + f.off); continue; }
              const fv = obj[f.name];
              if (fv === undefined) continue;
              if (f.bits) writeBits(b, o, f.bitOff, f.bits, toBig(fv, `${path}.${f.name}`));
              else f.enc(fv, b, dv, o + f.off);
            }
          };
        }
        default: return () => {};
      }
    };
    return build(id, this.btf.typeName(id));
  }
}

/** Whether an array of this element type decodes as a string (shared with typegen.ts). */
export function isCharArray(btf: Btf, elemId: number): boolean {
  // `char x[16]` is text; `u8 x[16]` (a typedef of unsigned char) is bytes.
  let t = btf.get(elemId);
  while (t && t.kind !== 'int') {
    if (t.kind === 'typedef' && BYTE_TYPEDEFS.has(t.name)) return false;
    t = btf.get(t.type ?? 0);
  }
  return !!t && CHAR_NAMES.has(t.name);
}

function fnFor(g: Gen, id: number): string {
  const existing = g.fns.get(id);
  if (existing) return existing;
  const name = `d${id}`;
  g.fns.set(id, name);
  g.defs.push(`function ${name}(b, dv, o) { return ${expr(g, id, 'o')}; }`);
  return name;
}

/** A JS expression that decodes type `id` at byte offset expression `o`. */
function expr(g: Gen, id: number, o: string): string {
  const t = g.btf.resolve(id);
  if (!t) return 'null';
  switch (t.kind) {
    case 'int': return intExpr(g, t, o);
    case 'ptr': return g.big ? `dv.getBigUint64(${o}, true)` : `Number(dv.getBigUint64(${o}, true))`;
    case 'float':
      return t.size === 4 ? `dv.getFloat32(${o}, true)` : t.size === 8 ? `dv.getFloat64(${o}, true)` : 'null';
    case 'enum': case 'enum64':
      // The value, never the enumerator name: see the comment at the top of this file.
      return intExpr(g, { ...t, kind: 'int', signed: t.signed ?? false, bits: (t.size ?? 4) * 8, bitOffset: 0 }, o);
    case 'array': {
      const n = t.nelems ?? 0;
      const es = g.btf.sizeof(t.type ?? 0);
      const et = g.btf.resolve(t.type ?? 0);
      if (et?.kind === 'int' && et.size === 1 && isCharArray(g.btf, t.type ?? 0)) return `cstr(b, ${o}, ${n})`;
      if (n <= 16) {
        const items = [];
        for (let i = 0; i < n; i++) items.push(expr(g, t.type ?? 0, `${o} + ${i * es}`));
        return `[${items.join(', ')}]`;
      }
      const el = fnFor(g, t.type ?? 0);
      return `((p) => { const a = new Array(${n}); for (let i = 0; i < ${n}; i++) a[i] = ${el}(b, dv, p + i * ${es}); return a; })(${o})`;
    }
    case 'struct': case 'union': {
      const parts: string[] = [];
      for (const m of t.members ?? []) {
        const mo = `${o} + ${m.bitOffset >> 3}`;
        if (!m.name) {
          // Anonymous struct/union member: its fields belong to the parent, as in C.
          parts.push(`...${fnFor(g, m.type)}(b, dv, ${mo})`);
          continue;
        }
        if (m.bitSize) {
          const mt = g.btf.resolve(m.type);
          const signed = !!(mt?.kind === 'int' ? mt.signed : mt?.signed);
          parts.push(`${JSON.stringify(m.name)}: bitfield(b, ${o}, ${m.bitOffset}, ${m.bitSize}, ${signed}, ${g.big})`);
          continue;
        }
        const mt = g.btf.resolve(m.type);
        const simple = mt && (mt.kind === 'int' || mt.kind === 'ptr' || mt.kind === 'float');
        parts.push(`${JSON.stringify(m.name)}: ${simple ? expr(g, m.type, mo) : `${fnFor(g, m.type)}(b, dv, ${mo})`}`);
      }
      return `{ ${parts.join(', ')} }`;
    }
    default:
      return 'null';
  }
}

function intExpr(g: Gen, t: BtfType, o: string): string {
  if (t.bool) return `(dv.getUint8(${o}) !== 0)`;
  const s = !!t.signed;
  switch (t.size) {
    case 1: return s ? `dv.getInt8(${o})` : `dv.getUint8(${o})`;
    case 2: return s ? `dv.getInt16(${o}, true)` : `dv.getUint16(${o}, true)`;
    case 4: return s ? `dv.getInt32(${o}, true)` : `dv.getUint32(${o}, true)`;
    case 8: {
      const e = s ? `dv.getBigInt64(${o}, true)` : `dv.getBigUint64(${o}, true)`;
      return g.big ? e : `Number(${e})`;
    }
    case 16: return g.big ? `u128(dv, ${o}, ${s})` : `Number(u128(dv, ${o}, ${s}))`;
    default: return 'null';
  }
}

function toBig(v: unknown, path: string): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  if (typeof v === 'boolean') return v ? 1n : 0n;
  throw new TypeError(`encode ${path}: expected an integer (number or bigint), got ${typeof v === 'number' ? v : typeof v}`);
}

function writeInt(dv: DataView, o: number, size: number, v: bigint): void {
  switch (size) {
    case 1: dv.setUint8(o, Number(BigInt.asUintN(8, v))); break;
    case 2: dv.setUint16(o, Number(BigInt.asUintN(16, v)), true); break;
    case 4: dv.setUint32(o, Number(BigInt.asUintN(32, v)), true); break;
    case 8: dv.setBigUint64(o, BigInt.asUintN(64, v), true); break;
    case 16:
      dv.setBigUint64(o, BigInt.asUintN(64, v), true);
      dv.setBigUint64(o + 8, BigInt.asUintN(64, v >> 64n), true);
      break;
  }
}

function intEncoder(t: BtfType, path: string): Encoder {
  const size = t.size ?? 4;
  if (t.bool) return (v, _b, dv, o) => dv.setUint8(o, v ? 1 : 0);
  return (v, _b, dv, o) => writeInt(dv, o, size, toBig(v ?? 0, path));
}

function writeBits(buf: Buffer, off: number, bit: number, bits: number, v: bigint): void {
  const first = off + (bit >> 3);
  const shift = BigInt(bit & 7);
  const nbytes = (Number(shift) + bits + 7) >> 3;
  let word = 0n;
  for (let i = nbytes - 1; i >= 0; i--) word = (word << 8n) | BigInt(buf[first + i] ?? 0);
  const mask = ((1n << BigInt(bits)) - 1n) << shift;
  word = (word & ~mask) | ((BigInt.asUintN(bits, v) << shift) & mask);
  for (let i = 0; i < nbytes; i++) buf[first + i] = Number((word >> BigInt(8 * i)) & 0xffn);
}
