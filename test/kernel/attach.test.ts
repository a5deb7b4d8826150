// Explicit attach calls on what this kernel has: uprobe/uretprobe, perf_event sampling on
// every CPU, XDP on lo. Exact counts where the workload is exact.
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { LbcBase, onlineCpus } from '@tslcc/sdk';
import { isRoot, probeBinary, ROOT_SKIP, runProbe, tempDir, until } from '../helpers';

const cacheDir = tempDir('attach');

describe.skipIf(!isRoot)('explicit attach', () => {
  test('uprobe and uretprobe on a function of a binary: exact calls, arguments, return values', async () => {
    const src = `
      const volatile u32 parent_tgid = 0;
      u64 calls = 0, arg_sum = 0, ret_sum = 0;
      static __always_inline bool mine(void) {
        struct task_struct *task = (void *)bpf_get_current_task();
        return BPF_CORE_READ(task, real_parent, tgid) == parent_tgid;
      }
      SEC("uprobe") int BPF_KPROBE(on_marker, long v) {
        if (mine()) { __sync_fetch_and_add(&calls, 1); __sync_fetch_and_add(&arg_sum, v); }
        return 0;
      }
      SEC("uretprobe") int BPF_KRETPROBE(on_marker_ret, long rv) {
        if (mine()) __sync_fetch_and_add(&ret_sum, rv);
        return 0;
      }`;
    const t = await new LbcBase('uprobe_test', { source: src, attach: false, globals: { parent_tgid: process.pid }, compile: { cacheDir } }).start();
    try {
      const bin = probeBinary();
      t.attachUprobe('on_marker', bin, 'probe_marker');
      t.attachUretprobe('on_marker_ret', bin, 'probe_marker');
      expect(t.linkCount).toBe(2);
      runProbe('marker', '100');
      expect(t.readGlobal('calls')).toBe(100n);
      expect(t.readGlobal('arg_sum')).toBe(4950n);
      expect(t.readGlobal('ret_sum')).toBe(9900n);
      expect(() => t.attachUprobe('on_marker', '/nonexistent/bin', 'main')).toThrow('attach uprobe "/nonexistent/bin:main" (program "on_marker"): no such file "/nonexistent/bin"');
    } finally {
      t.close();
    }
  });

  test('traceUprobes("bin:func"): the binary found by name among the files the process maps', async () => {
    const src = `
      u64 calls = 0, arg_sum = 0;
      SEC("uprobe") int BPF_KPROBE(on_marker, long v) { __sync_fetch_and_add(&calls, 1); __sync_fetch_and_add(&arg_sum, v); return 0; }`;
    const t = await new LbcBase('trace_up', { source: src, attach: false, compile: { cacheDir } }).start();
    try {
      const bin = probeBinary();
      const { spawn } = await import('node:child_process');
      const child = spawn(bin, ['wait', 'marker', '10'], { stdio: ['pipe', 'ignore', 'inherit'] });
      await until(() => { try { return fs.readlinkSync(`/proc/${child.pid}/exe`) === bin; } catch { return false; } });
      t.traceUprobes('on_marker', child.pid!, 'tslcc-probe:probe_marker'); // no slash: resolved through /proc/PID/maps
      child.stdin!.end('go\n');
      await new Promise((r) => child.on('exit', r));
      expect([t.readGlobal('calls'), t.readGlobal('arg_sum')]).toEqual([10n, 45n]);
      expect(() => t.traceUprobes('on_marker', -1, 'no-colon')).toThrow('trace uprobe "no-colon": expected "binary:function" or "binary:function+offset"');
    } finally {
      t.close();
    }
  });

  test('attachPerfEvents: one perf event per thread of a process; attachJavaSym: a breakpoint on a JIT function', async () => {
    const script = path.join(tempDir('jsym'), 'hot.js');
    fs.writeFileSync(script, 'function hotLoopJava(n) { let s = 0; for (let i = 0; i < n; i++) s += i % 7; return s; }\nconst end = Date.now() + 8000; let t = 0;\nwhile (Date.now() < end) t += hotLoopJava(1e4);\n');
    const { spawn } = await import('node:child_process');
    // TurboFan inlines a hot callee into its caller; its own code is then never entered and no
    // breakpoint on it can fire. --no-turbo-inlining keeps hotLoopJava a function of its own.
    const child = spawn(process.execPath, ['--perf-basic-prof', '--no-turbo-inlining', script], { stdio: 'ignore', cwd: path.dirname(script) });
    const src = `
      const volatile u32 target = 0;
      u64 samples = 0, breaks = 0;
      SEC("perf_event") int on_sample(struct bpf_perf_event_data *ctx) {
        if ((bpf_get_current_pid_tgid() >> 32) == target) __sync_fetch_and_add(&samples, 1);
        return 0;
      }
      SEC("perf_event") int on_break(struct bpf_perf_event_data *ctx) { __sync_fetch_and_add(&breaks, 1); return 0; }`;
    const t = await new LbcBase('jsym', { source: src, globals: { target: child.pid }, compile: { cacheDir } }).start();
    try {
      const perfMap = `/tmp/perf-${child.pid}.map`;
      await until(() => fs.existsSync(perfMap) && /\*hotLoopJava/.test(fs.readFileSync(perfMap, 'utf8')), 5000);
      await new Promise((r) => setTimeout(r, 500)); // let V8 settle on its optimized code
      const threads = fs.readdirSync(`/proc/${child.pid}/task`).length;
      expect(t.attachPerfEvents('on_sample', { type: 1, config: 0, sampleFreq: 999 }, child.pid!)).toHaveLength(threads);
      const bps = t.attachJavaSym('on_break', child.pid!, 'hotLoopJava');
      expect(bps.length).toBeGreaterThanOrEqual(1);
      expect(bps.length).toBeLessThanOrEqual(4);
      await until(() => (t.readGlobal('breaks') as bigint) > 100n && (t.readGlobal('samples') as bigint) > 10n, 4000);
      expect(t.readGlobal('breaks')).toBeGreaterThan(100n); // every call of the JIT code hits the breakpoint
      expect(t.readGlobal('samples')).toBeGreaterThan(10n);
      expect(() => t.attachJavaSym('on_break', child.pid!, 'noSuchFunctionXyz')).toThrow(`attach breakpoint on JIT symbol "noSuchFunctionXyz" of ${child.pid} (program "on_break"): not in /proc/${child.pid}/root/tmp/perf-${child.pid}.map; the function may not be compiled yet`);
    } finally {
      t.close();
      child.kill();
    }
  });

  test('perf_event sampling on every online CPU (software cpu-clock)', async () => {
    const src = `
      LBC_PERCPU_ARRAY(samples, u32, u64, 1);
      SEC("perf_event") int on_sample(struct bpf_perf_event_data *ctx) {
        u32 k = 0; u64 *c = bpf_map_lookup_elem(&samples, &k);
        if (c) *c += 1;
        return 0;
      }`;
    const t = await new LbcBase('perf_test', { source: src, compile: { cacheDir } }).start();
    try {
      expect(t.linkCount).toBe(0); // SEC("perf_event") names no target: left for the explicit call
      const links = t.attachAllCpuPerf('on_sample', { type: 1 /* PERF_TYPE_SOFTWARE */, config: 0 /* CPU_CLOCK */, sampleFreq: 1000 });
      expect(links).toHaveLength(onlineCpus().length);
      await until(() => (t.maps.samples.get(0) as bigint[]).every((n) => n > 0n), 3000);
      const perCpu = t.maps.samples.get(0) as bigint[];
      for (const cpu of onlineCpus()) expect(perCpu[cpu]).toBeGreaterThan(0n);
    } finally {
      t.close();
    }
  });

  test('attachCgroup: a cgroup/sock_create program sees exactly the sockets of its cgroup', async (ctx) => {
    const root = ['/sys/fs/cgroup/unified', '/sys/fs/cgroup'].find((p) => fs.existsSync(`${p}/cgroup.procs`) && fs.readFileSync('/proc/mounts', 'utf8').includes(` ${p} cgroup2 `));
    if (!root) ctx.skip('no cgroup v2 hierarchy is mounted: cgroup attach could not be exercised');
    const cg = path.join(root!, `tslcc-test-${process.pid}`);
    fs.mkdirSync(cg);
    const src = `
      u64 udp = 0, other = 0;
      SEC("cgroup/sock_create") int on_sock(struct bpf_sock *sk) {
        if (sk->type == 2 /* SOCK_DGRAM */ && sk->protocol == 17 /* IPPROTO_UDP */) __sync_fetch_and_add(&udp, 1);
        else __sync_fetch_and_add(&other, 1);
        return 1; /* allow */
      }`;
    const t = await new LbcBase('cgroup_test', { source: src, compile: { cacheDir } }).start();
    try {
      expect(t.linkCount).toBe(0); // SEC("cgroup/...") names no cgroup: attached explicitly
      t.attachCgroup('on_sock', cg);
      const { spawn } = await import('node:child_process');
      const child = spawn(probeBinary(), ['wait', 'udp', '3'], { stdio: ['pipe', 'ignore', 'inherit'] });
      await until(() => { try { return fs.readlinkSync(`/proc/${child.pid}/exe`) === probeBinary(); } catch { return false; } });
      fs.writeFileSync(path.join(cg, 'cgroup.procs'), String(child.pid));
      child.stdin!.end('go\n');
      await new Promise((r) => child.on('exit', r));
      expect([t.readGlobal('udp'), t.readGlobal('other')]).toEqual([3n, 0n]);
      expect(() => t.attachCgroup('on_sock', '/sys/fs/cgroup/no-such-cgroup')).toThrow(/^attach cgroup "\/sys\/fs\/cgroup\/no-such-cgroup" \(program "on_sock"\): ENOENT/);
    } finally {
      t.close();
      fs.rmdirSync(cg);
    }
  });

  describe('XDP on lo', () => {
    const src = `
      const volatile u16 port = 0;
      u64 packets = 0, udp_bytes = 0;
      SEC("xdp") int xdp_count(struct xdp_md *ctx) {
        void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
        struct ethhdr *eth = data;
        if ((void *)(eth + 1) > end || eth->h_proto != htons(0x0800 /* ETH_P_IP */)) return XDP_PASS;
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > end || ip->protocol != 17 /* UDP */) return XDP_PASS;
        struct udphdr *udp = (void *)ip + ip->ihl * 4;
        if ((void *)(udp + 1) > end || udp->dest != htons(port)) return XDP_PASS;
        __sync_fetch_and_add(&packets, 1);
        __sync_fetch_and_add(&udp_bytes, ntohs(udp->len));
        return XDP_PASS;
      }`;
    let t: LbcBase;
    let sock: dgram.Socket;
    let port = 0;
    beforeAll(async () => {
      sock = dgram.createSocket('udp4');
      await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
      port = sock.address().port;
      t = await new LbcBase('xdp_test', { source: src, globals: { port }, compile: { cacheDir } }).start();
      t.attachXdp('xdp_count', 'lo');
    });
    afterAll(() => { t?.close(); sock?.close(); });

    test('counts exactly the datagrams sent to our port, with their UDP lengths', async () => {
      const client = dgram.createSocket('udp4');
      let received = 0;
      sock.on('message', () => received++);
      for (let i = 0; i < 5; i++) await new Promise<void>((r) => client.send(Buffer.alloc(10 + i), port, '127.0.0.1', () => r()));
      await until(() => received === 5);
      client.close();
      expect(received).toBe(5); // XDP_PASS: every datagram still arrives
      expect(t.readGlobal('packets')).toBe(5n);
      expect(t.readGlobal('udp_bytes')).toBe(BigInt(5 * 8 + 10 + 11 + 12 + 13 + 14));
    });

    test('an unknown interface is a NotFoundError', () => {
      expect(() => t.attachXdp('xdp_count', 'nosuchif0')).toThrow('attach xdp to "nosuchif0": no such interface');
    });
  });
});

if (!isRoot) test('explicit attach', (ctx) => ctx.skip(ROOT_SKIP));
