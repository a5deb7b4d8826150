// User-space stacks: gcc-built programs (PIE, non-PIE, shared library, stripped with a
// .gnu_debuglink file, C++), a uprobe inside `inner`, and the exact frames inner → outer →
// main, demangled; processes that exit before symbolization; Node.js JIT frames.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  ElfFile, type EventMap, fileSource, foldStacks, formatAnyFrame, type KeyValueMap, LbcBase, type StackMap, Symbolizer, type UserFrame,
} from '@tslcc/sdk';
import { isRoot, ROOT_SKIP, tempDir, until } from '../helpers';

const FIX = path.join(__dirname, '..', 'fixtures', 'ustack');
const dir = tempDir('ustack');
const CFLAGS = ['-O0', '-fno-omit-frame-pointer'];

interface Prog { name: string; bin: string; lib?: string; inner: string; symbols: string[] }

function build(): Prog[] {
  const cc = (args: string[]) => execFileSync('gcc', args, { stdio: 'inherit' });
  const pie = path.join(dir, 'ustack-pie');
  cc([...CFLAGS, '-fPIE', '-pie', '-o', pie, path.join(FIX, 'ustack.c')]);
  const nopie = path.join(dir, 'ustack-nopie');
  cc([...CFLAGS, '-fno-PIE', '-no-pie', '-o', nopie, path.join(FIX, 'ustack.c')]);
  const lib = path.join(dir, 'libustack.so');
  cc([...CFLAGS, '-fPIC', '-shared', '-o', lib, path.join(FIX, 'lib.c')]);
  const withLib = path.join(dir, 'ustack-lib');
  cc([...CFLAGS, '-o', withLib, path.join(FIX, 'main_lib.c'), `-L${dir}`, '-lustack', `-Wl,-rpath,${dir}`]);
  // Stripped, with its symbols in a separate file named by .gnu_debuglink, beside it.
  const stripped = path.join(dir, 'ustack-stripped');
  cc([...CFLAGS, '-g', '-o', stripped, path.join(FIX, 'ustack.c')]);
  execFileSync('objcopy', ['--only-keep-debug', stripped, `${stripped}.debug`]);
  execFileSync('strip', ['--strip-all', stripped]);
  execFileSync('objcopy', [`--add-gnu-debuglink=${stripped}.debug`, stripped]);
  const cpp = path.join(dir, 'ustack-cpp');
  execFileSync('g++', [...CFLAGS, '-o', cpp, path.join(FIX, 'ustack.cpp')], { stdio: 'inherit' });
  return [
    { name: 'PIE', bin: pie, inner: 'inner', symbols: ['inner', 'outer', 'main'] },
    { name: 'non-PIE', bin: nopie, inner: 'inner', symbols: ['inner', 'outer', 'main'] },
    { name: 'shared library', bin: withLib, lib, inner: 'inner', symbols: ['inner', 'outer', 'main'] },
    { name: 'stripped + .gnu_debuglink', bin: stripped, inner: 'inner', symbols: ['inner', 'outer', 'main'] },
    { name: 'C++', bin: cpp, inner: '_ZN5tslcc3BoxIlE5innerEl', symbols: ['tslcc::Box<long>::inner(long)', 'long tslcc::outer<long>(long)', 'main'] },
  ];
}

/**
 * Where `sym` is in `file` (a file offset, as uprobes take it; symbols from the .debug
 * file when the binary is stripped) and how many bytes its `push %rbp; mov %rsp,%rbp`
 * prologue takes: probing past it keeps the caller in the frame-pointer chain.
 */
async function locate(file: string, sym: string): Promise<{ fileOffset: number; prologue: number }> {
  const elf = await ElfFile.open(await fileSource(file));
  const src = elf.hasSymtab ? elf : await ElfFile.open(await fileSource(`${file}.debug`));
  const syms = await src.symbols();
  let start = -1;
  for (let i = 0; i < syms.size; i++) {
    if (syms.lookup(syms.starts[i]!)?.name === sym) { start = syms.starts[i]!; break; }
  }
  const seg = elf.segments.find((p) => p.type === 1 && start >= p.vaddr && start < p.vaddr + p.filesz)!;
  const fileOffset = start - seg.vaddr + seg.offset;
  const bytes = fs.readFileSync(file).subarray(fileOffset, fileOffset + 16);
  const at = bytes.indexOf(Buffer.from([0x48, 0x89, 0xe5]));
  await elf.close();
  if (src !== elf) await src.close();
  if (at < 0) throw new Error(`no frame-pointer prologue in ${sym}`);
  return { fileOffset, prologue: at + 3 };
}

const SRC = `
struct ev { u32 pid; s32 stack; };
LBC_RINGBUF(events, struct ev, 1 << 16);
/* Every run of a PIE is laid out anew (ASLR), so every stack is new: a large map, and
 * REUSE_STACKID so a hash collision replaces an old stack instead of failing with -EEXIST. */
LBC_STACK(stacks, 16384);
SEC("uprobe") int on_inner(struct pt_regs *ctx) {
  struct ev e = { .pid = bpf_get_current_pid_tgid() >> 32, .stack = bpf_get_stackid(ctx, &stacks, USER_STACKID_FLAGS | BPF_F_REUSE_STACKID) };
  lbc_ringbuf_output(events, &e, sizeof(e));
  return 0;
}`;

type Ev = { pid: number; stack: number };
type Maps = { events: EventMap<Ev>; stacks: StackMap };

/** Start `bin` (it waits on stdin), wait for its exec. */
async function launch(bin: string): Promise<ChildProcess> {
  const child = spawn(bin, [], { stdio: ['pipe', 'ignore', 'inherit'] });
  await until(() => { try { return fs.readlinkSync(`/proc/${child.pid}/exe`) === bin; } catch { return false; } });
  return child;
}

describe.skipIf(!isRoot)('user-space stacks', () => {
  let tool: LbcBase<Maps>;
  let progs: Prog[];
  const events: Ev[] = [];
  beforeAll(async () => {
    progs = build();
    tool = await new LbcBase<Maps>('ustack', { source: SRC, attach: false, compile: { cacheDir: tempDir('ustack-cache') } }).start();
    for (const p of progs) {
      const target = p.lib ?? p.bin;
      const { fileOffset, prologue } = await locate(target, p.inner);
      if (target.endsWith('stripped')) {
        tool.attachUprobe('on_inner', target, fileOffset + prologue); // no .symtab for libbpf to search
      } else {
        tool.attachUprobe('on_inner', target, p.inner, { offset: prologue });
      }
    }
    tool.maps.events.on((e) => events.push(e));
  });
  afterAll(() => tool?.close());

  const names = (frames: UserFrame[]) => frames.slice(0, 3).map((f) => f.symbol);

  for (const i of [0, 1, 2, 3, 4]) {
    test(`exact frames while the process lives: ${['PIE', 'non-PIE', 'shared library', 'stripped + .gnu_debuglink', 'C++'][i]}`, async () => {
      const p = progs[i]!;
      const child = await launch(p.bin);
      child.stdin!.write('x');
      await until(() => events.some((e) => e.pid === child.pid));
      const ev = events.find((e) => e.pid === child.pid)!;
      expect(ev.stack).toBeGreaterThanOrEqual(0);
      const frames = await tool.maps.stacks.getFrames(ev.stack, { pid: child.pid! });
      child.stdin!.end('x');
      await new Promise((r) => child.on('exit', r));
      expect(names(frames)).toEqual(p.symbols);
      expect(frames.slice(0, 3).map((f) => f.kind)).toEqual(['user', 'user', 'user']);
      expect(frames.slice(0, 3).map((f) => f.binary)).toEqual(p.lib ? [p.lib, p.lib, p.bin] : [p.bin, p.bin, p.bin]);
      expect(frames[0]!.offset).toBe((await locate(p.lib ?? p.bin, p.inner)).prologue);
      const text = await tool.maps.stacks.getStacks(ev.stack, { pid: child.pid! });
      expect(text[0]).toBe(`${p.symbols[0]}+0x${frames[0]!.offset!.toString(16)} (${p.lib ?? p.bin})`);
    });
  }

  test('a process that exited after it was seen still symbolizes', async () => {
    const p = progs[0]!;
    const sym = new Symbolizer();
    const child = await launch(p.bin);
    expect(sym.remember(child.pid!)).toBe(true);
    child.stdin!.end('xx');
    await new Promise((r) => child.on('exit', r));
    await until(() => events.some((e) => e.pid === child.pid));
    expect(fs.existsSync(`/proc/${child.pid}`)).toBe(false);
    const ev = events.find((e) => e.pid === child.pid)!;
    expect(ev.stack).toBeGreaterThanOrEqual(0);
    const frames = await sym.user(child.pid!, tool.maps.stacks.getArr(ev.stack));
    expect(names(frames)).toEqual(['inner', 'outer', 'main']);
  });

  test('a process never seen alive: every address kept, with the reason', async () => {
    const p = progs[0]!;
    const child = spawn(p.bin, [], { stdio: ['pipe', 'ignore', 'inherit'] });
    child.stdin!.end('xx');
    await new Promise((r) => child.on('exit', r));
    await until(() => events.some((e) => e.pid === child.pid));
    const ev = events.find((e) => e.pid === child.pid)!;
    expect(ev.stack).toBeGreaterThanOrEqual(0);
    const addrs = tool.maps.stacks.getArr(ev.stack);
    const frames = await new Symbolizer().user(child.pid!, addrs);
    expect(frames.map((f) => f.address)).toEqual(addrs);
    expect(frames.every((f) => f.symbol === undefined && f.reason === `process ${child.pid} exited before its memory map was read`)).toBe(true);
    expect(formatAnyFrame(frames[0]!)).toBe(`0x${addrs[0]!.toString(16)} (process ${child.pid} exited before its memory map was read)`);
  });
});

describe.skipIf(!isRoot)('Node.js JIT frames', () => {
  test('a hot JS function of a node --perf-basic-prof child appears in sampled stacks', async () => {
    const script = path.join(dir, 'hot.js');
    fs.writeFileSync(script, [
      'function hotLoopTslcc(n) { let s = 0; for (let i = 0; i < n; i++) s += Math.sqrt(i) % 7; return s; }',
      // Until killed: under QEMU's TCG (the VM suite) compiling the sampler takes seconds.
      'let t = 0;',
      'for (;;) t += hotLoopTslcc(1e5);',
    ].join('\n'));
    // Without inlining, the hot function's samples land in its own code (not its caller's).
    const child = spawn(process.execPath, ['--perf-basic-prof', '--no-turbo-inlining', script], { stdio: ['ignore', 'pipe', 'inherit'], cwd: dir });
    const src = `
      LBC_HASH(counts, s32, u64, 4096);
      LBC_STACK(stacks, 4096);
      const volatile u32 target = 0;
      SEC("perf_event") int on_sample(struct bpf_perf_event_data *ctx) {
        if ((bpf_get_current_pid_tgid() >> 32) != target) return 0;
        s32 id = bpf_get_stackid(ctx, &stacks, USER_STACKID_FLAGS);
        u64 one = 1, *c = bpf_map_lookup_elem(&counts, &id);
        if (c) __sync_fetch_and_add(c, 1); else bpf_map_update_elem(&counts, &id, &one, BPF_NOEXIST);
        return 0;
      }`;
    const t = await new LbcBase<{ counts: KeyValueMap<number, bigint>; stacks: StackMap }>('jit', {
      source: src, globals: { target: child.pid }, compile: { cacheDir: tempDir('jit') },
    }).start();
    try {
      t.attachAllCpuPerf('on_sample', { type: 1, config: 0, sampleFreq: 499 });
      const perfMap = `/tmp/perf-${child.pid}.map`;
      await until(() => fs.existsSync(perfMap) && fs.readFileSync(perfMap, 'utf8').includes('hotLoopTslcc'), 60_000);
      await new Promise((r) => setTimeout(r, 1000));
      const stacks: Array<[UserFrame[], number]> = [];
      for (const [id, n] of t.maps.counts.entries()) {
        if (id >= 0) stacks.push([await t.maps.stacks.getFrames(id, { pid: child.pid! }), Number(n)]);
      }
      const jit = stacks.flatMap(([f]) => f).filter((f) => f.kind === 'jit' && f.symbol?.includes('hotLoopTslcc'));
      expect(jit.length).toBeGreaterThan(0);
      expect(jit[0]!.binary).toBe(`perf-${child.pid}.map`);
      expect(foldStacks(stacks)).toMatch(/hotLoopTslcc/);
    } finally {
      t.close();
      child.kill();
    }
  });
});

describe('kernel module and BPF program frames', () => {
  test.skipIf(!isRoot)('our own BPF program is symbolized as [bpf] after it loads', async () => {
    const { kernelSymbols } = await import('@tslcc/sdk');
    const ks = kernelSymbols();
    ks.lookup(0xffffffff81000000n); // the table is loaded before our program exists
    const t = await new LbcBase('ksymprog', { source: 'SEC("tp/syscalls/sys_enter_getppid") int tslcc_ksym_probe(void *ctx) { return 0; }', compile: { cacheDir: tempDir('ksym') } }).start();
    try {
      const line = fs.readFileSync('/proc/kallsyms', 'utf8').split('\n').find((l) => l.endsWith('_tslcc_ksym_probe\t[bpf]'))!;
      expect(line).toBeDefined();
      const addr = BigInt(`0x${line.split(' ')[0]}`);
      const f = ks.lookup(addr + 4n);
      expect([f.symbol, f.offset, f.module]).toEqual([line.split(' ')[2]!.split('\t')[0], 4, 'bpf']);
    } finally {
      t.close();
    }
  });

  test('kernel module frames', (ctx) => {
    if (!fs.existsSync('/proc/modules')) {
      ctx.skip('this kernel has no loadable modules (CONFIG_MODULES off, no /proc/modules): module frames could not be exercised; the "[module]" format is asserted by the kallsyms unit test');
    }
    const mod = fs.readFileSync('/proc/kallsyms', 'utf8').split('\n').find((l) => /\t\[(?!bpf\])\w+\]$/.test(l) && / [tT] /.test(l));
    if (!mod) ctx.skip('no module with text symbols is loaded: module frames could not be exercised');
    const [addr, , name] = mod!.split(/\s+/);
    return import('@tslcc/sdk').then(({ kernelSymbols, formatFrame }) => {
      expect(formatFrame(kernelSymbols().lookup(BigInt(`0x${addr}`) + 1n))).toBe(`${name}+0x1 [${mod!.split('[')[1]!.slice(0, -1)}]`);
    });
  });
});

if (!isRoot) test('user-space stacks', (ctx) => ctx.skip(ROOT_SKIP));
