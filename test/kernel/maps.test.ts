// Maps and globals on the kernel: a child calls lseek() with known offsets; the program
// counts them in a hash, a per-CPU array and two histograms; the test checks every value.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as native from '@tslcc/native';
import { type HistMap, type KeyValueMap, LbcBase } from '@tslcc/sdk';
import { isRoot, probeBinary, ROOT_SKIP, runProbe, tempDir } from '../helpers';

const SRC = `
struct rec { s64 offset; u32 pid; char tag[8]; };
LBC_HASH(by_mod, u32, u64, 16);
LBC_PERCPU_ARRAY(calls, u32, u64, 1);
LBC_ARRAY(last, u32, struct rec, 4);
LBC_HIST2(h2);
LBC_HIST10(h10);
const volatile u32 parent_tgid = 0;
u64 scale = 1;          /* .data: writable while running */
u64 total = 0;          /* .bss */

SEC("tp/syscalls/sys_enter_lseek")
int on_lseek(struct trace_event_raw_sys_enter *ctx) {
  struct task_struct *task = (void *)bpf_get_current_task();
  if (BPF_CORE_READ(task, real_parent, tgid) != parent_tgid) return 0;
  s64 off = (s64)ctx->args[1];
  u32 k = (u64)off % 4;
  u64 one = 1, *c = bpf_map_lookup_elem(&by_mod, &k);
  if (c) __sync_fetch_and_add(c, 1);
  else bpf_map_update_elem(&by_mod, &k, &one, BPF_NOEXIST);
  u32 zero = 0;
  u64 *pc = bpf_map_lookup_elem(&calls, &zero);
  if (pc) *pc += 1;
  struct rec r = { .offset = off, .pid = bpf_get_current_pid_tgid() >> 32, .tag = "lseek" };
  bpf_map_update_elem(&last, &zero, &r, BPF_ANY);
  hist2_push(&h2, off);
  hist10_push(&h10, off);
  __sync_fetch_and_add(&total, scale);
  return 0;
}
`;

const VALUES = [0, 1, 2, 3, 5, 8, 100, 1000, 1023, 1024, 123456789];
type Maps = {
  by_mod: KeyValueMap<number, bigint>; calls: KeyValueMap<number, bigint[]>;
  last: KeyValueMap<number, { offset: bigint; pid: number; tag: string }>; h2: HistMap; h10: HistMap;
};

describe.skipIf(!isRoot)('maps and globals', () => {
  let tool: LbcBase<Maps>;
  let pid = 0;
  beforeAll(async () => {
    probeBinary();
    tool = await new LbcBase<Maps>('maps_test', {
      source: SRC, globals: { parent_tgid: process.pid }, compile: { cacheDir: tempDir('maps') },
    }).start();
    pid = runProbe('lseek', ...VALUES.map(String));
  });
  afterAll(() => tool?.close());

  test('hash map: counts per offset % 4', () => {
    expect(tool.maps.by_mod.entries().sort(([a], [b]) => a - b)).toEqual([[0, 5n], [1, 3n], [2, 1n], [3, 2n]]);
    expect(tool.maps.by_mod.get(1)).toBe(3n);
    expect(tool.maps.by_mod.get(7)).toBeUndefined();
  });

  test('per-CPU array: one value per possible CPU, summing to the calls made', () => {
    const perCpu = tool.maps.calls.get(0)!;
    expect(perCpu).toHaveLength(native.numPossibleCpus());
    expect(perCpu.reduce((a, b) => a + b, 0n)).toBe(BigInt(VALUES.length));
  });

  test('array of structs: the last record', () => {
    expect(tool.maps.last.get(0)).toEqual({ offset: 123456789n, pid, tag: 'lseek' });
    expect(tool.maps.last.get(1)).toEqual({ offset: 0n, pid: 0, tag: '' });
  });

  test('log2 and log10 histograms', () => {
    const h2 = tool.maps.h2.slots();
    const want2 = new Array(64).fill(0);
    for (const v of VALUES) want2[v <= 1 ? 0 : Math.floor(Math.log2(v))]++;
    expect(h2).toEqual(want2);
    expect(tool.maps.h10.slots()).toEqual([6, 0, 1, 3, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const text = tool.maps.h2.showHist('offset', null);
    expect(text.split('\n')[0]).toBe('                  offset                    : count    distribution');
    const stars = (n: number) => `|${'*'.repeat(n).padEnd(40)}|`;
    expect(text.split('\n')[1]).toBe(`                   0 -> 1                   : 2        ${stars(40)}`);
    expect(text).toContain(`                1024 -> 2047                : 1        ${stars(20)}`);
    expect(text.split('\n').at(-1)).toBe(`            67108864 -> 134217727           : 1        ${stars(20)}`);
  });

  test('map writes: set, get, delete, keys, getThenClear', () => {
    const m = tool.maps.by_mod;
    m.set(9, 42n);
    expect(m.get(9)).toBe(42n);
    expect(m.keys().sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 9]);
    expect(m.delete(9)).toBe(true);
    expect(m.delete(9)).toBe(false);
    const all = m.getThenClear();
    expect(all).toHaveLength(4);
    expect(m.keys()).toEqual([]);
    tool.maps.last.set(2, { offset: -5n, pid: 7, tag: 'mine' });
    expect(tool.maps.last.get(2)).toEqual({ offset: -5n, pid: 7, tag: 'mine' });
  });

  test('globals: .rodata set before load, .data/.bss read and written while running', () => {
    expect(tool.readGlobal('parent_tgid')).toBe(process.pid);
    expect(tool.readGlobal('total')).toBe(BigInt(VALUES.length));
    tool.writeGlobal('scale', 1000n);
    runProbe('lseek', '4');
    expect(tool.readGlobal('total')).toBe(BigInt(VALUES.length) + 1000n);
    expect(() => tool.writeGlobal('parent_tgid', 1)).toThrow(
      'write global "parent_tgid" of "maps_test": it is const (.rodata) and frozen after load; pass it in { globals } before start()');
  });

  test('an unknown global is refused before load, with a suggestion', async () => {
    const t = new LbcBase('g', { source: SRC, globals: { parent_tgd: 1 }, compile: { cacheDir: tempDir('maps2') } });
    await expect(t.start()).rejects.toThrow('set global "parent_tgd" of "g": no such global; did you mean "parent_tgid"?; globals: parent_tgid, scale, total');
  });
});

if (!isRoot) test('maps and globals', (ctx) => ctx.skip(ROOT_SKIP));
