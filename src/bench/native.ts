/**
 * The native matrix kernels in the bench: which kernels ran natively, the native sgemm on 1 and 2 threads, and
 * the reference step on 1 and 2 native threads next to the same step on the plain wasm kernels (native turned
 * off at run time, in the same process), so every figure of the comparison comes from one run.
 */
import { KernelCallCounts, NativeStatus, defaultNativeThreads, kernelCallCounts, nativeAddon, nativeStatus, setNativeEnabled } from '../kernels/native';
import { ReferenceStepResult, benchReferenceStep } from './reference_step';
import { SgemmResult, benchSgemm } from './sgemm';
import { Skipped } from './util';

export interface NativeSection {
  status: NativeStatus;
  /** Kernel calls of the whole bench run so far, by the path they took. */
  kernelCalls: KernelCallCounts;
  /** Kernels with at least one native call. */
  nativeKernels: string[];
  /** Native sgemm through tf.matMul, per thread count; Skipped without the addon. */
  sgemm: { threads1: SgemmResult; threads2: SgemmResult } | Skipped;
  /** Best call over both thread counts. */
  peakGflops: number | null;
  /** The reference step with the native kernels on 1 and 2 threads. */
  referenceStep: { threads1: ReferenceStepResult; threads2: ReferenceStepResult } | Skipped;
  /** The same sgemm and step with the native kernels turned off: the plain wasm kernels. */
  wasm: { sgemm: SgemmResult; referenceStep: ReferenceStepResult };
}

export interface NativeBenchOptions {
  sizes: [number, number, number][];
  reps: number;
  steps: number;
  warmup: number;
  batch: number;
}

async function withThreads<R>(threads: number, fn: () => Promise<R>): Promise<R> {
  const addon = nativeAddon();
  if (!addon) throw new Error('native addon not loaded');
  addon.setThreads(threads);
  try {
    return await fn();
  } finally {
    addon.setThreads(defaultNativeThreads());
  }
}

async function withoutNative<R>(fn: () => Promise<R>): Promise<R> {
  setNativeEnabled(false);
  try {
    return await fn();
  } finally {
    setNativeEnabled(true);
  }
}

export async function benchNative(opts: NativeBenchOptions, log: (line: string) => void): Promise<NativeSection> {
  const step = () => benchReferenceStep({ steps: opts.steps, warmup: opts.warmup, batch: opts.batch });
  const gemm = () => benchSgemm({ sizes: opts.sizes, reps: opts.reps });
  let sgemm: NativeSection['sgemm'] = { skipped: `native kernels not in use: ${nativeStatus().reason}` };
  let referenceStep: NativeSection['referenceStep'] = sgemm;
  let peakGflops: number | null = null;
  if (nativeAddon()) {
    log('native sgemm and reference step, 1 and 2 threads');
    const s1 = await withThreads(1, gemm);
    const s2 = await withThreads(2, gemm);
    sgemm = { threads1: s1, threads2: s2 };
    peakGflops = Math.max(s1.peakGflops, s2.peakGflops);
    const r1 = await withThreads(1, step);
    const r2 = await withThreads(2, step);
    referenceStep = { threads1: r1, threads2: r2 };
  }
  log('sgemm and reference step on the plain wasm kernels');
  const wasm = await withoutNative(async () => ({ sgemm: await gemm(), referenceStep: await step() }));
  const kernelCalls = kernelCallCounts();
  return {
    status: nativeStatus(),
    kernelCalls,
    nativeKernels: Object.keys(kernelCalls).filter((k) => kernelCalls[k].native > 0).sort(),
    sgemm,
    peakGflops,
    referenceStep,
    wasm,
  };
}
