/** The `tslcc` command. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import chalk from 'chalk';
import { Command } from 'commander';
import { CompileError, compile, describeObject, generateTypes, LbcError } from '@tslcc/sdk';
import { startServer } from '@tslcc/server';
import { doctor } from './doctor.js';

const program = new Command('tslcc').description('tslcc: eBPF tracing with LBC_* macros, from Node.js');

program
  .command('compile')
  .description('compile a .bpf.c file (LBC_* macros, lbc.h implied) to a CO-RE object')
  .argument('<file>', 'BPF C source')
  .option('-o, --output <file>', 'write the object here (default: <name>.bpf.o beside the source)')
  .option('-f, --flags <flags>', 'extra clang flags, e.g. "-DLBC_DEBUG"')
  .option('-I, --include <dir>', 'add an include directory (repeatable; relative to the current directory); the source\'s own directory always is one', (d: string, all: string[]) => [...all, d], [] as string[])
  .option('--arch <arch>', 'target arch (x86_64, aarch64, ...); default: this host')
  .option('--no-cache', 'compile even if the cache has the object')
  .option('-s, --server <url>', 'compile on this server (default: $TSLCC_SERVER when no local clang)')
  .option('--protocol <p>', 'server protocol: tslcc (default) or pylcc')
  .option('-i, --inspect', 'print the programs, maps and globals of the object')
  .option('--json', 'print the result as JSON')
  .option('--types [file]', 'write TypeScript types of the maps, events and globals from BTF (default: <name>.types.ts beside the object)')
  .option('--int64 <mode>', 'for --types: how 64-bit integers decode, bigint (default) or number; match LbcBase\'s int64', 'bigint')
  .addHelpText('after', '\nExamples:\n  tslcc compile opensnoop.bpf.c\n  tslcc compile tool.bpf.c -I include -I ../common\n  tslcc compile tool.bpf.c -o /tmp/tool.bpf.o --inspect\n  tslcc compile opensnoop.bpf.c --types          # also writes opensnoop.types.ts\n')
  .action(async (file: string, o: { output?: string; flags?: string; include: string[]; arch?: string; cache: boolean; inspect?: boolean; json?: boolean; server?: string; protocol?: 'tslcc' | 'pylcc'; types?: string | boolean; int64: string }) => {
    if (o.int64 !== 'bigint' && o.int64 !== 'number') throw new LbcError('LBC_INVALID_ARGUMENT', `compile: --int64 must be bigint or number, got "${o.int64}"`);
    const source = fs.readFileSync(file, 'utf8');
    const name = path.basename(file).replace(/\.bpf\.c$|\.c$/, '');
    const out = o.output ?? path.join(path.dirname(file), `${name}.bpf.o`);
    const r = await compile(source, { name, sourcePath: file, includeDirs: o.include, flags: o.flags, arch: o.arch, noCache: !o.cache, ...(o.server ? { mode: 'remote' as const, server: o.server } : {}), protocol: o.protocol });
    fs.writeFileSync(out, r.elf);
    const typesOut = o.types ? (typeof o.types === 'string' ? o.types : path.join(path.dirname(out), `${name}.types.ts`)) : undefined;
    if (typesOut) {
      const command = `tslcc compile ${path.basename(file)} --types${o.int64 === 'number' ? ' --int64 number' : ''}`;
      fs.writeFileSync(typesOut, generateTypes(r.elf, { name, int64: o.int64, command }));
    }
    const desc = o.inspect || o.json ? describeObject(r.elf, name) : undefined;
    if (o.json) {
      process.stdout.write(`${JSON.stringify({ output: out, ...(typesOut ? { types: typesOut } : {}), key: r.key, from: r.from, ms: Math.round(r.ms), bytes: r.elf.length, ...desc }, null, 2)}\n`);
      return;
    }
    for (const w of r.warnings) process.stderr.write(chalk.yellow(`${w.file}:${w.line}:${w.column}: warning: ${w.message}\n`));
    const how = r.from === 'cache' ? 'from cache' : `compiled ${r.from === 'remote' ? 'remotely ' : ''}in ${Math.round(r.ms)} ms`;
    process.stdout.write(`${chalk.green('✓')} ${out} (${r.elf.length} bytes, ${how}, key ${r.key.slice(0, 12)})\n`);
    if (typesOut) process.stdout.write(`${chalk.green('✓')} ${typesOut} (types from BTF)\n`);
    if (desc) {
      for (const p of desc.programs) process.stdout.write(`  program ${chalk.bold(p.name)}  SEC("${p.section}")  ${p.typeName}\n`);
      for (const m of desc.maps) {
        const types = m.eventType ? `event ${m.eventType}` : m.hist ? `log${m.hist} histogram` : m.keyType ? `${m.keyType} -> ${m.valueType}` : `key ${m.keySize} B, value ${m.valueSize} B`;
        process.stdout.write(`  map     ${chalk.bold(m.name)}  ${m.type}[${m.maxEntries}]  ${types}\n`);
      }
      for (const g of desc.globals.filter((x) => !x.name.startsWith('__lbc'))) process.stdout.write(`  global  ${chalk.bold(g.name)}  ${g.type}  (${g.section})\n`);
    }
  });

program
  .command('serve')
  .description('run the compile server (tslcc v1 API and pylcc\'s POST /lbc)')
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('-p, --port <port>', 'port', '7655')
  .option('--token <token>', 'require Authorization: Bearer <token> (default $TSLCC_SERVER_TOKEN)')
  .option('--data-dir <dir>', 'objects, uploaded BTF and headers (default ~/.cache/tslcc-server)')
  .option('--btf-dir <dir>', 'BTFHub-style tree served by GET /v1/btf/<arch>/<release>')
  .option('--concurrency <n>', 'compiles at once (default: CPUs)')
  .option('--queue <n>', 'compiles waiting before 503', '64')
  .option('--timeout <secs>', 'wall-clock limit per compile', '60')
  .option('--unsafe-no-sandbox', 'run clang without bubblewrap isolation (trusted clients only)')
  .addHelpText('after', '\nExamples:\n  tslcc serve --host 127.0.0.1 --port 7655\n  TSLCC_SERVER_TOKEN=s3cret tslcc serve --host 0.0.0.0 --btf-dir /srv/btfhub-archive\n')
  .action(async (o: { host: string; port: string; token?: string; dataDir?: string; btfDir?: string; concurrency?: string; queue: string; timeout: string; unsafeNoSandbox?: boolean }) => {
    const { url } = await startServer({
      host: o.host, port: Number(o.port), token: o.token ?? process.env.TSLCC_SERVER_TOKEN, dataDir: o.dataDir, btfDir: o.btfDir,
      concurrency: o.concurrency ? Number(o.concurrency) : undefined, queue: Number(o.queue), compileTimeoutMs: Number(o.timeout) * 1000,
      sandbox: o.unsafeNoSandbox ? 'none' : 'bwrap', log: (l) => process.stderr.write(`${l}\n`),
    });
    process.stderr.write(`tslcc serve: listening on ${url}${o.token ?? process.env.TSLCC_SERVER_TOKEN ? ' (token required)' : ''}\n`);
  });

program
  .command('doctor')
  .description('check what this host can trace: privileges, kernel BTF, tracefs, program types, compiler')
  .option('--json', 'print the checks as JSON')
  .action((o: { json?: boolean }) => {
    const checks = doctor();
    if (o.json) {
      process.stdout.write(`${JSON.stringify(checks, null, 2)}\n`);
    } else {
      for (const c of checks) {
        const mark = c.ok ? chalk.green('✓') : c.required ? chalk.red('✗') : chalk.yellow('-');
        process.stdout.write(`${mark} ${c.name.padEnd(26)} ${c.detail}\n`);
      }
    }
    process.exitCode = checks.some((c) => c.required && !c.ok) ? 1 : 0;
  });

program
  .command('tools')
  .description('list the example tools')
  .action(() => {
    const dir = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../examples');
    for (const t of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
      const pj = path.join(dir, t, 'package.json');
      if (!fs.existsSync(pj)) continue;
      const j = JSON.parse(fs.readFileSync(pj, 'utf8')) as { bin?: Record<string, string>; description?: string };
      for (const bin of Object.keys(j.bin ?? {})) process.stdout.write(`${chalk.bold(`npx ${bin}`.padEnd(28))} ${j.description ?? ''}\n`);
    }
  });

program.parseAsync().catch((e: unknown) => {
  if (e instanceof CompileError) {
    for (const d of e.diagnostics) process.stderr.write(`${d.file}:${d.line}:${d.column}: ${d.severity}: ${d.message}\n`);
  }
  process.stderr.write(`${chalk.red('tslcc:')} ${e instanceof LbcError || (e as NodeJS.ErrnoException).code ? (e as Error).message : (e as Error).stack}\n`);
  process.exit(1);
});
