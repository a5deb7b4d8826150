/**
 * Typed map objects. Keys and values are encoded and decoded from the object's BTF; event
 * maps deliver decoded records in batches from the native layer.
 */
import type { MapInfo, PerfBuffer, RingBuffer } from '@tslcc/native';
import type { Btf } from './btf.js';
import type { CodecFactory, Decoder, Encoder } from './decode.js';
import { LbcError, isNativeFailure } from './errors.js';
import { type KernelFrame, formatFrame, kernelSymbols } from './kallsyms.js';
import { formatAnyFrame, symbolizer, type UserFrame } from './symbolize/symbolizer.js';
import { native } from './native.js';

/** BPF map type numbers (uapi enum bpf_map_type). */
export const MapType = {
  HASH: 1, ARRAY: 2, PERF_EVENT_ARRAY: 4, PERCPU_HASH: 5, PERCPU_ARRAY: 6, STACK_TRACE: 7,
  LRU_HASH: 9, LRU_PERCPU_HASH: 10, RINGBUF: 27,
} as const;

/** What a map object needs from its owner. */
export interface MapContext {
  btf: Btf;
  codecs: CodecFactory;
  /** Throws LBC_CLOSED once the owner is closed. */
  assertOpen(what: string): void;
  /** Reads a .bss/.data global by name (ring buffer drop counters). */
  readGlobal(name: string): unknown;
  /** Registers a resource the owner must close. */
  track(c: { close(): void }): void;
  /** Reports a warning (stderr by default). */
  warn?(message: string): void;
  /** Named struct/union types of the object's BTF of this size, for messages. */
  structTypes?(size: number): string[];
}

function mapError(op: string, map: string, e: unknown): LbcError {
  if (isNativeFailure(e)) return new LbcError('LBC_MAP', `${op} map "${map}": ${e.message}`, { errno: e.errno, cause: e });
  return e as LbcError;
}

const round8 = (n: number) => (n + 7) & ~7;

/** Base of every map: name, kernel info, fd. */
export class LbcMap {
  readonly name: string;
  readonly info: MapInfo;
  protected readonly ctx: MapContext;
  constructor(ctx: MapContext, info: MapInfo) {
    this.ctx = ctx;
    this.name = info.name;
    this.info = info;
  }
  /** The map's fd (valid until close). */
  get fd(): number {
    return this.info.fd;
  }
  /** BPF map type name ("hash", "perf_event_array", ...). */
  get type(): string {
    return this.info.typeName;
  }
}

/**
 * Hash-like and array maps: get/set/delete/iterate with values decoded from BTF.
 * Per-CPU maps return one value per possible CPU (an array), decoded for every CPU.
 */
export class KeyValueMap<K = unknown, V = unknown> extends LbcMap {
  readonly perCpu: boolean;
  readonly ncpus: number;
  private readonly keyEnc: Encoder;
  private readonly keyDec: Decoder<K>;
  private readonly valEnc: Encoder;
  private readonly valDec: Decoder<unknown>;
  private readonly stride: number;
  private readonly keyBuf: Buffer;
  private readonly keyDv: DataView;
  private readonly valBuf: Buffer;
  private readonly valDv: DataView;

  constructor(ctx: MapContext, info: MapInfo) {
    super(ctx, info);
    this.perCpu = info.type === MapType.PERCPU_HASH || info.type === MapType.PERCPU_ARRAY || info.type === MapType.LRU_PERCPU_HASH;
    this.ncpus = this.perCpu ? native().numPossibleCpus() : 1;
    this.stride = this.perCpu ? round8(info.valueSize) : info.valueSize;
    const kid = info.btfKeyTypeId;
    const vid = info.btfValueTypeId;
    if (!kid || !vid) {
      throw new LbcError('LBC_MAP', `map "${info.name}": no BTF key/value types; declare it with an LBC_* macro or __type(key, ...)/__type(value, ...)`);
    }
    this.keyEnc = ctx.codecs.encoder(kid);
    this.keyDec = ctx.codecs.decoder<K>(kid);
    this.valEnc = ctx.codecs.encoder(vid);
    this.valDec = ctx.codecs.decoder(vid);
    this.keyBuf = Buffer.alloc(Math.max(info.keySize, 1));
    this.keyDv = new DataView(this.keyBuf.buffer, this.keyBuf.byteOffset, this.keyBuf.byteLength);
    this.valBuf = Buffer.alloc(Math.max(this.stride * this.ncpus, 1));
    this.valDv = new DataView(this.valBuf.buffer, this.valBuf.byteOffset, this.valBuf.byteLength);
  }

  private encodeKey(key: K): Buffer {
    this.keyBuf.fill(0);
    this.keyEnc(key, this.keyBuf, this.keyDv, 0);
    return this.keyBuf;
  }

  private decodeValue(): V {
    if (!this.perCpu) return this.valDec(this.valBuf, this.valDv, 0) as V;
    const out = new Array(this.ncpus);
    for (let c = 0; c < this.ncpus; c++) out[c] = this.valDec(this.valBuf, this.valDv, c * this.stride);
    return out as V;
  }

  /** The value at key, or undefined. Per-CPU maps: an array with one value per CPU. Without a key, every entry (pylcc's get()). */
  get(): Array<[K, V]>;
  get(key: K): V | undefined;
  get(...args: [K?]): V | undefined | Array<[K, V]> {
    if (args.length === 0) return this.entries();
    const key = args[0] as K;
    this.ctx.assertOpen(`lookup map "${this.name}"`);
    try {
      return native().mapLookup(this.fd, this.encodeKey(key), this.valBuf) ? this.decodeValue() : undefined;
    } catch (e) {
      throw mapError('lookup', this.name, e);
    }
  }

  /** pylcc's getKeyValue(k). */
  getKeyValue(key: K): V | undefined {
    return this.get(key);
  }

  /**
   * Write key → value. Per-CPU maps take an array (one value per CPU) or one value for all.
   * @param flags BPF_ANY (0, default), BPF_NOEXIST (1) or BPF_EXIST (2).
   */
  set(key: K, value: V, flags = 0): void {
    this.ctx.assertOpen(`update map "${this.name}"`);
    this.valBuf.fill(0);
    if (this.perCpu) {
      const vals = Array.isArray(value) && value.length === this.ncpus ? value : new Array(this.ncpus).fill(value);
      for (let c = 0; c < this.ncpus; c++) this.valEnc(vals[c], this.valBuf, this.valDv, c * this.stride);
    } else {
      this.valEnc(value, this.valBuf, this.valDv, 0);
    }
    try {
      native().mapUpdate(this.fd, this.encodeKey(key), this.valBuf, flags);
    } catch (e) {
      throw mapError('update', this.name, e);
    }
  }

  /** Delete key; false if it was not there. */
  delete(key: K): boolean {
    this.ctx.assertOpen(`delete from map "${this.name}"`);
    try {
      return native().mapDelete(this.fd, this.encodeKey(key));
    } catch (e) {
      throw mapError('delete from', this.name, e);
    }
  }

  /** Every key (pylcc: getKeys()). */
  keys(): K[] {
    this.ctx.assertOpen(`iterate map "${this.name}"`);
    const out: K[] = [];
    const next = Buffer.alloc(Math.max(this.info.keySize, 1));
    const dv = new DataView(next.buffer, next.byteOffset, next.byteLength);
    let cur: Buffer | null = null;
    try {
      while (native().mapNextKey(this.fd, cur, next)) {
        out.push(this.keyDec(next, dv, 0));
        cur = Buffer.from(next);
        if (out.length > this.info.maxEntries) break; // entries deleted under us: never loop forever
      }
    } catch (e) {
      throw mapError('iterate', this.name, e);
    }
    return out;
  }

  getKeys(): K[] {
    return this.keys();
  }

  /** Every [key, value] pair (pylcc: get()). */
  entries(): Array<[K, V]> {
    const out: Array<[K, V]> = [];
    for (const k of this.keys()) {
      const v = this.get(k);
      if (v !== undefined) out.push([k, v]);
    }
    return out;
  }

  [Symbol.iterator](): Iterator<[K, V]> {
    return this.entries()[Symbol.iterator]();
  }

  /** Every pair, then remove them (arrays: zeroed) — pylcc's getThenClear(). */
  getThenClear(): Array<[K, V]> {
    const out = this.entries();
    this.clearKeys(out.map(([k]) => k));
    return out;
  }

  /** Remove every entry (arrays: zero every element). */
  clear(): void {
    this.clearKeys(this.keys());
  }

  private clearKeys(keys: K[]): void {
    const isArray = this.info.type === MapType.ARRAY || this.info.type === MapType.PERCPU_ARRAY;
    if (isArray) {
      const zero = Buffer.alloc(this.valBuf.length);
      for (const k of keys) {
        try {
          native().mapUpdate(this.fd, this.encodeKey(k), zero, 0);
        } catch (e) {
          throw mapError('clear', this.name, e);
        }
      }
    } else {
      for (const k of keys) this.delete(k);
    }
  }
}

/** Power-of-two or power-of-ten histogram (LBC_HIST2 / LBC_HIST10). */
export class HistMap extends KeyValueMap<number, bigint | number> {
  readonly base: 2 | 10;
  constructor(ctx: MapContext, info: MapInfo, base: 2 | 10) {
    super(ctx, info);
    this.base = base;
  }

  /** Counts per slot, as numbers. */
  slots(): number[] {
    const out: number[] = new Array(this.info.maxEntries).fill(0);
    for (const [k, v] of this.entries()) out[k] = Number(v);
    return out;
  }

  /** Slot bounds [low, high] of slot i. */
  bounds(i: number): [bigint, bigint] {
    const b = BigInt(this.base);
    const low = i === 0 ? 0n : b ** BigInt(i);
    return [low, b ** BigInt(i + 1) - 1n];
  }

  /**
   * The histogram in BCC's layout, written with `print` (default console.log) and returned.
   * @param label the value column's title (e.g. "usecs").
   */
  showHist(label = 'value', print: ((s: string) => void) | null = console.log): string {
    const text = formatHistogram(this.slots(), (i) => this.bounds(i), label);
    if (print) print(text);
    return text;
  }
}

/** BCC-style histogram text: "low -> high : count |****|". Shared by tools. */
export function formatHistogram(counts: number[], bounds: (i: number) => [bigint, bigint], label = 'value', width = 40): string {
  let last = counts.length - 1;
  while (last > 0 && counts[last] === 0) last--;
  let first = 0;
  while (first < last && counts[first] === 0) first++;
  const max = Math.max(1, ...counts);
  const lines = [`${label.padStart(24)}${' '.repeat(20)}: count    distribution`];
  for (let i = first; i <= last; i++) {
    const [lo, hi] = bounds(i);
    const stars = Math.round((counts[i]! / max) * width);
    lines.push(`${lo.toString().padStart(20)} -> ${hi.toString().padEnd(20)}: ${String(counts[i]).padEnd(8)} |${'*'.repeat(stars).padEnd(width)}|`);
  }
  return lines.join('\n');
}

/** Stack trace map (LBC_STACK). */
export class StackMap extends LbcMap {
  private readonly buf: Buffer;
  private readonly key = Buffer.alloc(4);

  constructor(ctx: MapContext, info: MapInfo) {
    super(ctx, info);
    this.buf = Buffer.alloc(info.valueSize);
  }

  /** Raw instruction pointers of stack `id`, innermost first (pylcc: getArr). Empty if absent. */
  getArr(id: number): bigint[] {
    this.ctx.assertOpen(`read stack from map "${this.name}"`);
    if (id < 0 || id > 0x7fffffff) return [];
    this.key.writeUInt32LE(id >>> 0);
    let found: boolean;
    try {
      found = native().mapLookup(this.fd, this.key, this.buf);
    } catch (e) {
      throw mapError('read stack from', this.name, e);
    }
    if (!found) return [];
    const out: bigint[] = [];
    for (let off = 0; off + 8 <= this.buf.length; off += 8) {
      const ip = this.buf.readBigUInt64LE(off);
      if (ip === 0n) break;
      out.push(ip);
    }
    return out;
  }

  /** Kernel frames of stack `id` (or, with `pid`, user frames of that process), innermost first. */
  getFrames(id: number): KernelFrame[];
  getFrames(id: number, opts: { pid: number }): Promise<UserFrame[]>;
  getFrames(id: number, opts?: { pid: number }): KernelFrame[] | Promise<UserFrame[]> {
    if (opts?.pid !== undefined) {
      const sym = symbolizer();
      sym.remember(opts.pid); // now, before any await: the process may be about to exit
      return sym.user(opts.pid, this.getArr(id));
    }
    return kernelSymbols().lookupStack(this.getArr(id));
  }

  /**
   * Symbolized stack `id`, innermost first: kernel frames as `symbol+0xoff [module]`; with
   * `{ pid }`, the user stack of that process (USER_STACKID_FLAGS) as `symbol+0xoff (binary)`,
   * asynchronously (binaries are read lazily, off the event loop's critical path).
   * A negative id (an error from bpf_get_stackid, e.g. -EEXIST or -EFAULT, possibly stored
   * in an unsigned field) yields one line saying so.
   */
  getStacks(id: number | bigint): string[];
  getStacks(id: number | bigint, opts: { pid: number }): Promise<string[]>;
  getStacks(id: number | bigint, opts?: { pid: number }): string[] | Promise<string[]> {
    let n = Number(id);
    if (n > 0x7fffffff && n <= 0xffffffff) n -= 0x100000000; // u32 field holding a negative errno
    const err = n < 0 ? [`[stack id error ${n}: ${stackIdError(-n)}]`] : undefined;
    if (opts?.pid !== undefined) {
      if (err) return Promise.resolve(err);
      return this.getFrames(n, opts).then((f) => (f.length ? f.map(formatAnyFrame) : [`[stack ${n} not found: overwritten or evicted]`]));
    }
    if (err) return err;
    const frames = this.getFrames(n);
    return frames.length ? frames.map(formatFrame) : [`[stack ${n} not found: overwritten or evicted]`];
  }

  /** Remove stack `id` (stack ids are reused only after this). */
  delete(id: number): boolean {
    this.key.writeUInt32LE(id >>> 0);
    return native().mapDelete(this.fd, this.key);
  }
}

function stackIdError(errno: number): string {
  switch (errno) {
    case 14: return 'EFAULT, no stack (e.g. user stack of a kernel thread)';
    case 17: return 'EEXIST, hash collision in the stack map (make it larger)';
    case 12: return 'ENOMEM, the stack map is full (make it larger)';
    default: return `errno ${errno}`;
  }
}

/** Per-record information delivered with every event. */
export interface EventInfo {
  /** CPU that produced it (perf buffers; 0 for ring buffers). */
  cpu: number;
  /** Record size in bytes. */
  size: number;
  /**
   * Bytes past sizeof(T), for records of variable length (a flexible array member, NUL-packed
   * strings after a header): a copy, present only when the record is longer than T. Perf
   * buffers pad records to 8-byte words, so there it appears from 8 extra bytes on, and may
   * end in up to 7 bytes of padding.
   */
  tail?: Buffer;
}

export interface EventMapOptions {
  /** Perf buffers: pages per CPU (power of two). Default: the LBC_PERF_OUTPUT argument, else 64. */
  pagesPerCpu?: number;
  /**
   * Perf buffers: wake the consumer every N events (default 1: lowest latency). Fewer
   * wakeups cost less CPU per event; a partial batch is flushed every `flushMs`.
   */
  wakeupEvents?: number;
  /** With wakeupEvents > 1: deliver what is pending at least this often (ms). Default 100. */
  flushMs?: number;
  /** Keep the process alive while open (default true). */
  ref?: boolean;
}

type EventCallback<T> = (event: T, info: EventInfo) => void;
type LostCallback = (count: number, cpu: number) => void;

/**
 * An event map (LBC_PERF_OUTPUT or LBC_RINGBUF): decoded events to callbacks and to
 * `for await`. Losses are counted exactly: perf buffers from the kernel's lost records,
 * ring buffers from the program's own drop counter (lbc_ringbuf_output/_reserve).
 */
export class EventMap<T = unknown> extends LbcMap {
  /** BTF type id of the event. */
  readonly typeId: number;
  /** sizeof(T). */
  readonly eventSize: number;
  readonly kind: 'perf' | 'ring';
  /** Events delivered so far. */
  received = 0;
  private lostPerf = 0;
  private lostRingSeen = 0;
  private readonly decoder: Decoder<T>;
  private readonly callbacks: Array<EventCallback<T>> = [];
  private readonly lostCallbacks: LostCallback[] = [];
  private consumer?: PerfBuffer | RingBuffer;
  private readonly defaultPages: number;
  private readonly dropVar?: string;
  private scratch?: { buf: Buffer; dv: DataView };
  private flushTimer?: NodeJS.Timeout;
  private iterators = new Set<{ push(e: T): void; end(): void }>();

  constructor(ctx: MapContext, info: MapInfo, typeId: number, defaultPages: number) {
    super(ctx, info);
    this.kind = info.type === MapType.RINGBUF ? 'ring' : 'perf';
    this.typeId = typeId;
    this.eventSize = ctx.btf.sizeof(typeId);
    // No event type (a map declared by hand, without LBC_PERF_OUTPUT/LBC_EVENT_TYPE/events): raw bytes.
    this.decoder = typeId ? ctx.codecs.decoder<T>(typeId) : ((b: Buffer, _dv: DataView, o: number) => {
      const size = b.readUInt32LE(o - 8);
      this.warnUntyped(size);
      return b.subarray(o, o + size).toString('hex');
    }) as unknown as Decoder<T>;
    this.defaultPages = defaultPages;
    if (this.kind === 'ring') this.dropVar = `__lbc_drops_${info.name}`;
  }

  private warnedUntyped = false;

  /** Once per map: records arrive without a type; say how to name it and which types fit. */
  private warnUntyped(size: number): void {
    if (this.warnedUntyped) return;
    this.warnedUntyped = true;
    const fits = this.ctx.structTypes?.(size) ?? [];
    this.ctx.warn?.(`event map "${this.name}" has no event type, so its records (${size} bytes) are delivered as hex strings; ` +
      `name the type with LbcBase's { events: { ${this.name}: 'struct event' } } or LBC_EVENT_TYPE(${this.name}, struct event) in the source; ` +
      (fits.length ? `types of ${size} bytes in the object: ${fits.join(', ')}` : `no type of ${size} bytes is in the object's BTF (a struct used only as a local leaves none; { events } with the source adds it)`));
  }

  /** Events lost so far (perf: reported by the kernel; ring: counted by the program). */
  get lost(): number {
    if (this.kind === 'ring') this.pollRingDrops();
    return this.lostPerf + this.lostRingSeen;
  }

  /**
   * Deliver every event to `cb`; starts the consumer on first call. pylcc: open_perf_buffer.
   * @returns this, for chaining.
   */
  on(cb: EventCallback<T>, opts: EventMapOptions = {}): this {
    this.callbacks.push(cb);
    this.start(opts);
    return this;
  }

  /** Called with the number of events lost (and the CPU, perf only) whenever losses are seen. */
  onLost(cb: LostCallback): this {
    this.lostCallbacks.push(cb);
    return this;
  }

  /** pylcc's open_perf_buffer(cb, lost_cb): cb(cpu, event). */
  openPerfBuffer(cb: (cpu: number, event: T) => void, lost?: (count: number) => void, opts?: EventMapOptions): this {
    if (lost) this.onLost((n) => lost(n));
    return this.on((e, i) => cb(i.cpu, e), opts);
  }

  /** Decode one raw record (a Buffer holding the event) with this map's event type. */
  decode(data: Buffer): T {
    if (!this.typeId) return data.toString('hex') as unknown as T;
    let buf = data;
    if (data.length < this.eventSize) {
      buf = Buffer.alloc(this.eventSize);
      data.copy(buf);
    }
    return this.decoder(buf, new DataView(buf.buffer, buf.byteOffset, buf.byteLength), 0);
  }

  /** Consume and deliver everything pending now (synchronously). */
  drain(): void {
    this.consumer?.drain();
    if (this.kind === 'ring') this.pollRingDrops();
  }

  /** Async iteration over events: `for await (const e of tool.maps.events) ...`. */
  [Symbol.asyncIterator](): AsyncIterator<T> {
    const queue: T[] = [];
    let wake: ((r: IteratorResult<T>) => void) | undefined;
    let done = false;
    const it = {
      push: (e: T) => {
        if (wake) { const w = wake; wake = undefined; w({ value: e, done: false }); } else queue.push(e);
      },
      end: () => {
        done = true;
        if (wake) { const w = wake; wake = undefined; w({ value: undefined, done: true }); }
      },
    };
    this.iterators.add(it);
    this.start({});
    return {
      next: () => {
        if (queue.length) return Promise.resolve({ value: queue.shift()!, done: false });
        if (done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((r) => { wake = r; });
      },
      return: () => {
        this.iterators.delete(it);
        done = true;
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  private start(opts: EventMapOptions): void {
    if (this.consumer) return;
    this.ctx.assertOpen(`open event map "${this.name}"`);
    const onBatch = (batch: Buffer, _count: number, _lost: number, used: number) => this.onBatch(batch, used);
    try {
      if (this.kind === 'perf') {
        const pages = pow2(opts.pagesPerCpu ?? this.defaultPages);
        this.consumer = new (native().PerfBuffer)(this.fd, pages, onBatch, { wakeupEvents: opts.wakeupEvents ?? 1 });
      } else {
        this.consumer = new (native().RingBuffer)(this.fd, onBatch);
      }
    } catch (e) {
      throw mapError('open consumer for', this.name, e);
    }
    if (opts.ref === false) this.consumer.unref();
    this.ctx.track(this);
    if (this.kind === 'perf' && (opts.wakeupEvents ?? 1) > 1) {
      this.flushTimer = setInterval(() => this.consumer?.drain(), opts.flushMs ?? 100);
      this.flushTimer.unref();
    }
    if (this.kind === 'perf') {
      // A perf fd's readiness is one-shot (perf_poll() clears it), and libuv adds the fd to
      // its epoll only on the next loop turn: epoll's insert-time readiness check would use
      // up a wakeup for events already pending, and they would sit until the next one.
      // setImmediate runs after that turn's poll phase, i.e. after the fd is registered.
      setImmediate(() => this.consumer?.drain());
    }
  }

  private batchView?: { buf: Buffer; dv: DataView };

  /** Decode `used` bytes of a batch (the native layer reuses one buffer for every batch). */
  private onBatch(batch: Buffer, used = batch.length): void {
    let view = this.batchView;
    if (view?.buf !== batch) view = this.batchView = { buf: batch, dv: new DataView(batch.buffer, batch.byteOffset, batch.byteLength) };
    const dv = view.dv;
    const need = this.eventSize;
    const ring = this.kind === 'ring';
    const cbs = this.callbacks;
    const iters = this.iterators;
    let off = 0;
    while (off + 8 <= used) {
      const size = dv.getUint32(off, true);
      const cpu = dv.getUint32(off + 4, true);
      if (cpu & 0x80000000) {
        const n = Number(dv.getBigUint64(off + 8, true));
        this.lostPerf += n;
        for (const l of this.lostCallbacks) l(n, cpu & 0x7fffffff);
      } else {
        let event: T;
        if (size >= need) {
          event = this.decoder(batch, dv, off + 8);
        } else {
          // A short record (the program sent fewer bytes than sizeof(T)): decode from a
          // zeroed copy so missing fields read as 0 instead of the next record's bytes.
          const s = (this.scratch ??= (() => { const b = Buffer.alloc(need); return { buf: b, dv: new DataView(b.buffer, b.byteOffset, need) }; })());
          s.buf.fill(0);
          batch.copy(s.buf, 0, off + 8, off + 8 + size);
          event = this.decoder(s.buf, s.dv, 0);
        }
        this.received++;
        // A perf sample's raw data is padded so that it and its u32 size fill 8-byte words:
        // up to 7 bytes past sizeof(T) are padding there, not a tail (ring records are exact).
        const extra = size - need;
        const info: EventInfo = need && extra > 0 && (ring || extra >= 8)
          ? { cpu, size, tail: Buffer.from(batch.subarray(off + 8 + need, off + 8 + size)) } : { cpu, size };
        for (let i = 0; i < cbs.length; i++) cbs[i]!(event, info);
        if (iters.size) for (const it of iters) it.push(event);
      }
      off += 8 + round8(size);
    }
    if (this.kind === 'ring') this.pollRingDrops();
  }

  private pollRingDrops(): void {
    if (!this.dropVar) return;
    let total: number;
    try {
      total = Number(this.ctx.readGlobal(this.dropVar) ?? 0);
    } catch {
      return; // closed
    }
    const delta = total - this.lostRingSeen;
    if (delta > 0) {
      this.lostRingSeen = total;
      for (const l of this.lostCallbacks) l(delta, 0);
    }
  }

  /** Stop consuming (pending events are delivered first). Idempotent. */
  close(): void {
    const c = this.consumer;
    if (!c) return;
    if (this.flushTimer) clearInterval(this.flushTimer);
    try {
      c.drain();
      if (this.kind === 'ring') this.pollRingDrops();
    } finally {
      this.consumer = undefined;
      c.close();
      for (const it of this.iterators) it.end();
      this.iterators.clear();
    }
  }
}

function pow2(n: number): number {
  let p = 1;
  while (p < n) p <<= 1;
  return p;
}
