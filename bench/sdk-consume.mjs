// The SDK's side of the event benchmark, shaped like ../shared/bench/consume.c: start the
// tool, fork `load N` gated on a pipe, consume every event, print one line with consumer CPU.
// usage: node sdk-consume.mjs perf|ring N LOADBIN [bigint|number] [wakeupEvents]
import { spawn } from 'node:child_process';
import { LbcBase } from '../packages/sdk/dist/index.js';

const [mode = 'ring', nArg = '1000000', loadBin, int64 = 'bigint', wakeup = '1'] = process.argv.slice(2);
const N = Number(nArg);
const src = `
struct event { u32 pid; u32 cpu; u64 ts; u64 seq; u64 arg; };
LBC_PERF_OUTPUT(pb, struct event, 1024);
LBC_RINGBUF(rb, struct event, 1 << 24);
const volatile u32 target_pid = 0;
const volatile u32 use_ringbuf = 0;
u64 seq = 0;
SEC("tp/syscalls/sys_enter_getppid")
int on_getppid(void *ctx) {
  u32 pid = bpf_get_current_pid_tgid() >> 32;
  if (pid != target_pid) return 0;
  struct event e = { .pid = pid, .cpu = bpf_get_smp_processor_id(), .ts = bpf_ktime_get_ns(), .seq = __sync_fetch_and_add(&seq, 1) };
  if (use_ringbuf) lbc_ringbuf_output(rb, &e, sizeof(e));
  else bpf_perf_event_output(ctx, &pb, BPF_F_CURRENT_CPU, &e, sizeof(e));
  return 0;
}`;

// `sh -c 'read x; exec load N'`: the pid we filter on is the load generator's after exec.
const child = spawn('sh', ['-c', `read x; exec ${loadBin} ${N}`], { stdio: ['pipe', 'ignore', 'inherit'] });
const t0s = performance.now();
const tool = await new LbcBase('bench', { source: src, int64, globals: { target_pid: child.pid, use_ringbuf: mode === 'ring' ? 1 : 0 } }).start();
const startMs = performance.now() - t0s;
const map = mode === 'ring' ? tool.maps.rb : tool.maps.pb;
let got = 0;
let sum = 0n;
let sumN = 0; // int64 'number': seq is a number, summing it needs no BigInt
const opts = { wakeupEvents: Number(wakeup), flushMs: 10 };
if (int64 === 'number') map.on((e) => { got++; sumN += e.seq; }, opts);
else map.on((e) => { got++; sum += e.seq; }, opts);
await new Promise((r) => setImmediate(r));
const cpu0 = process.cpuUsage();
const t0 = performance.now();
child.stdin.write('go\n');
await new Promise((r) => child.on('exit', r));
map.drain();
const wall = (performance.now() - t0) / 1000;
const c = process.cpuUsage(cpu0);
const cpu = (c.user + c.system) / 1e6;
const lost = map.lost;
tool.close();
console.log(`tslcc ${mode}: events=${got} lost=${lost} wall=${wall.toFixed(3)}s consumer_cpu=${cpu.toFixed(3)}s ns_per_event=${(cpu * 1e9 / Math.max(got, 1)).toFixed(1)} events_per_s=${(got / wall).toFixed(0)} start_ms=${startMs.toFixed(1)} int64=${int64} wakeup=${wakeup} checksum_ok=${(int64 === 'number' ? BigInt(sumN) : sum) === BigInt(N) * BigInt(N - 1) / 2n || lost > 0}`);
