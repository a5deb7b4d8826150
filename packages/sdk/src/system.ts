/**
 * What the running system can do, checked before we ask the kernel so the error can say
 * what is missing and how to get it.
 */
import * as fs from 'node:fs';
import { didYouMean, NotFoundError, PermissionError, UnsupportedError, isNativeFailure } from './errors.js';
import { native } from './native.js';

const CAP_SYS_ADMIN = 21;
const CAP_PERFMON = 38;
const CAP_BPF = 39;

/** Effective capabilities of this process (from /proc/self/status). */
export function effectiveCaps(statusText?: string): bigint {
  const text = statusText ?? fs.readFileSync('/proc/self/status', 'utf8');
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(text);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

function has(caps: bigint, cap: number): boolean {
  return (caps & (1n << BigInt(cap))) !== 0n;
}

/**
 * Throws PermissionError unless the process may load and attach tracing programs:
 * CAP_BPF + CAP_PERFMON (Linux 5.8+), or CAP_SYS_ADMIN.
 */
export function checkBpfPermission(what: string, statusText?: string): void {
  const caps = effectiveCaps(statusText);
  if (has(caps, CAP_SYS_ADMIN) || (has(caps, CAP_BPF) && has(caps, CAP_PERFMON))) return;
  const missing = [has(caps, CAP_BPF) ? '' : 'CAP_BPF', has(caps, CAP_PERFMON) ? '' : 'CAP_PERFMON'].filter(Boolean).join(' and ');
  throw new PermissionError(
    `${what}: missing ${missing} (or CAP_SYS_ADMIN); run as root (sudo) or grant them: ` +
    'sudo setcap cap_bpf,cap_perfmon+ep "$(readlink -f "$(which node)")"',
    missing);
}

export const TRACEFS_PATHS = ['/sys/kernel/tracing', '/sys/kernel/debug/tracing'];

/**
 * The tracefs mount point, mounting it at /sys/kernel/tracing when it is not mounted and we
 * may. Throws with the mount command when we may not.
 */
export function ensureTracefs(what: string, candidates: readonly string[] = TRACEFS_PATHS, mountAt = '/sys/kernel/tracing'): string {
  for (const p of candidates) if (fs.existsSync(`${p}/events`)) return p;
  try {
    native().mount('tracefs', mountAt, 'tracefs');
  } catch (e) {
    const errno = isNativeFailure(e) ? e.errno : undefined;
    throw new PermissionError(
      `${what}: tracefs is not mounted and mounting it failed (${(e as Error).message}); ` +
      `mount it as root: mount -t tracefs nodev ${mountAt}`,
      'CAP_SYS_ADMIN', { errno });
  }
  if (!fs.existsSync(`${mountAt}/events`)) {
    throw new UnsupportedError(`${what}: tracefs mounted but has no events/ directory; the kernel needs CONFIG_FTRACE / CONFIG_TRACING`, 'CONFIG_TRACING');
  }
  return mountAt;
}

/** Throws NotFoundError (with did-you-mean) when category/name is not a tracepoint of this kernel. */
export function checkTracepoint(category: string, name: string): void {
  const tracefs = ensureTracefs(`attach tracepoint "${category}/${name}"`);
  if (fs.existsSync(`${tracefs}/events/${category}/${name}/id`)) return;
  let hint: string;
  if (!fs.existsSync(`${tracefs}/events/${category}`)) {
    hint = `no category "${category}"${didYouMean(category, fs.readdirSync(`${tracefs}/events`))}`;
  } else {
    hint = `no such event in "${category}"${didYouMean(name, fs.readdirSync(`${tracefs}/events/${category}`))}`;
  }
  throw new NotFoundError(`attach tracepoint "${category}/${name}": ${hint}; list them with: ls ${tracefs}/events/${category}`);
}

/** Whether the kernel can create kprobes (CONFIG_KPROBES): perf kprobe PMU or tracefs kprobe_events. */
export function hasKprobes(): boolean {
  if (fs.existsSync('/sys/bus/event_source/devices/kprobe/type')) return true;
  return TRACEFS_PATHS.some((p) => fs.existsSync(`${p}/kprobe_events`));
}

/**
 * Throws UnsupportedError when the kernel has no kprobes. `alternatives` are what this
 * kernel accepts instead (asked of the feature probes); default: tracepoints and raw_tp.
 */
export function checkKprobes(what: string, alternatives: string[] = ['tracepoints (tp/category/name)', 'raw_tp']): void {
  if (hasKprobes()) return;
  throw new UnsupportedError(
    `${what}: kernel has no kprobe support (CONFIG_KPROBES is off: no kprobe PMU, no kprobe_events); ` +
    `this kernel accepts: ${alternatives.join(', ')}`,
    'CONFIG_KPROBES', alternatives);
}

let textSymbols: Set<string> | undefined;

/** Names of kernel text symbols (/proc/kallsyms t/T/w/W), read once per process. */
function kernelTextSymbols(reread = false): Set<string> | undefined {
  if (textSymbols && !reread) return textSymbols;
  const out = new Set<string>();
  try {
    for (const line of fs.readFileSync('/proc/kallsyms', 'utf8').split('\n')) {
      // "ffffffff81000000 T _stext" or "... t name\t[module]"
      const sp = line.indexOf(' ');
      const t = line.charCodeAt(sp + 1) | 0x20;
      if (sp < 0 || (t !== 0x74 && t !== 0x77)) continue; // t or w, either case
      const tab = line.indexOf('\t', sp + 3);
      out.add(tab < 0 ? line.slice(sp + 3) : line.slice(sp + 3, tab));
    }
  } catch {
    return undefined; // unreadable (no /proc): let the kernel answer instead
  }
  textSymbols = out;
  return out;
}

/**
 * Whether a kernel function exists (in /proc/kallsyms). The names are read once; a miss
 * reads them again, since a module may have loaded since.
 */
export function kernelFunctionExists(func: string): boolean {
  const names = kernelTextSymbols();
  if (!names || names.has(func)) return true;
  return kernelTextSymbols(true)?.has(func) ?? true;
}

/** uapi enum bpf_prog_type / bpf_map_type values used by the feature probes. */
const PROG_TYPES = { kprobe: 2, tracepoint: 5, perf_event: 7, raw_tracepoint: 17, tracing: 26, lsm: 29 } as const;
const MAP_RINGBUF = 27;

/** What the running kernel and this process can do. Probes load tiny programs (needs privileges). */
export interface KernelFeatures {
  libbpfVersion: string;
  /** BPF program types the kernel accepts (probed by loading a trivial program). */
  progTypes: Record<keyof typeof PROG_TYPES, boolean>;
  ringbuf: boolean;
  kprobes: boolean;
  btf: boolean;
  tracefs: string | undefined;
}

export function kernelFeatures(): KernelFeatures {
  const n = native();
  const probe = (f: () => number) => {
    try { return f() === 1; } catch { return false; }
  };
  const progTypes = Object.fromEntries(
    Object.entries(PROG_TYPES).map(([k, v]) => [k, probe(() => n.probeProgType(v))])) as KernelFeatures['progTypes'];
  return {
    libbpfVersion: n.libbpfVersion,
    progTypes,
    ringbuf: probe(() => n.probeMapType(MAP_RINGBUF)),
    kprobes: hasKprobes(),
    btf: fs.existsSync('/sys/kernel/btf/vmlinux'),
    tracefs: TRACEFS_PATHS.find((p) => fs.existsSync(`${p}/events`)),
  };
}
