/**
 * Kernel and user-space symbolization.
 *
 * User addresses go through /proc/PID/maps to a mapped file, through its PT_LOAD segments
 * to a link-time address, and through the ELF's function symbols (or those of its separate
 * debug file) to a name; C++ names are demangled by the C++ runtime. JIT code (anonymous
 * executable memory) is looked up in /tmp/perf-PID.map, re-read when it grows. What is
 * learned about a process (its maps, its binaries) is kept after it exits, so stacks
 * captured before the exit still symbolize; an address that cannot be named keeps a reason.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type KernelFrame, KernelSymbols, kernelSymbols } from '../kallsyms.js';
import { native } from '../native.js';
import { bufferSource, ElfFile, fileSource, type SymbolTable } from './elf.js';

/** One symbolized user-space frame. */
export interface UserFrame {
  kind: 'user' | 'jit';
  address: bigint;
  symbol?: string;
  offset?: number;
  /** The binary (path, "[vdso]") or perf map the symbol came from. */
  binary?: string;
  /** Why there is no symbol, when there is none. */
  reason?: string;
}

export type Frame = KernelFrame | UserFrame;

/** `symbol+0xoff [module]` for kernel frames, `symbol+0xoff (binary)` for user ones. */
export function formatAnyFrame(f: Frame): string {
  if (!f.symbol) return `0x${f.address.toString(16)} (${f.reason ?? 'unknown'})`;
  const off = `+0x${(f.offset ?? 0).toString(16)}`;
  if (f.kind === 'kernel') return `${f.symbol}${off}${f.module ? ` [${f.module}]` : ''}`;
  return `${f.symbol}${off}${f.binary ? ` (${f.binary})` : ''}`;
}

/**
 * Folded stacks for flame graph tools: one line per stack, outermost frame first, frames
 * joined by ";", then a space and the count. Stacks are given innermost first.
 */
export function foldStacks(stacks: Iterable<readonly [readonly Frame[], number]>): string {
  const counts = new Map<string, number>();
  for (const [frames, n] of stacks) {
    const key = [...frames].reverse().map((f) => (f.symbol ?? `0x${f.address.toString(16)}`).replace(/;/g, ':')).join(';');
    counts.set(key, (counts.get(key) ?? 0) + n);
  }
  return [...counts].map(([k, n]) => `${k} ${n}`).join('\n');
}

export interface Mapping {
  start: number; end: number; perms: string; offset: number; dev: string; inode: number; path: string;
}

/** Parse /proc/PID/maps text. */
export function parseMaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) (\S+) (\d+)\s*(.*)$/.exec(line);
    if (!m) continue;
    out.push({
      start: parseInt(m[1]!, 16), end: parseInt(m[2]!, 16), perms: m[3]!, offset: parseInt(m[4]!, 16),
      dev: m[5]!, inode: Number(m[6]), path: m[7]!.replace(/ \(deleted\)$/, ''),
    });
  }
  return out;
}

interface ProcessInfo {
  pid: number;
  /** Field 22 of /proc/PID/stat: tells a reused pid from the process we saw. */
  startTime: string;
  maps: Mapping[];
  seenAt: number;
}

interface Binary {
  /** Where names came from (the binary, or its debug file). */
  label: string;
  elf?: ElfFile;
  symbols?: SymbolTable;
  reason?: string;
  bytes: number;
}

interface PerfMap {
  file: string;
  size: number;
  starts: Float64Array;
  ends: Float64Array;
  names: string[];
}

export interface SymbolizerOptions {
  /** Upper bound on the memory kept for binaries' symbol tables, in bytes. Default 256 MiB. */
  maxBytes?: number;
  /** Directories searched for separate debug files. Default ["/usr/lib/debug"]. */
  debugDirs?: string[];
  /** Kernel symbols to use (default: the process-wide /proc/kallsyms table). */
  kernel?: KernelSymbols;
  /** How many exited processes to remember. Default 4096. */
  maxProcesses?: number;
}

/**
 * Symbolizes kernel and user addresses. Usable on its own, without any BPF:
 * `await new Symbolizer().user(pid, addresses)`.
 */
export class Symbolizer {
  private readonly procs = new Map<number, ProcessInfo>();
  private readonly binaries = new Map<string, Promise<Binary>>();
  private readonly sizes = new Map<string, number>();
  private readonly perfMaps = new Map<number, PerfMap>();
  private readonly demangled = new Map<string, string>();
  private readonly maxBytes: number;
  private readonly maxProcesses: number;
  private readonly debugDirs: string[];
  private readonly ksyms: KernelSymbols;
  private bytes = 0;

  constructor(opts: SymbolizerOptions = {}) {
    this.maxBytes = opts.maxBytes ?? 256 << 20;
    this.maxProcesses = opts.maxProcesses ?? 4096;
    this.debugDirs = opts.debugDirs ?? ['/usr/lib/debug'];
    this.ksyms = opts.kernel ?? kernelSymbols();
  }

  /** Memory held by cached symbol tables, in bytes (bounded by maxBytes). */
  get cacheBytes(): number {
    return this.bytes;
  }

  /** Number of binaries whose symbols are cached. */
  get cachedBinaries(): number {
    return this.binaries.size;
  }

  /** Kernel addresses, innermost first (return addresses resolved as such). */
  kernel(addresses: readonly bigint[]): KernelFrame[] {
    return this.ksyms.lookupStack(addresses);
  }

  /**
   * Read and keep what is needed to symbolize `pid` later, even after it exits: its memory
   * map now. Called by user() itself; call it early (e.g. when a process is first seen).
   * @returns false when the process is already gone.
   */
  remember(pid: number): boolean {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
      const known = this.procs.get(pid);
      if (known && known.startTime === startTime && Date.now() - known.seenAt < 50) return true;
      const maps = parseMaps(fs.readFileSync(`/proc/${pid}/maps`, 'utf8'));
      this.procs.delete(pid);
      this.procs.set(pid, { pid, startTime, maps, seenAt: Date.now() });
      if (this.procs.size > this.maxProcesses) this.procs.delete(this.procs.keys().next().value!);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Symbolize user addresses of process `pid`. By default they are a stack, innermost first:
   * every frame after the first is a return address and is resolved as `address - 1`; pass
   * `{ returnAddresses: false }` for independent addresses (samples, a list of pcs).
   */
  async user(pid: number, addresses: readonly bigint[], opts: { returnAddresses?: boolean } = {}): Promise<UserFrame[]> {
    const ret = opts.returnAddresses ?? true;
    const alive = this.remember(pid);
    const proc = this.procs.get(pid);
    if (!proc) {
      const reason = alive ? 'cannot read the memory map of the process' : `process ${pid} exited before its memory map was read`;
      return addresses.map((a) => ({ kind: 'user' as const, address: a, reason }));
    }
    // Load every binary the addresses touch (concurrently, once each), then resolve all
    // addresses in one synchronous pass: no promise per address.
    const loaded = new Map<Mapping, Binary>();
    const pending: Array<Promise<void>> = [];
    const seen = new Set<Mapping>();
    for (let i = 0; i < addresses.length; i++) {
      const m = findMapping(proc.maps, Number(addresses[i]!) - (ret && i > 0 ? 1 : 0));
      if (m && isFileMapping(m) && !seen.has(m)) {
        seen.add(m);
        pending.push(this.binary(proc, m, alive).then((b) => { loaded.set(m, b); }));
      }
    }
    await Promise.all(pending);
    const frames = new Array<UserFrame>(addresses.length);
    for (let i = 0; i < addresses.length; i++) frames[i] = this.resolve(proc, addresses[i]!, ret && i > 0, loaded);
    this.demangle(frames);
    return frames;
  }

  private resolve(proc: ProcessInfo, address: bigint, isReturn: boolean, loaded: Map<Mapping, Binary>): UserFrame {
    const a = Number(address) - (isReturn ? 1 : 0);
    const ret = isReturn ? 1 : 0; // a return address is shown at its own offset, found at a - 1
    const m = findMapping(proc.maps, a);
    if (!m || !isFileMapping(m)) {
      const jit = this.perfMapLookup(proc.pid, a);
      if (jit) return { kind: 'jit', address, symbol: jit.name, offset: jit.offset + ret, binary: jit.file };
      if (!m) return { kind: 'user', address, reason: 'not in any mapping of the process' };
      return { kind: 'user', address, reason: `anonymous memory${m.path ? ` ${m.path}` : ''} and no /tmp/perf-${proc.pid}.map entry (JIT code: start Node.js with --perf-basic-prof)` };
    }
    const bin = loaded.get(m)!;
    if (!bin.symbols || !bin.elf) return { kind: 'user', address, binary: m.path, reason: bin.reason ?? 'no symbols' };
    const vaddr = m.path === '[vdso]' ? a - m.start + (bin.elf.fileOffsetToVaddr(0) ?? 0) : bin.elf.fileOffsetToVaddr(a - m.start + m.offset);
    if (vaddr === undefined) return { kind: 'user', address, binary: m.path, reason: 'address outside the loaded segments of the binary' };
    const hit = bin.symbols.lookup(vaddr);
    if (!hit) return { kind: 'user', address, binary: m.path, reason: bin.reason ?? `no function symbol covers 0x${vaddr.toString(16)} in ${bin.label}` };
    return { kind: 'user', address, symbol: hit.name, offset: hit.offset + ret, binary: m.path };
  }

  /** A binary's symbols, loaded once per identity (device + inode, or the vDSO), lazily. */
  private binary(proc: ProcessInfo, m: Mapping, alive: boolean): Promise<Binary> {
    const key = m.path === '[vdso]' ? `vdso:${os.release()}` : `${m.dev}:${m.inode}`;
    let p = this.binaries.get(key);
    if (p) {
      // LRU: most recently used last.
      this.binaries.delete(key);
      this.binaries.set(key, p);
      return p;
    }
    p = this.loadBinary(proc, m, alive).then((b) => {
      this.sizes.set(key, b.bytes);
      this.bytes += b.bytes;
      this.evict(key);
      return b;
    });
    this.binaries.set(key, p);
    return p;
  }

  private evict(keep: string): void {
    for (const k of this.binaries.keys()) {
      if (this.bytes <= this.maxBytes) break;
      if (k === keep) continue;
      this.bytes -= this.sizes.get(k) ?? 0;
      this.sizes.delete(k);
      this.binaries.delete(k);
    }
  }

  private async loadBinary(proc: ProcessInfo, m: Mapping, alive: boolean): Promise<Binary> {
    if (m.path === '[vdso]') {
      try {
        const fd = fs.openSync(`/proc/${alive ? proc.pid : 'self'}/mem`, 'r');
        let start = m.start;
        let len = m.end - m.start;
        if (!alive) {
          const own = parseMaps(fs.readFileSync('/proc/self/maps', 'utf8')).find((x) => x.path === '[vdso]');
          if (!own) throw new Error('no vdso');
          start = own.start;
          len = own.end - own.start;
        }
        const buf = Buffer.alloc(len);
        fs.readSync(fd, buf, 0, len, start);
        fs.closeSync(fd);
        const elf = await ElfFile.open(bufferSource(buf));
        const symbols = await elf.symbols();
        return { label: '[vdso]', elf, symbols, bytes: symbols.bytes };
      } catch (e) {
        return { label: '[vdso]', reason: `cannot read the vDSO: ${(e as Error).message}`, bytes: 0 };
      }
    }
    // Through the process's own view first: its mount namespace, and files deleted since.
    const candidates = alive
      ? [`/proc/${proc.pid}/map_files/${m.start.toString(16)}-${m.end.toString(16)}`, `/proc/${proc.pid}/root${m.path}`, m.path]
      : [m.path];
    let elf: ElfFile | undefined;
    let opened = '';
    let lastErr = '';
    for (const c of candidates) {
      try {
        const st = fs.statSync(c);
        if (st.ino !== m.inode) { lastErr = `${c} is not the file the process mapped (replaced since)`; continue; }
        elf = await ElfFile.open(await fileSource(c));
        opened = c;
        break;
      } catch (e) {
        lastErr = (e as Error).message;
      }
    }
    if (!elf) return { label: m.path, reason: `cannot open ${m.path}: ${lastErr}`, bytes: 0 };
    try {
      if (elf.hasSymtab) {
        const symbols = await elf.symbols();
        return { label: m.path, elf, symbols, bytes: symbols.bytes };
      }
      // Stripped: a separate debug file by build-id, then by .gnu_debuglink.
      const dbg = await this.debugFile(elf, opened === m.path ? m.path : m.path, proc.pid, alive);
      if (dbg) {
        const symbols = await dbg.elf.symbols();
        await dbg.elf.close();
        return { label: dbg.path, elf, symbols, bytes: symbols.bytes };
      }
      const symbols = await elf.symbols(); // .dynsym: exported functions only
      return {
        label: m.path, elf, symbols, bytes: symbols.bytes,
        reason: `${m.path} is stripped and no debug file was found (build-id ${elf.buildId ?? 'none'}): only its exported functions are known`,
      };
    } finally {
      await elf.close().catch(() => {});
    }
  }

  private async debugFile(elf: ElfFile, binPath: string, pid: number, alive: boolean): Promise<{ elf: ElfFile; path: string } | undefined> {
    const tries: string[] = [];
    if (elf.buildId && elf.buildId.length > 2) {
      for (const d of this.debugDirs) tries.push(path.join(d, '.build-id', elf.buildId.slice(0, 2), `${elf.buildId.slice(2)}.debug`));
    }
    if (elf.debuglink) {
      const dir = path.dirname(binPath);
      tries.push(path.join(dir, elf.debuglink.file), path.join(dir, '.debug', elf.debuglink.file));
      for (const d of this.debugDirs) tries.push(path.join(d, dir, elf.debuglink.file));
    }
    for (const t of tries) {
      for (const p of alive ? [`/proc/${pid}/root${t}`, t] : [t]) {
        try {
          const d = await ElfFile.open(await fileSource(p));
          if (d.hasSymtab && (!elf.buildId || !d.buildId || d.buildId === elf.buildId)) return { elf: d, path: t };
          await d.close();
        } catch { /* next */ }
      }
    }
    return undefined;
  }

  private perfMapLookup(pid: number, addr: number): { name: string; offset: number; file: string } | undefined {
    const files = [`/proc/${pid}/root/tmp/perf-${pid}.map`, `/tmp/perf-${pid}.map`];
    let pm = this.perfMaps.get(pid);
    for (const f of files) {
      let size: number;
      try { size = fs.statSync(f).size; } catch { continue; }
      if (!pm || pm.file !== f || size > pm.size) {
        pm = readPerfMap(f, size);
        this.perfMaps.set(pid, pm);
      }
      break;
    }
    if (!pm) return undefined;
    let lo = 0;
    let hi = pm.starts.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (pm.starts[mid]! <= addr) { found = mid; lo = mid + 1; } else hi = mid - 1;
    }
    if (found < 0 || addr >= pm.ends[found]!) return undefined;
    return { name: pm.names[found]!, offset: addr - pm.starts[found]!, file: path.basename(pm.file) };
  }

  /** Demangle C++ names in place: cached per name, the rest in one native call. */
  private demangle(frames: UserFrame[]): void {
    let todo: Set<string> | undefined;
    for (const f of frames) {
      const sym = f.symbol;
      if (!sym || sym.charCodeAt(0) !== 95 /* _ */ || sym.charCodeAt(1) !== 90 /* Z */) continue;
      const d = this.demangled.get(sym);
      if (d !== undefined) f.symbol = d;
      else (todo ??= new Set()).add(sym);
    }
    if (!todo) return;
    const names = [...todo];
    const out = native().demangle(names);
    names.forEach((n, i) => this.demangled.set(n, out[i] ?? n));
    for (const f of frames) if (f.symbol && todo.has(f.symbol)) f.symbol = this.demangled.get(f.symbol)!;
  }
}

/** A mapping backed by a file (or the vDSO) that symbols can come from. */
function isFileMapping(m: Mapping): boolean {
  if (m.path === '[vdso]') return true;
  return !!m.path && m.inode !== 0 && !m.path.startsWith('[');
}

function findMapping(maps: Mapping[], a: number): Mapping | undefined {
  let lo = 0;
  let hi = maps.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const m = maps[mid]!;
    if (a < m.start) hi = mid - 1;
    else if (a >= m.end) lo = mid + 1;
    else return m;
  }
  return undefined;
}

/** /tmp/perf-PID.map: "START SIZE name" per line, hexadecimal, as V8 and other JITs write it. */
function readPerfMap(file: string, size: number): PerfMap {
  const rows: Array<[number, number, string]> = [];
  const text = fs.readFileSync(file, 'utf8');
  for (const line of text.split('\n')) {
    const s1 = line.indexOf(' ');
    const s2 = line.indexOf(' ', s1 + 1);
    if (s1 < 0 || s2 < 0) continue;
    const start = parseInt(line.slice(0, s1), 16);
    const len = parseInt(line.slice(s1 + 1, s2), 16);
    if (Number.isFinite(start) && Number.isFinite(len)) rows.push([start, start + len, line.slice(s2 + 1)]);
  }
  // Later lines win: JIT code is moved and re-emitted at reused addresses.
  rows.sort((x, y) => x[0] - y[0]);
  return {
    file, size,
    starts: Float64Array.from(rows, (r) => r[0]), ends: Float64Array.from(rows, (r) => r[1]), names: rows.map((r) => r[2]),
  };
}

let shared: Symbolizer | undefined;
/** The process-wide symbolizer used by stack maps. */
export function symbolizer(): Symbolizer {
  shared ??= new Symbolizer();
  return shared;
}
