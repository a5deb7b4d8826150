/**
 * Kernel symbolization from /proc/kallsyms: core kernel, modules (`[mod]`) and BPF programs
 * (`[bpf]`). Addresses are kept as two sorted Uint32Arrays (high and low halves) so a
 * lookup is a binary search over plain integers, with no BigInt in the loop.
 */
import * as fs from 'node:fs';
import { PermissionError } from './errors.js';

export interface KernelFrame {
  kind: 'kernel';
  address: bigint;
  /** Undefined when no symbol covers the address; then `reason` says why. */
  symbol?: string;
  offset?: number;
  /** Module name for module and BPF code ("bpf"); undefined for the core kernel. */
  module?: string;
  reason?: string;
}

/** `symbol+0xoff [module]`, or the hex address and the reason. */
export function formatFrame(f: KernelFrame): string {
  if (!f.symbol) return `0x${f.address.toString(16)} (${f.reason ?? 'unknown'})`;
  return `${f.symbol}+0x${(f.offset ?? 0).toString(16)}${f.module ? ` [${f.module}]` : ''}`;
}

export class KernelSymbols {
  private hi = new Uint32Array(0);
  private lo = new Uint32Array(0);
  private names: string[] = [];
  private modules: Array<string | undefined> = [];
  private loadedAt = 0;
  private modulesStamp = '';
  private readonly file: string;

  constructor(file = '/proc/kallsyms') {
    this.file = file;
  }

  /** Number of symbols loaded. */
  get size(): number {
    return this.names.length;
  }

  /** (Re)read kallsyms. Called lazily by lookups; call it after loading a module or program. */
  load(): void {
    const text = fs.readFileSync(this.file, 'utf8');
    const rows: Array<{ hi: number; lo: number; name: string; mod?: string }> = [];
    let nonzero = false;
    let start = 0;
    while (start < text.length) {
      let end = text.indexOf('\n', start);
      if (end < 0) end = text.length;
      const line = text.slice(start, end);
      start = end + 1;
      // "ffffffff81000000 T _stext" or "ffffffffc0123000 t foo	[mod]"
      const s1 = line.indexOf(' ');
      if (s1 < 0) continue;
      const type = line[s1 + 1];
      if (type !== 't' && type !== 'T' && type !== 'w' && type !== 'W') continue;
      const addr = line.slice(0, s1);
      const rest = line.slice(s1 + 3);
      const tab = rest.indexOf('\t');
      const name = tab < 0 ? rest : rest.slice(0, tab);
      // Function padding (CONFIG_FUNCTION_PADDING, CFI) is never executed; a return address
      // right after a function's last call would otherwise land on the next one's padding.
      if (name.startsWith('__pfx_') || name.startsWith('__cfi_')) continue;
      const mod = tab < 0 ? undefined : rest.slice(tab + 1).replace(/^\[|\]$/g, '');
      const h = parseInt(addr.slice(0, addr.length - 8) || '0', 16) >>> 0;
      const l = parseInt(addr.slice(-8), 16) >>> 0;
      if (h || l) nonzero = true;
      rows.push({ hi: h, lo: l, name, mod });
    }
    if (rows.length && !nonzero) {
      throw new PermissionError(
        `symbolize kernel stack: ${this.file} shows zero addresses; run as root (CAP_SYSLOG) or set kernel.kptr_restrict=0`,
        'CAP_SYSLOG');
    }
    rows.sort((a, b) => a.hi - b.hi || a.lo - b.lo);
    this.hi = Uint32Array.from(rows, (r) => r.hi);
    this.lo = Uint32Array.from(rows, (r) => r.lo);
    this.names = rows.map((r) => r.name);
    this.modules = rows.map((r) => r.mod);
    this.loadedAt = Date.now();
    this.modulesStamp = modulesStamp();
  }

  /**
   * Forget the table; the next lookup reads kallsyms again. Called after BPF programs are
   * loaded, whose JIT images get `[bpf]` symbols among the module addresses: a stale table
   * would attribute them to the nearest older symbol.
   */
  invalidate(): void {
    this.stale = true;
  }

  private stale = false;

  /** Reload when invalidated, or when modules were loaded or unloaded since the last read. */
  private ensureFresh(): void {
    if (!this.loadedAt || this.stale) { this.stale = false; this.load(); return; }
    if (Date.now() - this.loadedAt > 1000) {
      const stamp = modulesStamp();
      if (stamp !== this.modulesStamp) this.load();
      else this.loadedAt = Date.now();
    }
  }

  /** Symbolize one address. */
  lookup(address: bigint): KernelFrame {
    this.ensureFresh();
    const h = Number((address >> 32n) & 0xffffffffn);
    const l = Number(address & 0xffffffffn);
    // Rightmost symbol with start <= address.
    let lo = 0;
    let hi = this.hi.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const mh = this.hi[mid]!;
      if (mh < h || (mh === h && this.lo[mid]! <= l)) { found = mid; lo = mid + 1; } else hi = mid - 1;
    }
    if (found < 0) return { kind: 'kernel', address, reason: 'below the first kernel symbol' };
    const offset = (h - this.hi[found]!) * 0x100000000 + (l - this.lo[found]!);
    if (offset > 16 << 20) return { kind: 'kernel', address, reason: 'no kernel symbol within 16 MiB' };
    return { kind: 'kernel', address, symbol: this.names[found]!, offset, module: this.modules[found] };
  }

  lookupAll(addresses: Iterable<bigint>): KernelFrame[] {
    const out: KernelFrame[] = [];
    for (const a of addresses) out.push(this.lookup(a));
    return out;
  }

  /**
   * Symbolize a stack, innermost first. Every frame but the first holds a return address,
   * which points after the call and may be past the caller's last byte: those resolve
   * `address - 1` (as perf and bpftrace do), while the offset shown stays the real one.
   */
  lookupStack(addresses: readonly bigint[]): KernelFrame[] {
    return addresses.map((a, i) => {
      if (i === 0 || a === 0n) return this.lookup(a);
      const f = this.lookup(a - 1n);
      return f.symbol ? { ...f, address: a, offset: (f.offset ?? 0) + 1 } : { ...f, address: a };
    });
  }
}

function modulesStamp(): string {
  try {
    return fs.readFileSync('/proc/modules', 'utf8').length.toString() + ':' + fs.statSync('/proc/modules').mtimeMs;
  } catch {
    return '';
  }
}

let shared: KernelSymbols | undefined;
/** The process-wide kernel symbol table, loaded on first use. */
export function kernelSymbols(): KernelSymbols {
  shared ??= new KernelSymbols();
  return shared;
}
