/**
 * One compile API over a content-addressed cache and local clang.
 *
 * The cache key covers everything that changes the object: the wrapped source, the flags,
 * lbc.h, the compiler identity and the target arch. A hit costs a hash and a file read;
 * clang is neither run nor even asked its version (its identity is remembered by the
 * binary's path, size and mtime).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CompileError, type Diagnostic, LbcError, NotFoundError } from './errors.js';
import { native } from './native.js';
import { collectHeaders } from './headers.js';
import { configuredServer, RemoteError, remoteCompile } from './remote.js';
import { stripDebug, targetKernelRelease, toolchainFlags, vmlinuxDirName } from './toolchain.js';

/** Where lbc.h lives. */
export const INCLUDE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'include');
// 2: objects are stripped of DWARF and built with the toolchain defaults (toolchain.ts).
// 3: keyed by every file the compile read (manifest), objects carry their hash.
// 4: the target arch's multiarch include directory is searched last.
const CACHE_FORMAT = 4;

export interface CompileOptions {
  /** Base name: the file name in diagnostics (`<name>.bpf.c`). Default "prog". */
  name?: string;
  /**
   * Extra clang flags (pylcc's `env`), e.g. ["-DLBC_DEBUG"]. A string is split on white space.
   * They come after tslcc's defaults (`-Werror=implicit-function-declaration`, `-mcpu=v3` for a
   * 5.1+ target kernel, see toolchain.ts), so `-mcpu=v2` or `-Wno-error=...` here wins.
   */
  flags?: string[] | string;
  /**
   * 'auto' (default): the cache, then local clang if installed, then the compile server.
   * 'local': clang only. 'remote': the compile server only (the cache still answers first).
   */
  mode?: 'auto' | 'local' | 'remote';
  /** Compile server (URL or pylcc host name). Default $TSLCC_SERVER, then pylcc's $LBC_SERVER. */
  server?: string;
  /** Talk to the server with tslcc's v1 API (default) or pylcc's POST /lbc. */
  protocol?: 'tslcc' | 'pylcc';
  /** Bearer token for the server. Default $TSLCC_SERVER_TOKEN. */
  token?: string;
  /** Server: retries on connection errors and 503 (default 4, with backoff). */
  retries?: number;
  /** Server: milliseconds to connect (default 5000) and for a whole request (default 120000). */
  connectTimeoutMs?: number;
  timeoutMs?: number;
  /** Cache directory. Default $TSLCC_CACHE_DIR, else $XDG_CACHE_HOME/tslcc, else ~/.cache/tslcc. */
  cacheDir?: string;
  /** Skip the cache lookup (the result is still stored). */
  noCache?: boolean;
  /** clang binary. Default $TSLCC_CLANG, else `clang` from PATH. */
  clang?: string;
  /** Target arch as Node (x64, arm64) or the kernel (x86, arm64) names it. Default: this host. */
  arch?: string;
  /** Extra include directories (also from pylcc's LBC_INCLUDE, colon separated). */
  includeDirs?: string[];
  /** Kernel BTF to generate vmlinux.h from. Default /sys/kernel/btf/vmlinux. */
  btfPath?: string;
  /** Use a precompiled lbc.h (built once per flags; default true). */
  pch?: boolean;
  /**
   * The file the source was read from. Its directory is an include directory (`#include
   * "tool.h"` beside it works, locally and remotely) and diagnostics name this path.
   */
  sourcePath?: string;
  /** Where warnings go (an unwritable cache, a rebuilt precompiled header). Default: stderr. */
  onWarning?: (message: string) => void;
}

export interface CompiledObject {
  /** The CO-RE ELF object. */
  elf: Buffer;
  /** Content hash: the cache key. */
  key: string;
  /** Where it came from. */
  from: 'cache' | 'local' | 'remote';
  /** Path of the cached object. */
  path: string;
  /** Compiler warnings, at the user's lines. */
  warnings: Diagnostic[];
  /** Milliseconds spent. */
  ms: number;
}

/** The running kernel's BTF: $TSLCC_KERNEL_BTF, else /sys/kernel/btf/vmlinux. */
export function kernelBtfPath(): string {
  return process.env.TSLCC_KERNEL_BTF || '/sys/kernel/btf/vmlinux';
}

export function defaultCacheDir(): string {
  if (process.env.TSLCC_CACHE_DIR) return process.env.TSLCC_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'tslcc');
}

/** The kernel's name for an arch, as used by bpf_tracing.h's __TARGET_ARCH_*. */
export function kernelArch(arch: string = process.arch): string {
  const map: Record<string, string> = {
    x64: 'x86', x86_64: 'x86', x86: 'x86', amd64: 'x86',
    arm64: 'arm64', aarch64: 'arm64',
    s390x: 's390', s390: 's390',
    ppc64: 'powerpc', ppc64le: 'powerpc', powerpc: 'powerpc',
    riscv64: 'riscv', riscv: 'riscv',
    loong64: 'loongarch', loongarch64: 'loongarch', loongarch: 'loongarch',
    arm: 'arm', mips: 'mips',
  };
  const k = map[arch];
  if (!k) throw new LbcError('LBC_INVALID_ARGUMENT', `compile: unknown target arch "${arch}"; expected one of ${Object.keys(map).join(', ')}`);
  return k;
}

let lbcHash: string | undefined;
/** sha256 of lbc.h and the headers beside it: part of every cache key, here and on a compile server. */
export function lbcHeaderHash(): string {
  lbcHash ??= sha256(Buffer.concat(['lbc.h', 'lbc_compat.h'].map((f) => fs.readFileSync(path.join(INCLUDE_DIR, f)))));
  return lbcHash;
}

export function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

const fileHashes = new Map<string, string>();

/**
 * sha256 of a file, computed once per (path, size, mtime): kernel BTF files are megabytes
 * and are identified by their hash on every compile request. Undefined if unreadable.
 */
export function fileSha256(file: string): string | undefined {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    return undefined;
  }
  const id = `${file}:${st.size}:${st.mtimeMs}`;
  let h = fileHashes.get(id);
  if (!h) {
    h = sha256(fs.readFileSync(file));
    fileHashes.set(id, h);
  }
  return h;
}

/**
 * The file clang compiles: the user's source, line for line (lbc.h comes in through
 * `-include`, so no line moves: diagnostics, BTF line info and the verifier's source
 * annotations all show the user's own lines), plus a license when the program has none.
 */
export function wrapSource(source: string): string {
  let out = source.endsWith('\n') ? source : `${source}\n`;
  // Most helpers a tracer needs are GPL-only; give a program without a license one.
  if (!/SEC\s*\(\s*"license"\s*\)/.test(source)) out += 'char __lbc_license[] SEC("license") = "GPL";\n';
  return out;
}

export function splitFlags(flags: CompileOptions['flags']): string[] {
  if (!flags) return [];
  return typeof flags === 'string' ? flags.split(/\s+/).filter(Boolean) : [...flags];
}

/** Find clang: the option, $TSLCC_CLANG, or PATH. */
export function findClang(explicit?: string): string | undefined {
  const want = explicit ?? process.env.TSLCC_CLANG;
  if (want) return fs.existsSync(want) ? want : undefined;
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const p = path.join(dir || '.', 'clang');
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch { /* next */ }
  }
  return undefined;
}

/** clang's --version, remembered per binary (path, size, mtime) so a cache hit never runs clang. */
export async function clangIdentity(clang: string, cacheDir: string): Promise<string> {
  const real = fs.realpathSync(clang);
  const st = fs.statSync(real);
  const stamp = `${real}:${st.size}:${st.mtimeMs}`;
  const file = path.join(cacheDir, 'clang-identity.json');
  try {
    const j = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, string>;
    if (j[stamp]) return j[stamp];
  } catch { /* first run */ }
  const { stdout } = await run(clang, ['--version']);
  const id = stdout.split('\n')[0]!.trim();
  let j: Record<string, string> = {};
  try { j = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, string>; } catch { /* none */ }
  j[stamp] = id;
  try {
    writeAtomic(file, JSON.stringify(j));
  } catch { /* a full or read-only cache only costs a `clang --version` next time */ }
  return id;
}

/** Write through a temp file and rename, so readers never see a partial file; the temp file never stays behind. */
export function writeAtomic(file: string, data: string | Buffer): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

interface RunResult { code: number | null; stdout: string; stderr: string; signal: NodeJS.Signals | null }

function run(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], timeout: opts.timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, stdout, stderr, signal }));
  });
}

/**
 * vmlinux.h for the running kernel (or btfPath), generated through libbpf's btf_dump and
 * cached by the BTF's hash. Returns the directory holding it.
 */
/** The content-addressed cache key of one compile. */
export function compileKey(p: { name: string; source: string; flags: string[]; includeDirs?: string[]; compiler: string; arch: string; extra?: unknown }): string {
  return sha256(JSON.stringify([CACHE_FORMAT, p.name, p.source, p.flags, p.includeDirs ?? [], lbcHeaderHash(), p.compiler, p.arch, p.extra ?? null]));
}

/** Where an object with this key lives in a cache directory. */
export function cachedObjectPath(cacheDir: string, key: string): string {
  return path.join(cacheDir, 'obj', key.slice(0, 2), `${key}.bpf.o`);
}

/**
 * clang's arguments for one BPF compile, with the paths as the compiler will see them (the
 * server passes the paths inside its sandbox). Never a shell: these go to execve as they are.
 */
/** Debian's multiarch include directory of each kernel arch name. */
export const MULTIARCH_INCLUDE: Record<string, string> = {
  x86: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu', s390: 's390x-linux-gnu', powerpc: 'powerpc64le-linux-gnu', riscv: 'riscv64-linux-gnu',
};

export function clangArgs(p: {
  arch: string; src: string; out: string; includeDir: string; vmlinuxDir: string; includeDirs?: string[]; flags: string[];
  /** Use this precompiled lbc.h instead of parsing it (and vmlinux.h) again. */
  pch?: string;
  /** Build the precompiled lbc.h into `out` (src is ignored). */
  buildPch?: boolean;
}): string[] {
  // With -target bpf clang searches no multiarch directory, so <asm/...>, <bits/...> and
  // glibc headers a program pulls in (libbpf-tools' CLANG_BPF_SYS_INCLUDES) are not found;
  // the target arch's one goes last, after everything else (also inside the server's sandbox).
  const multiarch = MULTIARCH_INCLUDE[p.arch];
  const sys = multiarch && fs.existsSync(`/usr/include/${multiarch}`) ? ['-idirafter', `/usr/include/${multiarch}`] : [];
  const common = [
    '-target', 'bpf', '-O2', '-g', `-D__TARGET_ARCH_${p.arch}`,
    '-fno-color-diagnostics', '-fno-caret-diagnostics',
    '-I', p.includeDir, '-I', p.vmlinuxDir, ...(p.includeDirs ?? []).flatMap((d) => ['-I', d]),
    ...p.flags, ...sys,
  ];
  const lbc = path.join(p.includeDir, 'lbc.h');
  if (p.buildPch) return [...common, '-x', 'c-header', lbc, '-o', p.out];
  return [...common, ...(p.pch ? ['-include-pch', p.pch] : ['-include', lbc]), '-c', p.src, '-o', p.out];
}

/**
 * Key of a precompiled lbc.h. A PCH is only valid for the flags it was built with (a PCH
 * built without -DLBC_DEBUG silently keeps lbc_debug() a no-op), so they are part of it.
 */
export function pchKey(p: { vmlinuxDir: string; arch: string; flags: string[]; includeDirs?: string[]; compiler: string; includeDir?: string }): string {
  // clang refuses a PCH whose inputs changed size or mtime since it was built ("file has
  // been modified since the precompiled header was built"), even with the same content, and
  // a PCH records the absolute paths of its inputs: so the key covers where lbc.h is and
  // the stamps of the files a PCH is built from, and another checkout gets its own PCH.
  const inc = p.includeDir ?? INCLUDE_DIR;
  const stamps = [path.join(inc, 'lbc.h'), path.join(p.vmlinuxDir, 'vmlinux.h')].map((f) => {
    try { const st = fs.statSync(f); return `${f}:${st.size}:${st.mtimeMs}`; } catch { return `${f}:-`; }
  });
  return sha256(JSON.stringify(['pch', 3, lbcHeaderHash(), p.vmlinuxDir, p.arch, p.flags, p.includeDirs ?? [], p.compiler, stamps]));
}

const pchBuilds = new Map<string, Promise<string | undefined>>();

/**
 * A precompiled lbc.h (with vmlinux.h and the libbpf headers) for these flags, built once per
 * key: parsing the 3 MB vmlinux.h is most of a cold compile (0.30 s of 0.34 s here). Returns
 * undefined when it cannot be built; the compile then includes lbc.h as usual.
 */
async function ensurePch(clang: string, cacheDir: string, p: { vmlinuxDir: string; arch: string; flags: string[]; includeDirs: string[]; compiler: string }): Promise<string | undefined> {
  const key = pchKey(p);
  const file = pchPath(cacheDir, key);
  if (fs.existsSync(file)) return file;
  let build = pchBuilds.get(key);
  if (!build) {
    build = (async () => {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
      const r = await run(clang, clangArgs({ ...p, includeDir: INCLUDE_DIR, src: '', out: tmp, buildPch: true }), { timeoutMs: 120_000 });
      if (r.code !== 0) {
        fs.rmSync(tmp, { force: true });
        return undefined;
      }
      fs.renameSync(tmp, file);
      return file;
    })().finally(() => pchBuilds.delete(key));
    pchBuilds.set(key, build);
  }
  return build;
}

function pchPath(cacheDir: string, key: string): string {
  return path.join(cacheDir, 'pch', key.slice(0, 2), `${key}.pch`);
}

/** clang's complaint about a precompiled header it cannot use (stale inputs, other compiler, corrupt). */
export const PCH_TROUBLE = /precompiled header|PCH file|\.pch'|AST file|please rebuild/i;

/** The CompileError for a failed clang run: counts, the first error, all diagnostics. */
export function compileFailure(name: string, stderr: string, signal?: string | null, displayName?: string): CompileError {
  const diagnostics = parseDiagnostics(stderr);
  const errors = diagnostics.filter((d) => d.severity === 'error' || d.severity === 'fatal error');
  const first = errors[0];
  const at = first && first.line ? `${first.file}:${first.line}:${first.column}: ` : first ? `${first.file}: ` : '';
  const where = first ? `${at}${first.message}` : (signal ? `clang killed by ${signal}` : stderr.trim().split('\n').pop() || 'clang failed without a message');
  return new CompileError(`compile "${displayName ?? `${name}.bpf.c`}": ${errors.length || 1} error${errors.length > 1 ? 's' : ''}; ${where}`, diagnostics, stderr);
}

export function vmlinuxHeaderDir(cacheDir: string, btfPath = kernelBtfPath()): string {
  const hash = fileSha256(btfPath);
  if (!hash) {
    throw new NotFoundError(
      `compile: read kernel BTF "${btfPath}": not readable; the kernel needs CONFIG_DEBUG_INFO_BTF=y, ` +
      'or pass btfPath (a BTFHub file) to compile for it');
  }
  const dir = path.join(cacheDir, 'vmlinux', vmlinuxDirName(hash));
  const file = path.join(dir, 'vmlinux.h');
  if (!fs.existsSync(file)) writeAtomic(file, native().dumpBtfAsC(btfPath === '/sys/kernel/btf/vmlinux' ? null : btfPath));
  return dir;
}

const DIAG = /^(.+?):(\d+):(\d+): (error|warning|note|fatal error): (.*)$/;

/** Parse clang's diagnostics ("file:line:col: severity: message"), and BPF backend errors. */
export function parseDiagnostics(log: string): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const line of log.split('\n')) {
    const m = DIAG.exec(line);
    if (m && m[1] !== '<unknown>') out.push({ file: m[1]!, line: Number(m[2]), column: Number(m[3]), severity: m[4] as Diagnostic['severity'], message: m[5]! });
  }
  if (!out.some((d) => d.severity === 'error' || d.severity === 'fatal error')) {
    // The BPF backend fails after parsing, without a "file:line:col: error:" line; its text
    // still names the user's location ("prog.bpf.c:12:5") somewhere.
    const backend = /^(?:fatal error: error in backend: |Error at line \d+: |error: <unknown>:0:0: )(.*)$/m.exec(log);
    if (backend) {
      const loc = /([^\s,]+\.bpf\.c):(\d+):(\d+)/.exec(log);
      let message = backend[1]!.trim();
      if (/signed division/i.test(log)) message = 'signed division or modulo is not supported by the BPF backend; use unsigned operands (e.g. (u64)x % 4)';
      else if (message.length > 200) message = `${message.slice(0, 200)}...`;
      out.push({ file: loc?.[1] ?? '<backend>', line: Number(loc?.[2] ?? 0), column: Number(loc?.[3] ?? 0), severity: 'error', message });
    }
  }
  if (!out.some((d) => d.severity === 'error' || d.severity === 'fatal error')) {
    // clang's own errors carry no location ("clang: error: unknown argument: '-x'",
    // "fatal error: cannot open file"): keep them as diagnostics of the command line.
    for (const line of log.split('\n')) {
      if (/clang frontend command failed/.test(line)) continue;
      const m = /^(?:clang(?:-\d+)?: )?(error|fatal error): (?!error in backend|<unknown>)(.*)$/.exec(line.trim());
      if (m) out.push({ file: '<command line>', line: 0, column: 0, severity: m[1] as Diagnostic['severity'], message: m[2]! });
    }
  }
  return out;
}

/** Relative include paths in flags (-I dir, -Idir, -iquote, -isystem, -idirafter, -include) resolved against `cwd`. */
export function absolutizeFlags(flags: string[], cwd = process.cwd()): string[] {
  const out: string[] = [];
  const PATH_FLAGS = ['-I', '-iquote', '-isystem', '-idirafter', '-include', '-imacros'];
  for (let i = 0; i < flags.length; i++) {
    const f = flags[i]!;
    const sep = PATH_FLAGS.find((p) => f === p);
    if (sep && i + 1 < flags.length) {
      out.push(f, path.resolve(cwd, flags[++i]!));
      continue;
    }
    const joined = PATH_FLAGS.find((p) => f.startsWith(p) && f.length > p.length && (p !== '-I' || true));
    if (joined && !f.startsWith('-include-pch')) out.push(`${joined}${path.resolve(cwd, f.slice(joined.length))}`);
    else out.push(f);
  }
  return out;
}

/** Parse a make-style dependency file (clang -MD -MF): the files the compile read. */
export function parseDepFile(text: string): string[] {
  const body = text.replace(/\\\r?\n/g, ' ');
  // The target ends at the first ':' followed by white space or the end ("out.o:" with no inputs).
  const colon = /:(?:\s|$)/.exec(body);
  const list = colon ? body.slice(colon.index + 1) : body;
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < list.length; i++) {
    const c = list[i]!;
    if (c === '\\' && list[i + 1] === ' ') { cur += ' '; i++; continue; }
    if (/\s/.test(c)) { if (cur) out.push(cur); cur = ''; continue; }
    cur += c;
  }
  if (cur) out.push(cur);
  return out;
}

/** One input of a cached compile and its content hash ("" for files identified by their path). */
interface DepEntry { file: string; sha256: string }
interface Manifest { format: number; deps: DepEntry[]; objKey: string; objSha256: string }

/** A file's identity for the cache: content hash, or its path for files whose path is their hash. */
function depHash(file: string, cacheDir: string): string | undefined {
  if (file.startsWith(path.join(cacheDir, 'vmlinux') + path.sep)) return fs.existsSync(file) ? '' : undefined; // named by the BTF hash
  return fileSha256(file);
}

function finalKey(base: string, deps: DepEntry[]): string {
  return sha256(JSON.stringify([base, deps]));
}

function manifestPath(cacheDir: string, base: string): string {
  return path.join(cacheDir, 'manifest', base.slice(0, 2), `${base}.json`);
}

/**
 * A cache hit: the manifest of `base` lists every file the compile read with its hash; all
 * still match, and the object's own hash matches (a truncated or corrupt object is a miss).
 */
function cacheLookup(cacheDir: string, base: string): { elf: Buffer; key: string; path: string } | undefined {
  let m: Manifest;
  try {
    m = JSON.parse(fs.readFileSync(manifestPath(cacheDir, base), 'utf8')) as Manifest;
  } catch {
    return undefined;
  }
  if (m.format !== CACHE_FORMAT || !Array.isArray(m.deps)) return undefined;
  for (const d of m.deps) if (depHash(d.file, cacheDir) !== d.sha256) return undefined;
  if (finalKey(base, m.deps) !== m.objKey) return undefined;
  const file = cachedObjectPath(cacheDir, m.objKey);
  try {
    const elf = fs.readFileSync(file);
    if (sha256(elf) === m.objSha256) return { elf, key: m.objKey, path: file };
    fs.rmSync(file, { force: true }); // corrupt: recompile
  } catch { /* miss */ }
  return undefined;
}

/** Store an object and its manifest; an unwritable or full cache only warns. Returns the object's path, if stored. */
function cacheStore(cacheDir: string, base: string, deps: DepEntry[], elf: Buffer, warn: (m: string) => void): { key: string; path?: string } {
  const key = finalKey(base, deps);
  const file = cachedObjectPath(cacheDir, key);
  try {
    writeAtomic(file, elf);
    const m: Manifest = { format: CACHE_FORMAT, deps, objKey: key, objSha256: sha256(elf) };
    writeAtomic(manifestPath(cacheDir, base), JSON.stringify(m));
    return { key, path: file };
  } catch (e) {
    warn(`compile cache ${cacheDir}: cannot store the object (${(e as Error).message}); it will be compiled again next time`);
    return { key };
  }
}

/** Whether `dir` is (or can be made) a writable directory. */
function writableDir(dir: string): boolean {
  try {
    fs.mkdirSync(dir, { recursive: true });
    fs.accessSync(dir, fs.constants.W_OK);
    const probe = path.join(dir, `.probe-${process.pid}-${Math.random().toString(36).slice(2)}`);
    fs.writeFileSync(probe, '');
    fs.rmSync(probe, { force: true });
    return true;
  } catch {
    return false;
  }
}

/** Errors of writing to a directory that exists and is writable: full, over quota, read-only. */
const WRITE_FAILURES = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'EFBIG']);

const defaultWarn = (m: string) => process.stderr.write(`tslcc: warning: ${m}\n`);

/** Diagnostics of the compiled file renamed to the user's path (clang sees `<name>.bpf.c` in a temp dir). */
function renameDiagnostics<T extends { file: string }>(diags: T[], from: string, to: string | undefined): T[] {
  if (!to || to === from) return diags;
  for (const d of diags) if (d.file === from) d.file = to;
  return diags;
}

function renameLog(log: string, from: string, to: string | undefined): string {
  if (!to || to === from) return log;
  return log.split(`${from}:`).join(`${to}:`);
}

/**
 * Compile BPF C (with the LBC_* macros) to a CO-RE object.
 *
 * The cache key covers the source, flags, include directories, lbc.h, the compiler and
 * the arch, and the contents of every header the compile read (clang's dependency list):
 * a changed header recompiles. A corrupt cached object is detected by its hash and
 * recompiled; an unwritable cache directory means compiling without a cache, with a warning.
 * @throws CompileError with diagnostics at the user's lines; NotFoundError when no clang.
 */
export async function compile(source: string, opts: CompileOptions = {}): Promise<CompiledObject> {
  const t0 = performance.now();
  const name = opts.name ?? 'prog';
  const warn = opts.onWarning ?? defaultWarn;
  let cacheDir = opts.cacheDir ?? defaultCacheDir();
  const arch = kernelArch(opts.arch);
  const flags = toolchainFlags(absolutizeFlags(splitFlags(opts.flags)), targetKernelRelease(opts.btfPath));
  const srcDir = opts.sourcePath ? path.dirname(path.resolve(opts.sourcePath)) : undefined;
  const includeDirs = [...(opts.includeDirs ?? []), ...(process.env.LBC_INCLUDE ?? '').split(':').filter(Boolean)].map((d) => path.resolve(d));
  const mode = opts.mode ?? 'auto';
  const clang = mode === 'remote' ? undefined : findClang(opts.clang);
  const server = configuredServer(opts);
  const displayName = opts.sourcePath;
  if (!clang && (mode === 'local' || !server)) {
    throw new NotFoundError(
      `compile "${displayName ?? `${name}.bpf.c`}": clang not found in PATH; install it (apt-get install clang llvm libbpf-dev), ` +
      `set TSLCC_CLANG to its path${mode === 'local' ? '' : ', or use a compile server (TSLCC_SERVER)'}`);
  }
  let scratchCache: string | undefined;
  if (!writableDir(cacheDir)) {
    scratchCache = fs.mkdtempSync(path.join(os.tmpdir(), 'tslcc-nocache-'));
    warn(`compile cache ${cacheDir} is not writable; compiling without a cache (set TSLCC_CACHE_DIR or compile.cacheDir to a writable directory)`);
    cacheDir = scratchCache;
  }
  try {
    const wrapped = wrapSource(source);
    if (!clang) {
      const r = await compileRemote(wrapped, { ...opts, name, cacheDir, arch, flags, includeDirs, srcDir, server: server!, warn }, t0);
      return scratchCache ? { ...r, path: '' } : r;
    }
    const compilerId = await clangIdentity(clang, cacheDir);
    const base = compileKey({ name, source: wrapped, flags, includeDirs, compiler: compilerId, arch, extra: { srcDir: srcDir ?? null, btf: opts.btfPath ?? null } });
    if (!opts.noCache) {
      const hit = cacheLookup(cacheDir, base);
      if (hit) return { elf: hit.elf, key: hit.key, from: 'cache', path: hit.path, warnings: [], ms: performance.now() - t0 };
    }
    let vmlinuxDir: string;
    try {
      vmlinuxDir = vmlinuxHeaderDir(cacheDir, opts.btfPath);
    } catch (e) {
      // A full disk or quota (the cache dir itself was writable): vmlinux.h is megabytes, so
      // go on in a scratch cache, as for an unwritable one.
      if (scratchCache || !WRITE_FAILURES.has((e as NodeJS.ErrnoException).code ?? '')) throw e;
      scratchCache = fs.mkdtempSync(path.join(os.tmpdir(), 'tslcc-nocache-'));
      warn(`compile cache ${cacheDir}: cannot store vmlinux.h (${(e as Error).message}); compiling without a cache`);
      cacheDir = scratchCache;
      vmlinuxDir = vmlinuxHeaderDir(cacheDir, opts.btfPath);
    }
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tslcc-'));
    try {
      const src = `${name}.bpf.c`; // relative to cwd, so diagnostics name the user's file only
      const out = path.join(work, 'out.bpf.o');
      const depFile = path.join(work, 'deps.d');
      // clang looks up `#include "../x.h"` beside the including file first: for the main file
      // that is this scratch copy, so "../x.h" would find $TMPDIR/x.h before the user's.
      // Nested empty directories make such names miss here and fall through to -iquote srcDir.
      const srcHome = path.join(work, ...new Array<string>(8).fill('s'));
      fs.mkdirSync(srcHome, { recursive: true });
      fs.writeFileSync(path.join(srcHome, src), wrapped);
      const quote = srcDir ? ['-iquote', srcDir] : [];
      const pchOpts = { vmlinuxDir, arch, flags, includeDirs, compiler: compilerId };
      let pch = opts.pch === false ? undefined : await ensurePch(clang, cacheDir, pchOpts);
      // -fdebug-compilation-dir: the BTF line info would otherwise name the random work dir,
      // and the same source would give different bytes on every compile.
      const clangRun = () => run(clang, [...clangArgs({ arch, src, out, includeDir: INCLUDE_DIR, vmlinuxDir, includeDirs, flags: [...quote, ...flags], pch }), '-fdebug-compilation-dir=.', '-MD', '-MF', depFile], { cwd: srcHome, timeoutMs: 120_000 });
      let r = await clangRun();
      if (r.code !== 0 && pch && PCH_TROUBLE.test(r.stderr)) {
        // A PCH clang will not use (its inputs were touched, another compiler built it):
        // drop it, compile without, and let the next compile build a fresh one.
        fs.rmSync(pch, { force: true });
        warn(`compile "${displayName ?? src}": the precompiled lbc.h was stale (${r.stderr.split('\n').find((l) => PCH_TROUBLE.test(l))?.trim()}); rebuilt without it`);
        pch = undefined;
        r = await clangRun();
      }
      const diagnostics = renameDiagnostics(parseDiagnostics(r.stderr), src, displayName);
      if (r.code !== 0) throw compileFailure(name, renameLog(r.stderr, src, displayName), r.signal, displayName);
      await stripDebug(out, clang);
      const elf = fs.readFileSync(out);
      let deps: DepEntry[] = [];
      try {
        deps = depsOf(fs.readFileSync(depFile, 'utf8'), work, cacheDir, pch);
      } catch { /* no dep file: the key still covers source and flags */ }
      const stored = cacheStore(cacheDir, base, deps, elf, warn);
      // A scratch cache is removed below: nothing stays at its paths.
      return { elf, key: stored.key, from: 'local', path: scratchCache ? '' : stored.path ?? '', warnings: diagnostics.filter((d) => d.severity === 'warning'), ms: performance.now() - t0 };
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  } finally {
    if (scratchCache) fs.rmSync(scratchCache, { recursive: true, force: true });
  }
}

/** The inputs of a compile worth keying on: not the scratch source, not lbc.h (in the key), not the PCH (derived). */
function depsOf(depText: string, work: string, cacheDir: string, pch?: string): DepEntry[] {
  const lbc = path.join(INCLUDE_DIR, 'lbc.h');
  const out: DepEntry[] = [];
  const seen = new Set<string>();
  for (const f of parseDepFile(depText)) {
    const abs = path.resolve(work, f);
    if (seen.has(abs) || abs.startsWith(work + path.sep) || abs === lbc || abs === pch || abs.endsWith('.pch')) continue;
    seen.add(abs);
    const h = depHash(abs, cacheDir);
    if (h !== undefined) out.push({ file: abs, sha256: h });
  }
  return out.sort((a, b) => a.file.localeCompare(b.file));
}

/**
 * The remote path: the same cache (keyed with the compiler "remote", so an object compiled
 * by a server is never compiled again while its key matches), then the server. Local
 * headers the source includes travel with it as a bundle.
 */
async function compileRemote(wrapped: string, o: CompileOptions & { name: string; cacheDir: string; arch: string; flags: string[]; includeDirs: string[]; srcDir?: string; server: string; warn: (m: string) => void }, t0: number): Promise<CompiledObject> {
  const bundle = collectHeaders(wrapped, { srcDir: o.srcDir, includeDirs: o.includeDirs, flags: o.flags });
  if (bundle.files.length && o.protocol === 'pylcc') {
    throw new LbcError('LBC_INVALID_ARGUMENT', `compile "${o.sourcePath ?? `${o.name}.bpf.c`}" on a pylcc server: its protocol cannot carry the local headers the source includes (${bundle.files.map((f) => f.path).join(', ')}); use a tslcc server or compile locally`);
  }
  const key = compileKey({
    name: o.name, source: wrapped, flags: bundle.flags, compiler: `remote:${o.protocol ?? 'tslcc'}`, arch: o.arch,
    extra: { headers: bundle.files.map((f) => [f.path, sha256(f.content)]), dirs: bundle.dirs },
  });
  const objPath = cachedObjectPath(o.cacheDir, key);
  if (!o.noCache) {
    try {
      const elf = fs.readFileSync(objPath);
      const sum = fs.readFileSync(`${objPath}.sha256`, 'utf8');
      if (sha256(elf) === sum) return { elf, key, from: 'cache', path: objPath, warnings: [], ms: performance.now() - t0 };
    } catch { /* miss */ }
  }
  // The server names the source `<name>.bpf.c` and the headers `inc/<path>`: give back the user's paths.
  const renames: Array<[string, string]> = [
    ...(o.sourcePath ? [[`${o.name}.bpf.c`, o.sourcePath] as [string, string]] : []),
    ...(bundle.root ? bundle.files.map((f) => [`inc/${f.path}`, path.join(bundle.root!, ...f.path.split('/'))] as [string, string]) : []),
  ];
  const localize = (d: Diagnostic[]) => { for (const x of d) x.file = renames.find(([from]) => from === x.file)?.[1] ?? x.file; return d; };
  let r: Awaited<ReturnType<typeof remoteCompile>>;
  try {
    r = await remoteCompile({ name: o.name, source: wrapped, flags: bundle.flags, arch: o.arch, btfPath: o.btfPath, headers: bundle.files, includeDirs: bundle.dirs }, o);
  } catch (e) {
    if (!(e instanceof RemoteError) || !renames.length) throw e;
    let message = e.message;
    for (const [from, to] of renames) message = message.split(`${from}:`).join(`${to}:`).split(`"${from}"`).join(`"${to}"`);
    throw new RemoteError(message, e.server, e.status, { serverCode: e.serverCode, diagnostics: localize(e.diagnostics), cause: e.cause });
  }
  let stored = objPath;
  try {
    writeAtomic(objPath, r.elf);
    writeAtomic(`${objPath}.sha256`, sha256(r.elf));
  } catch (e) {
    o.warn(`compile cache ${o.cacheDir}: cannot store the object (${(e as Error).message})`);
    stored = '';
  }
  return { elf: r.elf, key, from: 'remote', path: stored, warnings: localize(r.diagnostics.filter((d) => d.severity === 'warning')), ms: performance.now() - t0 };
}
