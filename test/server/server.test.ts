// The compile server for real: started on 127.0.0.1 in this process, spoken to over HTTP by
// the SDK's client and by raw requests. Includes every listed way to read a server file.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { compile, type EventMap, fetchBtf, LbcBase, RemoteError } from '@tslcc/sdk';
import { type CompileServer, startServer } from '@tslcc/server';
import { isRoot, probeBinary, runProbe, tempDir, until } from '../helpers';

const hasBwrap = spawnSync('bwrap', ['--version']).status === 0;
const UNAME_ARCH = process.arch === 'x64' ? 'x86_64' : 'aarch64';

const GOOD = `
struct ev { u32 pid; u32 marker; };
LBC_RINGBUF(events, struct ev, 1 << 16);
const volatile u32 parent_tgid = 0;
SEC("tp/syscalls/sys_enter_getppid")
int on_getppid(void *ctx) {
  struct task_struct *task = (void *)bpf_get_current_task();
  if (BPF_CORE_READ(task, real_parent, tgid) != parent_tgid) return 0;
  struct ev e = { .pid = bpf_get_current_pid_tgid() >> 32, .marker = MARKER };
  lbc_ringbuf_output(events, &e, sizeof(e));
  return 0;
}`;

interface Srv { server: CompileServer; url: string; close: () => Promise<void>; logs: string[] }
async function serve(opts: Parameters<typeof startServer>[0] = {}): Promise<Srv> {
  const logs: string[] = [];
  const s = await startServer({ port: 0, dataDir: tempDir('srv'), log: (l) => logs.push(l), ...opts });
  return { ...s, logs };
}

async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any; headers: Headers; text: string }> {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' || body instanceof Buffer ? body : JSON.stringify(body) });
  const text = await r.text();
  let json: any;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, json, headers: r.headers, text };
}

type Ev = { pid: number; marker: number };

/** Start `t`, make one getppid() from a child, expect exactly that event (pid, marker). */
async function expectOneEvent(t: LbcBase<{ events: EventMap<Ev> }>, marker: number): Promise<void> {
  try {
    const got: Ev[] = [];
    t.maps.events.on((e) => got.push(e));
    const pid = runProbe('getppid', '1');
    await until(() => got.length > 0);
    expect(got).toEqual([{ pid, marker }]);
  } finally {
    t.close();
  }
}

const metric = async (url: string, name: string) => {
  const text = await (await fetch(`${url}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith(name)).reduce((a, l) => a + Number(l.split(' ').pop()), 0);
};

describe.skipIf(!hasBwrap)('compile server', () => {
  let s: Srv;
  beforeAll(async () => { s = await serve(); });
  afterAll(async () => { await s?.close(); });

  test('healthz names the compiler and the sandbox', async () => {
    const h = await (await fetch(`${s.url}/healthz`)).json() as { clang: string; limits: Record<string, number> };
    expect(h).toMatchObject({ status: 'ok', sandbox: 'bwrap', limits: { memoryBytes: 2147483648, timeoutMs: 60000, maxOutputBytes: 16777216, maxSourceBytes: 1048576 } });
    expect(h.clang).toMatch(/clang version/);
  });

  test('compile: a CO-RE object, cached by the client under the same key scheme', async () => {
    const cacheDir = tempDir('client');
    const r = await compile(GOOD, { name: 'remote_ok', mode: 'remote', server: s.url, cacheDir, flags: ['-DMARKER=7'] });
    expect(r.from).toBe('remote');
    expect(r.elf.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    const again = await compile(GOOD, { name: 'remote_ok', mode: 'remote', server: s.url, cacheDir, flags: ['-DMARKER=7'] });
    expect([again.from, again.key]).toEqual(['cache', r.key]);
  });

  test.skipIf(!isRoot)('the remotely compiled object loads and delivers an event', async () => {
    probeBinary();
    const t = await new LbcBase<{ events: EventMap<Ev> }>('remote_ev', {
      source: GOOD, env: '-DMARKER=42', globals: { parent_tgid: process.pid },
      compile: { mode: 'remote', server: s.url, cacheDir: tempDir('client2') },
    }).start();
    expect(t.compiled!.from).toBe('remote');
    await expectOneEvent(t, 42);
  });

  test('compile errors come back at the user\'s lines', async () => {
    const err = await compile('SEC("tp/x/y")\nint f(void *ctx) {\n  return nope;\n}', { name: 'bad', mode: 'remote', server: s.url, cacheDir: tempDir('c3') }).catch((e) => e) as RemoteError;
    expect(err).toBeInstanceOf(RemoteError);
    expect([err.status, err.serverCode]).toEqual([422, 'COMPILE_ERROR']);
    expect(err.diagnostics[0]).toEqual({ file: 'bad.bpf.c', line: 3, column: 10, severity: 'error', message: "use of undeclared identifier 'nope'" });
    expect(err.message).toContain("bad.bpf.c:3:10: use of undeclared identifier 'nope'");
  });

  test('a second identical compile does not run clang (counted through /metrics)', async () => {
    const src = `${GOOD}\n// cache test`;
    const runs0 = await metric(s.url, 'tslcc_compiler_runs_total');
    const hits0 = await metric(s.url, 'tslcc_cache_hits_total');
    for (let i = 0; i < 2; i++) await compile(src, { name: 'cached', mode: 'remote', server: s.url, cacheDir: tempDir(`c4${i}`), flags: ['-DMARKER=1'] });
    expect(await metric(s.url, 'tslcc_compiler_runs_total')).toBe(runs0 + 1);
    expect(await metric(s.url, 'tslcc_cache_hits_total')).toBe(hits0 + 1);
  });

  test('32 parallel requests, identical and distinct: all succeed, identical ones compiled once', async () => {
    const runs0 = await metric(s.url, 'tslcc_compiler_runs_total');
    const reqs = Array.from({ length: 32 }, (_, i) => post(`${s.url}/v1/compile`, {
      name: 'par', source: GOOD, arch: UNAME_ARCH, flags: [`-DMARKER=${i < 16 ? 1000 : 2000 + i}`],
    }));
    const res = await Promise.all(reqs);
    expect(res.map((r) => r.status)).toEqual(new Array(32).fill(200));
    expect(new Set(res.slice(0, 16).map((r) => r.json.key)).size).toBe(1);
    expect(new Set(res.slice(16).map((r) => r.json.key)).size).toBe(16);
    expect(await metric(s.url, 'tslcc_compiler_runs_total')).toBe(runs0 + 17);
  });

  test('replies are stripped of DWARF and built for the client\'s kernel: -mcpu=v3 from 5.1, v2 before, the client\'s own -mcpu wins', async () => {
    const src = `u32 hits = 0;\nSEC("tp/syscalls/sys_enter_getppid") int p(void *ctx) {\n  u32 pid = bpf_get_current_pid_tgid() >> 32;\n  if (pid > 100 && pid < 100000) hits++;\n  return 0;\n}`;
    const dir = tempDir('isa');
    const object = async (kernel: Record<string, string>, flags: string[] = []) => {
      const r = await post(`${s.url}/v1/compile`, { name: 'isa', source: src, arch: UNAME_ARCH, flags, kernel });
      expect(r.status).toBe(200);
      const f = path.join(dir, `${Object.values(kernel).join('_') || 'none'}${flags.join('')}.o`);
      fs.writeFileSync(f, Buffer.from(r.json.object, 'base64'));
      const secs = spawnSync('llvm-objdump', ['-h', f], { encoding: 'utf8' }).stdout;
      const jmp32 = spawnSync('llvm-objdump', ['-d', '--no-show-raw-insn', f], { encoding: 'utf8' }).stdout.split('\n').filter((l) => /\bif w\d+ /.test(l)).length;
      return { debug: /\.debug_/.test(secs), btf: / \.BTF /.test(secs) && / \.BTF\.ext /.test(secs), jmp32: jmp32 > 0 };
    };
    expect(await object({ release: '6.1.0-18-amd64' })).toEqual({ debug: false, btf: true, jmp32: true });
    expect(await object({ release: '4.19.0-26-amd64' })).toEqual({ debug: false, btf: true, jmp32: false });
    expect(await object({})).toEqual({ debug: false, btf: true, jmp32: true }); // this host's kernel
    expect(await object({ release: '6.1.0-18-amd64' }, ['-mcpu=v2'])).toEqual({ debug: false, btf: true, jmp32: false });
    // pylcc clients: the release is "ver"
    const py = await post(`${s.url}/lbc`, [{ cmd: 'obj', ver: '4.19.0-26-amd64', arch: UNAME_ARCH, code: src }]);
    const pf = path.join(dir, 'py.o');
    fs.writeFileSync(pf, Buffer.from(py.json.res[0].obj, 'base64'));
    expect(spawnSync('llvm-objdump', ['-h', pf], { encoding: 'utf8' }).stdout).not.toMatch(/\.debug_/);
    expect(spawnSync('llvm-objdump', ['-d', pf], { encoding: 'utf8' }).stdout).not.toMatch(/\bif w\d+ /);
  });

  test('bad flags are refused, naming the flag', async () => {
    for (const flag of ['-fplugin=/tmp/evil.so', '-Xclang', '-include/etc/passwd', '-I/etc', '-Wl,-rpath,/x', '-Wp,-include,/etc/passwd', '--sysroot=/']) {
      const r = await post(`${s.url}/v1/compile`, { name: 'f', source: GOOD, flags: [flag] });
      expect(r.status).toBe(400);
      expect(r.json.error).toMatchObject({ code: 'BAD_FLAG', flag });
      expect(r.json.error.message).toContain(JSON.stringify(flag));
    }
  });

  test('malformed requests get clear 4xx answers and the server lives on', async () => {
    expect((await post(`${s.url}/v1/compile`, '{not json')).json.error.code).toBe('BAD_JSON');
    expect((await post(`${s.url}/v1/compile`, { source: 1 })).status).toBe(400);
    expect((await post(`${s.url}/v1/compile`, { name: '../etc', source: GOOD })).json.error.code).toBe('BAD_NAME');
    expect((await post(`${s.url}/v1/compile`, { source: GOOD, arch: 'vax' })).json.error.code).toBe('BAD_ARCH');
    expect((await post(`${s.url}/v1/compile`, Buffer.from('garbage'), { 'content-encoding': 'gzip' })).json.error.code).toBe('BAD_ENCODING');
    expect((await fetch(`${s.url}/nope`)).status).toBe(404);
    const notBtf = Buffer.from('not btf at all........................');
    const h = (await import('node:crypto')).createHash('sha256').update(notBtf).digest('hex');
    expect(((await (await fetch(`${s.url}/v1/btf/${h}`, { method: "PUT", body: notBtf })).json()) as any).error.code).toBe("NOT_BTF");
    expect(((await (await fetch(`${s.url}/v1/btf/${"0".repeat(64)}`, { method: "PUT", body: notBtf })).json()) as any).error.code).toBe("HASH_MISMATCH");
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
  });

  describe('attacks: the source cannot read a server file', () => {
    const secretDir = tempDir('secret');
    const SECRET = `TSLCC_SECRET_${Math.random().toString(36).slice(2)}`;
    const secretH = path.join(secretDir, 'secret.h');
    fs.writeFileSync(secretH, `#define LEAK "${SECRET}"\n`);
    const secretTxt = path.join(secretDir, 'secret.txt');
    fs.writeFileSync(secretTxt, SECRET);
    const depth = '../'.repeat(12);
    const attacks: Array<[string, string]> = [
      ['absolute #include', `#include "${secretH}"\nconst char leak[] = LEAK;\n${GOOD}`],
      ['../ #include', `#include "${depth}${secretH.slice(1)}"\nconst char leak[] = LEAK;\n${GOOD}`],
      ['<> #include', `#include <${secretH}>\nconst char leak[] = LEAK;\n${GOOD}`],
      ['/proc/1/root #include', `#include "/proc/1/root${secretH}"\nconst char leak[] = LEAK;\n${GOOD}`],
      ['.incbin in inline asm', `asm(".section .data.leak\\n.incbin \\"${secretTxt}\\"\\n.previous");\n${GOOD}`],
      ['#embed', `const char leak[] = {\n#embed "${secretTxt}"\n};\n${GOOD}`],
      ['__has_include probing', `#if __has_include("${secretH}")\n#error SECRET_FILE_EXISTS\n#endif\n${GOOD}`],
    ];
    for (const [label, source] of attacks) {
      test(label, async () => {
        const r = await post(`${s.url}/v1/compile`, { name: 'atk', source, arch: UNAME_ARCH, flags: ['-DMARKER=1'] });
        expect(r.text).not.toContain(SECRET);
        expect(s.logs.join('\n')).not.toContain(SECRET);
        if (r.status === 200) {
          expect(Buffer.from(r.json.object, 'base64').toString('latin1')).not.toContain(SECRET);
          expect(label).toBe('__has_include probing'); // only the probe compiles: the file is simply not there
        } else {
          expect(r.status).toBe(422);
          expect(r.json.error.code).toBe('COMPILE_ERROR');
          expect(r.json.error.message).not.toContain('SECRET_FILE_EXISTS');
        }
      });
    }
    test('-include and other path flags never reach the compiler', async () => {
      const r = await post(`${s.url}/v1/compile`, { name: 'atk', source: GOOD, flags: ['-include', secretH] });
      expect(r.status).toBe(400);
      expect(r.text).not.toContain(SECRET);
    });
  });
});

describe.skipIf(!hasBwrap)('compile server limits and options', () => {
  test('queue overflow: 503 with Retry-After', async () => {
    const s = await serve({ concurrency: 1, queue: 1 });
    try {
      const res = await Promise.all(Array.from({ length: 6 }, (_, i) => post(`${s.url}/v1/compile`, { name: 'q', source: GOOD, flags: [`-DMARKER=${i}`] })));
      const busy = res.filter((r) => r.status === 503);
      expect(res.filter((r) => r.status === 200)).toHaveLength(2); // one running, one queued
      expect(busy).toHaveLength(4);
      for (const b of busy) {
        expect(b.json.error.code).toBe('BUSY');
        expect(Number(b.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      }
      expect(await metric(s.url, 'tslcc_rejections_total{reason="BUSY"}')).toBe(4);
    } finally {
      await s.close();
    }
  });

  test('oversized source: 413, and a gzip bomb is stopped while it inflates', async () => {
    const s = await serve({ maxSourceBytes: 4096 });
    try {
      const r = await post(`${s.url}/v1/compile`, { name: 'big', source: `${GOOD}\n//${'x'.repeat(5000)}` });
      expect(r.status).toBe(413);
      expect(r.json.error).toMatchObject({ code: 'SOURCE_TOO_LARGE', limit: 4096 });
      const bomb = gzipSync(Buffer.alloc(64 << 20, 0x20));
      const b = await post(`${s.url}/v1/compile`, bomb, { 'content-encoding': 'gzip' });
      expect([b.status, b.json.error.code]).toEqual([413, 'TOO_LARGE']);
    } finally {
      await s.close();
    }
  });

  test('wall-time and memory limits end a runaway compile with 422; the server goes on', async () => {
    const s = await serve({ compileTimeoutMs: 1500, memoryBytes: 512 << 20 });
    try {
      const defs = ['#define A0 1+'];
      for (let i = 1; i <= 26; i++) defs.push(`#define A${i} A${i - 1} A${i - 1}`);
      const source = `${defs.join('\n')}\nSEC("tp/syscalls/sys_enter_getppid") int f(void *ctx) { return A26 1; }\n`;
      const r = await post(`${s.url}/v1/compile`, { name: 'bomb', source });
      expect(r.status).toBe(422);
      expect(['COMPILE_TIMEOUT', 'COMPILE_LIMIT']).toContain(r.json.error.code);
      expect((await post(`${s.url}/v1/compile`, { name: 'after', source: GOOD, flags: ['-DMARKER=1'] })).status).toBe(200);
    } finally {
      await s.close();
    }
  });

  test('bearer token: required and checked everywhere but /healthz', async () => {
    const s = await serve({ token: 'tok-123' });
    try {
      expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
      expect((await fetch(`${s.url}/metrics`)).status).toBe(401);
      expect((await post(`${s.url}/v1/compile`, { source: GOOD }, { authorization: 'Bearer wrong' })).json.error.code).toBe('UNAUTHORIZED');
      const err = await compile(GOOD, { name: 'tok', mode: 'remote', server: s.url, cacheDir: tempDir('tok'), flags: ['-DMARKER=1'] }).catch((e) => e);
      expect([err.status, err.serverCode]).toEqual([401, 'UNAUTHORIZED']);
      const ok = await compile(GOOD, { name: 'tok', mode: 'remote', server: s.url, token: 'tok-123', cacheDir: tempDir('tok2'), flags: ['-DMARKER=1'] });
      expect(ok.from).toBe('remote');
    } finally {
      await s.close();
    }
  });

  test('BTF upload: a kernel the server does not know is uploaded (gzip), then compiled for', async () => {
    const s = await serve({ hostBtf: false });
    try {
      const raw = await post(`${s.url}/v1/compile`, { name: 'up', source: GOOD, flags: ['-DMARKER=1'] });
      expect([raw.status, raw.json.error.code]).toEqual([409, 'BTF_REQUIRED']);
      const r = await compile(GOOD, { name: 'up', mode: 'remote', server: s.url, cacheDir: tempDir('up'), flags: ['-DMARKER=1'] });
      expect(r.from).toBe('remote');
      expect(await metric(s.url, 'tslcc_requests_total{route="btf_upload",status="201"}')).toBe(1);
      const stored = fs.readdirSync(path.join(s.server.options.dataDir, 'btf'));
      expect(stored).toHaveLength(1);
      expect(fs.readFileSync(path.join(s.server.options.dataDir, 'btf', stored[0]!)).equals(fs.readFileSync('/sys/kernel/btf/vmlinux'))).toBe(true);
    } finally {
      await s.close();
    }
  });

  test('BTF download from a BTFHub-style tree, and a program loaded with it', async (ctx) => {
    const btfDir = tempDir('btfhub');
    const release = '5.15.0-1001-tslcc';
    fs.mkdirSync(path.join(btfDir, 'ubuntu', '22.04', UNAME_ARCH), { recursive: true });
    fs.copyFileSync('/sys/kernel/btf/vmlinux', path.join(btfDir, 'ubuntu', '22.04', UNAME_ARCH, `${release}.btf`));
    const s = await serve({ btfDir, hostBtf: false });
    try {
      const cacheDir = tempDir('dl');
      const file = await fetchBtf(cacheDir, { server: s.url, arch: UNAME_ARCH, release });
      expect(file).toBe(path.join(cacheDir, 'btf', UNAME_ARCH, `${release}.btf`));
      expect(fs.readFileSync(file).equals(fs.readFileSync('/sys/kernel/btf/vmlinux'))).toBe(true);
      const missing = await fetchBtf(tempDir('dl2'), { server: s.url, arch: UNAME_ARCH, release: '1.2.3-none' }).catch((e) => e);
      expect([missing.status, missing.serverCode]).toEqual([404, 'BTF_NOT_FOUND']);
      // The served BTF is known to the server now: compiling for it needs no upload.
      const r = await compile(GOOD, { name: 'dl', mode: 'remote', server: s.url, cacheDir, btfPath: file, flags: ['-DMARKER=5'] });
      expect(r.from).toBe('remote');
      if (!isRoot) ctx.skip('not root: downloaded BTF asserted; loading a program against it needs root');
      await expectOneEvent(await new LbcBase<{ events: EventMap<Ev> }>('dl', {
        object: r.elf, btfCustomPath: file, globals: { parent_tgid: process.pid },
      }).start(), 5);
    } finally {
      await s.close();
    }
  });

  test('a kernel without BTF: LbcBase downloads it from the server and loads with it', async (ctx) => {
    const btfDir = tempDir('btfhub2');
    fs.mkdirSync(path.join(btfDir, 'debian', '12', UNAME_ARCH), { recursive: true });
    fs.copyFileSync('/sys/kernel/btf/vmlinux', path.join(btfDir, 'debian', '12', UNAME_ARCH, `${os.release()}.btf`));
    const s = await serve({ btfDir, hostBtf: false });
    const saved = process.env.TSLCC_KERNEL_BTF;
    process.env.TSLCC_KERNEL_BTF = '/nonexistent/vmlinux'; // as on a kernel built without CONFIG_DEBUG_INFO_BTF
    try {
      const none = await new LbcBase('nobtf', { source: GOOD, env: '-DMARKER=9' }).start().catch((e) => e);
      expect(none.code).toBe('LBC_UNSUPPORTED');
      expect(none.message).toBe('start "nobtf": this kernel has no BTF (/nonexistent/vmlinux; CONFIG_DEBUG_INFO_BTF is off); set TSLCC_SERVER to fetch it from a compile server, or pass btfCustomPath (a BTFHub file)');
      if (!isRoot) ctx.skip('not root: the missing-BTF error asserted; downloading BTF and loading with it needs root');
      const cacheDir = tempDir('nobtf');
      const t = await new LbcBase<{ events: EventMap<Ev> }>('nobtf', {
        source: GOOD, env: '-DMARKER=9', globals: { parent_tgid: process.pid }, compile: { server: s.url, cacheDir },
      }).start();
      expect(fs.existsSync(path.join(cacheDir, 'btf', UNAME_ARCH, `${os.release()}.btf`))).toBe(true);
      await expectOneEvent(t, 9);
    } finally {
      if (saved === undefined) delete process.env.TSLCC_KERNEL_BTF; else process.env.TSLCC_KERNEL_BTF = saved;
      await s.close();
    }
  });

  test('pylcc protocol: POST /lbc obj, btf and c; and our client speaking it', async () => {
    const s = await serve();
    try {
      const lbc = (o: Record<string, unknown>) => post(`${s.url}/lbc`, [o]);
      const obj = await lbc({ cmd: 'obj', ver: os.release(), arch: UNAME_ARCH, code: GOOD, env: '-DMARKER=3' });
      expect(obj.json.code).toBe(200);
      expect(obj.json.res[0].log).toBe('ok.');
      expect(Buffer.from(obj.json.res[0].obj, 'base64').subarray(0, 4).toString('latin1')).toBe('\x7fELF');
      const btf = await lbc({ cmd: 'btf', ver: os.release(), arch: UNAME_ARCH });
      expect(btf.json.res[0].log).toBe('ok.');
      expect(Buffer.from(btf.json.res[0].btf, 'base64').equals(fs.readFileSync('/sys/kernel/btf/vmlinux'))).toBe(true);
      const c = await lbc({ cmd: 'c', ver: os.release(), arch: UNAME_ARCH, code: GOOD });
      expect(c.json.res[0]).toEqual({ log: 'cmd "c" (a pylcc .so) is not supported by this server; use cmd "obj" for a CO-RE object.', so: null });
      const bad = await lbc({ cmd: 'obj', ver: os.release(), arch: UNAME_ARCH, code: GOOD, env: '-fplugin=/x.so' });
      expect(bad.json.res[0].log).toMatch(/^flag "-fplugin=\/x.so" is not allowed/);
      const viaClient = await compile(GOOD, { name: 'py', mode: 'remote', server: s.url, protocol: 'pylcc', cacheDir: tempDir('py'), flags: ['-DMARKER=3'] });
      expect(viaClient.from).toBe('remote');
      expect(viaClient.elf.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    } finally {
      await s.close();
    }
  });

  test('unreachable server: a RemoteError naming it', async () => {
    const err = await compile(GOOD, { name: 'x', mode: 'remote', server: 'http://127.0.0.1:9', cacheDir: tempDir('unr'), retries: 0 }).catch((e) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.message).toBe('compile "x.bpf.c" remotely: cannot reach compile server http://127.0.0.1:9 (ECONNREFUSED); check the address (TSLCC_SERVER) or compile locally');
  });

  test('connection errors are retried: 1 attempt + 4 retries, then a RemoteError', async () => {
    const net = await import('node:net');
    let attempts = 0;
    const flaky = net.createServer((sock) => { attempts++; sock.destroy(); }); // accept, then reset
    await new Promise<void>((r) => flaky.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(flaky.address() as { port: number }).port}`;
    try {
      const err = await compile(GOOD, { name: 'x', mode: 'remote', server: url, cacheDir: tempDir('flaky') }).catch((e) => e);
      expect(err).toBeInstanceOf(RemoteError);
      expect(err.message).toMatch(new RegExp(`^compile "x.bpf.c" remotely: cannot reach compile server ${url} \\(UND_ERR_SOCKET\\)`));
      expect(attempts).toBe(5);
    } finally {
      flaky.close();
    }
  });
});

if (!hasBwrap) test('compile server', (ctx) => ctx.skip('bubblewrap (bwrap) is not installed: the sandboxed server could not be exercised; npm test installs it'));
