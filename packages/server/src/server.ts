/**
 * The tslcc compile server (node:http).
 *
 *   POST /v1/compile          { name, source, flags, arch, kernel: { release, btfHash } } → CO-RE object
 *   PUT  /v1/btf/{sha256}     a client's kernel BTF (gzip), when the server answered BTF_REQUIRED
 *   GET  /v1/btf/{arch}/{release}   kernel BTF from a BTFHub-style directory
 *   POST /lbc                 pylcc's protocol (cmd "obj", "btf"; "c" answered "not supported")
 *   GET  /healthz, GET /metrics (Prometheus text)
 *
 * Every rejection is a JSON error with a stable code; nothing a client sends can crash it.
 */
import { timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzip, gzipSync } from 'node:zlib';
import {
  checkBundle, MAX_BUNDLE_BYTES, PCH_TROUBLE, cachedObjectPath, clangArgs, clangIdentity, compileFailure, compileKey, type Diagnostic, findClang, INCLUDE_DIR,
  fileSha256, findStrip, kernelArch, parseDiagnostics, pchKey, sha256, stripArgs, toolchainFlags, VMLINUX_FORMAT, vmlinuxDirName, wrapSource, writeAtomic,
} from '@tslcc/sdk';
import { Metrics } from './metrics.js';
import { badFlag, INSIDE, Sandbox } from './sandbox.js';

export interface ServerOptions {
  host?: string;
  port?: number;
  /** Where objects, BTF and headers are kept. Default ~/.cache/tslcc-server. */
  dataDir?: string;
  /** A BTFHub-style tree (<distro>/<version>/<arch>/<release>.btf) served by GET /v1/btf. */
  btfDir?: string;
  /** Require `Authorization: Bearer <token>` (all routes but /healthz). */
  token?: string;
  /** Compiles at once. Default: the number of CPUs. */
  concurrency?: number;
  /** Compiles waiting beyond that; more get 503 + Retry-After. Default 64. */
  queue?: number;
  /** Largest source, bytes (413 beyond). Default 1 MiB. */
  maxSourceBytes?: number;
  /** Largest uploaded BTF, bytes, decompressed. Default 64 MiB. */
  maxBtfBytes?: number;
  /** Wall-clock limit per compile, ms. Default 60000. */
  compileTimeoutMs?: number;
  /** Address-space limit per compile, bytes. Default 2 GiB. */
  memoryBytes?: number;
  /** Largest object, bytes. Default 16 MiB. */
  maxObjectBytes?: number;
  /** Offer this host's kernel BTF (/sys/kernel/btf/vmlinux) for compiles. Default true. */
  hostBtf?: boolean;
  /** 'bwrap' (default) or 'none' (no isolation: trusted use only). */
  sandbox?: 'bwrap' | 'none';
  clang?: string;
  /** One line per request and per compile. Default: none. */
  log?: (line: string) => void;
}

/** uname -m names accepted in requests, and the kernel's names for them. */
const ARCHES: Record<string, string> = { x86_64: 'x86', aarch64: 'arm64', arm64: 'arm64', s390x: 's390', ppc64le: 'powerpc', riscv64: 'riscv', loongarch64: 'loongarch' };
const NAME = /^[A-Za-z_][\w.-]{0,63}$/;
const GiB = 1024 ** 3;
const HEX64 = /^[0-9a-f]{64}$/;
const HERE = path.dirname(fileURLToPath(import.meta.url));

class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly extra: Record<string, unknown> = {}) {
    super(message);
  }
}

interface CompileJob {
  name: string;
  source: string;
  flags: string[];
  arch: string;
  btfHash: string;
  /** Local headers of the client, laid out under inc/ in the scratch dir. */
  headers?: Array<{ path: string; content: string }>;
  includeDirs?: Array<{ path: string; quote: boolean }>;
}

interface CompileOutcome {
  object?: Buffer;
  key: string;
  diagnostics: Diagnostic[];
  log: string;
  cached: boolean;
  failure?: { status: number; code: string; message: string };
}

export class CompileServer {
  readonly options: Required<Omit<ServerOptions, 'btfDir' | 'token' | 'clang' | 'log'>> & Pick<ServerOptions, 'btfDir' | 'token' | 'log'>;
  readonly metrics = new Metrics();
  private readonly http: http.Server;
  private readonly sandbox: Sandbox;
  private readonly clang: string;
  private clangId = '';
  private readonly btfs = new Map<string, string>(); // sha256 → BTF file
  private readonly headers = new Map<string, Promise<string>>(); // sha256 → vmlinux.h dir
  private hostHash?: string;
  private stripTool?: string | null;
  private readonly inflight = new Map<string, Promise<CompileOutcome>>();
  private readonly pchBuilds = new Map<string, Promise<string | undefined>>();
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  private btfIndex?: { at: number; files: Map<string, string> };

  constructor(opts: ServerOptions = {}) {
    this.options = {
      host: opts.host ?? '127.0.0.1',
      port: opts.port ?? 7655,
      dataDir: opts.dataDir ?? path.join(os.homedir(), '.cache', 'tslcc-server'),
      btfDir: opts.btfDir,
      token: opts.token,
      concurrency: opts.concurrency ?? Math.max(1, os.cpus().length),
      queue: opts.queue ?? 64,
      maxSourceBytes: opts.maxSourceBytes ?? 1 << 20,
      maxBtfBytes: opts.maxBtfBytes ?? 64 << 20,
      compileTimeoutMs: opts.compileTimeoutMs ?? 60_000,
      memoryBytes: opts.memoryBytes ?? 2 * GiB, // not 2 << 30: JS shifts are 32-bit (that is -2^31)
      maxObjectBytes: opts.maxObjectBytes ?? 16 << 20,
      hostBtf: opts.hostBtf ?? true,
      sandbox: opts.sandbox ?? 'bwrap',
      log: opts.log,
    };
    this.sandbox = new Sandbox(this.options.sandbox);
    const clang = findClang(opts.clang);
    if (!clang) throw new Error('tslcc server: clang not found; install clang llvm libbpf-dev');
    this.clang = fs.realpathSync(clang);
    if (this.options.sandbox === 'bwrap' && !this.clang.startsWith('/usr/lib/')) {
      throw new Error(`tslcc server: clang resolves to ${this.clang}, outside /usr/lib, which is all the sandbox shows; install Debian's clang`);
    }
    this.http = http.createServer((req, res) => { void this.handle(req, res); });
    this.http.on('clientError', (_e, socket) => socket.destroy());
    this.http.headersTimeout = 15_000;
    this.http.requestTimeout = 300_000;
  }

  /** Listen; resolves with the bound address. */
  async listen(): Promise<{ host: string; port: number; url: string }> {
    fs.mkdirSync(path.join(this.options.dataDir, 'pch'), { recursive: true });
    fs.mkdirSync(path.join(this.options.dataDir, 'vmlinux'), { recursive: true });
    this.clangId = await clangIdentity(this.clang, this.options.dataDir);
    if (this.options.hostBtf && fs.existsSync('/sys/kernel/btf/vmlinux')) {
      this.hostHash = fileSha256('/sys/kernel/btf/vmlinux');
      if (this.hostHash) this.btfs.set(this.hostHash, '/sys/kernel/btf/vmlinux');
    }
    const btfStore = path.join(this.options.dataDir, 'btf');
    if (fs.existsSync(btfStore)) for (const f of fs.readdirSync(btfStore)) if (HEX64.test(f.slice(0, 64))) this.btfs.set(f.slice(0, 64), path.join(btfStore, f));
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.options.port, this.options.host, () => resolve());
    });
    const a = this.http.address() as { address: string; port: number };
    return { host: a.address, port: a.port, url: `http://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}` };
  }

  close(): Promise<void> {
    return new Promise((r) => {
      this.http.close(() => r());
      this.http.closeAllConnections();
    });
  }

  private log(line: string): void {
    this.options.log?.(`${new Date().toISOString()} ${line}`);
  }

  // ------------------------------------------------------------------ HTTP plumbing

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const t0 = performance.now();
    const url = new URL(req.url ?? '/', 'http://x');
    let route = 'other';
    try {
      const m = (re: RegExp) => re.exec(url.pathname);
      if (req.method === 'GET' && url.pathname === '/healthz') {
        route = 'healthz';
        return this.send(req, res, 200, {
          status: 'ok', clang: this.clangId, sandbox: this.sandbox.kind, arches: Object.keys(ARCHES),
          limits: { ...this.limits(), maxSourceBytes: this.options.maxSourceBytes, concurrency: this.options.concurrency, queue: this.options.queue },
        });
      }
      this.authorize(req);
      let p: RegExpExecArray | null;
      if (req.method === 'GET' && url.pathname === '/metrics') {
        route = 'metrics';
        this.metrics.gauge('tslcc_queue_depth', this.waiting.length);
        this.metrics.gauge('tslcc_compiles_in_progress', this.active);
        return this.sendRaw(req, res, 200, 'text/plain; version=0.0.4', Buffer.from(this.metrics.render()));
      }
      if (req.method === 'POST' && url.pathname === '/v1/compile') {
        route = 'compile';
        return await this.compileV1(req, res);
      }
      if (req.method === 'PUT' && (p = m(/^\/v1\/btf\/([0-9a-f]{64})$/))) {
        route = 'btf_upload';
        return await this.uploadBtf(req, res, p[1]!);
      }
      if (req.method === 'GET' && (p = m(/^\/v1\/btf\/([\w.-]+)\/([\w.+~-]+)$/))) {
        route = 'btf_download';
        return await this.downloadBtf(req, res, p[1]!, p[2]!);
      }
      if (req.method === 'POST' && url.pathname === '/lbc') {
        route = 'lbc';
        return await this.pylcc(req, res);
      }
      throw new HttpError(404, 'NOT_FOUND', `${req.method} ${url.pathname}: no such endpoint; see GET /healthz`);
    } catch (e) {
      if (e instanceof HttpError) {
        this.metrics.inc('tslcc_rejections_total', { reason: e.code });
        if (e.status === 503) res.setHeader('retry-after', String(e.extra.retryAfter ?? 1));
        this.send(req, res, e.status, { error: { code: e.code, message: e.message, ...e.extra } });
      } else {
        this.log(`internal error: ${(e as Error).stack}`);
        this.send(req, res, 500, { error: { code: 'INTERNAL', message: 'internal server error' } });
      }
    } finally {
      this.metrics.inc('tslcc_requests_total', { route, status: String(res.statusCode) });
      this.log(`${req.method} ${url.pathname} ${res.statusCode} ${(performance.now() - t0).toFixed(1)}ms`);
    }
  }

  private authorize(req: http.IncomingMessage): void {
    const token = this.options.token;
    if (!token) return;
    const got = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    const a = Buffer.from(got);
    const b = Buffer.from(token);
    if (a.length !== b.length || !timingSafeEqual(a, b)) {
      throw new HttpError(401, 'UNAUTHORIZED', 'missing or wrong bearer token (Authorization: Bearer <token>)');
    }
  }

  /** The request body, decompressed if gzip, never more than `limit` bytes either way. */
  private async body(req: http.IncomingMessage, limit: number): Promise<Buffer> {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) throw new HttpError(413, 'TOO_LARGE', `request body of ${declared} bytes exceeds the limit of ${limit}`, { limit });
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of req) {
      n += (c as Buffer).length;
      if (n > limit) throw new HttpError(413, 'TOO_LARGE', `request body exceeds the limit of ${limit} bytes`, { limit });
      chunks.push(c as Buffer);
    }
    const raw = Buffer.concat(chunks);
    if (req.headers['content-encoding'] === 'gzip') {
      // maxOutputLength stops a gzip bomb while it inflates, not after.
      return await new Promise<Buffer>((resolve, reject) => gunzip(raw, { maxOutputLength: limit }, (err, out) => {
        if (!err) resolve(out);
        else if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') reject(new HttpError(413, 'TOO_LARGE', `decompressed body exceeds the limit of ${limit} bytes`, { limit }));
        else reject(new HttpError(400, 'BAD_ENCODING', `body is not valid gzip: ${err.message}`));
      }));
    }
    if (req.headers['content-encoding'] && req.headers['content-encoding'] !== 'identity') {
      throw new HttpError(415, 'BAD_ENCODING', `content-encoding "${req.headers['content-encoding']}" is not supported; use gzip or none`);
    }
    return raw;
  }

  private async jsonBody(req: http.IncomingMessage, limit: number): Promise<unknown> {
    const b = await this.body(req, limit);
    try {
      return JSON.parse(b.toString('utf8'));
    } catch (e) {
      throw new HttpError(400, 'BAD_JSON', `body is not JSON: ${(e as Error).message}`);
    }
  }

  private send(req: http.IncomingMessage, res: http.ServerResponse, status: number, obj: unknown): void {
    this.sendRaw(req, res, status, 'application/json', Buffer.from(JSON.stringify(obj)));
  }

  private sendRaw(req: http.IncomingMessage, res: http.ServerResponse, status: number, type: string, body: Buffer): void {
    if (res.headersSent) return;
    const gz = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? '')) && body.length > 512;
    const out = gz ? gzipSync(body) : body;
    res.writeHead(status, { 'content-type': type, 'content-length': out.length, ...(gz ? { 'content-encoding': 'gzip', vary: 'accept-encoding' } : {}) });
    res.end(out);
  }

  // ------------------------------------------------------------------ compile

  private async compileV1(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // JSON escaping can double a source's size; the source itself is checked exactly below.
    const body = await this.jsonBody(req, this.options.maxSourceBytes * 2 + MAX_BUNDLE_BYTES * 2 + 65536) as Record<string, unknown>;
    const job = this.validate(body);
    const out = await this.compile(job);
    if (out.failure) {
      throw new HttpError(out.failure.status, out.failure.code, out.failure.message, { diagnostics: out.diagnostics, log: out.log });
    }
    this.send(req, res, 200, { object: out.object!.toString('base64'), key: out.key, diagnostics: out.diagnostics, cached: out.cached });
  }

  private validate(b: Record<string, unknown>): CompileJob {
    if (typeof b !== 'object' || b === null) throw new HttpError(400, 'BAD_REQUEST', 'body must be a JSON object');
    const name = b.name ?? 'prog';
    if (typeof name !== 'string' || !NAME.test(name)) throw new HttpError(400, 'BAD_NAME', `name must match ${NAME}, got ${JSON.stringify(name)}`);
    if (typeof b.source !== 'string') throw new HttpError(400, 'BAD_REQUEST', 'source must be a string of BPF C');
    if (Buffer.byteLength(b.source) > this.options.maxSourceBytes) {
      throw new HttpError(413, 'SOURCE_TOO_LARGE', `source is ${Buffer.byteLength(b.source)} bytes; the limit is ${this.options.maxSourceBytes}`, { limit: this.options.maxSourceBytes });
    }
    const flags = b.flags ?? [];
    if (!Array.isArray(flags)) throw new HttpError(400, 'BAD_FLAG', 'flags must be an array of strings');
    const bad = badFlag(flags as string[]);
    if (bad !== undefined) {
      throw new HttpError(400, 'BAD_FLAG', `flag ${JSON.stringify(bad)} is not allowed; allowed: -D, -U, -W..., -w, -O0..3, -g, -mcpu=vN, -std=...`, { flag: bad });
    }
    const archName = typeof b.arch === 'string' ? b.arch : os.arch() === 'x64' ? 'x86_64' : 'aarch64';
    const arch = ARCHES[archName];
    if (!arch) throw new HttpError(400, 'BAD_ARCH', `arch ${JSON.stringify(archName)} is not supported; one of ${Object.keys(ARCHES).join(', ')}`);
    const kernel = (b.kernel ?? {}) as { btfHash?: unknown; release?: unknown };
    let btfHash = typeof kernel.btfHash === 'string' ? kernel.btfHash : undefined;
    if (btfHash !== undefined && !HEX64.test(btfHash)) throw new HttpError(400, 'BAD_REQUEST', 'kernel.btfHash must be a sha256 in hex');
    let release = typeof kernel.release === 'string' && kernel.release.length <= 128 ? kernel.release : undefined;
    if (!btfHash) {
      if (arch === kernelArch() && this.hostHash) {
        btfHash = this.hostHash;
        release ??= os.release();
      }
      else throw new HttpError(409, 'BTF_REQUIRED', `no kernel headers for ${archName} without kernel.btfHash: send the sha256 of the kernel's BTF and upload it to PUT /v1/btf/<sha256>`);
    }
    if (!this.btfs.has(btfHash)) {
      throw new HttpError(409, 'BTF_REQUIRED', `no headers for the kernel with BTF ${btfHash.slice(0, 16)}...; upload its BTF (gzip) to PUT /v1/btf/${btfHash}`, { btfHash, upload: `/v1/btf/${btfHash}` });
    }
    const bundleError = checkBundle(b.headers, b.includeDirs);
    if (bundleError) throw new HttpError(400, 'BAD_HEADERS', `headers: ${bundleError}`);
    const headers = b.headers as CompileJob['headers'];
    // The defaults (ISA level for the client's kernel, implicit declarations as errors) are
    // applied here, so the cache key, the PCH and clang all see the same flags.
    return {
      name, source: b.source, flags: toolchainFlags(flags as string[], release), arch, btfHash,
      ...(headers?.length ? { headers, includeDirs: b.includeDirs as CompileJob['includeDirs'] } : {}),
    };
  }

  /** The server's compile path: cache, identical requests joined, queue, sandboxed clang. */
  async compile(job: CompileJob): Promise<CompileOutcome> {
    const wrapped = wrapSource(job.source);
    const bundle = job.headers ? { headers: job.headers.map((h) => [h.path, sha256(h.content)]), dirs: job.includeDirs } : undefined;
    const key = sha256(`${compileKey({ name: job.name, source: wrapped, flags: job.flags, compiler: this.clangId, arch: job.arch, extra: bundle })}:${job.btfHash}`);
    const file = cachedObjectPath(this.options.dataDir, key);
    if (fs.existsSync(file)) {
      this.metrics.inc('tslcc_cache_hits_total');
      return { object: fs.readFileSync(file), key, diagnostics: [], log: '', cached: true };
    }
    const running = this.inflight.get(key);
    if (running) {
      this.metrics.inc('tslcc_dedup_joins_total');
      return running;
    }
    if (this.active >= this.options.concurrency && this.waiting.length >= this.options.queue) {
      throw new HttpError(503, 'BUSY', `${this.active} compiles running and ${this.waiting.length} queued; retry later`, { retryAfter: Math.max(1, Math.ceil(this.waiting.length / this.options.concurrency)) });
    }
    const p = this.queued(() => this.runCompile(job, wrapped, key, file)).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  private async queued<T>(f: () => Promise<T>): Promise<T> {
    if (this.active >= this.options.concurrency) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    try {
      return await f();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }

  private async runCompile(job: CompileJob, wrapped: string, key: string, file: string): Promise<CompileOutcome> {
    const vmlinuxDir = await this.header(job.btfHash);
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'tslcc-srv-'));
    const t0 = performance.now();
    try {
      const src = `${job.name}.bpf.c`;
      fs.writeFileSync(path.join(scratch, src), wrapped);
      // The client's headers under inc/, include flags relative to the scratch dir (clang's cwd
      // in and out of the sandbox). Paths were checked: relative, plain segments, no "..".
      const incFlags: string[] = [];
      if (job.headers) {
        try {
          for (const h of job.headers) {
            const dest = path.join(scratch, 'inc', ...h.path.split('/'));
            fs.mkdirSync(path.dirname(dest), { recursive: true });
            fs.writeFileSync(dest, h.content, { flag: 'wx' });
          }
        } catch (e) {
          throw new HttpError(400, 'BAD_HEADERS', `headers: cannot lay them out (${(e as NodeJS.ErrnoException).code ?? 'error'}): a path is both a file and a directory, or repeated`);
        }
        for (const d of job.includeDirs ?? []) incFlags.push(d.quote ? '-iquote' : '-I', d.path ? `inc/${d.path}` : 'inc');
      }
      const sandboxed = this.sandbox.kind === 'bwrap';
      let pchDir = await this.pch(job, vmlinuxDir);
      const compileOnce = () => {
        const args = clangArgs({
          arch: job.arch, src, out: 'out.bpf.o', flags: [...incFlags, ...job.flags],
          includeDir: sandboxed ? INSIDE.include : INCLUDE_DIR, vmlinuxDir: sandboxed ? INSIDE.vmlinux : vmlinuxDir,
          pch: pchDir ? path.join(sandboxed ? INSIDE.pch : pchDir, 'lbc.h.pch') : undefined,
        });
        this.metrics.inc('tslcc_compiler_runs_total');
        return this.sandbox.run(this.clang, args, { scratch, includeDir: INCLUDE_DIR, vmlinuxDir, pchDir }, this.limits());
      };
      let r = await compileOnce();
      if (r.code !== 0 && pchDir && PCH_TROUBLE.test(r.stderr)) {
        // clang refused the PCH (its inputs were touched since it was built): drop it, compile
        // without, and the next request builds a fresh one. Never an empty diagnostic.
        this.log(`compile ${job.name}: stale precompiled header ${path.basename(pchDir)} removed`);
        fs.rmSync(pchDir, { recursive: true, force: true });
        pchDir = undefined;
        r = await compileOnce();
      }
      const secs = (performance.now() - t0) / 1000;
      this.metrics.observe('tslcc_compile_duration_seconds', secs);
      const diagnostics = parseDiagnostics(r.stderr);
      this.log(`compile ${job.name} (${job.arch}) ${r.code === 0 ? 'ok' : 'failed'} in ${secs.toFixed(2)}s`);
      if (r.timedOut) {
        this.metrics.inc('tslcc_compiles_total', { result: 'timeout' });
        return { key, diagnostics, log: r.stderr, cached: false, failure: { status: 422, code: 'COMPILE_TIMEOUT', message: `compile "${src}" exceeded the ${this.options.compileTimeoutMs} ms limit` } };
      }
      if (r.code !== 0) {
        const limit = r.signal !== null || /out of memory|std::bad_alloc|LLVM ERROR: out of memory|File size limit/i.test(r.stderr);
        this.metrics.inc('tslcc_compiles_total', { result: limit ? 'limit' : 'error' });
        if (limit) return { key, diagnostics, log: r.stderr, cached: false, failure: { status: 422, code: 'COMPILE_LIMIT', message: `compile "${src}" hit a resource limit (memory ${this.options.memoryBytes} B, output ${this.options.maxObjectBytes} B)${r.signal ? `; killed by ${r.signal}` : ''}` } };
        const err = compileFailure(job.name, r.stderr, r.signal);
        return { key, diagnostics: err.diagnostics, log: r.stderr, cached: false, failure: { status: 422, code: 'COMPILE_ERROR', message: err.message } };
      }
      await this.strip(scratch);
      const object = fs.readFileSync(path.join(scratch, 'out.bpf.o'));
      writeAtomic(file, object);
      this.metrics.inc('tslcc_compiles_total', { result: 'ok' });
      return { object, key, diagnostics, log: r.stderr, cached: false };
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  }

  /**
   * DWARF out of the object, as local compiles do (toolchain.ts). The object came from
   * untrusted source, so llvm-strip runs in the same sandbox and limits as clang. Without
   * llvm-strip, or if it fails, the reply is the unstripped object.
   */
  private async strip(scratch: string): Promise<void> {
    if (this.stripTool === undefined) {
      this.stripTool = findStrip(this.clang) ?? null;
      if (!this.stripTool) this.log('llvm-strip not found (apt-get install llvm): objects are sent with their DWARF');
      else if (this.options.sandbox === 'bwrap' && !this.stripTool.startsWith('/usr/lib/')) {
        this.log(`llvm-strip resolves to ${this.stripTool}, outside /usr/lib, which is all the sandbox shows: objects are sent with their DWARF`);
        this.stripTool = null;
      }
    }
    if (!this.stripTool) return;
    const r = await this.sandbox.run(this.stripTool, stripArgs('out.bpf.o'), { scratch }, this.limits());
    if (r.code !== 0) this.log(`llvm-strip failed (${r.stderr.trim().split('\n').pop() ?? r.code}): object sent with its DWARF`);
  }

  private limits() {
    return { timeoutMs: this.options.compileTimeoutMs, memoryBytes: this.options.memoryBytes, maxOutputBytes: this.options.maxObjectBytes };
  }

  /**
   * A precompiled lbc.h for this kernel, arch and flag set, built once in the sandbox (so the
   * header paths it records are the sandbox's) and mounted read-only into every compile:
   * a cold compile then skips parsing vmlinux.h. Undefined when it cannot be built.
   */
  private pch(job: CompileJob, vmlinuxDir: string): Promise<string | undefined> {
    const key = pchKey({ vmlinuxDir: `${VMLINUX_FORMAT}:${job.btfHash}`, arch: job.arch, flags: job.flags, compiler: `${this.clangId}:${this.sandbox.kind}` });
    const dir = path.join(this.options.dataDir, 'pch', key);
    if (fs.existsSync(path.join(dir, 'lbc.h.pch'))) return Promise.resolve(dir);
    let p = this.pchBuilds.get(key);
    if (!p) {
      p = (async () => {
        const scratch = fs.mkdtempSync(path.join(this.options.dataDir, 'pch', 'tmp-'));
        const sandboxed = this.sandbox.kind === 'bwrap';
        const args = clangArgs({
          arch: job.arch, src: '', out: 'lbc.h.pch', flags: job.flags, buildPch: true,
          includeDir: sandboxed ? INSIDE.include : INCLUDE_DIR, vmlinuxDir: sandboxed ? INSIDE.vmlinux : vmlinuxDir,
        });
        this.metrics.inc('tslcc_pch_builds_total');
        const r = await this.sandbox.run(this.clang, args, { scratch, includeDir: INCLUDE_DIR, vmlinuxDir }, { ...this.limits(), maxOutputBytes: 256 << 20 });
        if (r.code !== 0 || !fs.existsSync(path.join(scratch, 'lbc.h.pch'))) {
          fs.rmSync(scratch, { recursive: true, force: true });
          return undefined;
        }
        try {
          fs.renameSync(scratch, dir);
        } catch {
          fs.rmSync(scratch, { recursive: true, force: true }); // built concurrently elsewhere
        }
        return dir;
      })().finally(() => this.pchBuilds.delete(key));
      this.pchBuilds.set(key, p);
    }
    return p;
  }

  /**
   * vmlinux.h for a kernel BTF, generated once. The BTF may come from a client, so libbpf
   * parses it in a child process inside the same sandbox and limits as the compiler: a
   * malformed or hostile file can fail that child, never this server or its files.
   */
  private header(hash: string): Promise<string> {
    let p = this.headers.get(hash);
    if (!p) {
      p = this.generateHeader(hash);
      this.headers.set(hash, p);
      p.catch(() => this.headers.delete(hash));
    }
    return p;
  }

  private async generateHeader(hash: string): Promise<string> {
    const dir = path.join(this.options.dataDir, 'vmlinux', vmlinuxDirName(hash));
    const file = path.join(dir, 'vmlinux.h');
    if (fs.existsSync(file)) return dir;
    const btf = this.btfs.get(hash);
    if (!btf) throw new HttpError(409, 'BTF_REQUIRED', `no BTF ${hash}`);
    const scratch = fs.mkdtempSync(path.join(this.options.dataDir, 'vmlinux', 'tmp-'));
    try {
      const node = fs.realpathSync(process.execPath);
      const nativeDir = path.dirname(path.dirname(createRequire(import.meta.url).resolve('@tslcc/native')));
      const sandboxed = this.sandbox.kind === 'bwrap';
      const r = await this.sandbox.run(node, [
        path.join(HERE, 'btf2c.js'), path.join(nativeDir, 'lib', 'index.js'),
        sandboxed ? '/lbc/btf' : btf, path.join(sandboxed ? INSIDE.work : scratch, 'vmlinux.h'),
      ], {
        scratch,
        binds: [[node, node], [HERE, HERE], [nativeDir, nativeDir], [fs.realpathSync(btf), '/lbc/btf']],
      }, { timeoutMs: 120_000, memoryBytes: Math.max(this.options.memoryBytes, 2 * GiB), maxOutputBytes: 256 << 20 });
      if (r.code !== 0 || !fs.existsSync(path.join(scratch, 'vmlinux.h'))) {
        throw new HttpError(400, 'BAD_BTF', `the kernel BTF ${hash.slice(0, 16)}... cannot be turned into headers: ${r.stderr.trim().split('\n').pop() ?? 'failed'}`);
      }
      fs.mkdirSync(dir, { recursive: true });
      fs.renameSync(path.join(scratch, 'vmlinux.h'), file);
      return dir;
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
  }

  // ------------------------------------------------------------------ BTF

  private async uploadBtf(req: http.IncomingMessage, res: http.ServerResponse, hash: string): Promise<void> {
    if (this.btfs.has(hash)) return this.send(req, res, 200, { btfHash: hash, stored: true });
    const data = await this.body(req, this.options.maxBtfBytes);
    const got = sha256(data);
    if (got !== hash) throw new HttpError(400, 'HASH_MISMATCH', `the body's sha256 is ${got}, not ${hash}`);
    if (data.length < 24 || data.readUInt16LE(0) !== 0xeb9f) throw new HttpError(400, 'NOT_BTF', 'the body is not raw BTF (magic 0xeB9F); send /sys/kernel/btf/vmlinux');
    const file = path.join(this.options.dataDir, 'btf', `${hash}.btf`);
    writeAtomic(file, data);
    this.btfs.set(hash, file);
    try {
      await this.header(hash); // validate now: a bad upload fails here, not at the next compile
    } catch (e) {
      this.btfs.delete(hash);
      fs.rmSync(file, { force: true });
      throw e;
    }
    this.send(req, res, 201, { btfHash: hash, stored: true });
  }

  /** BTFHub layout: <root>/<distro>/<version>/<arch>/<release>.btf; indexed lazily, rescanned on a miss. */
  private findBtf(arch: string, release: string): string | undefined {
    const root = this.options.btfDir;
    if (!root) return undefined;
    const key = `${arch}/${release}`;
    const fresh = this.btfIndex && Date.now() - this.btfIndex.at < 10_000;
    if (!fresh || !this.btfIndex!.files.has(key)) {
      const files = new Map<string, string>();
      const walk = (d: string, depth: number) => {
        if (depth > 6) return;
        for (const e of fs.readdirSync(d, { withFileTypes: true })) {
          const p = path.join(d, e.name);
          if (e.isDirectory()) walk(p, depth + 1);
          else if (e.name.endsWith('.btf')) files.set(`${path.basename(d)}/${e.name.slice(0, -4)}`, p);
        }
      };
      if (fs.existsSync(root)) walk(root, 0);
      this.btfIndex = { at: Date.now(), files };
    }
    return this.btfIndex!.files.get(key);
  }

  private async downloadBtf(req: http.IncomingMessage, res: http.ServerResponse, arch: string, release: string): Promise<void> {
    let file = this.findBtf(arch, release);
    if (!file && this.options.hostBtf && release === os.release() && ARCHES[arch] === kernelArch()) file = '/sys/kernel/btf/vmlinux';
    if (!file) throw new HttpError(404, 'BTF_NOT_FOUND', `no BTF for kernel ${release} (${arch}) in the BTF store`);
    const data = fs.readFileSync(file);
    const hash = fileSha256(file);
    if (hash) this.btfs.set(hash, file); // compiles against it need no upload
    this.sendRaw(req, res, 200, 'application/octet-stream', data);
  }

  // ------------------------------------------------------------------ pylcc protocol

  private async pylcc(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await this.jsonBody(req, this.options.maxSourceBytes * 2 + 65536);
    const d = (Array.isArray(body) ? body[0] : body) as Record<string, unknown> | undefined;
    if (!d || typeof d !== 'object') throw new HttpError(400, 'BAD_REQUEST', 'pylcc request: a JSON array holding one object { cmd, ver, arch, ... }');
    const reply = (r: Record<string, unknown>) => this.send(req, res, 200, { code: 200, res: [r] });
    const cmd = String(d.cmd ?? '');
    const ver = typeof d.ver === 'string' ? d.ver : '';
    const unameArch = typeof d.arch === 'string' ? d.arch : 'x86_64';
    if (!ver) return reply({ log: 'no kernel version info.' });
    switch (cmd) {
      case 'obj': {
        const code = d.code;
        if (typeof code !== 'string') return reply({ log: 'no code.', obj: null });
        const flags = String(d.env ?? '').split(/\s+/).filter(Boolean);
        let job: CompileJob;
        try {
          // pylcc clients cannot upload BTF: use that kernel's BTF from the store when there
          // is one, else this host's (CO-RE relocates at load time).
          const fromStore = this.findBtf(unameArch, ver);
          const btfHash = fromStore ? fileSha256(fromStore) : undefined;
          if (fromStore && btfHash) this.btfs.set(btfHash, fromStore);
          job = this.validate({ name: 'lbc', source: code, flags, arch: unameArch, kernel: { btfHash, release: ver } });
        } catch (e) {
          if (e instanceof HttpError && e.status !== 503) return reply({ log: `${e.message}.`, obj: null, clog: '' });
          throw e;
        }
        const out = await this.compile(job);
        if (out.failure) return reply({ log: `${out.failure.message}.`, obj: null, clog: out.log });
        return reply({ log: 'ok.', obj: out.object!.toString('base64'), clog: out.log });
      }
      case 'btf': {
        let file = this.findBtf(unameArch, ver);
        if (!file && this.options.hostBtf && ver === os.release() && ARCHES[unameArch] === kernelArch()) file = '/sys/kernel/btf/vmlinux';
        if (!file) return reply({ ver, arch: unameArch, btf: null, log: 'read btf file failed.' });
        return reply({ ver, arch: unameArch, btf: fs.readFileSync(file).toString('base64'), log: 'ok.' });
      }
      case 'c':
        return reply({ log: 'cmd "c" (a pylcc .so) is not supported by this server; use cmd "obj" for a CO-RE object.', so: null });
      default:
        return reply({ log: `unknown cmd "${cmd}"; this server answers "obj" and "btf".` });
    }
  }
}

/** Start a server; resolves once it listens. */
export async function startServer(opts: ServerOptions = {}): Promise<{ server: CompileServer; url: string; close: () => Promise<void> }> {
  const server = new CompileServer(opts);
  const { url } = await server.listen();
  return { server, url, close: () => server.close() };
}
