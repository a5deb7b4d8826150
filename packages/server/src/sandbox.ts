/**
 * Running the compiler on untrusted source: no shell, resource limits (prlimit: address
 * space, CPU seconds, file size, open files), and a filesystem view (bubblewrap) that holds
 * only the toolchain, the BPF headers, lbc.h, one vmlinux.h and a scratch directory. No
 * network, no other processes, no capabilities, no host files: an #include of "/etc/shadow",
 * a "../" walk, `.incbin` in inline asm or __has_include probing find nothing to read.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';

export interface SandboxLimits {
  /** Wall-clock limit, ms. */
  timeoutMs: number;
  /** Address-space limit, bytes. */
  memoryBytes: number;
  /** Largest file the compiler may write (the object), bytes. */
  maxOutputBytes: number;
}

export interface SandboxPaths {
  /** Host directory mounted read-write at /lbc/work (the source in, the object out). */
  scratch: string;
  /** Host directory of lbc.h, mounted at /lbc/include. */
  includeDir?: string;
  /** Host directory of vmlinux.h, mounted at /lbc/vmlinux. */
  vmlinuxDir?: string;
  /** More read-only mounts: [host path, path inside]. */
  binds?: Array<[string, string]>;
  /** Host directory of a precompiled lbc.h, mounted read-only at /lbc/pch. */
  pchDir?: string;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

const MAX_CAPTURE = 1 << 20;

export function which(cmd: string): string | undefined {
  for (const d of ['/usr/bin', '/bin', '/usr/sbin', '/sbin', '/usr/local/bin']) {
    if (fs.existsSync(`${d}/${cmd}`)) return `${d}/${cmd}`;
  }
  return undefined;
}

/** Where the sandbox mounts things; the compiler sees only these paths. */
export const INSIDE = { work: '/lbc/work', include: '/lbc/include', vmlinux: '/lbc/vmlinux', pch: '/lbc/pch' } as const;

export class Sandbox {
  private readonly bwrap?: string;
  private readonly prlimit?: string;
  readonly kind: 'bwrap' | 'none';

  /** kind 'none' runs without isolation: for development only, never exposed. */
  constructor(kind: 'bwrap' | 'none' = 'bwrap') {
    this.kind = kind;
    this.prlimit = which('prlimit');
    if (kind === 'bwrap') {
      this.bwrap = which('bwrap');
      if (!this.bwrap) throw new Error('sandbox: bubblewrap (bwrap) not found; install it (apt-get install bubblewrap) or run with --unsafe-no-sandbox on a trusted network only');
    }
    if (!this.prlimit) throw new Error('sandbox: prlimit not found; install util-linux');
  }

  /** Run `exe` (a real path inside /usr/lib, e.g. clang's) with args that use INSIDE paths. */
  run(exe: string, args: string[], paths: SandboxPaths, limits: SandboxLimits): Promise<RunResult> {
    for (const [k, v] of Object.entries(limits)) {
      // A negative or fractional limit would reach prlimit as "no limit": refuse it here.
      if (!Number.isSafeInteger(v) || v <= 0) throw new Error(`sandbox: limit ${k} must be a positive integer, got ${v}`);
    }
    const rl = [
      `--as=${limits.memoryBytes}`, `--fsize=${limits.maxOutputBytes}`,
      `--cpu=${Math.ceil(limits.timeoutMs / 1000) + 1}`, '--nofile=256', '--core=0',
    ];
    let cmd: string;
    let argv: string[];
    if (this.kind === 'bwrap') {
      // bwrap applies these in order: the fresh /tmp, /proc and /dev first, so that a bind
      // whose path lies under /tmp (a checkout in /tmp, say) is not hidden by them.
      const binds = [
        '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp',
        '--ro-bind', '/usr/lib', '/usr/lib',
        '--ro-bind-try', '/usr/lib64', '/usr/lib64',
        '--symlink', 'usr/lib', '/lib',
        ...(fs.existsSync('/usr/lib64') ? ['--symlink', 'usr/lib64', '/lib64'] : []),
        '--ro-bind', '/usr/include/bpf', '/usr/include/bpf',
        // <bpf/usdt.bpf.h> includes <linux/errno.h> (→ asm-generic/errno.h): public UAPI headers.
        '--ro-bind-try', '/usr/include/linux', '/usr/include/linux',
        '--ro-bind-try', '/usr/include/asm-generic', '/usr/include/asm-generic',
        // The multiarch directories (asm/, bits/, gnu/): public package headers, searched last.
        '--ro-bind-try', '/usr/include/x86_64-linux-gnu', '/usr/include/x86_64-linux-gnu',
        '--ro-bind-try', '/usr/include/aarch64-linux-gnu', '/usr/include/aarch64-linux-gnu',
        ...(paths.includeDir ? ['--ro-bind', paths.includeDir, INSIDE.include] : []),
        ...(paths.vmlinuxDir ? ['--ro-bind', paths.vmlinuxDir, INSIDE.vmlinux] : []),
        ...(paths.pchDir ? ['--ro-bind', paths.pchDir, INSIDE.pch] : []),
        ...(paths.binds ?? []).flatMap(([host, inside]) => ['--ro-bind', host, inside]),
        '--bind', paths.scratch, INSIDE.work,
        '--chdir', INSIDE.work,
        '--unshare-all', '--die-with-parent', '--new-session', '--cap-drop', 'ALL',
        '--clearenv', '--setenv', 'PATH', '/usr/bin', '--setenv', 'HOME', INSIDE.work,
      ];
      cmd = this.prlimit!;
      argv = [...rl, '--', this.bwrap!, ...binds, '--', exe, ...args];
    } else {
      cmd = this.prlimit!;
      argv = [...rl, '--', exe, ...args];
    }
    return new Promise((resolve) => {
      const child = spawn(cmd, argv, {
        cwd: this.kind === 'none' ? paths.scratch : '/',
        stdio: ['ignore', 'pipe', 'pipe'],
        env: this.kind === 'none' ? { PATH: '/usr/bin' } : {},
        timeout: limits.timeoutMs,
        killSignal: 'SIGKILL',
      });
      let stdout = '';
      let stderr = '';
      let timedOut = false;
      const cap = (s: string, d: string) => (s.length < MAX_CAPTURE ? s + d.slice(0, MAX_CAPTURE - s.length) : s);
      child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout = cap(stdout, d); });
      child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr = cap(stderr, d); });
      const t = setTimeout(() => { timedOut = true; }, limits.timeoutMs);
      child.on('error', (e) => { clearTimeout(t); resolve({ code: null, signal: null, stdout, stderr: `${stderr}${e.message}`, timedOut }); });
      child.on('close', (code, signal) => { clearTimeout(t); resolve({ code, signal, stdout, stderr, timedOut: timedOut || signal === 'SIGKILL' }); });
    });
  }
}

/** Flags a client may pass: defines, undefines, warnings, optimisation/debug level, BPF cpu, C standard. */
const ALLOWED_FLAG = /^-(?:D[A-Za-z_]\w*(?:=[^\s]*)?|U[A-Za-z_]\w*|W(?:no-)?[a-z][a-z0-9-]*(?:=[a-z0-9-]+)?|w|O[0-3s]?|g[0-3]?|mcpu=(?:v[1-4]|probe|generic)|std=(?:gnu|c)(?:89|99|11|17|2x)|f(?:no-)?(?:unroll-loops|strict-aliasing))$/;

/** The first flag that is not allowed, or undefined. */
export function badFlag(flags: string[]): string | undefined {
  return flags.find((f) => typeof f !== 'string' || !ALLOWED_FLAG.test(f));
}
