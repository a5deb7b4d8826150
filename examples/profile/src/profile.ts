/**
 * profile: sample on-CPU stacks at a fixed frequency on every CPU (perf_event cpu-clock),
 * count them by (process, kernel stack, user stack), then print the hottest stacks or
 * folded lines for flame graphs. User frames come from ELF symbols, debug files and, for
 * JIT code such as Node.js started with --perf-basic-prof, /tmp/perf-PID.map.
 */
import { Command, InvalidArgumentError } from 'commander';
import { type Frame, formatAnyFrame, type KeyValueMap, LbcBase, LbcError, type StackMap, symbolizer } from '@tslcc/sdk';

const prog = `
struct key_t {
    u32 pid;
    s32 kstack;     /* stack ids, or a negative errno when there is none */
    s32 ustack;
    char comm[16];
};
LBC_HASH(counts, struct key_t, u64, 16384);
LBC_STACK(stacks, 16384);

const volatile s32 target_pid = -1;
const volatile bool user_only = false;
const volatile bool kernel_only = false;
const volatile bool include_idle = false;

SEC("perf_event")
int do_sample(struct bpf_perf_event_data *ctx) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (target_pid >= 0 && tgid != (u32)target_pid)
        return 0;
    if (tgid == 0 && !include_idle)
        return 0;
    struct key_t key = { .pid = tgid };
    bpf_get_current_comm(key.comm, sizeof(key.comm));
    key.kstack = user_only ? -1 : bpf_get_stackid(ctx, &stacks, KERN_STACKID_FLAGS);
    key.ustack = kernel_only ? -1 : bpf_get_stackid(ctx, &stacks, USER_STACKID_FLAGS);
    u64 one = 1, *n = bpf_map_lookup_elem(&counts, &key);
    if (n)
        __sync_fetch_and_add(n, 1);
    else
        bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST);
    return 0;
}
`;

interface Key { pid: number; kstack: number; ustack: number; comm: string }

class Profile extends LbcBase<{ counts: KeyValueMap<Key, bigint>; stacks: StackMap }> {
  constructor(globals: Record<string, unknown>) {
    super('profile', { source: prog, globals });
  }
}

function int(name: string, min: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return n;
  };
}

const cli = new Command('tslcc-profile')
  .description('Sample on-CPU stacks (kernel and user, JIT frames included) at a fixed rate.')
  .option('-p, --pid <pid>', 'only this process', int('--pid', 1))
  .option('-F, --frequency <hz>', 'samples per second per CPU', int('--frequency', 1), 49)
  .option('-d, --duration <secs>', 'how long to sample (default: until Ctrl-C)', int('--duration', 1))
  .option('-U, --user-only', 'user stacks only')
  .option('-K, --kernel-only', 'kernel stacks only')
  .option('-I, --include-idle', 'include the idle task (pid 0)')
  .option('-f, --folded', 'folded output for flamegraph.pl: comm;user frames;kernel frames count')
  .option('-n, --top <n>', 'stacks to print without --folded', int('--top', 1), 20)
  .addHelpText('after', `
Examples:
  npx tslcc-profile -d 10                      # 10 s of every CPU at 49 Hz, hottest stacks
  npx tslcc-profile -p 1234 -F 99 -d 5 -f > out.folded && flamegraph.pl out.folded > out.svg
  node --perf-basic-prof app.js &  npx tslcc-profile -p $! -U -d 5   # JS function names
`);

async function main(): Promise<void> {
  cli.parse();
  const o = cli.opts<{ pid?: number; frequency: number; duration?: number; userOnly?: boolean; kernelOnly?: boolean; includeIdle?: boolean; folded?: boolean; top: number }>();
  if (o.userOnly && o.kernelOnly) cli.error('error: -U and -K exclude each other');
  const tool = new Profile({ target_pid: o.pid ?? -1, user_only: !!o.userOnly, kernel_only: !!o.kernelOnly, include_idle: !!o.includeIdle });
  await tool.start();
  tool.attachAllCpuPerf('do_sample', { type: 1 /* PERF_TYPE_SOFTWARE */, config: 0 /* PERF_COUNT_SW_CPU_CLOCK */, sampleFreq: o.frequency });
  if (!o.folded) process.stderr.write(`Sampling at ${o.frequency} Hz on every CPU${o.pid ? ` for pid ${o.pid}` : ''}... ${o.duration ? `for ${o.duration} s` : 'Hit Ctrl-C to end.'}\n`);

  // Read each sampled process's memory map while it lives, so short-lived ones still symbolize.
  const seen = new Set<number>();
  const sym = symbolizer();
  const watch = setInterval(() => {
    for (const k of tool.maps.counts.keys()) if (!seen.has(k.pid)) { seen.add(k.pid); sym.remember(k.pid); }
  }, 250);

  await (o.duration ? new Promise((r) => setTimeout(r, o.duration! * 1000)) : tool.waitInterrupt());
  clearInterval(watch);
  for (const p of tool.programs) tool.detach(p.name); // stop sampling, keep the maps

  const rows = tool.maps.counts.entries().map(([k, n]) => ({ k, n: Number(n) })).sort((a, b) => b.n - a.n);
  // -EEXIST (17): a hash collision in the stack map; -ENOMEM: the map was full. Say so, as BCC does.
  const lost = rows.filter(({ k }) => k.kstack === -17 || k.ustack === -17 || k.kstack === -12 || k.ustack === -12).reduce((a, r) => a + r.n, 0);
  if (lost) process.stderr.write(`profile: WARNING: ${lost} samples lost a stack to stack-map collisions or a full map\n`);
  const stacks = tool.maps.stacks;
  const frames = async (k: Key): Promise<{ user: Frame[]; kernel: Frame[] }> => ({
    kernel: k.kstack >= 0 ? stacks.getFrames(k.kstack) : [],
    user: k.ustack >= 0 ? await stacks.getFrames(k.ustack, { pid: k.pid }) : [],
  });
  const name = (f: Frame) => (f.symbol ?? `0x${f.address.toString(16)}`).replace(/;/g, ':');
  if (o.folded) {
    const lines = new Map<string, number>();
    for (const { k, n } of rows) {
      const { user, kernel } = await frames(k);
      const line = [k.comm, ...[...user].reverse().map(name), ...(kernel.length && user.length ? ['-'] : []), ...[...kernel].reverse().map(name)].join(';');
      lines.set(line, (lines.get(line) ?? 0) + n);
    }
    for (const [line, n] of lines) process.stdout.write(`${line} ${n}\n`);
  } else {
    for (const { k, n } of rows.slice(0, o.top)) {
      const { user, kernel } = await frames(k);
      for (const f of kernel) process.stdout.write(`    ${formatAnyFrame(f)}\n`);
      if (kernel.length && user.length) process.stdout.write('    --\n');
      for (const f of user) process.stdout.write(`    ${formatAnyFrame(f)}\n`);
      if (k.kstack < -1 && !o.userOnly) process.stdout.write(`    [kernel stack unavailable: ${k.kstack}]\n`);
      process.stdout.write(`    -                ${k.comm} (${k.pid})\n        ${n}\n\n`);
    }
  }
  tool.close();
}

main().catch((e: unknown) => {
  process.stderr.write(`profile: ${e instanceof LbcError ? e.message : (e as Error).stack}\n`);
  process.exit(1);
});
