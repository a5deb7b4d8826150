/**
 * Kernel feature probes: what a tool asks before load to choose its programs, the way
 * libbpf-tools' loaders call fentry_can_attach(), tracepoint_exists() and probe_tp_btf()
 * before bpf_object__load(). Each answer is computed once per process.
 */
import * as fs from 'node:fs';
import { native } from '../native.js';
import { hasKprobes, kernelFunctionExists, TRACEFS_PATHS } from '../system.js';

const BTF_KIND_TYPEDEF = 8;
const BTF_KIND_FUNC = 12;
/** uapi enum bpf_attach_type. */
const BPF_TRACE_RAW_TP = 23;
const BPF_TRACE_FENTRY = 24;
const BPF_TRACE_FEXIT = 25;
const BPF_MAP_TYPE_RINGBUF = 27;

let filterFunctions: Set<string> | null | undefined;

/** tracefs available_filter_functions: the functions ftrace (and so kprobes on entry) may hook; null if unreadable. */
function ftraceFunctions(): Set<string> | null {
  if (filterFunctions !== undefined) return filterFunctions;
  filterFunctions = null;
  for (const p of TRACEFS_PATHS) {
    try {
      const text = fs.readFileSync(`${p}/available_filter_functions`, 'utf8');
      filterFunctions = new Set(text.split('\n').map((l) => l.split(' ')[0]!).filter(Boolean));
      break;
    } catch { /* next */ }
  }
  return filterFunctions;
}

/**
 * Answers about the running kernel, for `beforeLoad`. Probes that load a trivial program
 * need the same privileges as loading the tool; without them they answer false.
 */
export class KernelProbes {
  private readonly memo = new Map<string, boolean>();

  private once(key: string, f: () => boolean): boolean {
    let v = this.memo.get(key);
    if (v === undefined) {
      try { v = f(); } catch { v = false; }
      this.memo.set(key, v);
    }
    return v;
  }

  /** The kernel can create kprobes at all (CONFIG_KPROBES). */
  get kprobes(): boolean {
    return this.once('kprobes', () => hasKprobes());
  }

  /** A kernel function of this name exists (/proc/kallsyms). */
  kernelFunction(name: string): boolean {
    return kernelFunctionExists(name);
  }

  /** A kprobe on `func` can be created: kprobes exist, the function exists, ftrace may hook it (when the list is readable). */
  kprobeAttachable(func: string): boolean {
    return this.once(`kprobe:${func}`, () => {
      if (!this.kprobes || !this.kernelFunction(func)) return false;
      const ff = ftraceFunctions();
      return ff ? ff.has(func) : true;
    });
  }

  /** The kernel's BTF has function `func` (needed by fentry/fexit). */
  btfFunction(func: string): boolean {
    return this.once(`btf:${func}`, () => native().kernelBtfFind(func, BTF_KIND_FUNC) > 0);
  }

  /** An fentry program on `func` loads and attaches here (libbpf-tools' fentry_can_attach, plus the attach). */
  fentryAttachable(func: string): boolean {
    return this.once(`fentry:${func}`, () => {
      const id = native().kernelBtfFind(func, BTF_KIND_FUNC);
      return id > 0 && native().probeTracing(BPF_TRACE_FENTRY, id) === 1;
    });
  }

  /** An fexit program on `func` loads and attaches here. */
  fexitAttachable(func: string): boolean {
    return this.once(`fexit:${func}`, () => {
      const id = native().kernelBtfFind(func, BTF_KIND_FUNC);
      return id > 0 && native().probeTracing(BPF_TRACE_FEXIT, id) === 1;
    });
  }

  /** The tracepoint category/name exists (tracefs events/). */
  tracepoint(category: string, name: string): boolean {
    return this.once(`tp:${category}/${name}`, () => TRACEFS_PATHS.some((p) => fs.existsSync(`${p}/events/${category}/${name}`)));
  }

  /** A tp_btf program on tracepoint `name` loads and attaches here (libbpf-tools' probe_tp_btf). */
  tpBtf(name: string): boolean {
    return this.once(`tp_btf:${name}`, () => {
      const id = native().kernelBtfFind(`btf_trace_${name}`, BTF_KIND_TYPEDEF);
      return id > 0 && native().probeTracing(BPF_TRACE_RAW_TP, id) === 1;
    });
  }

  /** A raw tracepoint `name` exists (the kernel's BTF has its btf_trace_ typedef). */
  rawTracepoint(name: string): boolean {
    return this.once(`raw_tp:${name}`, () => native().kernelBtfFind(`btf_trace_${name}`, BTF_KIND_TYPEDEF) > 0);
  }

  /** BPF ring buffers (5.8+). */
  get ringbuf(): boolean {
    return this.once('ringbuf', () => native().probeMapType(BPF_MAP_TYPE_RINGBUF) === 1);
  }

  /** fentry/fexit work at all on this kernel (probed on a function every kernel has). */
  get trampolines(): boolean {
    return this.once('trampolines', () => ['do_nanosleep', 'vfs_read', 'schedule'].some((f) => this.btfFunction(f) && this.fentryAttachable(f)));
  }
}

let shared: KernelProbes | undefined;
/** The process-wide probes (answers are cached). */
export function kernelProbes(): KernelProbes {
  shared ??= new KernelProbes();
  return shared;
}
