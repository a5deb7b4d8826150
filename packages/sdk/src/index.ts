/**
 * @tslcc/sdk: write BPF C with the LBC_* macros, subclass LbcBase, receive decoded events
 * and symbolized stacks.
 *
 * @example
 * ```ts
 * import { LbcBase } from '@tslcc/sdk';
 * class Opens extends LbcBase {
 *   constructor() { super('opens', { source: `...` }); }
 * }
 * const t = await new Opens().start();
 * t.maps.events.on((e) => console.log(e.pid, e.comm));
 * ```
 */
export {
  LbcBase, ClbcBase, onlineCpus, eventCarriers, type LbcOptions, type KprobeOptions, type UprobeOptions, type UsdtOptions, type PerfEventOptions, type AnyMaps,
  type ProgramOptions, type MapOptions, type ProgramState,
} from './lbc.js';
export { openObject, ObjectSpec, ProgramSpec, MapSpec, type OpenObjectOptions } from './object/spec.js';
export { LoadedObject } from './object/loaded.js';
export { Program } from './object/program.js';
export { KernelProbes, kernelProbes } from './object/features.js';
export { sectionInfo, type SectionInfo } from './object/sections.js';
export { collectHeaders, checkBundle, MAX_BUNDLE_BYTES, MAX_BUNDLE_FILES, type HeaderBundle } from './headers.js';
export {
  compile, defaultCacheDir, findClang, kernelArch, INCLUDE_DIR, clangArgs, compileKey, compileFailure, parseDiagnostics,
  lbcHeaderHash, wrapSource, absolutizeFlags, parseDepFile, PCH_TROUBLE, sha256, fileSha256, writeAtomic, cachedObjectPath, clangIdentity, splitFlags, pchKey, kernelBtfPath, vmlinuxHeaderDir,
  type CompileOptions, type CompiledObject,
} from './compile.js';
export { toolchainFlags, defaultMcpu, targetKernelRelease, findStrip, stripArgs, stripDebug, vmlinuxDirName, VMLINUX_FORMAT } from './toolchain.js';
export { remoteCompile, fetchBtf, serverUrl, RemoteError, type RemoteOptions, type RemoteCompileRequest, type RemoteCompileResult } from './remote.js';
export { EventMap, KeyValueMap, HistMap, StackMap, LbcMap, MapType, formatHistogram, type EventInfo, type EventMapOptions } from './maps.js';
export { Btf } from './btf.js';
export { CodecFactory, type CodecOptions, type Decoder, type Encoder } from './decode.js';
export { generateTypes, generateTypesFromBtf, type TypegenOptions } from './typegen.js';
export { KernelSymbols, kernelSymbols, formatFrame, type KernelFrame } from './kallsyms.js';
export {
  Symbolizer, symbolizer, formatAnyFrame, foldStacks, parseMaps,
  type Frame, type UserFrame, type Mapping, type SymbolizerOptions,
} from './symbolize/symbolizer.js';
export { ElfFile, SymbolTable, fileSource, bufferSource, type ElfSource, type SymbolHit } from './symbolize/elf.js';
export { listUsdtProbes, type UsdtProbe } from './usdt.js';
export { describeObject, type ObjectDescription, type MapDescription } from './inspect.js';
export { checkBpfPermission, ensureTracefs, hasKprobes, kernelFeatures, type KernelFeatures } from './system.js';
export { setBinding } from './native.js';
export {
  LbcError, CompileError, VerifierError, UnsupportedError, PermissionError, NotFoundError,
  type LbcErrorCode, type Diagnostic,
} from './errors.js';
