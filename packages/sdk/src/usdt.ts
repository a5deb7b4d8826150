/**
 * USDT probes (SystemTap SDT notes, `<sys/sdt.h>`) of an ELF binary, read from its
 * `.note.stapsdt` section. Synchronous on purpose: attach calls are synchronous and name
 * the probes a binary does have when the wanted one is missing. Only the ELF header, the
 * section headers and the two SDT sections are read, never the whole file.
 */
import * as fs from 'node:fs';
import { LbcError, NotFoundError } from './errors.js';

/** One USDT probe of a binary. */
export interface UsdtProbe {
  /** Provider, e.g. "node" or "libc" (the first argument of DTRACE_PROBEn / STAP_PROBEn). */
  provider: string;
  name: string;
  /** Link-time address of the probe's nop (adjusted for prelinking through .stapsdt.base, as libbpf does). */
  address: number;
  /** Link-time address of the probe's semaphore; 0 when it has none. */
  semaphore: number;
  /** The note's argument string, e.g. "-8@%rax -8@$78187493520" (size@location per argument). */
  args: string;
}

const SHT_NOTE = 7;
const NT_STAPSDT = 3;

/**
 * Every USDT probe of `binary`, in note order (a probe inlined in several places appears
 * once per place). An executable or a shared library; a binary without probes gives [].
 *
 * @throws NotFoundError when the file does not exist; LbcError (LBC_INVALID_ARGUMENT) when it is not ELF.
 * @example
 * ```ts
 * for (const p of listUsdtProbes('/usr/bin/node')) console.log(`${p.provider}:${p.name}`, p.args);
 * ```
 */
export function listUsdtProbes(binary: string): UsdtProbe[] {
  const what = `list usdt probes of "${binary}"`;
  let fd: number;
  try {
    fd = fs.openSync(binary, 'r');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new NotFoundError(`${what}: no such file`, { errno: 2 });
    throw new LbcError('LBC_INVALID_ARGUMENT', `${what}: ${err.message}`, { errno: err.errno === undefined ? undefined : -err.errno });
  }
  try {
    return readProbes(fd, what);
  } finally {
    fs.closeSync(fd);
  }
}

function readAt(fd: number, offset: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, offset + done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}

function readProbes(fd: number, what: string): UsdtProbe[] {
  const h = readAt(fd, 0, 64);
  if (h.length < 52 || h.readUInt32BE(0) !== 0x7f454c46) throw new LbcError('LBC_INVALID_ARGUMENT', `${what}: not an ELF file`);
  const is64 = h[4] === 2;
  const le = h[5] === 1;
  const u16 = (b: Buffer, o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
  const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const uw = (b: Buffer, o: number) => (is64 ? Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o)) : u32(b, o));
  const shoff = uw(h, is64 ? 40 : 32);
  const shentsize = u16(h, is64 ? 58 : 46);
  let shnum = u16(h, is64 ? 60 : 48);
  let shstrndx = u16(h, is64 ? 62 : 50);
  if (!shoff || !shentsize) return [];
  if (shnum === 0 || shstrndx === 0xffff) {
    // Extended numbering: the real counts live in section header 0.
    const s0 = readAt(fd, shoff, shentsize);
    if (shnum === 0) shnum = is64 ? uw(s0, 32) : u32(s0, 20);
    if (shstrndx === 0xffff) shstrndx = u32(s0, is64 ? 40 : 24);
  }
  const raw = readAt(fd, shoff, shnum * shentsize);
  const secs: { nameOff: number; type: number; addr: number; offset: number; size: number }[] = [];
  for (let i = 0; (i + 1) * shentsize <= raw.length; i++) {
    const o = i * shentsize;
    secs.push({
      nameOff: u32(raw, o), type: u32(raw, o + 4),
      addr: uw(raw, o + (is64 ? 16 : 12)), offset: uw(raw, o + (is64 ? 24 : 16)), size: uw(raw, o + (is64 ? 32 : 20)),
    });
  }
  const strs = secs[shstrndx];
  if (!strs) return [];
  const names = readAt(fd, strs.offset, strs.size);
  const nameOf = (s: { nameOff: number }) => cstring(names, s.nameOff).str;
  const note = secs.find((s) => s.type === SHT_NOTE && nameOf(s) === '.note.stapsdt');
  if (!note) return [];
  const base = secs.find((s) => nameOf(s) === '.stapsdt.base');
  const b = readAt(fd, note.offset, note.size);
  const w = is64 ? 8 : 4;
  const out: UsdtProbe[] = [];
  let o = 0;
  while (o + 12 <= b.length) {
    const namesz = u32(b, o);
    const descsz = u32(b, o + 4);
    const type = u32(b, o + 8);
    const nameStart = o + 12;
    const descStart = nameStart + ((namesz + 3) & ~3);
    const next = descStart + ((descsz + 3) & ~3);
    if (descStart + descsz > b.length) break;
    if (type === NT_STAPSDT && cstring(b, nameStart).str === 'stapsdt' && descsz >= 3 * w) {
      const desc = b.subarray(descStart, descStart + descsz);
      let address = uw(desc, 0);
      const noteBase = uw(desc, w);
      const semaphore = uw(desc, 2 * w);
      // Prelink may have moved the binary: the note records where .stapsdt.base was at link time.
      if (base && noteBase) address += base.addr - noteBase;
      const provider = cstring(desc, 3 * w);
      const name = cstring(desc, provider.end + 1);
      const args = cstring(desc, name.end + 1);
      out.push({ provider: provider.str, name: name.str, address, semaphore, args: args.str });
    }
    o = next;
  }
  return out;
}

function cstring(b: Buffer, off: number): { str: string; end: number } {
  if (off >= b.length) return { str: '', end: b.length };
  let end = b.indexOf(0, off);
  if (end < 0) end = b.length;
  return { str: b.toString('utf8', off, end), end };
}
