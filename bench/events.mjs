// Event delivery: tslcc vs. the C libbpf reference consumer (../shared/bench), same
// workload (one 32-byte event per getppid() of a load generator), same machine, same run.
// Prints consumer CPU per event, losses, and the ratio tslcc/C for ring and perf buffers.
// usage (root): node bench/events.mjs [N=1000000]
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const N = process.argv[2] ?? '1000000';
const shared = path.resolve(here, '../../shared/bench');
const ref = path.join(here, '.ref');

if (!fs.existsSync(path.join(ref, 'consume'))) {
  fs.mkdirSync(ref, { recursive: true });
  for (const f of fs.readdirSync(shared)) fs.copyFileSync(path.join(shared, f), path.join(ref, f));
  execFileSync('make', ['-s'], { cwd: ref, stdio: 'inherit' });
}

const parse = (line) => Object.fromEntries([...line.matchAll(/(\w+)=([\w.]+)/g)].map((m) => [m[1], m[2]]));
const runC = (mode) => execFileSync('./consume', [mode, N], { cwd: ref, encoding: 'utf8' }).trim().split('\n').pop();
const runSdk = (mode, int64, wakeup = '1') => execFileSync(process.execPath, [path.join(here, 'sdk-consume.mjs'), mode, N, path.join(ref, 'load'), int64, wakeup], { encoding: 'utf8' }).trim();

// A cached start is what a user sees on the second run; warm the cache first.
runSdk('ring', 'bigint');
const rows = [];
for (const mode of ['ring', 'perf']) {
  const c = runC(mode);
  console.log(c);
  const cR = parse(c);
  for (const int64 of ['bigint', 'number']) {
    const s = runSdk(mode, int64);
    console.log(s);
    const sR = parse(s);
    rows.push({ mode, int64, c: cR, s: sR });
  }
}
// Not like-for-like with C (which wakes per event): what batching wakeups buys a tool.
const batched = runSdk('perf', 'bigint', '64');
console.log(batched);
console.log('\nmode  int64   C ns/ev  tslcc ns/ev  ratio  C lost  tslcc lost  tslcc events/s  cached start');
for (const r of rows) {
  const ratio = Number(r.s.ns_per_event) / Number(r.c.ns_per_event);
  console.log(`${r.mode.padEnd(5)} ${r.int64.padEnd(7)} ${r.c.ns_per_event.padStart(8)} ${r.s.ns_per_event.padStart(12)} ${ratio.toFixed(2).padStart(6)}x ${r.c.lost.padStart(6)} ${r.s.lost.padStart(11)} ${r.s.events_per_s.padStart(15)} ${r.s.start_ms.padStart(10)} ms`);
}
const b = parse(batched);
console.log(`perf with wakeupEvents=64: ${b.ns_per_event} ns/event, lost ${b.lost} (C reference wakes per event: ${rows.find((r) => r.mode === 'perf').c.ns_per_event} ns/event)`);
