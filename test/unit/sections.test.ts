// SEC() names classified the way libbpf's section definitions read them: what attaches at
// start(), what waits for an explicit call, which kernel event two twins share.
import { describe, expect, test } from 'vitest';
import { eventCarriers, sectionInfo } from '@tslcc/sdk';

describe('sectionInfo', () => {
  test.each([
    ['kprobe/do_nanosleep', { kind: 'kprobe', target: 'do_nanosleep', autoAttach: true, targetExpected: true, event: 'fn:do_nanosleep:entry' }],
    ['kprobe/do_nanosleep+0x10', { kind: 'kprobe', target: 'do_nanosleep+0x10', autoAttach: true, targetExpected: true, event: 'fn:do_nanosleep:entry' }],
    ['fentry/do_nanosleep', { kind: 'fentry', target: 'do_nanosleep', autoAttach: true, targetExpected: false, event: 'fn:do_nanosleep:entry' }],
    ['kretprobe/vfs_read', { kind: 'kretprobe', target: 'vfs_read', autoAttach: true, targetExpected: true, event: 'fn:vfs_read:exit' }],
    ['fexit/vfs_read', { kind: 'fexit', target: 'vfs_read', autoAttach: true, targetExpected: false, event: 'fn:vfs_read:exit' }],
    ['tp/sched/sched_switch', { kind: 'tp', target: 'sched/sched_switch', autoAttach: true, targetExpected: true, event: 'tp:sched_switch' }],
    ['tracepoint/irq/softirq_entry', { kind: 'tracepoint', target: 'irq/softirq_entry', autoAttach: true, targetExpected: true, event: 'tp:softirq_entry' }],
    ['tp_btf/softirq_entry', { kind: 'tp_btf', target: 'softirq_entry', autoAttach: true, targetExpected: false, event: 'tp:softirq_entry' }],
    ['raw_tp/softirq_entry', { kind: 'raw_tp', target: 'softirq_entry', autoAttach: true, targetExpected: true, event: 'tp:softirq_entry' }],
    ['uprobe', { kind: 'uprobe', target: undefined, autoAttach: false, targetExpected: true }],
    ['uprobe//bin/bash:readline', { kind: 'uprobe', target: '/bin/bash:readline', autoAttach: true, targetExpected: true }],
    ['uretprobe/readline', { kind: 'uretprobe', target: 'readline', autoAttach: false, targetExpected: true }],
    ['usdt', { kind: 'usdt', target: undefined, autoAttach: false, targetExpected: true }],
    ['usdt//usr/bin/app:prov:tick', { kind: 'usdt', target: '/usr/bin/app:prov:tick', autoAttach: true, targetExpected: true }],
    ['perf_event', { kind: 'perf_event', target: undefined, autoAttach: false, targetExpected: false }],
    ['xdp', { kind: 'xdp', target: undefined, autoAttach: false, targetExpected: false }],
    ['fentry', { kind: 'fentry', target: undefined, autoAttach: false, targetExpected: false }],
    ['iter/task', { kind: 'iter', target: 'task', autoAttach: true, targetExpected: false }],
  ])('%s', (sec, want) => {
    expect(sectionInfo(sec)).toEqual(want);
  });

  test('an attach target set before load decides where fentry and tp_btf attach', () => {
    expect(sectionInfo('fentry', 'vfs_read')).toEqual({ kind: 'fentry', target: undefined, autoAttach: true, targetExpected: false, event: 'fn:vfs_read:entry' });
    expect(sectionInfo('tp_btf/dummy', 'sys_enter')).toEqual({ kind: 'tp_btf', target: 'dummy', autoAttach: true, targetExpected: false, event: 'tp:sys_enter' });
  });
});

describe('eventCarriers', () => {
  test('one LBC_EVENT_TYPE line per map, after a #line that names them in diagnostics', () => {
    expect(eventCarriers({ events: 'struct event', rb: ' union data ' })).toBe(
      '#line 1 "<events option>"\nLBC_EVENT_TYPE(events, struct event);\nLBC_EVENT_TYPE(rb, union data);\n');
    expect(eventCarriers({})).toBe('');
  });
  test('names that are not C identifiers or type names are refused', () => {
    expect(() => eventCarriers({ 'a-b': 'struct e' })).toThrow('events: map name "a-b" is not a C identifier');
    expect(() => eventCarriers({ ev: 'struct e; int x' })).toThrow('events.ev: "struct e; int x" is not a C type name like "struct event"');
  });
});
