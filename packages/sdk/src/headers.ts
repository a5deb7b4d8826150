/**
 * The local headers a source includes, gathered for a remote compile: the server has its
 * own lbc.h, libbpf headers and vmlinux.h, but not the `tool.h` beside the user's file.
 *
 * Without a local compiler nobody can run the preprocessor here, so this follows every
 * `#include` textually (both branches of an #if are taken: it may send a header the
 * compile does not need, never miss one it does), resolving the way clang does: quoted
 * names against the including file's directory, then the quote directories, then the -I
 * directories; angled names against the -I directories. Names found nowhere local
 * (bpf/bpf_helpers.h, vmlinux.h) are the server's to provide.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LbcError } from './errors.js';

/** A header sent with a remote compile, at a path relative to the bundle's root. */
export interface BundledHeader { path: string; content: string }
/** An include directory of the bundle, relative to its root ("" is the root). */
export interface BundledDir { path: string; quote: boolean }

export interface HeaderBundle {
  files: BundledHeader[];
  dirs: BundledDir[];
  /** The flags without the include-directory flags the bundle now carries. */
  flags: string[];
  /** The local directory the bundle's paths are relative to (absent when there are no files). */
  root?: string;
}

export const MAX_BUNDLE_FILES = 256;
export const MAX_BUNDLE_BYTES = 4 << 20;

const INCLUDE = /^[ \t]*#[ \t]*include[ \t]*([<"])([^>"\n]+)[>"]/gm;

/** Split include-directory flags (-I, -iquote, absolute after absolutizeFlags) out of `flags`. */
function includeFlags(flags: string[]): { quote: string[]; angled: string[]; rest: string[] } {
  const quote: string[] = [];
  const angled: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < flags.length; i++) {
    const f = flags[i]!;
    if ((f === '-I' || f === '-iquote' || f === '-isystem' || f === '-idirafter') && i + 1 < flags.length) {
      (f === '-iquote' ? quote : angled).push(flags[++i]!);
    } else if (f.startsWith('-iquote') && f.length > 7) quote.push(f.slice(7));
    else if (f.startsWith('-isystem') && f.length > 8) angled.push(f.slice(8));
    else if (f.startsWith('-idirafter') && f.length > 10) angled.push(f.slice(10));
    else if (f.startsWith('-I') && f.length > 2) angled.push(f.slice(2));
    else rest.push(f);
  }
  return { quote, angled, rest };
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/** The deepest directory containing every path. */
function commonRoot(paths: string[]): string {
  let root = paths[0] ?? '/';
  for (const p of paths) {
    while (!(p === root || p.startsWith(root.endsWith(path.sep) ? root : root + path.sep))) {
      const up = path.dirname(root);
      if (up === root) return root;
      root = up;
    }
  }
  return root;
}

/**
 * The bundle for `source` (read from `srcDir`, if any) with these include directories and
 * flags (absolute paths). Throws when it grows past MAX_BUNDLE_FILES or MAX_BUNDLE_BYTES.
 */
export function collectHeaders(source: string, o: { srcDir?: string; includeDirs: string[]; flags: string[] }): HeaderBundle {
  const split = includeFlags(o.flags);
  const quoteDirs = [...(o.srcDir ? [o.srcDir] : []), ...split.quote];
  const angledDirs = [...o.includeDirs, ...split.angled];
  const found = new Map<string, string>(); // abs path -> content
  let bytes = 0;
  const visit = (text: string, dir: string | undefined) => {
    for (const m of text.matchAll(INCLUDE)) {
      const name = m[2]!.trim();
      if (path.basename(name) === 'vmlinux.h' || path.basename(name) === 'lbc.h') continue; // the server's own, for the client's kernel
      const candidates = m[1] === '"' ? [...(dir ? [dir] : []), ...quoteDirs, ...angledDirs] : angledDirs;
      const hit = path.isAbsolute(name) ? undefined : candidates.map((d) => path.resolve(d, name)).find(isFile);
      if (!hit || found.has(hit)) continue;
      const content = fs.readFileSync(hit, 'utf8');
      bytes += Buffer.byteLength(content);
      found.set(hit, content);
      if (found.size > MAX_BUNDLE_FILES || bytes > MAX_BUNDLE_BYTES) {
        throw new LbcError('LBC_INVALID_ARGUMENT',
          `compile remotely: the local headers the source includes exceed ${MAX_BUNDLE_FILES} files or ${MAX_BUNDLE_BYTES >> 20} MiB; compile locally, or trim the include directories`);
      }
      visit(content, path.dirname(hit));
    }
  };
  visit(source, o.srcDir);
  const dirs = [...quoteDirs.map((d) => ({ d, quote: true })), ...angledDirs.map((d) => ({ d, quote: false }))];
  if (!found.size) return { files: [], dirs: [], flags: split.rest };
  const root = commonRoot([...found.keys(), ...dirs.map((x) => x.d)].map((p) => path.resolve(p)));
  const rel = (p: string) => path.relative(root, p).split(path.sep).join('/');
  return {
    files: [...found].map(([p, content]) => ({ path: rel(p), content })).sort((a, b) => a.path.localeCompare(b.path)),
    dirs: dirs.map((x) => ({ path: rel(path.resolve(x.d)), quote: x.quote })),
    flags: split.rest,
    root,
  };
}

const SEGMENT = /^[A-Za-z0-9_.+-]+$/;

/**
 * Validate a bundle received by a server: relative paths of plain segments (no "..", no
 * absolute paths, no control bytes), within the limits. Returns a message, or undefined if valid.
 */
export function checkBundle(files: unknown, dirs: unknown): string | undefined {
  if (files === undefined && dirs === undefined) return undefined;
  if (!Array.isArray(files) || !Array.isArray(dirs)) return 'headers and includeDirs must be arrays';
  if (files.length > MAX_BUNDLE_FILES) return `at most ${MAX_BUNDLE_FILES} headers`;
  let bytes = 0;
  const okPath = (p: unknown, allowEmpty: boolean) => typeof p === 'string' && p.length <= 4096
    && (p === '' ? allowEmpty : p.split('/').every((s) => SEGMENT.test(s) && s !== '.' && s !== '..'));
  for (const f of files as Array<{ path?: unknown; content?: unknown }>) {
    if (!f || typeof f !== 'object' || !okPath(f.path, false)) return `header path ${JSON.stringify((f as { path?: unknown })?.path)} must be relative, of plain names (no "..")`;
    if (typeof f.content !== 'string') return `header ${JSON.stringify(f.path)}: content must be a string`;
    bytes += Buffer.byteLength(f.content);
  }
  if (bytes > MAX_BUNDLE_BYTES) return `headers total ${bytes} bytes; the limit is ${MAX_BUNDLE_BYTES}`;
  if (dirs.length > 64) return 'at most 64 include directories';
  for (const d of dirs as Array<{ path?: unknown; quote?: unknown }>) {
    if (!d || typeof d !== 'object' || !okPath(d.path, true) || typeof d.quote !== 'boolean') return 'includeDirs entries must be { path: relative, quote: boolean }';
  }
  return undefined;
}
