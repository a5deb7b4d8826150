/**
 * The compile-server client: tslcc's v1 API (and pylcc's POST /lbc) over undici, with
 * connect and total timeouts, retries with backoff on connection errors and 503, kernel BTF
 * upload when the server asks for it, and kernel BTF download for hosts without BTF.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Agent, request } from 'undici';
import { fileSha256 } from './compile.js';
import { type Diagnostic, LbcError } from './errors.js';

/** A compile server failed or refused. `status` is the HTTP status (0: no answer). */
export class RemoteError extends LbcError {
  readonly server: string;
  readonly status: number;
  /** The server's machine-readable error code, e.g. "BAD_FLAG", "BTF_REQUIRED". */
  readonly serverCode?: string;
  readonly diagnostics: Diagnostic[];
  constructor(message: string, server: string, status: number, opts: { serverCode?: string; diagnostics?: Diagnostic[]; cause?: unknown } = {}) {
    super('LBC_REMOTE', message, { cause: opts.cause });
    this.server = server;
    this.status = status;
    this.serverCode = opts.serverCode;
    this.diagnostics = opts.diagnostics ?? [];
  }
}

export interface RemoteOptions {
  /** Server URL, or pylcc's bare host name (port 7655). Default $TSLCC_SERVER, then $LBC_SERVER. */
  server?: string;
  /** 'tslcc' (v1 API, default) or 'pylcc' (POST /lbc, for coolbpf servers). */
  protocol?: 'tslcc' | 'pylcc';
  /** Bearer token. Default $TSLCC_SERVER_TOKEN. */
  token?: string;
  /** Milliseconds to establish a connection. Default 5000. */
  connectTimeoutMs?: number;
  /** Milliseconds for a whole request. Default 120000. */
  timeoutMs?: number;
  /** Retries on connection errors and 503. Default 4. */
  retries?: number;
}

/** "host" → http://host:7655; "host:port" → http://host:port; URLs kept. */
export function serverUrl(s: string): string {
  if (/^https?:\/\//.test(s)) return s.replace(/\/+$/, '');
  return s.includes(':') ? `http://${s}` : `http://${s}:7655`;
}

export function configuredServer(opts: RemoteOptions = {}): string | undefined {
  const s = opts.server ?? process.env.TSLCC_SERVER ?? process.env.LBC_SERVER;
  return s ? serverUrl(s) : undefined;
}

const agents = new Map<number, Agent>();
function agent(connectTimeout: number): Agent {
  let a = agents.get(connectTimeout);
  if (!a) agents.set(connectTimeout, (a = new Agent({ connect: { timeout: connectTimeout }, keepAliveTimeout: 10_000 })));
  return a;
}

interface HttpResult { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }

const RETRYABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET', 'EAI_AGAIN']);

/** One HTTP call with retries; gzip both ways. */
async function call(server: string, method: 'GET' | 'POST' | 'PUT', urlPath: string, body: Buffer | undefined, opts: RemoteOptions, what: string): Promise<HttpResult> {
  const retries = opts.retries ?? 4;
  const token = opts.token ?? process.env.TSLCC_SERVER_TOKEN;
  const headers: Record<string, string> = { 'accept-encoding': 'gzip', 'user-agent': 'tslcc' };
  if (token) headers.authorization = `Bearer ${token}`;
  let payload: Buffer | undefined;
  if (body) {
    payload = gzipSync(body);
    headers['content-encoding'] = 'gzip';
    headers['content-type'] = urlPath.startsWith('/v1/btf') ? 'application/octet-stream' : 'application/json';
  }
  let lastErr: unknown;
  for (let attempt = 0; ; attempt++) {
    let retryAfterMs = Math.min(4000, 100 * 2 ** attempt);
    try {
      const r = await request(`${server}${urlPath}`, {
        method, headers, body: payload,
        dispatcher: agent(opts.connectTimeoutMs ?? 5000),
        signal: AbortSignal.timeout(opts.timeoutMs ?? 120_000),
      });
      let buf = Buffer.from(await r.body.arrayBuffer());
      if (r.headers['content-encoding'] === 'gzip') buf = gunzipSync(buf);
      if (r.statusCode === 503 && attempt < retries) {
        const ra = Number(r.headers['retry-after']);
        if (Number.isFinite(ra)) retryAfterMs = Math.min(10_000, ra * 1000);
        lastErr = new RemoteError(`${what}: server busy (503)`, server, 503);
      } else {
        return { status: r.statusCode, headers: r.headers, body: buf };
      }
    } catch (e) {
      const code = (e as { code?: string }).code ?? '';
      lastErr = e;
      if (!RETRYABLE.has(code) || attempt >= retries) {
        const reason = code === 'UND_ERR_CONNECT_TIMEOUT' ? 'connect timeout' : (e as Error).name === 'TimeoutError' ? `no answer within ${opts.timeoutMs ?? 120_000} ms` : `${code || (e as Error).message}`;
        throw new RemoteError(`${what}: cannot reach compile server ${server} (${reason}); check the address (TSLCC_SERVER) or compile locally`, server, 0, { cause: e });
      }
    }
    if (attempt >= retries) throw lastErr;
    await new Promise((r) => setTimeout(r, retryAfterMs));
  }
}

function json(r: HttpResult): Record<string, unknown> {
  try {
    return JSON.parse(r.body.toString('utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
}

function failure(what: string, server: string, r: HttpResult): RemoteError {
  const j = json(r);
  const err = (j.error ?? {}) as { code?: string; message?: string; diagnostics?: Diagnostic[] };
  return new RemoteError(`${what}: ${server} answered ${r.status}: ${err.message ?? r.body.toString('utf8').slice(0, 200)}`, server, r.status,
    { serverCode: err.code, diagnostics: err.diagnostics });
}

export interface RemoteCompileRequest {
  name: string;
  source: string;
  flags: string[];
  /** Kernel arch name (x86, arm64, ...). */
  arch: string;
  /** The kernel BTF this object will run with (default /sys/kernel/btf/vmlinux). */
  btfPath?: string;
  /** Local headers the source includes, relative to the bundle root (see collectHeaders). */
  headers?: Array<{ path: string; content: string }>;
  /** Include directories of the bundle, relative to its root; `quote` ones only for #include "...". */
  includeDirs?: Array<{ path: string; quote: boolean }>;
}

export interface RemoteCompileResult {
  elf: Buffer;
  key: string;
  diagnostics: Diagnostic[];
  /** Did the server take it from its cache? */
  cached: boolean;
}

const UNAME_ARCH: Record<string, string> = { x86: 'x86_64', arm64: 'aarch64', s390: 's390x', powerpc: 'ppc64le', riscv: 'riscv64', loongarch: 'loongarch64', arm: 'arm', mips: 'mips' };

/**
 * Compile on a server. With the tslcc protocol the server compiles against this kernel's
 * BTF: when it does not have it, it says BTF_REQUIRED and we upload it (gzip), then retry.
 * @throws CompileError-like RemoteError (status 422, diagnostics at the user's lines) or RemoteError
 */
export async function remoteCompile(req: RemoteCompileRequest, opts: RemoteOptions = {}): Promise<RemoteCompileResult> {
  const server = configuredServer(opts);
  const what = `compile "${req.name}.bpf.c" remotely`;
  if (!server) throw new RemoteError(`${what}: no compile server configured; pass compile: { server } or set TSLCC_SERVER`, '', 0);
  const unameArch = UNAME_ARCH[req.arch] ?? req.arch;
  if (opts.protocol === 'pylcc') return pylccCompile(server, req, unameArch, opts);
  const btfFile = req.btfPath ?? (process.env.TSLCC_KERNEL_BTF || '/sys/kernel/btf/vmlinux');
  const kernel = { release: os.release(), btfHash: fileSha256(btfFile) };
  const bundle = req.headers?.length ? { headers: req.headers, includeDirs: req.includeDirs ?? [] } : {};
  const body = Buffer.from(JSON.stringify({ name: req.name, source: req.source, flags: req.flags, arch: unameArch, kernel, ...bundle }));
  let r = await call(server, 'POST', '/v1/compile', body, opts, what);
  if (r.status === 409 && (json(r).error as { code?: string } | undefined)?.code === 'BTF_REQUIRED') {
    if (!kernel.btfHash) throw failure(what, server, r);
    const up = await call(server, 'PUT', `/v1/btf/${kernel.btfHash}`, fs.readFileSync(btfFile), opts, `upload kernel BTF to ${server}`);
    if (up.status !== 201 && up.status !== 200) throw failure(`upload kernel BTF for ${what}`, server, up);
    r = await call(server, 'POST', '/v1/compile', body, opts, what);
  }
  const j = json(r);
  if (r.status !== 200) throw failure(what, server, r);
  return { elf: Buffer.from(String(j.object), 'base64'), key: String(j.key), diagnostics: (j.diagnostics as Diagnostic[]) ?? [], cached: !!j.cached };
}

async function pylccCompile(server: string, req: RemoteCompileRequest, unameArch: string, opts: RemoteOptions): Promise<RemoteCompileResult> {
  const what = `compile "${req.name}.bpf.c" on pylcc server`;
  const body = Buffer.from(JSON.stringify([{ cmd: 'obj', ver: os.release(), arch: unameArch, code: req.source, env: req.flags.join(' ') }]));
  const r = await call(server, 'POST', '/lbc', body, opts, what);
  const j = json(r) as { code?: number; res?: Array<{ log?: string; clog?: string; obj?: string }> };
  const res = j.res?.[0];
  if (r.status !== 200 || !res) throw failure(what, server, r);
  if (res.log !== 'ok.' || !res.obj) {
    throw new RemoteError(`${what}: ${res.log ?? 'failed'}${res.clog ? `\n${res.clog}` : ''}`, server, r.status, { serverCode: 'COMPILE_FAILED' });
  }
  return { elf: Buffer.from(res.obj, 'base64'), key: '', diagnostics: [], cached: false };
}

/**
 * Kernel BTF for a host without /sys/kernel/btf/vmlinux, from the server's BTF store
 * (laid out like BTFHub), cached under `cacheDir/btf`. Returns the local path.
 */
export async function fetchBtf(cacheDir: string, opts: RemoteOptions & { arch?: string; release?: string } = {}): Promise<string> {
  const server = configuredServer(opts);
  const arch = opts.arch ?? (UNAME_ARCH[process.arch === 'x64' ? 'x86' : process.arch] ?? process.arch);
  const release = opts.release ?? os.release();
  const file = path.join(cacheDir, 'btf', arch, `${release}.btf`);
  if (fs.existsSync(file)) return file;
  const what = `fetch kernel BTF for ${release} (${arch})`;
  if (!server) throw new RemoteError(`${what}: this kernel has no /sys/kernel/btf/vmlinux and no compile server is configured (TSLCC_SERVER)`, '', 0);
  const r = await call(server, 'GET', `/v1/btf/${encodeURIComponent(arch)}/${encodeURIComponent(release)}`, undefined, opts, what);
  if (r.status !== 200) throw failure(what, server, r);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, r.body);
  fs.renameSync(tmp, file);
  return file;
}
