// listUsdtProbes against a gcc-built <sys/sdt.h> binary: exact providers, names, argument
// strings, and addresses checked against readelf's own reading of the notes. No root needed.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, test } from 'vitest';
import { listUsdtProbes } from '@tslcc/sdk';
import { tempDir, usdtBinary } from '../helpers';

/** readelf -n's view of the stapsdt notes: the independent reference for addresses and args. */
function readelfProbes(bin: string): { provider: string; name: string; address: number; args: string }[] {
  const out = execFileSync('readelf', ['-n', bin], { encoding: 'utf8' });
  const re = /Provider: (\S+)\s+Name: (\S+)\s+Location: (0x[0-9a-f]+), Base: (0x[0-9a-f]+), Semaphore: (0x[0-9a-f]+)\s+Arguments: ([^\n]*)/g;
  return [...out.matchAll(re)].map((m) => ({ provider: m[1]!, name: m[2]!, address: Number(m[3]), args: m[6]!.trim() }));
}

describe('listUsdtProbes', () => {
  test('the fixture: tslcc:tick (i, 0x1234567890) and tslcc:done (n), exact', () => {
    const bin = usdtBinary();
    const probes = listUsdtProbes(bin);
    expect(probes.map((p) => [p.provider, p.name, p.semaphore])).toEqual([['tslcc', 'tick', 0], ['tslcc', 'done', 0]]);
    // The constant is encoded in the note itself; i and n live in whatever register gcc chose.
    expect(probes[0]!.args).toMatch(/^-8@%[a-z0-9]+ -8@\$78187493520$/);
    expect(probes[1]!.args).toMatch(/^-8@%[a-z0-9]+$/);
    expect(probes.map(({ provider, name, address, args }) => ({ provider, name, address, args }))).toEqual(readelfProbes(bin));
    expect(probes[0]!.address).toBeGreaterThan(0);
  });

  test('a binary without probes gives []; a missing file and a non-ELF file are named', () => {
    const dir = tempDir('usdt-unit');
    const plain = path.join(dir, 'plain');
    fs.writeFileSync(path.join(dir, 'plain.c'), 'int main(void) { return 0; }\n');
    execFileSync('gcc', ['-o', plain, path.join(dir, 'plain.c')]);
    expect(listUsdtProbes(plain)).toEqual([]);
    expect(() => listUsdtProbes(path.join(dir, 'nope'))).toThrow(`list usdt probes of "${path.join(dir, 'nope')}": no such file`);
    expect(() => listUsdtProbes(path.join(dir, 'plain.c'))).toThrow(`list usdt probes of "${path.join(dir, 'plain.c')}": not an ELF file`);
  });
});
