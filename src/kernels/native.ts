/**
 * The optional native matrix kernels (native/*.c, built by scripts/build-native.js at `npm ci`): a blocked,
 * multi-threaded sgemm with AVX-512 / AVX2 FMA micro-kernels chosen at run time, reading and writing the wasm
 * backend's heap in place. WebAssembly SIMD128 in Node 20 has 4 lanes and no fused multiply-add, so XNNPACK in
 * wasm tops out at a fraction of what the CPU under it does; this is the way past that ceiling.
 *
 * Loaded once, lazily. JANUS4O_NATIVE=0 turns it off; a missing or unloadable addon leaves the wasm kernels in
 * place. `nativeStatus()` says which is in use and why (initBackend logs it). JANUS4O_NATIVE_THREADS sets the
 * thread count (default: the machine's cores).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** The addon's interface (native/addon.c). */
export interface NativeAddon {
  /**
   * c[e] (+)= op(a[aIdx[e]]) @ op(b[bIdx[e]]) for e < batch, on float32 operands at byte offsets into `heap`
   * (null indices: entry e); `accumulate` adds to c instead of overwriting it.
   */
  gemm(heap: Uint8Array, batch: number, m: number, n: number, k: number, aOff: number, bOff: number, cOff: number, transposeA: boolean, transposeB: boolean, aIdx: Int32Array | null, bIdx: Int32Array | null, accumulate: boolean): void;
  /** cols[rows, KH*KW*C] = the patches of output positions row0 .. row0+rows-1 of an NHWC conv (`geom`: convGeom). */
  im2col(heap: Uint8Array, xOff: number, colsOff: number, row0: number, rows: number, geom: Int32Array): void;
  /** dx = the scatter-add of cols[B*OH*OW, KH*KW*C] into the NHWC input (the inverse data movement of im2col). */
  col2im(heap: Uint8Array, colsOff: number, dxOff: number, geom: Int32Array): void;
  /** y = exp(x) on n float32 values (glibc's expf, split over the threads). */
  exp(heap: Uint8Array, xOff: number, yOff: number, n: number): void;
  setThreads(n: number): void;
  threads(): number;
  /** The micro-kernel in use: 'avx512', 'avx2' or 'generic'. */
  kernel(): string;
  /** Selects a micro-kernel (tests and benchmarks); false if this CPU cannot run it. */
  setKernel(name: string): boolean;
  /** Micro-kernels this CPU runs, best first. */
  kernels(): string[];
}

export interface NativeStatus {
  /** The addon is loaded and the matrix kernels use it. */
  active: boolean;
  /** Why it is or is not in use, in words (the log line's reason). */
  reason: string;
  /** Where the addon is looked for. */
  addonPath: string;
  kernel: string | null;
  threads: number;
}

export const ADDON_PATH = path.resolve(__dirname, '..', '..', 'build', 'Release', 'janus4o_native.node');

let addon: NativeAddon | null | undefined;
let loadReason = '';
let enabled = true;

/**
 * Thread count from JANUS4O_NATIVE_THREADS, else every core, shared out among the data-parallel workers of this
 * machine (LOCAL_WORLD_SIZE, set by the launcher and torchrun-style launchers): two workers with two threads
 * each on two cores would only take turns.
 */
export function defaultNativeThreads(): number {
  const env = process.env.JANUS4O_NATIVE_THREADS;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (Number.isInteger(n) && n >= 1) return n;
  }
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  const local = Number(process.env.LOCAL_WORLD_SIZE ?? '1');
  return Math.max(1, Math.floor(cores / (Number.isInteger(local) && local >= 1 ? local : 1)));
}

function load(): NativeAddon | null {
  if (addon !== undefined) return addon;
  addon = null;
  if (process.env.JANUS4O_NATIVE === '0') {
    loadReason = 'JANUS4O_NATIVE=0';
    return null;
  }
  if (!fs.existsSync(ADDON_PATH)) {
    loadReason = 'native addon not built (the install printed why; `npm run build:native` builds it and logs to build/native-build.log)';
    return null;
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require(ADDON_PATH) as NativeAddon;
    for (const fn of ['gemm', 'im2col', 'col2im', 'exp', 'setThreads', 'threads', 'kernel', 'setKernel', 'kernels'] as const) {
      if (typeof mod[fn] !== 'function') throw new Error(`the addon lacks ${fn}()`);
    }
    mod.setThreads(defaultNativeThreads());
    addon = mod;
    loadReason = 'native addon loaded';
  } catch (e) {
    loadReason = `native addon failed to load: ${(e as Error).message.split('\n')[0]}`;
  }
  return addon;
}

/** The addon when native kernels are in use, else null (callers then run their wasm path). */
export function nativeAddon(): NativeAddon | null {
  return enabled ? load() : null;
}

/** Turns the native kernels off and on at run time (tests and the bench compare both paths in one process). */
export function setNativeEnabled(on: boolean): void {
  enabled = on;
}

export function nativeStatus(): NativeStatus {
  const a = load();
  const active = enabled && a !== null;
  const reason = a !== null && !enabled ? 'turned off at run time (setNativeEnabled(false))' : loadReason;
  return { active, reason, addonPath: ADDON_PATH, kernel: a ? a.kernel() : null, threads: a ? a.threads() : 1 };
}

/** A conv's geometry in the order native/im2col.h's conv_geom declares it. */
export function convGeom(info: ConvGeometry): Int32Array {
  return new Int32Array([
    info.batchSize, info.inHeight, info.inWidth, info.inChannels, info.outHeight, info.outWidth, info.filterHeight, info.filterWidth,
    info.strideHeight, info.strideWidth, info.dilationHeight, info.dilationWidth, info.padInfo.top, info.padInfo.left,
  ]);
}

/** The fields of tf.backend_util.Conv2DInfo that convGeom reads. */
export interface ConvGeometry {
  batchSize: number;
  inHeight: number;
  inWidth: number;
  inChannels: number;
  outHeight: number;
  outWidth: number;
  filterHeight: number;
  filterWidth: number;
  strideHeight: number;
  strideWidth: number;
  dilationHeight: number;
  dilationWidth: number;
  padInfo: { top: number; left: number };
}

/** Per kernel name, how many calls ran natively and how many on the wasm path, since the last reset. */
export type KernelCallCounts = Record<string, { native: number; wasm: number }>;

const counts: KernelCallCounts = {};

export function countKernelCall(kernelName: string, native: boolean): void {
  const c = counts[kernelName] ?? (counts[kernelName] = { native: 0, wasm: 0 });
  if (native) c.native++;
  else c.wasm++;
}

export function kernelCallCounts(): KernelCallCounts {
  return JSON.parse(JSON.stringify(counts)) as KernelCallCounts;
}

export function resetKernelCallCounts(): void {
  for (const k of Object.keys(counts)) delete counts[k];
}

/** The one-line summary initBackend appends for the wasm backend. */
export function describeMatrixKernels(): string {
  const s = nativeStatus();
  return s.active ? `matrix kernels: native sgemm (${s.kernel}, ${s.threads} thread${s.threads === 1 ? '' : 's'})` : `matrix kernels: wasm (${s.reason})`;
}
