// The LBC_* macros through real clang: every macro yields the map libbpf and the SDK expect,
// with key/value/event types recoverable from BTF (pointers included).
import { beforeAll, describe, expect, test } from 'vitest';
import { compile, describeObject, type ObjectDescription } from '@tslcc/sdk';
import { tempDir } from '../helpers';

const cacheDir = tempDir('macros');

const PROG = `
struct data_t { int cpu; int type; u32 stack_id; u64 delayed; };
struct key_t { u32 pid; char comm[16]; };
LBC_PERF_OUTPUT(e_out, struct data_t, 128);
LBC_RINGBUF(events, struct key_t, 65536);
LBC_HASH(h, struct key_t, u64, 1024);
LBC_LRU_HASH(lru, u32, struct data_t, 64);
LBC_PERCPU_HASH(pch, u64, u64, 32);
LBC_LRU_PERCPU_HASH(lpch, u32, u32, 16);
LBC_ARRAY(arr, u32, struct data_t, 8);
LBC_PERCPU_ARRAY(parr, u32, u64, 4);
LBC_HASH(ptrs, char *, struct data_t *, 16);
LBC_STACK(call_stack, 256);
LBC_HIST2(lat2);
LBC_HIST10(lat10);
const volatile u32 target_pid = 0;
u64 counter = 0;

SEC("tp/syscalls/sys_enter_getppid")
int on_getppid(void *ctx) {
  struct data_t d = {};
  d.stack_id = bpf_get_stackid(ctx, &call_stack, KERN_STACKID_FLAGS);
  bpf_perf_event_output(ctx, &e_out, BPF_F_CURRENT_CPU, &d, sizeof(d));
  struct key_t k = {};
  lbc_ringbuf_output(events, &k, sizeof(k));
  hist2_push(&lat2, d.delayed);
  hist10_push(&lat10, d.delayed);
  counter += target_pid + ntohs(d.cpu) + ntohl(d.type) + ntohll(d.delayed);
  return 0;
}
`;

describe('LBC_* macros (clang, no kernel)', () => {
  let desc: ObjectDescription;
  beforeAll(async () => {
    const c = await compile(PROG, { name: 'macros', cacheDir });
    desc = describeObject(c.elf, 'macros');
  });
  const map = (n: string) => {
    const m = desc.maps.find((x) => x.name === n);
    if (!m) throw new Error(`no map ${n}`);
    return m;
  };

  test('every macro defines its map type and size', () => {
    expect(desc.maps.map((m) => [m.name, m.type, m.maxEntries]).sort()).toEqual([
      ['arr', 'array', 8], ['call_stack', 'stack_trace', 256], ['e_out', 'perf_event_array', 0],
      ['events', 'ringbuf', 65536], ['h', 'hash', 1024], ['lat10', 'array', 20], ['lat2', 'array', 64],
      ['lpch', 'lru_percpu_hash', 16], ['lru', 'lru_hash', 64], ['parr', 'percpu_array', 4],
      ['pch', 'percpu_hash', 32], ['ptrs', 'hash', 16],
    ].sort());
  });

  test('event maps carry their event type in BTF', () => {
    expect(map('e_out').eventType).toBe('struct data_t');
    expect(map('events').eventType).toBe('struct key_t');
  });

  test('key and value types come from BTF, pointers included', () => {
    expect([map('h').keyType, map('h').valueType]).toEqual(['struct key_t', 'u64']);
    expect([map('ptrs').keyType, map('ptrs').valueType, map('ptrs').keySize, map('ptrs').valueSize])
      .toEqual(['char *', 'struct data_t *', 8, 8]);
    expect([map('parr').keyType, map('parr').valueType]).toEqual(['u32', 'u64']);
    expect(map('arr').valueSize).toBe(24);
  });

  test('stack maps hold 127 frames', () => {
    expect([map('call_stack').keySize, map('call_stack').valueSize]).toEqual([4, 127 * 8]);
  });

  test('histograms are recognised by base', () => {
    expect([map('lat2').hist, map('lat10').hist]).toEqual([2, 10]);
  });

  test('globals and the program are listed', () => {
    expect(desc.globals.filter((g) => !g.name.startsWith('__lbc')).map((g) => [g.name, g.section])).toEqual(
      expect.arrayContaining([['target_pid', '.rodata'], ['counter', '.bss']]));
    expect(desc.globals.find((g) => g.name === '__lbc_drops_events')?.section).toBe('.bss');
    expect(desc.programs.map((p) => [p.name, p.section, p.typeName])).toEqual([
      ['on_getppid', 'tp/syscalls/sys_enter_getppid', 'tracepoint'],
    ]);
  });

  test('the MISSION pylcc program compiles unchanged', async () => {
    const pylcc = `
#include "lbc.h"
struct data_t { int cpu; int type; /* 0: irq, 1: softirq */ u32 stack_id; u64 delayed; };
LBC_PERF_OUTPUT(e_out, struct data_t, 128);
LBC_STACK(call_stack, 256);
SEC("kprobe/check_timer_delay")
int j_check_timer_delay(struct pt_regs *ctx) {
    struct data_t data = {};
    data.cpu = PT_REGS_PARM2(ctx); data.type = PT_REGS_PARM1(ctx); data.delayed = PT_REGS_PARM3(ctx);
    data.stack_id = bpf_get_stackid(ctx, &call_stack, KERN_STACKID_FLAGS);
    bpf_perf_event_output(ctx, &e_out, BPF_F_CURRENT_CPU, &data, sizeof(data));
    return 0;
}
char _license[] SEC("license") = "GPL";
`;
    const d = describeObject((await compile(pylcc, { name: 'runlatency', cacheDir })).elf);
    expect(d.programs.map((p) => [p.name, p.section, p.typeName])).toEqual([['j_check_timer_delay', 'kprobe/check_timer_delay', 'kprobe']]);
    expect(d.maps.find((m) => m.name === 'e_out')?.eventType).toBe('struct data_t');
  });

  test('lbc_debug is a no-op unless -DLBC_DEBUG, then bpf_printk', async () => {
    const src = 'SEC("tp/syscalls/sys_enter_getppid") int p(void *ctx) { lbc_debug("hello %d", 1); return 0; }';
    const off = describeObject((await compile(src, { name: 'dbg', cacheDir })).elf);
    const on = describeObject((await compile(src, { name: 'dbg', cacheDir, flags: '-DLBC_DEBUG' })).elf);
    expect(off.maps.length + off.globals.filter((g) => g.section.startsWith('.rodata')).length).toBe(0);
    // bpf_printk's format string lands in .rodata.str / .rodata only when enabled.
    expect(on.globals.length + on.maps.length).toBeGreaterThan(0);
  });
});
