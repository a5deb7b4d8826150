// USDT probes (<sys/sdt.h>) through libbpf's usdt support: a gcc-built fixture fires
// tslcc:tick(i, 0x1234567890) a known number of times; the program reads the arguments
// with BPF_USDT and the cookie with bpf_usdt_cookie. Exact sequences, pids and cookies;
// explicit attach by pid and by binary, auto-attach by SEC("usdt/BIN:PROVIDER:NAME");
// errors that name the missing file or list the probes the binary has.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type EventMap, LbcBase, LbcError, NotFoundError } from '@tslcc/sdk';
import { isRoot, openFds, ROOT_SKIP, tempDir, until, usdtBinary } from '../helpers';

const cacheDir = tempDir('usdt-cache');
const MAGIC = 0x1234567890n;

const SRC = `
#include <bpf/usdt.bpf.h>
struct ev { u32 pid; u32 probe; s64 i; s64 magic; u64 cookie; };
LBC_RINGBUF(events, struct ev, 1 << 16);
SEC("usdt") int BPF_USDT(on_tick, long i, long magic) {
  struct ev e = { .pid = bpf_get_current_pid_tgid() >> 32, .probe = 1, .i = i, .magic = magic, .cookie = bpf_usdt_cookie(ctx) };
  lbc_ringbuf_output(events, &e, sizeof(e));
  return 0;
}`;

interface Ev { pid: number; probe: number; i: bigint; magic: bigint; cookie: bigint }
type Maps = { events: EventMap<Ev> };

/** Start the fixture (it waits on stdin before its probes fire) and wait for its exec. */
async function launch(bin: string, n: number): Promise<ChildProcess> {
  const child = spawn(bin, [String(n)], { stdio: ['pipe', 'ignore', 'inherit'] });
  await until(() => { try { return fs.readlinkSync(`/proc/${child.pid}/exe`) === bin; } catch { return false; } });
  return child;
}

async function release(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.on('exit', r));
  child.stdin!.end('x');
  expect(await exited).toBe(0);
}

function caught(f: () => unknown): LbcError {
  try { f(); } catch (e) { return e as LbcError; }
  throw new Error('expected a throw');
}

const seq = (n: number) => Array.from({ length: n }, (_, i) => BigInt(i));

describe.skipIf(!isRoot)('usdt', () => {
  let bin: string;
  let tool: LbcBase<Maps>;
  const events: Ev[] = [];
  const of = (pid: number) => events.filter((e) => e.pid === pid);
  let fds0: string[];
  beforeAll(async () => {
    bin = usdtBinary();
    fds0 = openFds();
    tool = await new LbcBase<Maps>('usdt_test', { source: SRC, attach: false, compile: { cacheDir } }).start();
    tool.maps.events.on((e) => events.push(e));
  });
  afterAll(() => tool?.close());

  test('attachUsdt({ pid }): exactly that process, i = 0..9, magic, cookie', async () => {
    const child = await launch(bin, 10);
    const other = await launch(bin, 4); // same binary, another process: not traced
    const link = tool.attachUsdt('on_tick', { pid: child.pid! }, 'tslcc', 'tick', { cookie: 0xfeedfacecafen });
    expect(tool.linkCount).toBe(1);
    await release(child);
    await release(other);
    await until(() => of(child.pid!).length >= 10);
    await new Promise((r) => setTimeout(r, 50));
    const mine = of(child.pid!);
    expect(mine.map((e) => e.i)).toEqual(seq(10));
    expect(mine.every((e) => e.magic === MAGIC && e.cookie === 0xfeedfacecafen && e.probe === 1)).toBe(true);
    expect(of(other.pid!)).toEqual([]);
    link.destroy();
    tool.detach('on_tick');
    expect(tool.linkCount).toBe(0);
  });

  test('attachUsdt({ binary }): every process of the binary; relative path and PATH name share the link', async () => {
    const link = tool.attachUsdt('on_tick', { binary: bin }, 'tslcc', 'tick', { cookie: 7 });
    expect(tool.attachUsdt('on_tick', { binary: bin }, 'tslcc', 'tick', { cookie: 7 })).toBe(link);
    expect(tool.attachUsdt('on_tick', { binary: path.relative(process.cwd(), bin) }, 'tslcc', 'tick', { cookie: 7n })).toBe(link);
    const savedPath = process.env.PATH;
    process.env.PATH = `/nonexistent-dir:${path.dirname(bin)}:${savedPath}`;
    try {
      expect(tool.attachUsdt('on_tick', { binary: path.basename(bin) }, 'tslcc', 'tick', { cookie: 7 })).toBe(link);
    } finally {
      process.env.PATH = savedPath;
    }
    expect(tool.linkCount).toBe(1);
    const pids = [6, 3].map((n) => {
      const r = spawnSync(bin, [String(n), 'go'], { stdio: 'ignore' });
      expect(r.status).toBe(0);
      return { pid: r.pid!, n };
    });
    await until(() => pids.every(({ pid, n }) => of(pid).length >= n));
    await new Promise((r) => setTimeout(r, 50));
    for (const { pid, n } of pids) {
      expect(of(pid).map((e) => e.i)).toEqual(seq(n));
      expect(of(pid).every((e) => e.magic === MAGIC && e.cookie === 7n)).toBe(true);
    }
    tool.detach('on_tick');
    expect(tool.linkCount).toBe(0);
  });

  test('errors name the missing process, file or probe and list the probes the binary has', async () => {
    const missing = caught(() => tool.attachUsdt('on_tick', { binary: '/nonexistent/app' }, 'tslcc', 'tick'));
    expect(missing).toBeInstanceOf(NotFoundError);
    expect(missing.message).toBe('attach usdt "/nonexistent/app:tslcc:tick" (program "on_tick"): no such file "/nonexistent/app"');
    const notInPath = caught(() => tool.attachUsdt('on_tick', { binary: 'no-such-tslcc-app' }, 'tslcc', 'tick'));
    expect(notInPath).toBeInstanceOf(NotFoundError);
    expect(notInPath.message).toBe('attach usdt "no-such-tslcc-app:tslcc:tick" (program "on_tick"): no file "no-such-tslcc-app" in PATH; give its path');
    const noProbe = caught(() => tool.attachUsdt('on_tick', { binary: bin }, 'tslcc', 'nope'));
    expect(noProbe).toBeInstanceOf(NotFoundError);
    expect(noProbe.message).toBe(`attach usdt "${bin}:tslcc:nope" (program "on_tick"): no USDT probe "tslcc:nope" in ${bin}; it has: tslcc:tick, tslcc:done`);
    const libc = fs.realpathSync(`/usr/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu/libc.so.6`);
    const child = await launch(bin, 0);
    // A library name: among the files the process maps, else in the library directories.
    for (const target of [{ binary: 'libc.so.6' }, { binary: 'libc.so.6', pid: child.pid! }]) {
      const noLibProbe = caught(() => tool.attachUsdt('on_tick', target, 'tslcc', 'tick'));
      expect(noLibProbe.message).toMatch(/: no USDT probe "tslcc:tick" in \/.*libc\.so\.6; it has no USDT probes \(no \.note\.stapsdt section\)$/);
      expect(fs.realpathSync(noLibProbe.message.split(' in ')[1]!.split(';')[0]!)).toBe(libc);
    }
    expect(() => tool.attachUsdt('on_tick', { pid: child.pid! }, 'other', 'tick'))
      .toThrow(`attach usdt "${bin}:other:tick" (program "on_tick", pid ${child.pid}): no USDT probe "other:tick" in /proc/${child.pid}/exe (${bin}); it has: tslcc:tick, tslcc:done`);
    await release(child);
    const ls = fs.realpathSync('/bin/ls');
    expect(() => tool.attachUsdt('on_tick', { binary: ls }, 'tslcc', 'tick'))
      .toThrow(`attach usdt "${ls}:tslcc:tick" (program "on_tick"): no USDT probe "tslcc:tick" in ${ls}; it has no USDT probes (no .note.stapsdt section)`);
    expect(() => tool.attachUsdt('on_tick', {}, 'tslcc', 'tick')).toThrow(expect.objectContaining({ code: 'LBC_INVALID_ARGUMENT' }));
    expect(() => tool.attachUsdt('on_tick', { pid: 0x7ffffff0 }, 'tslcc', 'tick')).toThrow(`no process ${0x7ffffff0}`);
    expect(() => tool.attachUsdt('nope', { binary: bin }, 'tslcc', 'tick')).toThrow('attach "nope" of "usdt_test": no such program; programs: on_tick');
    expect(tool.linkCount).toBe(0);
  });

  test('a program without <bpf/usdt.bpf.h>: the error says to include it', async () => {
    const t = await new LbcBase('usdt_noinc', { source: 'SEC("usdt") int on_tick(struct pt_regs *ctx) { return 0; }', attach: false, compile: { cacheDir } }).start();
    try {
      expect(() => t.attachUsdt('on_tick', { binary: bin }, 'tslcc', 'tick'))
        .toThrow(`attach usdt "${bin}:tslcc:tick" (program "on_tick"): the object has no USDT support maps; #include <bpf/usdt.bpf.h> in the program`);
      expect(t.linkCount).toBe(0);
    } finally {
      t.close();
    }
  });

  test('SEC("usdt/BIN:tslcc:tick") and SEC("usdt/BIN:tslcc:done") attach at start(); a bare SEC("usdt") is left alone', async () => {
    const src = `
#include <bpf/usdt.bpf.h>
struct ev { u32 pid; u32 probe; s64 i; s64 magic; u64 cookie; };
LBC_RINGBUF(events, struct ev, 1 << 16);
SEC("usdt/${bin}:tslcc:tick") int BPF_USDT(auto_tick, long i, long magic) {
  struct ev e = { .pid = bpf_get_current_pid_tgid() >> 32, .probe = 1, .i = i, .magic = magic, .cookie = bpf_usdt_cookie(ctx) };
  lbc_ringbuf_output(events, &e, sizeof(e));
  return 0;
}
SEC("usdt/${bin}:tslcc:done") int BPF_USDT(auto_done, long n) {
  struct ev e = { .pid = bpf_get_current_pid_tgid() >> 32, .probe = 2, .i = n, .cookie = bpf_usdt_cookie(ctx) };
  lbc_ringbuf_output(events, &e, sizeof(e));
  return 0;
}
SEC("usdt") int BPF_USDT(manual, long i) { return 0; }`;
    const got: Ev[] = [];
    const t = await new LbcBase<Maps>('usdt_auto', { source: src, compile: { cacheDir } }).start();
    try {
      expect(t.linkCount).toBe(2);
      // The explicit call for the same target (any process, cookie 0) is the same link.
      const n0 = t.linkCount;
      expect(t.attachUsdt('auto_tick', { binary: bin }, 'tslcc', 'tick')).toBe(t.attach('auto_tick'));
      expect(t.linkCount).toBe(n0);
      expect(() => t.attach('manual')).toThrow(expect.objectContaining({ code: 'LBC_ATTACH', errno: 95 }));
      t.maps.events.on((e) => got.push(e));
      const r = spawnSync(bin, ['5', 'go'], { stdio: 'ignore' });
      expect(r.status).toBe(0);
      await until(() => got.filter((e) => e.pid === r.pid).length >= 6);
      await new Promise((res) => setTimeout(res, 50));
      expect(got.filter((e) => e.pid === r.pid).map((e) => [e.probe, e.i])).toEqual([[1, 0n], [1, 1n], [1, 2n], [1, 3n], [1, 4n], [2, 5n]]);
      expect(got.filter((e) => e.pid === r.pid && e.probe === 1).every((e) => e.magic === MAGIC && e.cookie === 0n)).toBe(true);
    } finally {
      t.close();
    }
  });

  test('SEC("usdt/BIN:tslcc:nope"): start() fails listing the probes', async () => {
    const src = `
#include <bpf/usdt.bpf.h>
SEC("usdt/${bin}:tslcc:nope") int BPF_USDT(bad, long i) { return 0; }`;
    const t = new LbcBase('usdt_bad', { source: src, compile: { cacheDir } });
    await expect(t.start()).rejects.toThrow(`attach usdt "${bin}:tslcc:nope" (program "bad"): no USDT probe "tslcc:nope" in ${bin}; it has: tslcc:tick, tslcc:done`);
    t.close();
  });

  test('close() releases every fd the usdt attachments opened', async () => {
    tool.attachUsdt('on_tick', { binary: bin }, 'tslcc', 'tick');
    tool.close();
    await until(() => JSON.stringify(openFds()) === JSON.stringify(fds0));
    expect(openFds()).toEqual(fds0);
    expect(tool.linkCount).toBe(0);
  });
});

if (!isRoot) test('usdt', (ctx) => ctx.skip(ROOT_SKIP));
