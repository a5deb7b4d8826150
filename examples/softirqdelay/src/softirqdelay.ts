/**
 * softirqdelay: softirqs that waited longer than a threshold between being raised and
 * running, with the kernel stack they ran on. The tracepoint version of pylcc's
 * check_timer_delay example: same shape (a perf output of a struct with a stack id, a
 * stack map, a callback that prints the fields and the call trace).
 */
import { Command, InvalidArgumentError } from 'commander';
import { type EventMap, LbcBase, LbcError, type StackMap } from '@tslcc/sdk';

const prog = `
struct data_t {
    int cpu;
    int type;          /* softirq vector: 1 timer, 3 net_rx, 7 sched, 9 rcu, ... */
    u32 stack_id;
    u64 delayed;       /* ns from raise to run */
};
LBC_PERF_OUTPUT(e_out, struct data_t, 128);
LBC_STACK(call_stack, 1024);
LBC_PERCPU_ARRAY(raised_at, u32, u64, 10);

const volatile u64 min_ns = 0;
const volatile s32 target_cpu = -1;
const volatile s32 target_vec = -1;

SEC("tp/irq/softirq_raise")
int on_raise(struct trace_event_raw_softirq *ctx) {
    u32 vec = ctx->vec;
    u64 *ts = bpf_map_lookup_elem(&raised_at, &vec);
    if (ts && *ts == 0)            /* keep the first raise until it runs */
        *ts = bpf_ktime_get_ns();
    return 0;
}

SEC("tp/irq/softirq_entry")
int on_entry(struct trace_event_raw_softirq *ctx) {
    u32 vec = ctx->vec;
    u64 *ts = bpf_map_lookup_elem(&raised_at, &vec);
    if (!ts || *ts == 0)
        return 0;
    u64 delta = bpf_ktime_get_ns() - *ts;
    *ts = 0;
    if (delta < min_ns || (target_vec >= 0 && vec != target_vec))
        return 0;
    if (target_cpu >= 0 && bpf_get_smp_processor_id() != target_cpu)
        return 0;
    struct data_t data = {};
    data.cpu = bpf_get_smp_processor_id();
    data.type = vec;
    data.delayed = delta;
    data.stack_id = bpf_get_stackid(ctx, &call_stack, KERN_STACKID_FLAGS);
    bpf_perf_event_output(ctx, &e_out, BPF_F_CURRENT_CPU, &data, sizeof(data));
    return 0;
}
`;

interface Data { cpu: number; type: number; stack_id: number; delayed: bigint }

const VECTORS = ['hi', 'timer', 'net_tx', 'net_rx', 'block', 'irq_poll', 'tasklet', 'sched', 'hrtimer', 'rcu'];

class SoftirqDelay extends LbcBase<{ e_out: EventMap<Data>; call_stack: StackMap }> {
  constructor(globals: Record<string, unknown>) {
    super('softirqdelay', { source: prog, globals });
  }
}

function int(name: string, min = 0) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return n;
  };
}

const cli = new Command('tslcc-softirqdelay')
  .description('Trace softirqs whose raise-to-run delay exceeds a threshold, with the kernel stack where they ran.')
  .option('-m, --min-us <usecs>', 'only delays of at least this many microseconds', int('--min-us'), 0)
  .option('-c, --cpu <cpu>', 'only this CPU', int('--cpu'))
  .option('-v, --vec <name>', `only this softirq (${VECTORS.join(', ')})`)
  .option('-d, --duration <secs>', 'stop after this many seconds', int('--duration', 1))
  .option('-n, --count <n>', 'stop after this many events', int('--count', 1))
  .option('-T, --timestamp', 'print a time column')
  .option('-S, --no-stack', 'do not print kernel stacks')
  .option('--json', 'one JSON object per line')
  .addHelpText('after', `
Examples:
  npx tslcc-softirqdelay                 # every softirq delay, with its stack
  npx tslcc-softirqdelay -m 100 -T       # delays of 100 us or more, timestamped
  npx tslcc-softirqdelay -v net_rx -S    # only NET_RX, no stacks
  npx tslcc-softirqdelay -d 5 --json     # five seconds of JSON lines
`);

async function main(): Promise<void> {
  cli.parse();
  const o = cli.opts<{ minUs: number; cpu?: number; vec?: string; duration?: number; count?: number; timestamp?: boolean; stack: boolean; json?: boolean }>();
  let vec = -1;
  if (o.vec !== undefined) {
    vec = VECTORS.indexOf(o.vec.toLowerCase());
    if (vec < 0) cli.error(`error: unknown softirq "${o.vec}"; expected one of ${VECTORS.join(', ')}`);
  }
  const tool = new SoftirqDelay({ min_ns: BigInt(o.minUs) * 1000n, target_cpu: o.cpu ?? -1, target_vec: vec });
  await tool.start();

  let seen = 0;
  let stopping = false;
  const stop = (code = 0) => {
    if (stopping) return;
    stopping = true; // close() delivers what is still buffered: print none of it
    tool.close();
    if (tool.maps.e_out.lost) process.stderr.write(`softirqdelay: ${tool.maps.e_out.lost} events lost\n`);
    process.exit(code);
  };
  if (!o.json) {
    process.stdout.write(`Tracing softirq delays${o.minUs ? ` >= ${o.minUs} us` : ''}... Hit Ctrl-C to end.\n`);
    process.stdout.write(`${o.timestamp ? 'TIME     ' : ''}${'CPU'.padEnd(4)}${'SOFTIRQ'.padEnd(10)}${'DELAY(us)'.padStart(10)}\n`);
  }
  tool.maps.e_out.onLost((n, cpu) => process.stderr.write(`softirqdelay: lost ${n} events on cpu ${cpu}\n`));
  tool.maps.e_out.on((e) => {
    if (stopping) return;
    const usecs = Number(e.delayed) / 1000;
    const name = VECTORS[e.type] ?? String(e.type);
    const stack = o.stack ? tool.maps.call_stack.getStacks(e.stack_id) : [];
    if (o.json) {
      process.stdout.write(`${JSON.stringify({ time: Date.now() / 1000, cpu: e.cpu, softirq: name, delay_us: usecs, ...(o.stack ? { stack } : {}) })}\n`);
    } else {
      const ts = o.timestamp ? `${new Date().toTimeString().slice(0, 8)} ` : '';
      process.stdout.write(`${ts}${String(e.cpu).padEnd(4)}${name.padEnd(10)}${usecs.toFixed(1).padStart(10)}\n`);
      for (const frame of stack) process.stdout.write(`        ${frame}\n`);
    }
    if (o.count && ++seen >= o.count) stop();
  });
  if (o.duration) setTimeout(() => stop(), o.duration * 1000);
  process.on('SIGINT', () => stop());
  process.on('SIGTERM', () => stop());
}

main().catch((e: unknown) => {
  process.stderr.write(`softirqdelay: ${e instanceof LbcError ? e.message : (e as Error).stack}\n`);
  process.exit(1);
});
