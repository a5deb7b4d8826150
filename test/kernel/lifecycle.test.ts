// close() releases every kernel object: fds, links, programs, maps; twice is harmless;
// attaching twice never creates a second link; an exiting process releases everything.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { LbcBase } from '@tslcc/sdk';
import { bpfFds, isRoot, openFds, REPO, ROOT_SKIP, tempDir } from '../helpers';

const SRC = `
struct ev { u32 pid; };
LBC_PERF_OUTPUT(pb, struct ev, 8);
LBC_RINGBUF(rb, struct ev, 8192);
LBC_HASH(counts, u32, u64, 64);
LBC_STACK(stacks, 16);
SEC("tp/syscalls/sys_enter_getppid")
int on_getppid(void *ctx) {
  struct ev e = { .pid = bpf_get_current_pid_tgid() >> 32 };
  bpf_perf_event_output(ctx, &pb, BPF_F_CURRENT_CPU, &e, sizeof(e));
  lbc_ringbuf_output(rb, &e, sizeof(e));
  return 0;
}
SEC("raw_tp/sys_enter")
int on_raw(void *ctx) { return 0; }
`;

const cacheDir = tempDir('life');
// Only this process's fds: other BPF users on the host never change what is compared.
const snapshot = () => ({ fds: openFds(), bpf: bpfFds() });

describe.skipIf(!isRoot)('lifetimes', () => {
  test('close() leaves no fds, links, programs or maps behind; twice is harmless', async () => {
    // Warm up once so lazily created process fds (libuv, the addon) exist before the snapshot.
    (await new LbcBase('warm', { source: SRC, compile: { cacheDir } }).start()).close();
    const before = snapshot();
    const t = await new LbcBase('life', { source: SRC, compile: { cacheDir } }).start();
    t.maps.pb.on(() => {});
    t.maps.rb.on(() => {});
    const during = snapshot();
    expect(during.bpf.links - before.bpf.links).toBe(2);   // tracepoint + raw_tp
    expect(during.bpf.progs - before.bpf.progs).toBe(2);
    expect(during.bpf.maps - before.bpf.maps).toBeGreaterThanOrEqual(2); // pb, rb (+ .bss)
    expect(t.linkCount).toBe(2);
    t.close();
    t.close();
    await t[Symbol.asyncDispose]();
    expect(snapshot()).toEqual(before);
  });

  test('attaching the same program twice keeps one link', async () => {
    const t = await new LbcBase('twice', { source: SRC, compile: { cacheDir }, attach: false }).start();
    const links0 = bpfFds().links;
    const a = t.attach('on_getppid');
    const b = t.attach('on_getppid');
    const c = t.attachTracepoint('on_getppid', 'syscalls', 'sys_enter_getppid');
    const d = t.attachTracepoint('on_getppid', 'syscalls', 'sys_enter_getppid');
    const e = t.attachRawTracepoint('on_raw', 'sys_enter');
    const f = t.attach('on_raw');
    expect(a).toBe(b);
    expect(c).toBe(a); // SEC("tp/syscalls/sys_enter_getppid") names the same target
    expect(d).toBe(a);
    expect(f).toBe(e);
    expect(bpfFds().links - links0).toBe(2);
    expect(t.linkCount).toBe(2);
    t.detach('on_raw');
    t.detach('on_getppid');
    expect(t.linkCount).toBe(0);
    expect(bpfFds().links).toBe(links0);
    t.close();
  });

  test('using a map after close is a clear error', async () => {
    const t = await new LbcBase('closed', { source: SRC, compile: { cacheDir } }).start();
    t.close();
    expect(() => t.maps.counts.get(1)).toThrow('lookup map "counts": "closed" is closed');
  });

  test('SIGTERM to a running tool: it closes and exits as the signal would', async () => {
    const dir = tempDir('sig');
    const script = path.join(dir, 'tool.mjs');
    fs.writeFileSync(script, `
      import { LbcBase } from ${JSON.stringify(path.join(REPO, 'packages/sdk/dist/index.js'))};
      import * as native from ${JSON.stringify(path.join(REPO, 'packages/native/lib/index.js'))};
      const t = await new LbcBase('sig', { source: ${JSON.stringify(SRC)}, compile: { cacheDir: ${JSON.stringify(cacheDir)} } }).start();
      t.maps.rb.on(() => {});
      // Observe the SDK's signal hook closing the tool (a re-raised signal skips 'exit').
      const close = t.close.bind(t);
      t.close = () => { close(); process.stdout.write('closed, links ' + t.linkCount + '\\n'); };
      process.stdout.write('ready\\n');
      setTimeout(() => process.kill(process.pid, 'SIGTERM'), 100);
    `);
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stdout).toBe('ready\nclosed, links 0\n');
    expect(r.signal).toBe('SIGTERM');
  });
});

if (!isRoot) test('lifetimes', (ctx) => ctx.skip(ROOT_SKIP));
