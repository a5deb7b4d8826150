import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BpfObject } from '@tslcc/native';

export const isRoot = process.getuid?.() === 0;
export const ROOT_SKIP = 'kernel tests need root (CAP_BPF, CAP_PERFMON); run npm test as root';
export const REPO = path.resolve(__dirname, '..');

/**
 * BPF C: `mine()` is true in the children of the process whose tgid is in `parent_tgid`
 * (set it to process.pid), so only a test's own workload counts, never other processes'.
 */
export const CHILDREN_FILTER = `
  const volatile u32 parent_tgid = 0;
  static __always_inline bool mine(void) {
    struct task_struct *task = (void *)bpf_get_current_task();
    return BPF_CORE_READ(task, real_parent, tgid) == parent_tgid;
  }`;

/** A cache dir private to this test file, so tests never see another run's objects. */
export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `tslcc-${prefix}-`));
}

let probe: string | undefined;
/** Build test/fixtures/probe.c once; returns the binary path (its comm is "tslcc-probe"). */
export function probeBinary(): string {
  if (probe) return probe;
  const dir = tempDir('probe');
  probe = path.join(dir, 'tslcc-probe');
  execFileSync('gcc', ['-O1', '-o', probe, path.join(__dirname, 'fixtures', 'probe.c')]);
  return probe;
}

let usdtApp: string | undefined;
/**
 * Build test/fixtures/usdt/app.c once (gcc -O1, <sys/sdt.h> from systemtap-sdt-dev); returns
 * the binary path. `app N` waits for a byte on stdin, then fires tslcc:tick N times and
 * tslcc:done once; `app N go` does not wait.
 */
export function usdtBinary(): string {
  if (usdtApp) return usdtApp;
  const dir = tempDir('usdt');
  usdtApp = path.join(dir, 'tslcc-usdt');
  execFileSync('gcc', ['-O1', '-o', usdtApp, path.join(__dirname, 'fixtures', 'usdt', 'app.c')]);
  return usdtApp;
}

/** Run the probe synchronously (the event loop is blocked meanwhile); returns its pid. */
export function runProbe(...args: string[]): number {
  return runProbeEnv({}, ...args);
}

export function runProbeEnv(env: Record<string, string>, ...args: string[]): number {
  const r = spawnSync(probeBinary(), args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`probe ${args.join(' ')} exited ${r.status}`);
  return r.pid!;
}

/** Open fds of this process. */
export function openFds(): string[] {
  return fs.readdirSync('/proc/self/fd').sort((a, b) => Number(a) - Number(b));
}

/**
 * This process's BPF objects by their fds (bpf-prog, bpf-map, bpf_link) and perf events:
 * what a test created and must release, never the host's other BPF users.
 */
export function bpfFds(): { progs: number; maps: number; links: number; perf: number; all: string[] } {
  const out = { progs: 0, maps: 0, links: 0, perf: 0, all: [] as string[] };
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    let l: string;
    try { l = fs.readlinkSync(`/proc/self/fd/${fd}`); } catch { continue; }
    if (l === 'anon_inode:bpf-prog') out.progs++;
    else if (l === 'anon_inode:bpf-map') out.maps++;
    else if (l === 'anon_inode:bpf_link' || l === 'anon_inode:bpf-link') out.links++;
    else if (l === 'anon_inode:[perf_event]') out.perf++;
    else continue;
    out.all.push(`${fd}:${l}`);
  }
  out.all.sort();
  return out;
}

/** Let the event loop run (uv poll callbacks deliver events). */
export function tick(ms = 50): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll until cond() or timeout. */
export async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await tick(10);
}

/** A u32 global's initial value in an object's .rodata, found through its BTF (map name and offset). */
export function rodataU32(elf: Buffer, varName: string): number {
  const obj = new BpfObject(elf, 'x', {});
  try {
    const map = obj.maps().find((m) => m.name.endsWith('.rodata'));
    if (!map) throw new Error('no .rodata map');
    const types = obj.btf()!;
    const sec = types.find((t) => t?.kind === 'datasec' && t.name === '.rodata');
    const vi = sec?.vars?.find((v) => types[v.type]?.name === varName);
    if (!vi) throw new Error(`no ${varName} in .rodata`);
    return obj.initialValue(map.name)!.readUInt32LE(vi.offset);
  } finally {
    obj.close();
  }
}
