/**
 * A small ELF reader for symbolization: headers, sections, program headers, the GNU
 * build-id, .gnu_debuglink, and function symbols from .symtab/.dynsym. Reads only what it
 * needs, asynchronously, from a file or a buffer (ELF32/64, either endianness).
 */
import * as fs from 'node:fs';

/** Random access to the bytes of an ELF image. */
export interface ElfSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

export async function fileSource(path: string): Promise<ElfSource> {
  const fh = await fs.promises.open(path, 'r');
  const size = (await fh.stat()).size;
  return {
    size,
    async read(offset, length) {
      const buf = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done === length ? buf : buf.subarray(0, done);
    },
    close: () => fh.close(),
  };
}

export function bufferSource(data: Buffer): ElfSource {
  return {
    size: data.length,
    read: async (offset, length) => data.subarray(offset, Math.min(data.length, offset + length)),
    close: async () => {},
  };
}

export interface ElfSection {
  name: string; type: number; flags: number; addr: number; offset: number; size: number; link: number; entsize: number;
}
export interface ElfSegment { type: number; flags: number; offset: number; vaddr: number; filesz: number; memsz: number }

const SHT_SYMTAB = 2;
const SHT_NOBITS = 8;
const SHT_NOTE = 7;
const SHT_DYNSYM = 11;
const PT_LOAD = 1;
const PT_NOTE = 4;
const STT_FUNC = 2;
const STT_GNU_IFUNC = 10;
const NT_GNU_BUILD_ID = 3;

export class ElfError extends Error {}

export class ElfFile {
  readonly is64: boolean;
  readonly le: boolean;
  /** ET_EXEC (2) for non-PIE executables, ET_DYN (3) for PIE and shared libraries. */
  readonly type: number;
  readonly machine: number;
  readonly sections: ElfSection[];
  readonly segments: ElfSegment[];
  buildId?: string;
  debuglink?: { file: string; crc: number };
  private readonly src: ElfSource;

  private constructor(src: ElfSource, is64: boolean, le: boolean, type: number, machine: number, sections: ElfSection[], segments: ElfSegment[]) {
    this.src = src;
    this.is64 = is64;
    this.le = le;
    this.type = type;
    this.machine = machine;
    this.sections = sections;
    this.segments = segments;
  }

  /** Parse the headers (and build-id, debuglink) of the image in `src`. */
  static async open(src: ElfSource): Promise<ElfFile> {
    const h = await src.read(0, 64);
    if (h.length < 52 || h.readUInt32BE(0) !== 0x7f454c46) throw new ElfError('not an ELF file');
    const is64 = h[4] === 2;
    const le = h[5] === 1;
    const dv = new DataView(h.buffer, h.byteOffset, h.length);
    const u16 = (o: number) => dv.getUint16(o, le);
    const uw = (o: number) => (is64 ? Number(dv.getBigUint64(o, le)) : dv.getUint32(o, le));
    const type = u16(16);
    const machine = u16(18);
    const phoff = uw(is64 ? 32 : 28);
    const shoff = uw(is64 ? 40 : 32);
    const phentsize = u16(is64 ? 54 : 42);
    let phnum = u16(is64 ? 56 : 44);
    const shentsize = u16(is64 ? 58 : 46);
    let shnum = u16(is64 ? 60 : 48);
    let shstrndx = u16(is64 ? 62 : 50);

    const sections: ElfSection[] = [];
    if (shoff && shentsize) {
      if (shnum === 0 || shstrndx === 0xffff || phnum === 0xffff) {
        // Extended numbering: the real counts live in section header 0.
        const s0 = await src.read(shoff, shentsize);
        const d0 = new DataView(s0.buffer, s0.byteOffset, s0.length);
        if (shnum === 0) shnum = Number(is64 ? d0.getBigUint64(32, le) : d0.getUint32(20, le));
        if (shstrndx === 0xffff) shstrndx = d0.getUint32(is64 ? 40 : 24, le);
        if (phnum === 0xffff) phnum = d0.getUint32(is64 ? 44 : 28, le);
      }
      const raw = await src.read(shoff, shnum * shentsize);
      const sd = new DataView(raw.buffer, raw.byteOffset, raw.length);
      const nameOffs: number[] = [];
      for (let i = 0; i < shnum && (i + 1) * shentsize <= raw.length; i++) {
        const o = i * shentsize;
        const w = (a: number, b: number) => (is64 ? Number(sd.getBigUint64(o + a, le)) : sd.getUint32(o + b, le));
        nameOffs.push(sd.getUint32(o, le));
        sections.push({
          name: '', type: sd.getUint32(o + 4, le), flags: w(8, 8), addr: w(16, 12), offset: w(24, 16), size: w(32, 20),
          link: sd.getUint32(o + (is64 ? 40 : 24), le), entsize: w(56, 36),
        });
      }
      const strs = sections[shstrndx];
      if (strs) {
        const names = await src.read(strs.offset, strs.size);
        sections.forEach((s, i) => { s.name = cstring(names, nameOffs[i]!); });
      }
    }
    const segments: ElfSegment[] = [];
    if (phoff && phentsize) {
      const raw = await src.read(phoff, phnum * phentsize);
      const pd = new DataView(raw.buffer, raw.byteOffset, raw.length);
      for (let i = 0; i < phnum && (i + 1) * phentsize <= raw.length; i++) {
        const o = i * phentsize;
        if (is64) {
          segments.push({
            type: pd.getUint32(o, le), flags: pd.getUint32(o + 4, le), offset: Number(pd.getBigUint64(o + 8, le)),
            vaddr: Number(pd.getBigUint64(o + 16, le)), filesz: Number(pd.getBigUint64(o + 32, le)), memsz: Number(pd.getBigUint64(o + 40, le)),
          });
        } else {
          segments.push({
            type: pd.getUint32(o, le), offset: pd.getUint32(o + 4, le), vaddr: pd.getUint32(o + 8, le),
            filesz: pd.getUint32(o + 16, le), memsz: pd.getUint32(o + 20, le), flags: pd.getUint32(o + 24, le),
          });
        }
      }
    }
    const elf = new ElfFile(src, is64, le, type, machine, sections, segments);
    await elf.readNotes();
    const dl = sections.find((s) => s.name === '.gnu_debuglink');
    if (dl && dl.type !== SHT_NOBITS) {
      const b = await src.read(dl.offset, dl.size);
      const file = cstring(b, 0);
      const crcOff = (file.length + 1 + 3) & ~3;
      if (crcOff + 4 <= b.length) elf.debuglink = { file, crc: le ? b.readUInt32LE(crcOff) : b.readUInt32BE(crcOff) };
    }
    return elf;
  }

  private async readNotes(): Promise<void> {
    const blocks = this.sections.filter((s) => s.type === SHT_NOTE).map((s) => [s.offset, s.size] as const);
    if (!blocks.length) for (const p of this.segments) if (p.type === PT_NOTE) blocks.push([p.offset, p.filesz]);
    for (const [off, size] of blocks) {
      const b = await this.src.read(off, Math.min(size, 1 << 16));
      let o = 0;
      while (o + 12 <= b.length) {
        const namesz = this.le ? b.readUInt32LE(o) : b.readUInt32BE(o);
        const descsz = this.le ? b.readUInt32LE(o + 4) : b.readUInt32BE(o + 4);
        const type = this.le ? b.readUInt32LE(o + 8) : b.readUInt32BE(o + 8);
        const nameStart = o + 12;
        const descStart = nameStart + ((namesz + 3) & ~3);
        if (type === NT_GNU_BUILD_ID && namesz === 4 && b.toString('latin1', nameStart, nameStart + 3) === 'GNU') {
          this.buildId = b.subarray(descStart, descStart + descsz).toString('hex');
          return;
        }
        o = descStart + ((descsz + 3) & ~3);
      }
    }
  }

  /** True when the file has a (non-empty) .symtab. */
  get hasSymtab(): boolean {
    return this.sections.some((s) => s.type === SHT_SYMTAB && s.size > 0);
  }

  /** The link-time address of a file offset, through the PT_LOAD segments. */
  fileOffsetToVaddr(off: number): number | undefined {
    for (const p of this.segments) {
      if (p.type === PT_LOAD && off >= p.offset && off < p.offset + Math.max(p.filesz, 1)) return off - p.offset + p.vaddr;
    }
    return undefined;
  }

  /** Function symbols of .symtab (or .dynsym when there is none), sorted for lookup. */
  async symbols(): Promise<SymbolTable> {
    const tab = this.sections.find((s) => s.type === SHT_SYMTAB && s.size > 0)
      ?? this.sections.find((s) => s.type === SHT_DYNSYM && s.size > 0);
    if (!tab) return SymbolTable.empty();
    const strs = this.sections[tab.link];
    if (!strs) return SymbolTable.empty();
    const [raw, strtab] = await Promise.all([this.src.read(tab.offset, tab.size), this.src.read(strs.offset, strs.size)]);
    await yieldToLoop();
    return SymbolTable.build(raw, strtab, this.is64, this.le);
  }

  close(): Promise<void> {
    return this.src.close();
  }
}

function cstring(b: Buffer, off: number): string {
  let end = b.indexOf(0, off);
  if (end < 0) end = b.length;
  return b.toString('utf8', off, end);
}

function yieldToLoop(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

export interface SymbolHit { name: string; offset: number; start: number; size: number }

/**
 * Function symbols as parallel typed arrays sorted by address; names stay in the string
 * table and are decoded only when looked up. Memory ~ 20 bytes per symbol + the strtab.
 */
export class SymbolTable {
  readonly starts: Float64Array;
  readonly sizes: Float64Array;
  readonly names: Uint32Array;
  readonly strtab: Buffer;
  /** Names decoded so far, by index (sparse). */
  private readonly decoded: string[] = [];

  private constructor(starts: Float64Array, sizes: Float64Array, names: Uint32Array, strtab: Buffer) {
    this.starts = starts;
    this.sizes = sizes;
    this.names = names;
    this.strtab = strtab;
  }

  static empty(): SymbolTable {
    return new SymbolTable(new Float64Array(0), new Float64Array(0), new Uint32Array(0), Buffer.alloc(0));
  }

  static build(raw: Buffer, strtab: Buffer, is64: boolean, le: boolean): SymbolTable {
    const ent = is64 ? 24 : 16;
    const n = Math.floor(raw.length / ent);
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.length);
    const val = new Float64Array(n);
    const siz = new Float64Array(n);
    const nam = new Uint32Array(n);
    const bind = new Uint8Array(n);
    let k = 0;
    for (let i = 0; i < n; i++) {
      const o = i * ent;
      const info = is64 ? raw[o + 4]! : raw[o + 12]!;
      const type = info & 0xf;
      if (type !== STT_FUNC && type !== STT_GNU_IFUNC) continue;
      const shndx = is64 ? dv.getUint16(o + 6, le) : dv.getUint16(o + 14, le);
      if (shndx === 0) continue; // undefined: an import, not code here
      const value = is64 ? Number(dv.getBigUint64(o + 8, le)) : dv.getUint32(o + 4, le);
      if (value === 0) continue;
      val[k] = value;
      siz[k] = is64 ? Number(dv.getBigUint64(o + 16, le)) : dv.getUint32(o + 8, le);
      nam[k] = dv.getUint32(o, le);
      bind[k] = info >> 4;
      k++;
    }
    const order = new Uint32Array(k);
    for (let i = 0; i < k; i++) order[i] = i;
    // By address; among aliases of one address, globals (bind 1) before weak (2) before locals (0).
    const rank = (b: number) => (b === 1 ? 0 : b === 2 ? 1 : 2);
    order.sort((a, b) => val[a]! - val[b]! || rank(bind[a]!) - rank(bind[b]!));
    const starts: number[] = [];
    const sizes: number[] = [];
    const names: number[] = [];
    for (let j = 0; j < k; j++) {
      const i = order[j]!;
      if (starts.length && starts[starts.length - 1] === val[i]) continue; // keep the preferred alias
      starts.push(val[i]!);
      sizes.push(siz[i]!);
      names.push(nam[i]!);
    }
    return new SymbolTable(Float64Array.from(starts), Float64Array.from(sizes), Uint32Array.from(names), strtab);
  }

  get size(): number {
    return this.starts.length;
  }

  /** Approximate memory held, in bytes. */
  get bytes(): number {
    return this.starts.byteLength + this.sizes.byteLength + this.names.byteLength + this.strtab.length;
  }

  /** The function containing link-time address `vaddr`. Sizeless symbols extend to the next one. */
  lookup(vaddr: number): SymbolHit | undefined {
    const s = this.starts;
    let lo = 0;
    let hi = s.length - 1;
    let f = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (s[mid]! <= vaddr) { f = mid; lo = mid + 1; } else hi = mid - 1;
    }
    if (f < 0) return undefined;
    const size = this.sizes[f]!;
    if (size > 0 ? vaddr >= s[f]! + size : f + 1 < s.length && vaddr >= s[f + 1]!) return undefined;
    let name = this.decoded[f];
    if (name === undefined) name = this.decoded[f] = cstring(this.strtab, this.names[f]!);
    return { name, offset: vaddr - s[f]!, start: s[f]!, size };
  }
}
