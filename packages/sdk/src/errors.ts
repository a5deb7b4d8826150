/**
 * Every error tslcc throws is an {@link LbcError} with a stable `code`; match on the code,
 * not the message. Messages are a lowercase chain "what we were doing: why", naming the
 * program, map, symbol or path.
 */
export type LbcErrorCode =
  | 'LBC_COMPILE'
  | 'LBC_VERIFIER'
  | 'LBC_UNSUPPORTED'
  | 'LBC_PERMISSION'
  | 'LBC_NOT_FOUND'
  | 'LBC_INVALID_ARGUMENT'
  | 'LBC_LOAD'
  | 'LBC_ATTACH'
  | 'LBC_MAP'
  | 'LBC_CLOSED'
  | 'LBC_REMOTE';

export class LbcError extends Error {
  readonly code: LbcErrorCode;
  /** errno of the failing call, when there was one. */
  readonly errno?: number;
  /** libbpf's own log lines around the failure. */
  readonly libbpfLog?: string;
  constructor(code: LbcErrorCode, message: string, opts: { cause?: unknown; errno?: number; libbpfLog?: string } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    if (opts.errno !== undefined) this.errno = opts.errno;
    if (opts.libbpfLog) this.libbpfLog = opts.libbpfLog;
  }
}

/** One compiler diagnostic, at the user's own file, line and column. */
export interface Diagnostic {
  file: string;
  line: number;
  column: number;
  severity: 'error' | 'warning' | 'note' | 'fatal error';
  message: string;
}

/** The BPF C did not compile. `diagnostics` point into the user's source; `log` is clang's full output. */
export class CompileError extends LbcError {
  readonly diagnostics: Diagnostic[];
  readonly log: string;
  constructor(message: string, diagnostics: Diagnostic[], log: string) {
    super('LBC_COMPILE', message);
    this.diagnostics = diagnostics;
    this.log = log;
  }
}

/** The kernel verifier rejected a program. The message is a summary; `log` is the whole verifier log. */
export class VerifierError extends LbcError {
  readonly program: string;
  readonly log: string;
  constructor(message: string, program: string, log: string, errno?: number) {
    super('LBC_VERIFIER', message, { errno });
    this.program = program;
    this.log = log;
  }
}

/** The kernel lacks a feature. `feature` names it (a CONFIG_ option or kernel version); `alternatives` what to use instead. */
export class UnsupportedError extends LbcError {
  readonly feature: string;
  readonly alternatives: string[];
  constructor(message: string, feature: string, alternatives: string[] = [], opts: { errno?: number; libbpfLog?: string } = {}) {
    super('LBC_UNSUPPORTED', message, opts);
    this.feature = feature;
    this.alternatives = alternatives;
  }
}

/** The process lacks a capability. `capability` names the missing one(s). */
export class PermissionError extends LbcError {
  readonly capability: string;
  constructor(message: string, capability: string, opts: { errno?: number; libbpfLog?: string } = {}) {
    super('LBC_PERMISSION', message, opts);
    this.capability = capability;
  }
}

/** A kernel function, tracepoint, map, program or file does not exist. */
export class NotFoundError extends LbcError {
  constructor(message: string, opts: { errno?: number; libbpfLog?: string } = {}) {
    super('LBC_NOT_FOUND', message, opts);
  }
}

/** An error from the native layer: .errno, .op and .libbpfLog. */
export interface NativeFailure {
  message: string;
  errno?: number;
  op?: string;
  libbpfLog?: string;
}

export function isNativeFailure(e: unknown): e is NativeFailure {
  return e instanceof Error && typeof (e as { errno?: unknown }).errno === 'number';
}

/** Suggestion for "did you mean" in validation messages. */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestD) { bestD = d; best = c; }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

export function didYouMean(word: string, candidates: Iterable<string>): string {
  const c = closest(word, candidates);
  return c ? `; did you mean "${c}"?` : '';
}
