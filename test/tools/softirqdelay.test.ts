// Smoke test of the example tool, run as a user runs it (node bin/..., real kernel).
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { isRoot, REPO, ROOT_SKIP } from '../helpers';

const BIN = path.join(REPO, 'examples/softirqdelay/bin/softirqdelay.js');
const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
const VECTORS = ['hi', 'timer', 'net_tx', 'net_rx', 'block', 'irq_poll', 'tasklet', 'sched', 'hrtimer', 'rcu'];

describe('softirqdelay', () => {
  test('--help ends with copy-pasteable examples', () => {
    const r = run('--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('-m, --min-us <usecs>');
    expect(r.stdout.trim().split('\n').at(-1)).toBe('  npx tslcc-softirqdelay -d 5 --json     # five seconds of JSON lines');
  });

  test('a bad option value is refused clearly', () => {
    const r = run('-v', 'nope');
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe('error: unknown softirq "nope"; expected one of hi, timer, net_tx, net_rx, block, irq_poll, tasklet, sched, hrtimer, rcu');
  });

  test.skipIf(!isRoot)('traces real softirqs with symbolized kernel stacks (--json)', () => {
    const r = run('-n', '3', '--json');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(events).toHaveLength(3);
    for (const e of events) {
      expect(Object.keys(e)).toEqual(['time', 'cpu', 'softirq', 'delay_us', 'stack']);
      expect(VECTORS).toContain(e.softirq);
      expect(e.delay_us).toBeGreaterThanOrEqual(0);
      expect(e.stack.length).toBeGreaterThan(1);
      for (const f of e.stack) expect(f).toMatch(/^[\w.]+\+0x[0-9a-f]+( \[\w+\])?$/);
      // The softirq runs from the kernel's softirq loop (handle_softirqs since 6.10, __do_softirq before).
      expect(e.stack[0]).toMatch(/^(handle_softirqs|__do_softirq)\+0x/);
    }
  });

  test.skipIf(!isRoot)('filters by vector; the text output has a header matching its rows', () => {
    const r = run('-v', 'timer', '-n', '2', '-S');
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('Tracing softirq delays... Hit Ctrl-C to end.');
    expect(lines[1]).toBe('CPU SOFTIRQ    DELAY(us)');
    expect(lines.slice(2)).toHaveLength(2);
    for (const l of lines.slice(2)) expect(l).toMatch(/^\d+ +timer +\d+\.\d$/);
  });

  if (!isRoot) test('traces real softirqs', (ctx) => ctx.skip(ROOT_SKIP));
});
