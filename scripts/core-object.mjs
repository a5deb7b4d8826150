// Compile test/fixtures/core.bpf.c once on this host into OUT, for test/kernel/core.test.ts
// to load unchanged in every VM kernel. Prints the object's sha256.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { compile } = await import(path.join(repo, 'packages/sdk/dist/index.js'));
const out = process.argv[2];
if (!out) { console.error('usage: node scripts/core-object.mjs OUT.bpf.o'); process.exit(2); }
const file = path.join(repo, 'test/fixtures/core.bpf.c');
const { elf } = await compile(fs.readFileSync(file, 'utf8'), { name: 'core', sourcePath: file, onWarning: () => {} });
fs.writeFileSync(out, elf);
console.log(createHash('sha256').update(elf).digest('hex'));
