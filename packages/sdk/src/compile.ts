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
import { configuredServer, remoteCompile } from './remote.js';
import { stripDebug, targetKernelRelease, toolchainFlags, vmlinuxDirName } from './toolchain.js';

/** Where lbc.h lives. */
export const INCLUDE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'include');
// 2: objects are stripped of DWARF and built with the toolchain defaults (toolchain.ts).
const CACHE_FORMAT = 2;

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
  writeAtomic(file, JSON.stringify(j));
  return id;
}

export function writeAtomic(file: string, data: string | Buffer): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
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
export function compileKey(p: { name: string; source: string; flags: string[]; includeDirs?: string[]; compiler: string; arch: string }): string {
  return sha256(JSON.stringify([CACHE_FORMAT, p.name, p.source, p.flags, p.includeDirs ?? [], lbcHeaderHash(), p.compiler, p.arch]));
}

/** Where an object with this key lives in a cache directory. */
export function cachedObjectPath(cacheDir: string, key: string): string {
  return path.join(cacheDir, 'obj', key.slice(0, 2), `${key}.bpf.o`);
}

/**
 * clang's arguments for one BPF compile, with the paths as the compiler will see them (the
 * server passes the paths inside its sandbox). Never a shell: these go to execve as they are.
 */
export function clangArgs(p: {
  arch: string; src: string; out: string; includeDir: string; vmlinuxDir: string; includeDirs?: string[]; flags: string[];
  /** Use this precompiled lbc.h instead of parsing it (and vmlinux.h) again. */
  pch?: string;
  /** Build the precompiled lbc.h into `out` (src is ignored). */
  buildPch?: boolean;
}): string[] {
  const common = [
    '-target', 'bpf', '-O2', '-g', `-D__TARGET_ARCH_${p.arch}`,
    '-fno-color-diagnostics', '-fno-caret-diagnostics',
    '-I', p.includeDir, '-I', p.vmlinuxDir, ...(p.includeDirs ?? []).flatMap((d) => ['-I', d]),
    ...p.flags,
  ];
  const lbc = path.join(p.includeDir, 'lbc.h');
  if (p.buildPch) return [...common, '-x', 'c-header', lbc, '-o', p.out];
  return [...common, ...(p.pch ? ['-include-pch', p.pch] : ['-include', lbc]), '-c', p.src, '-o', p.out];
}

/**
 * Key of a precompiled lbc.h. A PCH is only valid for the flags it was built with (a PCH
 * built without -DLBC_DEBUG silently keeps lbc_debug() a no-op), so they are part of it.
 */
export function pchKey(p: { vmlinuxDir: string; arch: string; flags: string[]; includeDirs?: string[]; compiler: string }): string {
  return sha256(JSON.stringify(['pch', 1, lbcHeaderHash(), p.vmlinuxDir, p.arch, p.flags, p.includeDirs ?? [], p.compiler]));
}

const pchBuilds = new Map<string, Promise<string | undefined>>();

/**
 * A precompiled lbc.h (with vmlinux.h and the libbpf headers) for these flags, built once per
 * key: parsing the 3 MB vmlinux.h is most of a cold compile (0.30 s of 0.34 s here). Returns
 * undefined when it cannot be built; the compile then includes lbc.h as usual.
 */
async function ensurePch(clang: string, cacheDir: string, p: { vmlinuxDir: string; arch: string; flags: string[]; includeDirs: string[]; compiler: string }): Promise<string | undefined> {
  const key = pchKey(p);
  const file = path.join(cacheDir, 'pch', key.slice(0, 2), `${key}.pch`);
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

/** The CompileError for a failed clang run: counts, the first error, all diagnostics. */
export function compileFailure(name: string, stderr: string, signal?: string | null): CompileError {
  const diagnostics = parseDiagnostics(stderr);
  const errors = diagnostics.filter((d) => d.severity === 'error' || d.severity === 'fatal error');
  const first = errors[0];
  const where = first ? `${first.file}:${first.line}:${first.column}: ${first.message}` : (signal ? `clang killed by ${signal}` : stderr.trim().split('\n').pop());
  return new CompileError(`compile "${name}.bpf.c": ${errors.length || 1} error${errors.length > 1 ? 's' : ''}; ${where}`, diagnostics, stderr);
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
  return out;
}

/**
 * Compile BPF C (with the LBC_* macros) to a CO-RE object.
 * @throws CompileError with diagnostics at the user's lines; NotFoundError when no clang.
 */
export async function compile(source: string, opts: CompileOptions = {}): Promise<CompiledObject> {
  const t0 = performance.now();
  const name = opts.name ?? 'prog';
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  const arch = kernelArch(opts.arch);
  const flags = toolchainFlags(splitFlags(opts.flags), targetKernelRelease(opts.btfPath));
  const includeDirs = [...(opts.includeDirs ?? []), ...(process.env.LBC_INCLUDE ?? '').split(':').filter(Boolean)];
  const mode = opts.mode ?? 'auto';
  const clang = mode === 'remote' ? undefined : findClang(opts.clang);
  const server = configuredServer(opts);
  if (!clang && (mode === 'local' || !server)) {
    throw new NotFoundError(
      `compile "${name}.bpf.c": clang not found in PATH; install it (apt-get install clang llvm libbpf-dev), ` +
      `set TSLCC_CLANG to its path${mode === 'local' ? '' : ', or use a compile server (TSLCC_SERVER)'}`);
  }
  const wrapped = wrapSource(source);
  if (!clang) return compileRemote(wrapped, { ...opts, name, cacheDir, arch, flags, includeDirs, server: server! }, t0);
  const compilerId = await clangIdentity(clang, cacheDir);
  const key = compileKey({ name, source: wrapped, flags, includeDirs, compiler: compilerId, arch });
  const objPath = cachedObjectPath(cacheDir, key);
  if (!opts.noCache) {
    try {
      const elf = fs.readFileSync(objPath);
      return { elf, key, from: 'cache', path: objPath, warnings: [], ms: performance.now() - t0 };
    } catch { /* miss */ }
  }
  const vmlinuxDir = vmlinuxHeaderDir(cacheDir, opts.btfPath);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tslcc-'));
  try {
    const src = `${name}.bpf.c`; // relative to cwd, so diagnostics name the user's file only
    const out = path.join(work, 'out.bpf.o');
    fs.writeFileSync(path.join(work, src), wrapped);
    const pch = opts.pch === false ? undefined : await ensurePch(clang, cacheDir, { vmlinuxDir, arch, flags, includeDirs, compiler: compilerId });
    const args = clangArgs({ arch, src, out, includeDir: INCLUDE_DIR, vmlinuxDir, includeDirs, flags, pch });
    const r = await run(clang, args, { cwd: work, timeoutMs: 120_000 });
    const diagnostics = parseDiagnostics(r.stderr);
    if (r.code !== 0) throw compileFailure(name, r.stderr, r.signal);
    await stripDebug(out, clang);
    const elf = fs.readFileSync(out);
    writeAtomic(objPath, elf);
    return { elf, key, from: 'local', path: objPath, warnings: diagnostics.filter((d) => d.severity === 'warning'), ms: performance.now() - t0 };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The remote path: the same cache (keyed with the compiler "remote", so an object compiled
 * by a server is never compiled again while its key matches), then the server.
 */
async function compileRemote(wrapped: string, o: CompileOptions & { name: string; cacheDir: string; arch: string; flags: string[]; includeDirs: string[]; server: string }, t0: number): Promise<CompiledObject> {
  if (o.includeDirs.length) {
    throw new LbcError('LBC_INVALID_ARGUMENT', `compile "${o.name}.bpf.c" remotely: local include directories (${o.includeDirs.join(', ')}) are not sent to a compile server; inline those headers or compile locally`);
  }
  const key = compileKey({ name: o.name, source: wrapped, flags: o.flags, compiler: `remote:${o.protocol ?? 'tslcc'}`, arch: o.arch });
  const objPath = cachedObjectPath(o.cacheDir, key);
  if (!o.noCache) {
    try {
      return { elf: fs.readFileSync(objPath), key, from: 'cache', path: objPath, warnings: [], ms: performance.now() - t0 };
    } catch { /* miss */ }
  }
  const r = await remoteCompile({ name: o.name, source: wrapped, flags: o.flags, arch: o.arch, btfPath: o.btfPath }, o);
  writeAtomic(objPath, r.elf);
  return { elf: r.elf, key, from: 'remote', path: objPath, warnings: r.diagnostics.filter((d) => d.severity === 'warning'), ms: performance.now() - t0 };
}
