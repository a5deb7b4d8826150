// Explicit attach calls on what this kernel has: uprobe/uretprobe, perf_event sampling on
// every CPU, XDP on lo. Exact counts where the workload is exact.
import * as dgram from 'node:dgram';
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
