// The whole native surface of @tslcc/native, one to one with libbpf.
// Every failing call throws a NativeError. The layer validates nothing; @tslcc/sdk does.

/** Error thrown by every native call. */
export interface NativeError extends Error {
  /** Positive errno. */
  errno: number;
  /** The libbpf function or syscall that failed. */
  op: string;
  /** libbpf's log lines during the call (verifier log included on load failure). */
  libbpfLog: string;
}

export interface ProgramInfo {
  name: string;
  section: string;
  type: number;
  typeName: string;
  expectedAttachType: number;
  autoload: boolean;
}

export interface MapInfo {
  name: string;
  type: number;
  typeName: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  btfKeyTypeId: number;
  btfValueTypeId: number;
  /** libbpf-created map for .data/.rodata/.bss/.kconfig. */
  internal: boolean;
  /** -1 before load. */
  fd: number;
}

export type BtfKind =
  | 'int' | 'ptr' | 'array' | 'struct' | 'union' | 'enum' | 'fwd' | 'typedef' | 'volatile'
  | 'const' | 'restrict' | 'func' | 'func_proto' | 'var' | 'datasec' | 'float' | 'decl_tag'
  | 'type_tag' | 'enum64' | 'unknown';

export interface BtfMember { name: string; type: number; bitOffset: number; bitSize: number }
export interface BtfEnumValue { name: string; value: number | bigint }
export interface BtfParam { name: string; type: number }
export interface BtfVarSecinfo { type: number; offset: number; size: number }

/** One BTF type as plain data. Fields present depend on kind. */
export interface BtfType {
  id: number;
  kind: BtfKind;
  name: string;
  /** int, struct, union, enum, enum64, datasec, float */
  size?: number;
  /** ptr, typedef, modifiers, func, var, decl_tag: the referenced type; array: element; func_proto: return */
  type?: number;
  /** int */
  signed?: boolean; char?: boolean; bool?: boolean; bitOffset?: number; bits?: number;
  /** array */
  indexType?: number; nelems?: number;
  /** struct, union */
  members?: BtfMember[];
  /** enum, enum64 */
  values?: BtfEnumValue[];
  /** fwd */
  union?: boolean;
  /** func_proto */
  params?: BtfParam[];
  /** var */
  linkage?: number;
  /** datasec */
  vars?: BtfVarSecinfo[];
  /** decl_tag */
  componentIdx?: number;
}

/** Index = type id; index 0 (void) is null. */
export type BtfTypes = Array<BtfType | null>;

export declare class Link {
  private constructor();
  /** Detach; idempotent. */
  destroy(): void;
  fd(): number;
  pin(path: string): void;
}

export interface OpenOptions {
  /** Kernel BTF to relocate against instead of /sys/kernel/btf/vmlinux. */
  btfCustomPath?: string;
}

/** bpf_object: opened from ELF bytes; programs and maps exist in the kernel after load(). */
export declare class BpfObject {
  constructor(elf: Buffer, name: string, opts?: OpenOptions);
  programs(): ProgramInfo[];
  maps(): MapInfo[];
  btf(): BtfTypes | null;
  /** Initial value of a global-data map (.rodata/.data/.bss); null if none. */
  initialValue(map: string): Buffer | null;
  setInitialValue(map: string, value: Buffer): void;
  /**
   * After load: a Buffer over libbpf's mapping of a global-data map (.bss/.data writable,
   * .rodata read-only); null if the map is not mmapable. Valid only until close().
   */
  globalData(map: string): Buffer | null;
  setMapMaxEntries(map: string, n: number): void;
  setAutoload(prog: string, autoload: boolean): void;
  setMapValueSize(map: string, n: number): void;
  setMapKeySize(map: string, n: number): void;
  /** bpf_program__set_attach_target(prog, 0, func): fentry/fexit/tp_btf/lsm target in vmlinux BTF. */
  setAttachTarget(prog: string, func: string): void;
  /** bpf_program__set_type + bpf_program__set_expected_attach_type. */
  setProgramType(prog: string, type: number, expectedAttachType: number): void;
  load(): void;
  programFd(prog: string): number;
  mapFd(map: string): number;
  /** Attach by the program's SEC() name. */
  attach(prog: string): Link;
  attachKprobe(prog: string, func: string, retprobe: boolean, offset: number): Link;
  attachUprobe(prog: string, retprobe: boolean, pid: number, binary: string, offset: number, func: string | null): Link;
  /** bpf_program__attach_usdt; pid -1: every process; cookie is read with bpf_usdt_cookie(). */
  attachUsdt(prog: string, pid: number, binary: string, provider: string, name: string, cookie: number | bigint): Link;
  attachTracepoint(prog: string, category: string, name: string): Link;
  attachRawTracepoint(prog: string, name: string): Link;
  /** The link takes ownership of perfFd and closes it on destroy. */
  attachPerfEvent(prog: string, perfFd: number): Link;
  attachXdp(prog: string, ifindex: number): Link;
  attachCgroup(prog: string, cgroupFd: number): Link;
  attachNetns(prog: string, netnsFd: number): Link;
  attachIter(prog: string): Link;
  /** Release every kernel object; idempotent. Links live on until destroyed. */
  close(): void;
}

/**
 * Batch callback. batch holds records laid out as `u32 size | u32 cpu | data | pad to 8`;
 * a record whose cpu has bit 31 set is a loss report carrying one u64 (events lost on
 * that cpu). count is the number of data records; lost the sum of loss reports; used the
 * number of bytes of batch that hold records. The same Buffer is reused for every batch:
 * decode it inside the callback, never keep it.
 */
export type BatchCallback = (batch: Buffer, count: number, lost: number, used: number) => void;

export interface PerfBufferOptions {
  /** Wake the consumer every N events (default 1). */
  wakeupEvents?: number;
  /** Wake the consumer once this many bytes are pending (overrides wakeupEvents). */
  wakeupBytes?: number;
}

/** perf_buffer over a PERF_EVENT_ARRAY, polled on the Node.js loop. */
export declare class PerfBuffer {
  constructor(mapFd: number, pagesPerCpu: number, cb: BatchCallback, opts?: PerfBufferOptions);
  /** Consume everything pending now and deliver it synchronously. */
  drain(): void;
  close(): void;
  ref(): void;
  unref(): void;
  bufferCount(): number;
}

/** ring_buffer over a RINGBUF map, polled on the Node.js loop. */
export declare class RingBuffer {
  constructor(mapFd: number, cb: BatchCallback);
  drain(): void;
  close(): void;
  ref(): void;
  unref(): void;
}

export declare function mapLookup(fd: number, key: Buffer | null, valueOut: Buffer): boolean;
export declare function mapUpdate(fd: number, key: Buffer | null, value: Buffer, flags?: number): void;
export declare function mapDelete(fd: number, key: Buffer | null): boolean;
export declare function mapNextKey(fd: number, key: Buffer | null, nextOut: Buffer): boolean;
export declare function mapLookupAndDelete(fd: number, key: Buffer | null, valueOut: Buffer): boolean;

/** Raw .BTF bytes as plain data. */
export declare function parseBtf(raw: Buffer): BtfTypes;
/** The running kernel's BTF (path null) or the BTF file at path as a vmlinux.h header. */
export declare function dumpBtfAsC(path: string | null): string;

export declare const libbpfVersion: string;
export declare function numPossibleCpus(): number;

export interface PerfEventAttr {
  type: number;
  config: number | bigint;
  samplePeriod?: number;
  sampleFreq?: number;
  sampleType?: number;
  wakeupEvents?: number;
  inherit?: boolean;
  excludeKernel?: boolean;
  excludeUser?: boolean;
  disabled?: boolean;
  /** PERF_TYPE_BREAKPOINT: HW_BREAKPOINT_R (1), W (2), X (4). */
  bpType?: number;
  /** PERF_TYPE_BREAKPOINT: the address. */
  bpAddr?: number | bigint;
  /** PERF_TYPE_BREAKPOINT: length in bytes (8 for execute breakpoints on 64-bit). */
  bpLen?: number;
}
export declare function perfEventOpen(attr: PerfEventAttr, pid: number, cpu: number, groupFd?: number, flags?: number): number;
export declare function closeFd(fd: number): void;
export declare function mount(source: string, target: string, fstype: string): void;
/** Ids of every prog, map or link in the kernel (all processes). */
export declare function objectIds(kind: 'prog' | 'map' | 'link'): number[];
/** The C++ runtime's demangler over a batch; null where a name is not mangled C++. */
export declare function demangle(names: string[]): Array<string | null>;
/** 1 supported, 0 not, <0 -errno. */
export declare function probeProgType(type: number): number;
export declare function probeMapType(type: number): number;
/** Type id of `name` of BTF kind `kind` (12 func, 8 typedef, ...) in the kernel's BTF; -errno when absent. */
export declare function kernelBtfFind(name: string, kind: number): number;
/** 1 when a trivial tracing program of this expected attach type loads and attaches to kernel BTF id btfId; else -errno. */
export declare function probeTracing(expectedAttachType: number, btfId: number): number;
export declare function probeHelper(progType: number, helperId: number): number;
