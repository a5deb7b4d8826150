// Error classes, permission and tracefs checks (with an injected binding), option validation.
import { describe, expect, test } from 'vitest';
import {
  checkBpfPermission, CompileError, ensureTracefs, LbcBase, LbcError, NotFoundError, PermissionError,
  setBinding, UnsupportedError, VerifierError,
} from '@tslcc/sdk';
import * as native from '@tslcc/native';

const status = (capEff: string) => `Name:\tnode\nCapInh:\t0000000000000000\nCapEff:\t${capEff}\n`;

describe('errors', () => {
  test('one hierarchy with stable codes', () => {
    const cases: Array<[LbcError, string, string]> = [
      [new CompileError('m', [], ''), 'LBC_COMPILE', 'CompileError'],
      [new VerifierError('m', 'p', 'log'), 'LBC_VERIFIER', 'VerifierError'],
      [new UnsupportedError('m', 'CONFIG_KPROBES'), 'LBC_UNSUPPORTED', 'UnsupportedError'],
      [new PermissionError('m', 'CAP_BPF'), 'LBC_PERMISSION', 'PermissionError'],
      [new NotFoundError('m'), 'LBC_NOT_FOUND', 'NotFoundError'],
    ];
    for (const [e, code, name] of cases) {
      expect(e).toBeInstanceOf(LbcError);
      expect(e).toBeInstanceOf(Error);
      expect([e.code, e.name]).toEqual([code, name]);
    }
  });

  test('no CAP_BPF/CAP_PERFMON: PermissionError naming both and the fix', () => {
    let err: unknown;
    try { checkBpfPermission('load "t"', status('0000000000000000')); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(PermissionError);
    expect((err as PermissionError).capability).toBe('CAP_BPF and CAP_PERFMON');
    expect((err as Error).message).toBe(
      'load "t": missing CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); run as root (sudo) or grant them: ' +
      'sudo setcap cap_bpf,cap_perfmon+ep "$(readlink -f "$(which node)")"');
  });

  test('CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN are enough', () => {
    expect(() => checkBpfPermission('x', status((3n << 38n).toString(16).padStart(16, '0')))).not.toThrow();
    expect(() => checkBpfPermission('x', status((1n << 21n).toString(16).padStart(16, '0')))).not.toThrow();
    expect(() => checkBpfPermission('x', status((1n << 39n).toString(16).padStart(16, '0')))).toThrow(/missing CAP_PERFMON \(or/);
  });

  test('tracefs not mounted and not mountable: says the mount command', () => {
    const fake = { ...native, mount: () => { throw Object.assign(new Error('mount /tmp/x: Operation not permitted'), { errno: 1, op: 'mount', libbpfLog: '' }); } };
    const prev = setBinding(fake as typeof native);
    try {
      expect(() => ensureTracefs('attach tracepoint "a/b"', ['/nonexistent/tracing'], '/nonexistent/tracing'))
        .toThrow('attach tracepoint "a/b": tracefs is not mounted and mounting it failed (mount /tmp/x: Operation not permitted); mount it as root: mount -t tracefs nodev /nonexistent/tracing');
    } finally {
      setBinding(prev);
    }
  });

  test('options are validated with a suggestion', () => {
    expect(() => new LbcBase('t', { atach: false } as never)).toThrow('LbcBase "t": unknown option "atach"; did you mean "attach"?');
    expect(() => new LbcBase('no spaces please')).toThrow(/name must be a plain identifier/);
  });

  test('using maps before start is a clear LBC_CLOSED error', () => {
    const t = new LbcBase('t', { source: '' });
    expect(() => t.assertOpen('lookup map "m"')).toThrow('lookup map "m": "t" is not started');
    expect(() => t.btf).toThrow('"t": not started; call start() first');
  });
});
