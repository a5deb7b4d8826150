/** `tslcc doctor`: what this host can do, each check with the fix when it fails. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { checkBpfPermission, findClang, kernelFeatures, kernelProbes } from '@tslcc/sdk';

export interface Check { name: string; ok: boolean; required: boolean; detail: string }

export function doctor(): Check[] {
  const out: Check[] = [];
  const add = (name: string, ok: boolean, required: boolean, detail: string) => out.push({ name, ok, required, detail });
  let privileged = true;
  try {
    checkBpfPermission('load');
  } catch (e) {
    privileged = false;
    add('privileges', false, true, (e as Error).message.replace(/^load: /, ''));
  }
  const f = kernelFeatures();
  out.unshift({ name: 'kernel', ok: true, required: false, detail: `${os.release()} ${os.arch()}, libbpf ${f.libbpfVersion}` });
  if (privileged) add('privileges', true, true, 'CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN)');
  add('kernel BTF', f.btf, true, f.btf ? '/sys/kernel/btf/vmlinux' : 'missing: needs CONFIG_DEBUG_INFO_BTF=y (or a BTFHub file via btfCustomPath)');
  add('tracefs', !!f.tracefs, false, f.tracefs ?? 'not mounted; tslcc mounts it when root, or: mount -t tracefs nodev /sys/kernel/tracing');
  const bpffs = fs.readFileSync('/proc/mounts', 'utf8').includes(' /sys/fs/bpf bpf ');
  add('bpffs', bpffs, false, bpffs ? '/sys/fs/bpf' : 'not mounted (only needed for pinning): mount -t bpf bpf /sys/fs/bpf');
  const unprobed = privileged ? '' : ' (not probed: needs privileges)';
  const pt = (name: string, ok: boolean, required: boolean, fix: string) =>
    add(name, ok, required && privileged, ok ? 'supported' : `not supported${unprobed || (fix ? `: ${fix}` : '')}`);
  pt('tracepoint programs', f.progTypes.tracepoint, true, 'needs CONFIG_BPF_EVENTS');
  pt('raw_tp programs', f.progTypes.raw_tracepoint, false, '');
  pt('perf_event programs', f.progTypes.perf_event, false, '');
  pt('ring buffer', f.ringbuf, false, 'kernel 5.8+; use LBC_PERF_OUTPUT');
  // A trampoline program really loaded and attached, not just the program type probed: some
  // kernels accept BPF_PROG_TYPE_TRACING and refuse fentry at load (EPERM).
  const probes = kernelProbes();
  add('kprobes', f.kprobes, false, f.kprobes ? 'supported' : `CONFIG_KPROBES is off; use ${privileged && probes.trampolines ? 'fentry or ' : ''}tracepoints`);
  pt('fentry/fexit', privileged && probes.trampolines, false, 'the kernel refuses BPF trampolines (5.5+ with CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS); use kprobes or tracepoints');
  pt('tp_btf programs', privileged && probes.tpBtf('sched_switch'), false, 'needs 5.5+ with BTF; use raw_tp or tracepoints');
  let lsms = '';
  try { lsms = fs.readFileSync('/sys/kernel/security/lsm', 'utf8').trim(); } catch { /* securityfs not mounted */ }
  const bpfLsm = lsms.split(',').includes('bpf');
  add('BPF LSM', bpfLsm, false, bpfLsm ? `active (lsm=${lsms})` : lsms ? `not active: add bpf to lsm= on the kernel command line (now: ${lsms}); needs CONFIG_BPF_LSM` : 'unknown: /sys/kernel/security/lsm is unreadable (mount -t securityfs securityfs /sys/kernel/security)');
  const clang = findClang();
  add('clang (local compile)', !!clang, false, clang ?? 'not found: apt-get install clang llvm libbpf-dev, or use a compile server');
  const bwrap = ['/usr/bin/bwrap', '/bin/bwrap'].find((p) => fs.existsSync(p));
  add('bubblewrap (tslcc serve)', !!bwrap, false, bwrap ?? 'not found: apt-get install bubblewrap (the compile server sandboxes clang with it)');
  const server = process.env.TSLCC_SERVER ?? process.env.LBC_SERVER;
  if (server) add('compile server', true, false, `${server} (from ${process.env.TSLCC_SERVER ? 'TSLCC_SERVER' : 'LBC_SERVER'})`);
  const helpers = fs.existsSync('/usr/include/bpf/bpf_helpers.h');
  add('libbpf headers', helpers, false, helpers ? '/usr/include/bpf' : 'missing: apt-get install libbpf-dev (needed for local compile)');
  return out;
}
