// The ELF reader and the user-space symbolizer against binaries built here and processes
// of our own (no root needed): exact names and offsets, checked against nm and readelf.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { bufferSource, ElfFile, fileSource, foldStacks, type Frame, parseMaps, Symbolizer } from '@tslcc/sdk';
import { tempDir, until } from '../helpers';

const FIX = path.join(__dirname, '..', 'fixtures', 'ustack');
const dir = tempDir('sym');
const pie = path.join(dir, 'pie');
const stripped = path.join(dir, 'stripped');

function nmAddress(bin: string, sym: string): number {
  const line = execFileSync('nm', [bin], { encoding: 'utf8' }).split('\n').find((l) => l.endsWith(` T ${sym}`))!;
  return parseInt(line.split(' ')[0]!, 16);
}

beforeAll(() => {
  execFileSync('gcc', ['-O0', '-fno-omit-frame-pointer', '-fPIE', '-pie', '-o', pie, path.join(FIX, 'ustack.c')]);
  execFileSync('gcc', ['-O0', '-g', '-o', stripped, path.join(FIX, 'ustack.c')]);
  execFileSync('objcopy', ['--only-keep-debug', stripped, `${stripped}.debug`]);
  execFileSync('strip', ['--strip-all', stripped]);
  execFileSync('objcopy', [`--add-gnu-debuglink=${stripped}.debug`, stripped]);
});

describe('ElfFile', () => {
  test('headers, build-id and function symbols match readelf and nm', async () => {
    const elf = await ElfFile.open(await fileSource(pie));
    expect([elf.is64, elf.le, elf.type]).toEqual([true, true, 3]); // ET_DYN: PIE
    const readelfId = /Build ID: ([0-9a-f]+)/.exec(execFileSync('readelf', ['-n', pie], { encoding: 'utf8' }))![1];
    expect(elf.buildId).toBe(readelfId);
    const syms = await elf.symbols();
    const outer = nmAddress(pie, 'outer');
    expect(syms.lookup(outer + 3)).toMatchObject({ name: 'outer', offset: 3, start: outer });
    expect(syms.lookup(nmAddress(pie, 'main'))!.name).toBe('main');
    await elf.close();
  });

  test('a stripped binary names its debug file', async () => {
    const elf = await ElfFile.open(await fileSource(stripped));
    expect(elf.hasSymtab).toBe(false);
    expect(elf.debuglink?.file).toBe('stripped.debug');
    const dbg = await ElfFile.open(await fileSource(`${stripped}.debug`));
    expect(dbg.buildId).toBe(elf.buildId);
    expect((await dbg.symbols()).lookup(nmAddress(`${stripped}.debug`, 'inner'))!.name).toBe('inner');
    await elf.close();
    await dbg.close();
  });

  test('garbage is refused', async () => {
    await expect(ElfFile.open(bufferSource(Buffer.from('not an elf at all, really not')))).rejects.toThrow('not an ELF file');
  });
});

describe('Symbolizer (own processes)', () => {
  let child: ChildProcess;
  beforeAll(async () => {
    child = spawn(pie, [], { stdio: ['pipe', 'ignore', 'ignore'] });
    await until(() => { try { return fs.readlinkSync(`/proc/${child.pid}/exe`) === pie; } catch { return false; } });
  });
  afterAll(() => child.kill());

  /** Where link-time address `vaddr` of `bin` is in process `pid`. */
  function runtimeAddress(pid: number, bin: string, vaddr: number, seg: { vaddr: number; offset: number }): bigint {
    const fileOff = vaddr - seg.vaddr + seg.offset;
    const m = parseMaps(fs.readFileSync(`/proc/${pid}/maps`, 'utf8')).find((x) => x.path === bin && fileOff >= x.offset && fileOff < x.offset + (x.end - x.start))!;
    return BigInt(m.start + fileOff - m.offset);
  }

  test('PIE: a live process\'s addresses resolve to function+offset (binary)', async () => {
    const elf = await ElfFile.open(await fileSource(pie));
    const outer = nmAddress(pie, 'outer');
    const seg = elf.segments.find((p) => p.type === 1 && outer >= p.vaddr && outer < p.vaddr + p.filesz)!;
    await elf.close();
    const a = runtimeAddress(child.pid!, pie, outer + 5, seg);
    const mainAddr = runtimeAddress(child.pid!, pie, nmAddress(pie, 'main') + 9, seg);
    const frames = await new Symbolizer().user(child.pid!, [a, mainAddr + 1n]);
    expect(frames).toEqual([
      { kind: 'user', address: a, symbol: 'outer', offset: 5, binary: pie },
      // a return address: resolved as address - 1, shown at its own offset
      { kind: 'user', address: mainAddr + 1n, symbol: 'main', offset: 10, binary: pie },
    ]);
  });

  test('the vDSO resolves from the process\'s memory', async (ctx) => {
    const m = parseMaps(fs.readFileSync('/proc/self/maps', 'utf8')).find((x) => x.path === '[vdso]');
    if (!m) ctx.skip('this process has no [vdso] mapping: vDSO symbolization could not be exercised');
    const buf = Buffer.alloc(m!.end - m!.start);
    const fd = fs.openSync('/proc/self/mem', 'r');
    fs.readSync(fd, buf, 0, buf.length, m!.start);
    fs.closeSync(fd);
    const syms = await (await ElfFile.open(bufferSource(buf))).symbols();
    let gettime = -1;
    for (let i = 0; i < syms.size; i++) if (syms.lookup(syms.starts[i]!)!.name === '__vdso_clock_gettime') gettime = syms.starts[i]!;
    expect(gettime).toBeGreaterThanOrEqual(0);
    const base = (await ElfFile.open(bufferSource(buf))).fileOffsetToVaddr(0) ?? 0;
    const [f] = await new Symbolizer().user(process.pid, [BigInt(m!.start + gettime - base + 2)]);
    expect([f!.symbol, f!.offset, f!.binary]).toEqual(['__vdso_clock_gettime', 2, '[vdso]']);
  });

  test('JIT frames from /tmp/perf-PID.map, re-read when the file grows', async () => {
    const file = `/tmp/perf-${child.pid}.map`;
    fs.writeFileSync(file, '10000 100 JS:*first file:///a.js:1\n');
    try {
      const sym = new Symbolizer();
      const [a] = await sym.user(child.pid!, [0x10010n]);
      expect(a).toEqual({ kind: 'jit', address: 0x10010n, symbol: 'JS:*first file:///a.js:1', offset: 0x10, binary: `perf-${child.pid}.map` });
      fs.appendFileSync(file, '20000 40 JS:*second file:///a.js:9\n');
      const [b] = await sym.user(child.pid!, [0x20004n]);
      expect([b!.kind, b!.symbol, b!.offset]).toEqual(['jit', 'JS:*second file:///a.js:9', 4]);
      const [c] = await sym.user(child.pid!, [0x30000n]);
      expect(c!.reason).toBe('not in any mapping of the process');
    } finally {
      fs.rmSync(file, { force: true });
    }
  });

  test('a stripped binary symbolizes through /usr/lib/debug/.build-id/xx/rest.debug', async () => {
    // A copy without .gnu_debuglink: only the build-id can find its symbols.
    const bin = path.join(dir, 'byid');
    execFileSync('gcc', ['-O0', '-fno-omit-frame-pointer', '-g', '-o', bin, path.join(FIX, 'ustack.c')]);
    const debugRoot = path.join(dir, 'debug');
    const id = /Build ID: ([0-9a-f]+)/.exec(execFileSync('readelf', ['-n', bin], { encoding: 'utf8' }))![1]!;
    fs.mkdirSync(path.join(debugRoot, '.build-id', id.slice(0, 2)), { recursive: true });
    execFileSync('objcopy', ['--only-keep-debug', bin, path.join(debugRoot, '.build-id', id.slice(0, 2), `${id.slice(2)}.debug`)]);
    const outer = nmAddress(bin, 'outer');
    execFileSync('strip', ['--strip-all', bin]);
    const p = spawn(bin, [], { stdio: ['pipe', 'ignore', 'ignore'] });
    try {
      await until(() => { try { return fs.readlinkSync(`/proc/${p.pid}/exe`) === bin; } catch { return false; } });
      const elf = await ElfFile.open(await fileSource(bin));
      expect(elf.debuglink).toBeUndefined();
      const seg = elf.segments.find((x) => x.type === 1 && outer >= x.vaddr && outer < x.vaddr + x.filesz)!;
      await elf.close();
      const a = runtimeAddress(p.pid!, bin, outer + 2, seg);
      const [withDir] = await new Symbolizer({ debugDirs: [debugRoot] }).user(p.pid!, [a]);
      expect([withDir!.symbol, withDir!.offset]).toEqual(['outer', 2]);
      const [without] = await new Symbolizer({ debugDirs: [] }).user(p.pid!, [a]);
      expect(without!.reason).toBe(`${bin} is stripped and no debug file was found (build-id ${id}): only its exported functions are known`);
    } finally {
      p.kill();
    }
  });

  test('symbol tables are cached per binary, within the memory bound', async () => {
    const big = new Symbolizer();
    const libc = parseMaps(fs.readFileSync(`/proc/${child.pid}/maps`, 'utf8')).find((x) => x.path.includes('libc.so') && x.perms.includes('x'))!;
    const own = parseMaps(fs.readFileSync(`/proc/${child.pid}/maps`, 'utf8')).find((x) => x.path === pie && x.perms.includes('x'))!;
    await big.user(child.pid!, [BigInt(own.start), BigInt(libc.start + 0x100)]);
    expect(big.cachedBinaries).toBe(2);
    expect(big.cacheBytes).toBeGreaterThan(0);
    const small = new Symbolizer({ maxBytes: 1 });
    await small.user(child.pid!, [BigInt(own.start)]);
    await small.user(child.pid!, [BigInt(libc.start + 0x100)]);
    expect(small.cachedBinaries).toBe(1); // the older one was evicted
  });
});

describe('text helpers', () => {
  test('parseMaps', () => {
    expect(parseMaps('55d4c0a00000-55d4c0a01000 r-xp 00001000 fe:00 1234 /usr/bin/x (deleted)\n7ffd1000-7ffd3000 r-xp 00000000 00:00 0 [vdso]\n')).toEqual([
      { start: 0x55d4c0a00000, end: 0x55d4c0a01000, perms: 'r-xp', offset: 0x1000, dev: 'fe:00', inode: 1234, path: '/usr/bin/x' },
      { start: 0x7ffd1000, end: 0x7ffd3000, perms: 'r-xp', offset: 0, dev: '00:00', inode: 0, path: '[vdso]' },
    ]);
  });

  test('foldStacks: outermost first, counts summed, unknown frames as addresses', () => {
    const f = (symbol?: string, address = 1n): Frame => ({ kind: 'user', address, symbol });
    expect(foldStacks([
      [[f('inner'), f('outer'), f('main')], 3],
      [[f('inner'), f('outer'), f('main')], 2],
      [[f(undefined, 0xabcn), f('main')], 1],
    ])).toBe('main;outer;inner 5\nmain;0xabc 1');
  });
});
