// Compile server on loopback, measured against local clang in the same run:
//   cached round trip (p50, p99), cold compile remote vs local (goal <= 1.2x),
//   compiles/s under concurrency, and what the precompiled lbc.h saves.
// usage: node bench/server.mjs
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile, remoteCompile } from '../packages/sdk/dist/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tslcc-bench-srv-'));
const SRC = `
struct ev { u32 pid; char comm[16]; };
LBC_RINGBUF(events, struct ev, 1 << 16);
LBC_HASH(counts, u32, u64, 1024);
SEC("tp/syscalls/sys_enter_getppid") int on_getppid(void *ctx) {
  struct ev e = { .pid = bpf_get_current_pid_tgid() >> 32 };
  bpf_get_current_comm(e.comm, sizeof(e.comm));
  lbc_ringbuf_output(events, &e, sizeof(e));
  u64 one = 1, *c = bpf_map_lookup_elem(&counts, &e.pid);
  if (c) __sync_fetch_and_add(c, 1); else bpf_map_update_elem(&counts, &e.pid, &one, BPF_NOEXIST);
  return 0;
}`;
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const ms = (x) => `${x.toFixed(1)} ms`;

const srv = spawn(process.execPath, [path.join(here, '../packages/cli/bin/tslcc.js'), 'serve', '--port', '0', '--data-dir', path.join(tmp, 'srv')], { stdio: ['ignore', 'ignore', 'pipe'] });
const url = await new Promise((resolve, reject) => {
  let err = '';
  srv.stderr.setEncoding('utf8').on('data', (d) => { err += d; const m = /listening on (\S+)/.exec(err); if (m) resolve(m[1]); });
  srv.on('exit', () => reject(new Error(`server exited: ${err}`)));
});
try {
  const req = (tag) => ({ name: 'bench', source: `${SRC}\n// ${tag}`, flags: [], arch: 'x86' });
  // Warm: host BTF headers and the PCH on the server; the PCH locally.
  await remoteCompile(req('warm'), { server: url });
  await compile(`${SRC}\n// warm`, { name: 'bench', cacheDir: path.join(tmp, 'local') });

  // 1. cached round trip (the server answers from its object cache)
  const rt = [];
  for (let i = 0; i < 300; i++) { const t0 = performance.now(); await remoteCompile(req('warm'), { server: url }); rt.push(performance.now() - t0); }
  console.log(`cached compile round trip over loopback: p50 ${ms(pct(rt, 0.5))}, p99 ${ms(pct(rt, 0.99))} (300 requests)`);

  // 2. cold compiles: remote vs local on the same new sources
  const remote = [], local = [], localNoPch = [];
  for (let i = 0; i < 10; i++) {
    let t0 = performance.now(); await remoteCompile(req(`cold-${i}`), { server: url }); remote.push(performance.now() - t0);
    t0 = performance.now(); await compile(`${SRC}\n// cold-${i}`, { name: 'bench', cacheDir: path.join(tmp, 'local'), noCache: true }); local.push(performance.now() - t0);
    t0 = performance.now(); await compile(`${SRC}\n// cold-${i}`, { name: 'bench', cacheDir: path.join(tmp, 'local'), noCache: true, pch: false }); localNoPch.push(performance.now() - t0);
  }
  const [r50, l50, n50] = [pct(remote, 0.5), pct(local, 0.5), pct(localNoPch, 0.5)];
  console.log(`cold compile p50: remote ${ms(r50)}, local clang ${ms(l50)}: ratio ${(r50 / l50).toFixed(2)}x (goal <= 1.2x)`);
  console.log(`precompiled lbc.h: local cold compile p50 ${ms(n50)} without, ${ms(l50)} with: ${(n50 / l50).toFixed(1)}x faster`);

  // 3. throughput: 32 distinct compiles at once
  let t0 = performance.now();
  await Promise.all(Array.from({ length: 32 }, (_, i) => remoteCompile(req(`par-${i}`), { server: url })));
  let wall = (performance.now() - t0) / 1000;
  console.log(`throughput: 32 distinct concurrent compiles in ${wall.toFixed(2)} s = ${(32 / wall).toFixed(1)} compiles/s on ${os.cpus().length} CPUs`);
  t0 = performance.now();
  await Promise.all(Array.from({ length: 32 }, () => remoteCompile(req('same'), { server: url })));
  wall = (performance.now() - t0) / 1000;
  console.log(`dedupe: 32 identical concurrent compiles in ${wall.toFixed(2)} s (compiled once)`);
} finally {
  srv.kill();
  fs.rmSync(tmp, { recursive: true, force: true });
}
