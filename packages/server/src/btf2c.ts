/**
 * Child process of the server, run in its sandbox: kernel BTF → vmlinux.h through libbpf's
 * btf_dump. Separate so that an untrusted BTF file can fail this process and never the server.
 * usage: node btf2c.js <@tslcc/native entry> <btf file> <out file>
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';

const [nativeEntry, btf, out] = process.argv.slice(2);
if (!nativeEntry || !btf || !out) {
  process.stderr.write('usage: btf2c <native entry> <btf> <out>\n');
  process.exit(2);
}
try {
  const native = createRequire(import.meta.url)(nativeEntry) as { dumpBtfAsC(p: string | null): string };
  fs.writeFileSync(out, native.dumpBtfAsC(btf));
} catch (e) {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exit(1);
}
