// Remote compiles with the user's own headers: the client bundles what the source includes
// (beside it, in includeDirs), the server checks the bundle, lays it out in the sandbox and
// compiles with it; nothing in a header reaches the server's own files.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { compile, LbcError, RemoteError } from '@tslcc/sdk';
import { type CompileServer, startServer } from '@tslcc/server';
import { rodataU32, tempDir } from '../helpers';

const hasBwrap = spawnSync('bwrap', ['--version']).status === 0;
const UNAME_ARCH = process.arch === 'x64' ? 'x86_64' : 'aarch64';

const SRC = `#include "tool.h"
#include <extra.h>
const volatile u32 v = VALUE + EXTRA;
SEC("tp/syscalls/sys_enter_getppid")
int p(void *ctx) { struct tool_ev e = { .x = v }; return e.x; }
`;

async function post(url: string, body: unknown): Promise<{ status: number; json: any; text: string }> {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await r.text();
  let json: any;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, json, text };
}

describe.skipIf(!hasBwrap)('remote compile with local headers', () => {
  let s: { server: CompileServer; url: string; close: () => Promise<void> };
  const logs: string[] = [];
  beforeAll(async () => { s = await startServer({ port: 0, dataDir: tempDir('bsrv'), log: (l) => logs.push(l) }); });
  afterAll(async () => { await s?.close(); });

  /** dir/tool.bpf.c + dir/tool.h (VALUE) and inc/extra.h (EXTRA). */
  function project(value: number, extra: number) {
    const dir = tempDir('bproj');
    fs.mkdirSync(path.join(dir, 'inc'));
    fs.writeFileSync(path.join(dir, 'tool.bpf.c'), SRC);
    fs.writeFileSync(path.join(dir, 'tool.h'), `struct tool_ev { u32 x; };\n#define VALUE ${value}\n`);
    fs.writeFileSync(path.join(dir, 'inc', 'extra.h'), `#define EXTRA ${extra}\n`);
    return { dir, sourcePath: path.join(dir, 'tool.bpf.c'), includeDirs: [path.join(dir, 'inc')] };
  }

  test('a header beside the source and one in includeDirs travel with it; a changed header is a new object', async () => {
    const p = project(7, 100);
    const cacheDir = tempDir('bclient');
    const o = { name: 'tool', mode: 'remote' as const, server: s.url, sourcePath: p.sourcePath, includeDirs: p.includeDirs, cacheDir };
    const r = await compile(SRC, o);
    expect(r.from).toBe('remote');
    expect(rodataU32(r.elf, 'v')).toBe(107);
    const hit = await compile(SRC, o);
    expect([hit.from, hit.key]).toEqual(['cache', r.key]);

    fs.writeFileSync(path.join(p.dir, 'tool.h'), 'struct tool_ev { u32 x; };\n#define VALUE 9\n');
    const changed = await compile(SRC, o);
    expect(changed.from).toBe('remote');
    expect(changed.key).not.toBe(r.key);
    expect(rodataU32(changed.elf, 'v')).toBe(109);
    fs.writeFileSync(path.join(p.dir, 'inc', 'extra.h'), '#define EXTRA 300\n');
    const changed2 = await compile(SRC, o);
    expect(changed2.from).toBe('remote');
    expect(rodataU32(changed2.elf, 'v')).toBe(309);
  });

  test('without the headers the server cannot find them: a compile error naming the file', async () => {
    const err = await compile(SRC, { name: 'nohdr', mode: 'remote', server: s.url, cacheDir: tempDir('bnohdr') }).catch((e) => e) as RemoteError;
    expect(err).toBeInstanceOf(RemoteError);
    expect([err.status, err.serverCode]).toEqual([422, 'COMPILE_ERROR']);
    expect(err.diagnostics[0]).toMatchObject({ file: 'nohdr.bpf.c', line: 1, column: 10, message: "'tool.h' file not found" });
  });

  test('errors and warnings name the user\'s paths: the source as given, the header\'s local path', async () => {
    const p = project(1, 2);
    fs.writeFileSync(path.join(p.dir, 'tool.h'), 'struct tool_ev { u32 x; };\n#define VALUE (nope)\n');
    const o = { name: 'tool', mode: 'remote' as const, server: s.url, sourcePath: p.sourcePath, includeDirs: p.includeDirs, cacheDir: tempDir('bdiag') };
    const err = await compile(SRC, o).catch((e) => e) as RemoteError;
    expect(err).toBeInstanceOf(RemoteError);
    expect([err.status, err.serverCode]).toEqual([422, 'COMPILE_ERROR']);
    const errors = err.diagnostics.filter((d) => d.severity === 'error');
    expect(errors[0]).toEqual({ file: p.sourcePath, line: 3, column: 24, severity: 'error', message: "use of undeclared identifier 'nope'" });
    expect(err.diagnostics).toContainEqual({ file: path.join(p.dir, 'tool.h'), line: 2, column: 16, severity: 'note', message: "expanded from macro 'VALUE'" });
    expect(err.message).toBe(`compile "${p.sourcePath}" remotely: ${s.url} answered 422: compile "${p.sourcePath}": 1 error; ${p.sourcePath}:3:24: use of undeclared identifier 'nope'`);

    fs.writeFileSync(path.join(p.dir, 'tool.h'), 'struct tool_ev { u32 x; };\n#define VALUE 1\nstatic int unused_fn(void) { int y; return 0; }\n');
    const ok = await compile(SRC, { ...o, flags: ['-Wunused-variable'] });
    expect(ok.warnings).toEqual([{ file: path.join(p.dir, 'tool.h'), line: 3, column: 34, severity: 'warning', message: "unused variable 'y' [-Wunused-variable]" }]);
  });

  test('a bundle with a bad path or content: 400 BAD_HEADERS', async () => {
    const body = (headers: unknown, includeDirs: unknown = [{ path: '', quote: true }]) =>
      ({ name: 'bh', source: '#include "x.h"\nint x;\n', arch: UNAME_ARCH, headers, includeDirs });
    const bad: Array<[string, unknown, unknown?]> = [
      ['../x.h', [{ path: '../x.h', content: '' }]],
      ['/etc/passwd', [{ path: '/etc/passwd', content: '' }]],
      ['a/../../b', [{ path: 'a/../../b', content: '' }]],
      ['./x.h', [{ path: './x.h', content: '' }]],
      ['empty path', [{ path: '', content: '' }]],
      ['control byte', [{ path: 'x\n.h', content: '' }]],
      ['content not a string', [{ path: 'x.h', content: 42 }]],
      ['not an array', { path: 'x.h', content: '' }],
      ['include dir ..', [{ path: 'x.h', content: '' }], [{ path: '..', quote: true }]],
      ['include dir absolute', [{ path: 'x.h', content: '' }], [{ path: '/etc', quote: false }]],
      ['include dir without quote', [{ path: 'x.h', content: '' }], [{ path: 'a' }]],
      ['a path both file and dir', [{ path: 'a', content: '' }, { path: 'a/b.h', content: '' }]],
      ['a path twice', [{ path: 'x.h', content: '' }, { path: 'x.h', content: '' }]],
    ];
    for (const [label, headers, dirs] of bad) {
      const r = await post(`${s.url}/v1/compile`, body(headers, dirs));
      expect([label, r.status, r.json?.error?.code]).toEqual([label, 400, 'BAD_HEADERS']);
      expect(r.json.error.message).toMatch(/^headers: /);
    }
    const ok = await post(`${s.url}/v1/compile`, body([{ path: 'x.h', content: '#define X 1\n' }]));
    expect(ok.status).toBe(200);
  });

  describe('a header cannot read the server\'s files', () => {
    const secretDir = tempDir('bsecret');
    const SECRET = `TSLCC_BUNDLE_SECRET_${Math.random().toString(36).slice(2)}`;
    const secretFile = path.join(secretDir, 'secret.txt');
    fs.writeFileSync(secretFile, `${SECRET}\n`);
    const attack = (label: string, header: string) => test(label, async () => {
      const r = await post(`${s.url}/v1/compile`, {
        name: 'atk', source: '#include "evil.h"\nSEC("tp/syscalls/sys_enter_getppid") int p(void *ctx) { return 0; }\n', arch: UNAME_ARCH,
        headers: [{ path: 'evil.h', content: header }], includeDirs: [{ path: '', quote: true }],
      });
      expect(r.text).not.toContain(SECRET);
      expect(logs.join('\n')).not.toContain(SECRET);
      expect([r.status, r.json.error.code]).toEqual([422, 'COMPILE_ERROR']);
      return r;
    });
    test('#include "/etc/hostname": not found in the sandbox', async () => {
      const r = await post(`${s.url}/v1/compile`, {
        name: 'atk', source: '#include "evil.h"\nint x;\n', arch: UNAME_ARCH,
        headers: [{ path: 'evil.h', content: '#include "/etc/hostname"\n' }], includeDirs: [{ path: '', quote: true }],
      });
      expect([r.status, r.json.error.code]).toEqual([422, 'COMPILE_ERROR']);
      expect(r.json.error.diagnostics[0]).toMatchObject({ file: 'inc/evil.h', line: 1, column: 10, message: "'/etc/hostname' file not found" });
    });
    attack('#include of a host file by absolute path', `#include "${secretFile}"\n`);
    attack('#include of a host file through ../', `#include "${'../'.repeat(12)}${secretFile.slice(1)}"\n`);
    attack('.incbin of /etc/hostname', 'asm(".section .data.leak\\n.incbin \\"/etc/hostname\\"\\n.previous");\n');
    attack('.incbin of a host file', `asm(".section .data.leak\\n.incbin \\"${secretFile}\\"\\n.previous");\n`);
  });

  test('the pylcc protocol cannot carry headers: a clear LbcError, nothing sent', async () => {
    const p = project(1, 2);
    const err = await compile(SRC, { name: 'py', mode: 'remote', protocol: 'pylcc', server: s.url, sourcePath: p.sourcePath, includeDirs: p.includeDirs, cacheDir: tempDir('bpy') }).catch((e) => e) as LbcError;
    expect(err).toBeInstanceOf(LbcError);
    expect(err).not.toBeInstanceOf(RemoteError);
    expect(err.code).toBe('LBC_INVALID_ARGUMENT');
    expect(err.message).toBe(`compile "${p.sourcePath}" on a pylcc server: its protocol cannot carry the local headers the source includes (inc/extra.h, tool.h); use a tslcc server or compile locally`);
  });
});

if (!hasBwrap) test('remote compile with local headers', (ctx) => ctx.skip('bubblewrap (bwrap) is not installed: the sandboxed server could not be exercised; npm test installs it'));
