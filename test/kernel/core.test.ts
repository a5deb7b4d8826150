// CO-RE, really: one object compiled once on the host loads on every kernel of the VM suite
// (TSLCC_CORE_OBJECT, built by scripts/vmtest.sh) and on the host, and decodes the same events.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { compile, LbcBase } from '@tslcc/sdk';
import { isRoot, REPO, runProbe, tempDir } from '../helpers';

describe.skipIf(!isRoot)('CO-RE', () => {
  test('the object built on the host loads here and decodes task_struct fields read through relocations', async () => {
    const shipped = process.env.TSLCC_CORE_OBJECT;
    const file = path.join(REPO, 'test/fixtures/core.bpf.c');
    const elf = shipped ? fs.readFileSync(shipped)
      : (await compile(fs.readFileSync(file, 'utf8'), { name: 'core', sourcePath: file, cacheDir: tempDir('core'), onWarning: () => {} })).elf;
    if (shipped && process.env.TSLCC_CORE_EXPECT) {
      expect(createHash('sha256').update(elf).digest('hex')).toBe(process.env.TSLCC_CORE_EXPECT);
    }
    const t = await new LbcBase('core', { object: elf, globals: { parent_tgid: process.pid } }).start();
    try {
      const got: unknown[] = [];
      t.maps.core_evs.on((e: unknown) => got.push(e));
      const pid = runProbe('lseek', '3', '1234567', '-1');
      t.maps.core_evs.drain();
      expect(got).toEqual([3n, 1234567n, -1n].map((off) => ({ pid, ppid: process.pid, comm: 'tslcc-probe', off })));
      expect(t.compiled).toBeUndefined(); // loaded as given: nothing was compiled for this kernel
    } finally {
      t.close();
    }
  });
});
