// Smoke test of the profile tool against a Node.js child running a hot JS function.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { isRoot, REPO, ROOT_SKIP, tempDir, until } from '../helpers';

const BIN = path.join(REPO, 'examples/profile/bin/profile.js');
const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 300_000 });

describe('profile', () => {
  test('--help ends with examples; -U with -K is refused', () => {
    expect(run('--help').stdout.trim().split('\n').at(-1)).toBe('  node --perf-basic-prof app.js &  npx tslcc-profile -p $! -U -d 5   # JS function names');
    const r = run('-U', '-K');
    expect([r.status, r.stderr.trim()]).toEqual([1, 'error: -U and -K exclude each other']);
  });

  test.skipIf(!isRoot)('folded stacks of a Node.js process name its hot JS function', async () => {
    const script = path.join(tempDir('prof'), 'hot.js');
    fs.writeFileSync(script, 'function hotLoopProfile(n) { let s = 0; for (let i = 0; i < n; i++) s += Math.sqrt(i) % 7; return s; }\nlet t = 0;\nfor (;;) t += hotLoopProfile(1e5);\n');
    // Without inlining, the hot function's samples land in its own code (not its caller's).
    const child = spawn(process.execPath, ['--perf-basic-prof', '--no-turbo-inlining', script], { stdio: 'ignore', cwd: path.dirname(script) });
    try {
      await until(() => fs.existsSync(`/tmp/perf-${child.pid}.map`) && fs.readFileSync(`/tmp/perf-${child.pid}.map`, 'utf8').includes('hotLoopProfile'), 60_000);
      const r = run('-p', String(child.pid), '-F', '199', '-d', '2', '-f');
      expect(r.stderr.replace(/^profile: WARNING: \d+ samples lost a stack to stack-map collisions or a full map\n/, '')).toBe('');
      expect(r.status).toBe(0);
      const lines = r.stdout.trim().split('\n');
      for (const l of lines) expect(l).toMatch(/^node;\S.* \d+$/);
      const total = lines.reduce((a, l) => a + Number(l.split(' ').pop()), 0);
      expect(total).toBeGreaterThan(100); // ~199 Hz for 2 s on one busy thread
      const hot = lines.filter((l) => /;JS:\*?hotLoopProfile /.test(l)).reduce((a, l) => a + Number(l.split(' ').pop()), 0);
      expect(hot / total).toBeGreaterThan(0.5);
    } finally {
      child.kill();
    }
  });

  if (!isRoot) test('folded stacks of a Node.js process', (ctx) => ctx.skip(ROOT_SKIP));
});
