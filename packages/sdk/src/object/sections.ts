/**
 * What a program's SEC() name says: its kind, whether it names an attach point, and which
 * kernel event it fires on (so two loaded twins, tp_btf/x and raw_tp/x, are noticed).
 * Pure: the names follow libbpf's section definitions (libbpf.c section_defs).
 */

export interface SectionInfo {
  /** The part before the first '/', e.g. "kprobe", "tp_btf", "usdt", "perf_event". */
  kind: string;
  /** The attach point the SEC names ("vfs_read", "sched/sched_switch", "/bin/bash:readline"), if any. */
  target?: string;
  /**
   * Whether bpf_program__attach can attach it with no more information: the SEC names a
   * target (or, for fentry/fexit/tp_btf/lsm, the load-time target does).
   */
  autoAttach: boolean;
  /** Kinds that carry their target in SEC by convention; a bare one is worth a warning. */
  targetExpected: boolean;
  /** The kernel event it fires on, for twin detection: "tp:sched_switch", "fn:vfs_read:entry". */
  event?: string;
}

const WITH_TARGET = new Set([
  'kprobe', 'kretprobe', 'ksyscall', 'kretsyscall', 'kprobe.multi', 'kretprobe.multi',
  'uprobe', 'uretprobe', 'uprobe.s', 'uretprobe.s', 'usdt',
  'tp', 'tracepoint', 'raw_tp', 'raw_tracepoint', 'raw_tp.w', 'raw_tracepoint.w',
]);
const UPROBE_KINDS = new Set(['uprobe', 'uretprobe', 'uprobe.s', 'uretprobe.s']);
/** Kinds whose target is resolved at load (vmlinux BTF), so they attach by SEC alone once loaded. */
const LOAD_TARGET = new Set(['fentry', 'fexit', 'fmod_ret', 'fentry.s', 'fexit.s', 'fmod_ret.s', 'tp_btf', 'lsm', 'lsm.s', 'iter', 'iter.s', 'freplace']);

/**
 * Classify a section. `attachTarget` is a target set before load (programs: { p: { attachTarget } }).
 */
export function sectionInfo(section: string, attachTarget?: string): SectionInfo {
  const slash = section.indexOf('/');
  const kind = slash < 0 ? section : section.slice(0, slash);
  const target = slash < 0 ? undefined : section.slice(slash + 1) || undefined;
  const info: SectionInfo = { kind, target, autoAttach: false, targetExpected: WITH_TARGET.has(kind) };
  // uprobe/PATH:FUNC and usdt/PATH:PROVIDER:NAME need the binary; the legacy
  // "uretprobe/readline" (BCC style) names only a function, which libbpf cannot attach.
  if (UPROBE_KINDS.has(kind)) info.autoAttach = !!target && target.includes(':');
  else if (kind === 'usdt') info.autoAttach = !!target && target.split(':').length === 3;
  else if (WITH_TARGET.has(kind)) info.autoAttach = !!target;
  else if (LOAD_TARGET.has(kind)) info.autoAttach = !!(attachTarget ?? target);
  const t = attachTarget ?? target;
  if (!t) return info;
  switch (kind) {
    case 'tp': case 'tracepoint': {
      const name = t.split('/')[1];
      if (name) info.event = `tp:${name}`;
      break;
    }
    case 'raw_tp': case 'raw_tracepoint': case 'raw_tp.w': case 'raw_tracepoint.w': case 'tp_btf':
      info.event = `tp:${t}`;
      break;
    case 'kprobe': case 'fentry': case 'fentry.s':
      info.event = `fn:${t.split('+')[0]}:entry`;
      break;
    case 'kretprobe': case 'fexit': case 'fexit.s':
      info.event = `fn:${t}:exit`;
      break;
    default:
  }
  return info;
}

/** How to attach a program of this kind explicitly, for messages. */
export function explicitAttachHint(kind: string): string {
  switch (kind) {
    case 'kprobe': return 'attachKprobe(prog, func)';
    case 'kretprobe': return 'attachKretprobe(prog, func)';
    case 'uprobe': case 'uprobe.s': return 'attachUprobe(prog, binary, symbol)';
    case 'uretprobe': case 'uretprobe.s': return 'attachUretprobe(prog, binary, symbol)';
    case 'usdt': return 'attachUsdt(prog, { pid | binary }, provider, name)';
    case 'tp': case 'tracepoint': return 'attachTracepoint(prog, category, name)';
    case 'raw_tp': case 'raw_tracepoint': return 'attachRawTracepoint(prog, name)';
    case 'perf_event': return 'attachPerfEvent(prog, attr)';
    case 'xdp': return 'attachXdp(prog, ifindex)';
    default: return kind.startsWith('cgroup') ? 'attachCgroup(prog, path)' : 'an explicit attach call';
  }
}
