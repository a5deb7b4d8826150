// Kernel symbolization against a kallsyms file the test writes; histogram text; cpu lists.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { formatFrame, formatHistogram, KernelSymbols, onlineCpus, PermissionError } from '@tslcc/sdk';
import { tempDir } from '../helpers';

function kallsyms(text: string): string {
  const f = path.join(tempDir('ksyms'), 'kallsyms');
  fs.writeFileSync(f, text);
  return f;
}

describe('kernel symbols', () => {
  const file = kallsyms([
    'ffffffff81000000 T _stext',
    'ffffffff81000100 t do_one',
    'ffffffff81000200 D some_data', // data symbols are not code
    'ffffffff81000300 W weak_fn',
    'ffffffff81000400 t __pfx_next_fn',
    'ffffffff81000410 t next_fn',
    'ffffffffc0002000 t mod_fn\t[e1000]',
    'ffffffffa0001000 t bpf_prog_6deef7357e7b4530_on_getppid\t[bpf]',
    '',
  ].join('\n'));
  const ks = new KernelSymbols(file);

  test('nearest preceding text symbol, offset and module', () => {
    expect(ks.lookup(0xffffffff81000123n)).toEqual({ kind: 'kernel', address: 0xffffffff81000123n, symbol: 'do_one', offset: 0x23, module: undefined });
    expect(ks.lookup(0xffffffff81000250n).symbol).toBe('do_one');
    expect(ks.lookup(0xffffffff81000300n).symbol).toBe('weak_fn');
    expect(formatFrame(ks.lookup(0xffffffffc0002010n))).toBe('mod_fn+0x10 [e1000]');
    expect(formatFrame(ks.lookup(0xffffffffa0001004n))).toBe('bpf_prog_6deef7357e7b4530_on_getppid+0x4 [bpf]');
    expect(ks.size).toBe(6); // data and padding symbols are left out
  });

  test('return addresses resolve to the caller even right after its last byte', () => {
    // Frame 0 is where the code was; frame 1 returns to 0x...400, the first byte after weak_fn
    // (where next_fn's padding starts): it belongs to weak_fn, shown at its real offset.
    const frames = ks.lookupStack([0xffffffff81000105n, 0xffffffff81000400n]);
    expect(frames.map(formatFrame)).toEqual(['do_one+0x5', 'weak_fn+0x100']);
    expect(frames[1]!.address).toBe(0xffffffff81000400n);
  });

  test('unknown addresses keep the address and say why', () => {
    const f = ks.lookup(0x1000n);
    expect(f.symbol).toBeUndefined();
    expect(formatFrame(f)).toBe('0x1000 (below the first kernel symbol)');
  });

  test('zeroed kallsyms (not root): PermissionError', () => {
    const z = new KernelSymbols(kallsyms('0000000000000000 T _stext\n0000000000000000 t do_one\n'));
    expect(() => z.lookup(1n)).toThrow(PermissionError);
    expect(() => z.lookup(1n)).toThrow(/shows zero addresses; run as root \(CAP_SYSLOG\)/);
  });

  test('the real /proc/kallsyms resolves a core function', (ctx) => {
    const real = new KernelSymbols();
    try {
      real.load();
    } catch (e) {
      expect(e).toBeInstanceOf(PermissionError);
      ctx.skip('not root: /proc/kallsyms shows zero addresses; asserted the PermissionError, real symbols could not be read');
    }
    const text = fs.readFileSync('/proc/kallsyms', 'utf8');
    const m = /^([0-9a-f]+) T do_syscall_64$/m.exec(text)!;
    expect(formatFrame(real.lookup(BigInt(`0x${m[1]}`) + 5n))).toBe('do_syscall_64+0x5');
  });
});

describe('helpers', () => {
  test('BCC-style histogram', () => {
    const text = formatHistogram([0, 2, 4, 0, 1], (i) => [i === 0 ? 0n : 1n << BigInt(i), (1n << BigInt(i + 1)) - 1n], 'usecs', 8);
    expect(text.split('\n')).toEqual([
      '                   usecs                    : count    distribution',
      '                   2 -> 3                   : 2        |****    |',
      '                   4 -> 7                   : 4        |********|',
      '                   8 -> 15                  : 0        |        |',
      '                  16 -> 31                  : 1        |**      |',
    ]);
  });

  test('online cpu lists', () => {
    expect(onlineCpus('0-3,6,8-9\n')).toEqual([0, 1, 2, 3, 6, 8, 9]);
    expect(onlineCpus('0')).toEqual([0]);
  });
});
