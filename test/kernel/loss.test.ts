// Forced overflow: a tiny buffer and a blocked event loop. Every event is either received or
// counted lost, exactly: received + lost = produced.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type EventMap, LbcBase } from '@tslcc/sdk';
import { isRoot, probeBinary, ROOT_SKIP, runProbeEnv, tempDir, until } from '../helpers';

const SRC = `
struct ev { u64 seq; u32 pid; };
LBC_PERF_OUTPUT(pb, struct ev, 1);      /* one page per CPU */
LBC_RINGBUF(rb, struct ev, 4096);       /* one page */
const volatile u32 parent_tgid = 0;
u64 seq = 0;
SEC("tp/syscalls/sys_enter_getppid")
int on_getppid(void *ctx) {
  struct task_struct *task = (void *)bpf_get_current_task();
  if (BPF_CORE_READ(task, real_parent, tgid) != parent_tgid) return 0;
  struct ev e = { .seq = __sync_fetch_and_add(&seq, 1), .pid = bpf_get_current_pid_tgid() >> 32 };
  bpf_perf_event_output(ctx, &pb, BPF_F_CURRENT_CPU, &e, sizeof(e));
  lbc_ringbuf_output(rb, &e, sizeof(e));
  return 0;
}
`;

type Ev = { seq: bigint; pid: number };

describe.skipIf(!isRoot)('loss accounting under overflow', () => {
  const N = 20000;
  let tool: LbcBase<{ pb: EventMap<Ev>; rb: EventMap<Ev> }>;
  const got = { perf: 0, ring: 0 };
  const lostSeen = { perf: 0, ring: 0 };

  beforeAll(async () => {
    probeBinary();
    tool = await new LbcBase<{ pb: EventMap<Ev>; rb: EventMap<Ev> }>('loss_test', {
      source: SRC, globals: { parent_tgid: process.pid }, compile: { cacheDir: tempDir('loss') },
    }).start();
    tool.maps.pb.on(() => got.perf++).onLost((n) => { lostSeen.perf += n; });
    tool.maps.rb.on(() => got.ring++).onLost((n) => { lostSeen.ring += n; });
    // The loop is blocked while the child runs: nothing is consumed, both buffers overflow.
    runProbeEnv({ PROBE_CPU: '0' }, 'getppid', String(N));
    tool.maps.pb.drain();
    tool.maps.rb.drain();
    // The kernel reports a CPU's perf losses in a LOST record written before that CPU's next
    // sample, so one more event (same CPU) flushes the count.
    runProbeEnv({ PROBE_CPU: '0' }, 'getppid', '1');
    await until(() => got.perf + tool.maps.pb.lost === N + 1 && got.ring + tool.maps.rb.lost === N + 1);
  });
  afterAll(() => tool?.close());

  test('ring buffer: received + lost = produced, and some really were lost', () => {
    expect(tool.maps.rb.lost).toBeGreaterThan(0);
    expect(got.ring + tool.maps.rb.lost).toBe(N + 1);
    expect(lostSeen.ring).toBe(tool.maps.rb.lost);
    expect(tool.maps.rb.received).toBe(got.ring);
  });

  test('perf buffer: received + lost = produced, and some really were lost', () => {
    expect(tool.maps.pb.lost).toBeGreaterThan(0);
    expect(got.perf + tool.maps.pb.lost).toBe(N + 1);
    expect(lostSeen.perf).toBe(tool.maps.pb.lost);
  });

  test('the program counted every event it produced', () => {
    expect(tool.readGlobal('seq')).toBe(BigInt(N + 1));
  });
});

if (!isRoot) test('loss accounting under overflow', (ctx) => ctx.skip(ROOT_SKIP));
