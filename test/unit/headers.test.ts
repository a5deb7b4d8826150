// The compile path around the user's files: headers beside the source and in -I dirs, the
// cache keyed by every header read (manifest), corrupt and unwritable caches, a full disk,
// a stale precompiled header, clang's own errors, and the header bundle of remote compiles.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { CompileError, INCLUDE_DIR, LbcError, collectHeaders, compile, parseDepFile} from '@tslcc/sdk';
import { isRoot, rodataU32, tempDir } from '../helpers';

const PROG = (extra = '') => `#include "tool.h"
${extra}const volatile u32 v = VALUE;
u32 seen = 0;
SEC("tp/syscalls/sys_enter_getppid")
int p(void *ctx) { struct tool_ev e = { .x = v }; seen = e.x; return 0; }
`;
const HEADER = (value: number) => `struct tool_ev { u32 x; };\n#define VALUE ${value}\n`;

/** Run `f` with process.cwd() at `dir`, restored after. */
async function inDir<T>(dir: string, f: () => Promise<T>): Promise<T> {
  const saved = process.cwd();
  process.chdir(dir);
  try {
    return await f();
  } finally {
    process.chdir(saved);
  }
}

describe('sourcePath: the source\'s directory is an include directory', () => {
  test('#include "tool.h" beside it; a changed header recompiles, an unchanged one is a hit', async () => {
    const dir = tempDir('hdr');
    const cacheDir = tempDir('hdrcache');
    const file = path.join(dir, 'tool.bpf.c');
    fs.writeFileSync(file, PROG());
    fs.writeFileSync(path.join(dir, 'tool.h'), HEADER(7));
    const first = await compile(fs.readFileSync(file, 'utf8'), { name: 'tool', sourcePath: file, cacheDir });
    expect(first.from).toBe('local');
    expect(rodataU32(first.elf, 'v')).toBe(7);
    expect((await compile(PROG(), { name: 'tool', sourcePath: file, cacheDir })).from).toBe('cache');

    fs.writeFileSync(path.join(dir, 'tool.h'), HEADER(9));
    const changed = await compile(PROG(), { name: 'tool', sourcePath: file, cacheDir });
    expect(changed.from).toBe('local');
    expect(rodataU32(changed.elf, 'v')).toBe(9);
    expect(changed.key).not.toBe(first.key);
    const again = await compile(PROG(), { name: 'tool', sourcePath: file, cacheDir });
    expect([again.from, again.key]).toEqual(['cache', changed.key]);
    expect(rodataU32(again.elf, 'v')).toBe(9);

    // Back to 7: the object of the first compile is found again under its own key.
    fs.writeFileSync(path.join(dir, 'tool.h'), HEADER(7));
    const back = await compile(PROG(), { name: 'tool', sourcePath: file, cacheDir });
    expect(rodataU32(back.elf, 'v')).toBe(7);
  });

  test('without sourcePath the header is not found: the error says so', async () => {
    const err = await compile(PROG(), { name: 'nosrc', cacheDir: tempDir('nosrc') }).catch((e) => e) as CompileError;
    expect(err).toBeInstanceOf(CompileError);
    expect(err.diagnostics[0]).toMatchObject({ file: 'nosrc.bpf.c', line: 1, column: 10, severity: 'fatal error', message: "'tool.h' file not found" });
  });

  test('relative -I and includeDirs resolve against cwd; "../common/x.h" against the source\'s dir', async () => {
    const root = tempDir('rel');
    fs.mkdirSync(path.join(root, 'sub'));
    fs.mkdirSync(path.join(root, 'inc2'));
    fs.mkdirSync(path.join(root, 'src'));
    fs.mkdirSync(path.join(root, 'common'));
    fs.writeFileSync(path.join(root, 'sub', 'fromflag.h'), '#define A 3\n');
    fs.writeFileSync(path.join(root, 'inc2', 'fromdirs.h'), '#define B 40\n');
    fs.writeFileSync(path.join(root, 'common', 'x.h'), '#define C 500\n');
    const src = [
      '#include <fromflag.h>',
      '#include "fromdirs.h"',
      '#include "../common/x.h"',
      'const volatile u32 v = A + B + C;',
      'SEC("tp/syscalls/sys_enter_getppid") int p(void *ctx) { return v; }',
    ].join('\n');
    fs.writeFileSync(path.join(root, 'src', 'rel.bpf.c'), src);
    const cacheDir = tempDir('relcache');
    const r = await inDir(root, () => compile(src, { name: 'rel', sourcePath: 'src/rel.bpf.c', flags: ['-I', 'sub'], includeDirs: ['inc2'], cacheDir }));
    expect(rodataU32(r.elf, 'v')).toBe(543);
    // Joined form (-Isub) too; and from another cwd the same relative flags find nothing.
    const joined = await inDir(root, () => compile(src, { name: 'rel', sourcePath: 'src/rel.bpf.c', flags: '-Isub', includeDirs: ['inc2'], cacheDir }));
    expect(rodataU32(joined.elf, 'v')).toBe(543);
    const elsewhere = await inDir(os.tmpdir(), () => compile(src, { name: 'rel', sourcePath: path.join(root, 'src/rel.bpf.c'), flags: ['-I', 'sub'], includeDirs: ['inc2'], cacheDir }).catch((e) => e));
    expect(elsewhere).toBeInstanceOf(CompileError);
    expect((elsewhere as CompileError).diagnostics[0]!.message).toBe("'fromflag.h' file not found");
  });

  test('"../common/x.h" from the source is the user\'s, even when $TMPDIR/common/x.h exists', async () => {
    const root = tempDir('shadow');
    fs.mkdirSync(path.join(root, 'src'));
    fs.mkdirSync(path.join(root, 'common'));
    const name = `tslcc-shadow-${process.pid}-${Math.random().toString(36).slice(2)}.h`;
    fs.writeFileSync(path.join(root, 'common', name), '#define C 500\n');
    // The scratch copy of the source lives under $TMPDIR: its ".." must not be searched.
    const decoyDir = path.join(os.tmpdir(), 'common');
    const made = !fs.existsSync(decoyDir);
    fs.mkdirSync(decoyDir, { recursive: true });
    fs.writeFileSync(path.join(decoyDir, name), '#define C 666\n');
    try {
      const src = `#include "../common/${name}"\nconst volatile u32 v = C;\nSEC("tp/syscalls/sys_enter_getppid") int p(void *ctx) { return v; }\n`;
      const r = await compile(src, { name: 'shadow', sourcePath: path.join(root, 'src', 'shadow.bpf.c'), cacheDir: tempDir('shadowcache') });
      expect(rodataU32(r.elf, 'v')).toBe(500);
    } finally {
      fs.rmSync(path.join(decoyDir, name), { force: true });
      if (made) fs.rmSync(decoyDir, { recursive: true, force: true });
    }
  });

  test('diagnostics name the user\'s path: syntax.c:3:14 in the main file, the header\'s path inside it', async () => {
    const dir = tempDir('diag');
    const cacheDir = tempDir('diagcache');
    const main = [
      'SEC("tp/syscalls/sys_enter_getppid")', // 1
      'int p(void *ctx) {',                   // 2
      '  return 1 + oops;',                   // 3: column 14
      '}',
    ].join('\n');
    fs.writeFileSync(path.join(dir, 'syntax.c'), main);
    const err = await inDir(dir, () => compile(main, { name: 'syntax', sourcePath: 'syntax.c', cacheDir }).catch((e) => e)) as CompileError;
    expect(err).toBeInstanceOf(CompileError);
    expect(err.diagnostics[0]).toEqual({ file: 'syntax.c', line: 3, column: 14, severity: 'error', message: "use of undeclared identifier 'oops'" });
    expect(err.message).toBe("compile \"syntax.c\": 1 error; syntax.c:3:14: use of undeclared identifier 'oops'");
    expect(err.log).toContain('syntax.c:3:14: error:');
    expect(err.log).not.toContain('syntax.bpf.c');

    fs.writeFileSync(path.join(dir, 'bad.h'), 'static int f(void) {\n  return nope;\n}\n');
    const withHeader = `#include "bad.h"\n${main.replace('1 + oops', 'f()')}`;
    const herr = await inDir(dir, () => compile(withHeader, { name: 'syntax', sourcePath: 'syntax.c', cacheDir }).catch((e) => e)) as CompileError;
    expect(herr).toBeInstanceOf(CompileError);
    const first = herr.diagnostics.find((d) => d.severity === 'error')!;
    expect(first).toEqual({ file: path.join(fs.realpathSync(dir), 'bad.h'), line: 2, column: 10, severity: 'error', message: "use of undeclared identifier 'nope'" });
    expect(herr.log).toContain('In file included from syntax.c:1:');
  });
});

describe('cache', () => {
  const SRC = 'const volatile u32 v = 11;\nSEC("tp/syscalls/sys_enter_getppid") int p(void *ctx) { return v; }\n';

  test('a truncated cached object is detected by its hash and compiled again', async () => {
    const cacheDir = tempDir('corrupt');
    const first = await compile(SRC, { name: 'corrupt', cacheDir });
    expect(first.from).toBe('local');
    expect(first.path).toMatch(new RegExp(`^${cacheDir}/obj/`));
    fs.truncateSync(first.path, 100);
    const again = await compile(SRC, { name: 'corrupt', cacheDir });
    expect(again.from).toBe('local');
    expect(again.elf.equals(first.elf)).toBe(true);
    expect(fs.readFileSync(first.path).equals(first.elf)).toBe(true); // the cache holds the whole object again
    expect((await compile(SRC, { name: 'corrupt', cacheDir })).from).toBe('cache');
  });

  test('an unwritable cache dir: compiled in a scratch cache, one warning, nothing left behind', async () => {
    const scratch = () => fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('tslcc-nocache-')).sort();
    const before = scratch();
    const warnings: string[] = [];
    const r = await compile(SRC, { name: 'nocache', cacheDir: '/dev/null/cache', onWarning: (m) => warnings.push(m) });
    expect(r.from).toBe('local');
    expect(rodataU32(r.elf, 'v')).toBe(11);
    expect(warnings).toEqual(['compile cache /dev/null/cache is not writable; compiling without a cache (set TSLCC_CACHE_DIR or compile.cacheDir to a writable directory)']);
    expect(r.path).toBe('');
    expect(scratch()).toEqual(before);
  });

  describe('a full disk (ENOSPC) on a tiny tmpfs', () => {
    let mnt: string | undefined;
    let mounted = false;
    beforeAll(() => {
      if (!isRoot) return;
      mnt = tempDir('enospc');
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
      mounted = true;
    });
    afterAll(() => {
      if (mounted) execFileSync('umount', [mnt!]);
      if (mnt) fs.rmSync(mnt, { recursive: true, force: true });
    });
    /** Fill the tmpfs but `free` bytes (tmpfs counts whole pages). */
    const fill = (free: number) => {
      const st = fs.statfsSync(mnt!);
      const avail = st.bavail * st.bsize;
      fs.writeFileSync(path.join(mnt!, 'filler'), Buffer.alloc(Math.max(0, avail - free)));
    };
    const tmpFiles = (dir: string): string[] => {
      const out: string[] = [];
      const walk = (d: string) => {
        for (const e of fs.readdirSync(d, { withFileTypes: true })) {
          if (e.isDirectory()) walk(path.join(d, e.name));
          else if (e.name.endsWith('.tmp')) out.push(path.join(d, e.name));
        }
      };
      walk(dir);
      return out;
    };
    afterEach(() => {
      if (mounted) for (const f of fs.readdirSync(mnt!)) fs.rmSync(path.join(mnt!, f), { recursive: true, force: true });
    });

    test('no room for vmlinux.h: the compile still succeeds, with a warning, no temp files left', async (ctx) => {
      if (!isRoot) ctx.skip('mounting a tmpfs needs root: the full-disk path could not be exercised');
      const cacheDir = path.join(mnt!, 'cache');
      fill(8192);
      const warnings: string[] = [];
      const r = await compile(SRC, { name: 'enospc', cacheDir, onWarning: (m) => warnings.push(m) });
      expect(r.from).toBe('local');
      expect(rodataU32(r.elf, 'v')).toBe(11);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain(cacheDir);
      expect(warnings[0]).toContain('ENOSPC');
      expect(r.path).toBe('');
      expect(tmpFiles(mnt!)).toEqual([]);
    });

    test('no room for the object: stored nowhere, a warning, no temp files left', async (ctx) => {
      if (!isRoot) ctx.skip('mounting a tmpfs needs root: the full-disk path could not be exercised');
      // vmlinux.h (megabytes) lives outside the tmpfs, so the first write to fail is the object's.
      const outside = tempDir('enospc-vmlinux');
      await compile(SRC, { name: 'prime', cacheDir: outside, pch: false });
      const cacheDir = path.join(mnt!, 'cache');
      fs.mkdirSync(cacheDir);
      fs.symlinkSync(path.join(outside, 'vmlinux'), path.join(cacheDir, 'vmlinux'));
      fill(2048);
      const warnings: string[] = [];
      const r = await compile(SRC, { name: 'enospc2', cacheDir, pch: false, onWarning: (m) => warnings.push(m) });
      expect(r.from).toBe('local');
      expect(rodataU32(r.elf, 'v')).toBe(11);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(new RegExp(`^compile cache ${cacheDir}: cannot store the object \\(ENOSPC: no space left on device`));
      expect(r.path).toBe('');
      expect(tmpFiles(mnt!)).toEqual([]);
    });
  });
});

describe('precompiled lbc.h', () => {
  test('a PCH clang refuses (an input touched, same key) is dropped with a warning and the compile retried', async () => {
    // lbc_compat.h is read into every PCH and is keyed by its content, not its mtime: touching
    // it keeps the PCH key and makes clang refuse the PCH. (bpf/bpf_helpers.h would too, but it
    // is a system file shared with other runs; this file belongs to this checkout.)
    const input = path.join(INCLUDE_DIR, 'lbc_compat.h');
    const cacheDir = tempDir('stalepch');
    const warnings: string[] = [];
    const onWarning = (m: string) => warnings.push(m);
    const st = fs.statSync(input);
    await compile('SEC("tp/syscalls/sys_enter_getppid") int a(void *ctx) { return 0; }', { name: 'pch1', cacheDir, onWarning });
    const pchs = () => fs.readdirSync(path.join(cacheDir, 'pch'), { recursive: true }).filter((f) => String(f).endsWith('.pch'));
    expect(pchs()).toHaveLength(1);
    expect(warnings).toEqual([]);
    try {
      fs.utimesSync(input, st.atime, new Date(st.mtimeMs + 60_000));
      const r = await compile('SEC("tp/syscalls/sys_enter_getppid") int b(void *ctx) { return 1; }', { name: 'pch2', cacheDir, onWarning });
      expect(r.from).toBe('local');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/^compile "pch2.bpf.c": the precompiled lbc.h was stale \(.*has been modified since the precompiled header .* was built.*\); rebuilt without it$/);
      expect(pchs()).toEqual([]); // dropped; the next compile builds a fresh one
      // A real error with a stale PCH: the error is the user's, never an empty diagnostic.
      fs.utimesSync(input, st.atime, new Date(st.mtimeMs + 120_000));
      await compile('SEC("tp/syscalls/sys_enter_getppid") int c(void *ctx) { return 2; }', { name: 'pch3', cacheDir, onWarning });
      expect(pchs()).toHaveLength(1);
      fs.utimesSync(input, st.atime, new Date(st.mtimeMs + 180_000));
      const err = await compile('SEC("tp/syscalls/sys_enter_getppid") int d(void *ctx) { return nope; }', { name: 'pch4', cacheDir, onWarning }).catch((e) => e) as CompileError;
      expect(err).toBeInstanceOf(CompileError);
      expect(err.diagnostics).toEqual([{ file: 'pch4.bpf.c', line: 1, column: 64, severity: 'error', message: "use of undeclared identifier 'nope'" }]);
      expect(err.message).toBe("compile \"pch4.bpf.c\": 1 error; pch4.bpf.c:1:64: use of undeclared identifier 'nope'");
      expect(warnings).toHaveLength(2); // pch3 built a fresh PCH; pch4 found it stale again
      expect(warnings[1]).toMatch(/^compile "pch4.bpf.c": the precompiled lbc.h was stale /);
    } finally {
      fs.utimesSync(input, st.atime, st.mtime);
    }
  });
});

describe('clang\'s own errors', () => {
  test('unknown argument: kept as a <command line> diagnostic', async () => {
    const err = await compile('SEC("tp/syscalls/sys_enter_getppid") int p(void *ctx) { return 0; }', { name: 'badflag', cacheDir: tempDir('badflag'), flags: ['-fno-such-flag-xyz'] }).catch((e) => e) as CompileError;
    expect(err).toBeInstanceOf(CompileError);
    expect(err.diagnostics).toEqual([{ file: '<command line>', line: 0, column: 0, severity: 'error', message: "unknown argument: '-fno-such-flag-xyz'" }]);
    expect(err.message).toBe("compile \"badflag.bpf.c\": 1 error; <command line>: unknown argument: '-fno-such-flag-xyz'");
  });
});

describe('parseDepFile', () => {
  test('target, line continuations, escaped spaces', () => {
    expect(parseDepFile('out.o: a.c /usr/include/x.h \\\n  /tmp/my\\ dir/y.h \\\r\n  z.h\n')).toEqual(['a.c', '/usr/include/x.h', '/tmp/my dir/y.h', 'z.h']);
    expect(parseDepFile('out.o: \\\n a.c\n')).toEqual(['a.c']);
    expect(parseDepFile('out.o:\n')).toEqual([]);
  });
  test('a target path with an escaped space', () => {
    expect(parseDepFile('/tmp/a\\ b/out.o: /tmp/a\\ b/prog.bpf.c h.h\n')).toEqual(['/tmp/a b/prog.bpf.c', 'h.h']);
  });
});

describe('collectHeaders', () => {
  /** root/{src,inc,quote,deep}: a tree with the same names in several places. */
  function tree(): string {
    const root = tempDir('bundle');
    const w = (rel: string, text: string) => {
      fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
      fs.writeFileSync(path.join(root, rel), text);
    };
    w('src/a.h', '// src a\n');
    w('inc/a.h', '// inc a\n');
    w('inc/b.h', '#include "c.h"\n// inc b\n');
    w('inc/c.h', '// inc c\n');
    w('src/c.h', '// src c\n');
    w('quote/q.h', '// quote q\n');
    w('inc/vmlinux.h', '// a local vmlinux.h\n');
    return root;
  }
  const names = (b: { files: Array<{ path: string }> }) => b.files.map((f) => f.path);

  test('quoted names: the includer\'s dir, then quote dirs, then -I dirs; angled: -I dirs only', () => {
    const root = tree();
    const o = { srcDir: path.join(root, 'src'), includeDirs: [path.join(root, 'inc')], flags: ['-iquote', path.join(root, 'quote'), '-DX=1'] };
    const b = collectHeaders('#include "a.h"\n#include <a.h>\n#include "q.h"\n', o);
    expect(names(b)).toEqual(['inc/a.h', 'quote/q.h', 'src/a.h']);
    expect(b.files.find((f) => f.path === 'src/a.h')!.content).toBe('// src a\n');
    expect(b.dirs).toEqual([{ path: 'src', quote: true }, { path: 'quote', quote: true }, { path: 'inc', quote: false }]);
    expect(b.flags).toEqual(['-DX=1']);
    expect(names(collectHeaders('#include "q.h"\n', { ...o, flags: [] }))).toEqual([]); // no quote dir: not found locally
    expect(names(collectHeaders('#include <q.h>\n', o))).toEqual([]); // angled never searches quote dirs
  });

  test('a header\'s own includes resolve against its directory first', () => {
    const root = tree();
    const b = collectHeaders('#include <b.h>\n', { srcDir: path.join(root, 'src'), includeDirs: [path.join(root, 'inc')], flags: [] });
    expect(names(b)).toEqual(['inc/b.h', 'inc/c.h']); // not src/c.h
  });

  test('vmlinux.h and lbc.h are the server\'s; absolute and missing names are skipped', () => {
    const root = tree();
    const b = collectHeaders('#include "vmlinux.h"\n#include <lbc.h>\n#include "/etc/hostname"\n#include <bpf/bpf_helpers.h>\n#include "a.h"\n', {
      srcDir: path.join(root, 'src'), includeDirs: [path.join(root, 'inc')], flags: [],
    });
    expect(names(b)).toEqual(['src/a.h']);
    expect(collectHeaders('#include "vmlinux.h"\n', { srcDir: path.join(root, 'inc'), includeDirs: [], flags: [] })).toEqual({ files: [], dirs: [], flags: [] });
  });

  test('-I forms: joined, -isystem, -idirafter', () => {
    const root = tree();
    for (const flags of [[`-I${root}/inc`], ['-isystem', `${root}/inc`], [`-idirafter${root}/inc`]]) {
      const b = collectHeaders('#include <a.h>\n', { includeDirs: [], flags: [...flags, '-O2'] });
      expect(names(b)).toEqual(['a.h']);
      expect(b.dirs).toEqual([{ path: '', quote: false }]);
      expect(b.flags).toEqual(['-O2']);
    }
  });

  test('paths are relative to the deepest common root, never with ".."', () => {
    const root = tree();
    fs.mkdirSync(path.join(root, 'common'));
    fs.writeFileSync(path.join(root, 'common', 'x.h'), '#include "../inc/a.h"\n');
    const b = collectHeaders('#include "../common/x.h"\n', { srcDir: path.join(root, 'src'), includeDirs: [], flags: [] });
    expect(names(b)).toEqual(['common/x.h', 'inc/a.h']);
    expect(b.dirs).toEqual([{ path: 'src', quote: true }]);
    for (const f of b.files) {
      expect(path.isAbsolute(f.path)).toBe(false);
      expect(f.path.split('/')).not.toContain('..');
    }
  });

  test('over the limits: an LbcError that says what to do', () => {
    const root = tempDir('bundlemax');
    const lines: string[] = [];
    for (let i = 0; i < 257; i++) {
      fs.writeFileSync(path.join(root, `h${i}.h`), `// ${i}\n`);
      lines.push(`#include "h${i}.h"`);
    }
    const err = (() => { try { collectHeaders(lines.join('\n'), { srcDir: root, includeDirs: [], flags: [] }); } catch (e) { return e; } })() as LbcError;
    expect(err).toBeInstanceOf(LbcError);
    expect(err.code).toBe('LBC_INVALID_ARGUMENT');
    expect(err.message).toBe('compile remotely: the local headers the source includes exceed 256 files or 4 MiB; compile locally, or trim the include directories');
    expect(names(collectHeaders(lines.slice(0, 256).join('\n'), { srcDir: root, includeDirs: [], flags: [] }))).toHaveLength(256);
    fs.writeFileSync(path.join(root, 'big.h'), Buffer.alloc((4 << 20) + 1, 0x20));
    expect(() => collectHeaders('#include "big.h"\n', { srcDir: root, includeDirs: [], flags: [] })).toThrow(/exceed 256 files or 4 MiB/);
  });
});
