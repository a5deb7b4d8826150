/**
 * Child process of the server: kernel BTF → vmlinux.h through libbpf's btf_dump. Separate so
 * that an untrusted, malformed BTF file can fail this process and never the server.
 * usage: node btf2c.js <btf file> <out file>
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';

const [btf, out] = process.argv.slice(2);
if (!btf || !out) {
  process.stderr.write('usage: btf2c <btf> <out>\n');
  process.exit(2);
}
try {
  const native = createRequire(import.meta.url)('@tslcc/native') as { dumpBtfAsC(p: string | null): string };
  fs.writeFileSync(out, native.dumpBtfAsC(btf));
} catch (e) {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exit(1);
}
