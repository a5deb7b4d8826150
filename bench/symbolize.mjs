// Symbolization: kernel lookups against a plain sorted-array binary search, and cold/warm
// symbolization of 100k addresses in /usr/bin/node against llvm-symbolizer and addr2line,
// all in this run. usage (root, for kallsyms addresses): node bench/symbolize.mjs [N=100000]
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { KernelSymbols, parseMaps, Symbolizer } from '../packages/sdk/dist/index.js';

const N = Number(process.argv[2] ?? 100000);
const ms = (t) => `${t.toFixed(1)} ms`;
const mb = (b) => `${(b / 1048576).toFixed(1)} MiB`;
let seed = 42;
const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);

// ---- kernel: KernelSymbols vs a plain sorted array of { addr: bigint, name } ----
const ks = new KernelSymbols();
ks.load();
const rows = [];
for (const line of fs.readFileSync('/proc/kallsyms', 'utf8').split('\n')) {
  const [a, t, name] = line.split(/\s+/);
  if (t === 't' || t === 'T' || t === 'w' || t === 'W') rows.push({ addr: BigInt(`0x${a}`), name });
}
rows.sort((x, y) => (x.addr < y.addr ? -1 : x.addr > y.addr ? 1 : 0));
function plainLookup(addr) {
  let lo = 0, hi = rows.length - 1, f = -1;
  while (lo <= hi) { const mid = (lo + hi) >>> 1; if (rows[mid].addr <= addr) { f = mid; lo = mid + 1; } else hi = mid - 1; }
  return f < 0 ? undefined : { symbol: rows[f].name, offset: Number(addr - rows[f].addr) };
}
const core = rows.filter((r) => r.name === '_stext' || r.name === '_etext').map((r) => r.addr);
const lo = core[0] ?? rows[0].addr;
const span = Number((core[1] ?? rows[rows.length - 1].addr) - lo);
const kaddrs = Array.from({ length: 1_000_000 }, () => lo + BigInt(Math.floor(rand() * span)));
let sink = 0;
for (const a of kaddrs.slice(0, 50000)) { sink += ks.lookup(a).offset ?? 0; sink += plainLookup(a)?.offset ?? 0; } // warm up both
let t0 = performance.now();
for (const a of kaddrs) sink += ks.lookup(a).offset ?? 0;
const tOurs = performance.now() - t0;
t0 = performance.now();
for (const a of kaddrs) sink += plainLookup(a)?.offset ?? 0;
const tPlain = performance.now() - t0;
let agree = 0;
for (const a of kaddrs.slice(0, 10000)) if (ks.lookup(a).symbol === plainLookup(a)?.symbol) agree++;
console.log(`kernel: ${ks.size} symbols; tslcc ${(1e6 / tOurs * 1000).toFixed(0)} lookups/s, plain sorted array ${(1e6 / tPlain * 1000).toFixed(0)} lookups/s, ratio ${(tPlain / tOurs).toFixed(2)}x (goal >= 0.5x); same symbol on ${agree / 100}% (the plain array keeps __pfx_ padding symbols)`);

// ---- user: 100k addresses in /usr/bin/node (this process), cold then warm ----
const node = fs.realpathSync(process.execPath);
const text = parseMaps(fs.readFileSync('/proc/self/maps', 'utf8')).filter((m) => m.path === node && m.perms.includes('x'))
  .sort((a, b) => (b.end - b.start) - (a.end - a.start))[0];
const uaddrs = Array.from({ length: N }, () => BigInt(text.start + Math.floor(rand() * (text.end - text.start))));
global.gc?.();
const rss0 = process.memoryUsage().rss;
const sym = new Symbolizer();
// The longest time the event loop could not run while the symbol table loaded cold.
let last = performance.now();
let stall = 0;
const ticker = setInterval(() => { const now = performance.now(); stall = Math.max(stall, now - last); last = now; }, 1);
await new Promise((r) => setTimeout(r, 20));
stall = 0;
last = performance.now();
t0 = performance.now();
const warmup = await sym.user(process.pid, uaddrs.slice(0, 1), { returnAddresses: false }); // loads /usr/bin/node's symbols
const tLoad = performance.now() - t0;
await new Promise((r) => setTimeout(r, 5));
clearInterval(ticker);
const loadStall = stall;
const cold = await sym.user(process.pid, uaddrs, { returnAddresses: false });
const tCold = performance.now() - t0;
if (!warmup[0]) throw new Error('no frame');
const rss1 = process.memoryUsage().rss;
t0 = performance.now();
await sym.user(process.pid, uaddrs, { returnAddresses: false });
const tWarm = performance.now() - t0;
const named = cold.filter((f) => f.symbol).length;
console.log(`user: loading ${node}'s symbols took ${ms(tLoad)}; longest event-loop stall meanwhile ${ms(loadStall)}`);
console.log(`user: ${N} addresses in ${node} (${mb(fs.statSync(node).size)}): cold ${ms(tCold)}, warm ${ms(tWarm)} (${(N / tWarm * 1000).toFixed(0)} addresses/s), ${named} named, rss +${mb(rss1 - rss0)}, symbol cache ${mb(sym.cacheBytes)}`);

// ---- references on the same addresses: node is non-PIE, so runtime = link-time addresses ----
const input = uaddrs.map((a) => `0x${a.toString(16)}`).join('\n');
function ref(cmd, args) {
  t0 = performance.now();
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', maxBuffer: 1 << 30, timeout: 600_000 });
  const t = performance.now() - t0;
  if (r.error || r.status !== 0) return { t, out: [], err: String(r.error ?? r.stderr).slice(0, 200) };
  return { t, out: r.stdout.split('\n') };
}
const refs = [
  ['llvm-symbolizer', 'llvm-symbolizer', ['--obj', node, '--functions=linkage', '--no-inlines', '--demangle', '--output-style=GNU']],
  ['addr2line', 'addr2line', ['-f', '-C', '-e', node]],
];
for (const [label, cmd, args] of refs) {
  const exists = spawnSync('which', [cmd]).status === 0;
  if (!exists) { console.log(`${label}: not installed`); continue; }
  const r = ref(cmd, args);
  if (r.err) { console.log(`${label}: failed: ${r.err}`); continue; }
  // GNU style: function name line, then file:line line, per address; both demangle (as tslcc does).
  const names = r.out.filter((_, i) => i % 2 === 0).slice(0, N);
  let same = 0;
  for (let i = 0; i < N; i++) if (cold[i].symbol && names[i] === cold[i].symbol) same++;
  console.log(`${label}: ${ms(r.t)} for ${N} addresses, ratio to tslcc cold ${(r.t / tCold).toFixed(1)}x, warm ${(r.t / tWarm).toFixed(1)}x; same function name for ${(100 * same / Math.max(1, named)).toFixed(1)}% of tslcc's named addresses`);
}
if (sink === -1) console.log(sink);
