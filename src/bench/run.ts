/**
 * `janus4o bench`: every speed figure of the library in one JSON object (docs/performance.md explains each).
 * Sections run one after another in this process on the wasm backend, except the cpu-backend comparison step
 * and the PyTorch anchor (a child process). `quick` shrinks every section for a schema check; its numbers are
 * not comparable with a full run, and each section records the shapes it actually used.
 */
import * as os from 'os';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../backend';
import { presetConfig } from '../model/config';
import { benchReferenceStep, REFERENCE_SHAPE, ReferenceStepResult } from './reference_step';
import { referenceStepFlops } from './flops';
import { benchSgemm, SgemmResult } from './sgemm';
import { benchGeneration, GenerationResult } from './generation';
import { benchVqCodec, benchVqTrainStep, CodecResult, VqTrainResult } from './vq';
import { benchPrepare, PrepareResult } from './prepare';
import { fallbackReport, WorkloadKernels } from './fallback';
import { runTorchBench, TorchResult } from './torch';
import { prepareWasmThreads } from './wasm_threads';
import { NativeSection, benchNative } from './native';
import { kernelCallCounts, resetKernelCallCounts, setNativeEnabled } from '../kernels/native';
import { Skipped, isSkipped, peakRssMiB } from './util';
import type { AllReduceBenchReport } from '../distributed';

export interface BenchOptions {
  quick?: boolean;
  compareTorch?: boolean;
  /** The all-reduce bench of src/distributed: TCP ring, shared memory, hierarchical (two simulated nodes); N = 2, 4, 8; 16-256 MiB; memcpy measured alongside (default on; ~4 min on 2 cores). */
  allreduce?: boolean;
  /** XNNPACK threads of the wasm backend (1 = the stock single-threaded build). */
  wasmThreads?: number;
  torchScript?: string;
  log?: (line: string) => void;
}

export interface ReferenceStepReport extends ReferenceStepResult {
  batch: number;
  textLen: number;
  imageLen: number;
  steps: number;
  modelFlopsPerStep: number;
  modelGflopsPerSecond: number;
  /** modelGflopsPerSecond / sgemm.peakGflops. */
  fractionOfSgemmPeak: number;
}

export interface TorchComparison {
  threads1: TorchResult | Skipped;
  threads2: TorchResult | Skipped;
  /**
   * Our tokens/s over PyTorch's at the same thread count: the native kernels on 1 and 2 threads when they are in
   * use (native.referenceStep), else the wasm step (referenceStep).
   */
  ratio: { threads1: number | null; threads2: number | null };
  /** The same on the plain wasm kernels (native.wasm.referenceStep), for both PyTorch thread counts. */
  wasmRatio: { threads1: number | null; threads2: number | null };
}

export interface BenchReport {
  schema: 'janus4o-bench/2';
  quick: boolean;
  machine: { cpus: number; cpuModel: string; node: string; platform: string; loadAverageStart: number[]; loadAverageEnd: number[] };
  backend: { name: string; wasmThreads: number };
  /** tf.matMul with the kernels in use (the native sgemm on its default threads when loaded). */
  sgemm: SgemmResult;
  /** The reference step with the kernels in use. */
  referenceStep: ReferenceStepReport;
  /** Native kernels: which ran, sgemm and reference step on 1 and 2 threads, and the plain wasm figures. */
  native: NativeSection;
  cpuBackend: { referenceStep: ReferenceStepResult & { batch: number; steps: number }; wasmSpeedup: number };
  torch: TorchComparison | Skipped;
  generation: GenerationResult;
  vq: { codec: CodecResult[]; trainStep: VqTrainResult };
  prepare: PrepareResult;
  allreduce: AllReduceBenchReport | Skipped;
  cpuFallback: Record<string, WorkloadKernels>;
  /** Every cpu-fallback op seen, over all workloads; the bench fails when this is not empty. */
  cpuFallbackOps: string[];
  peakRssMiB: number;
  seconds: number;
}

async function allreduceSection(quick: boolean): Promise<AllReduceBenchReport | Skipped> {
  // Loaded lazily: the launcher starts worker scripts from the compiled dist tree, which a ts-jest run lacks.
  const dist = (await import('../distributed')) as Partial<typeof import('../distributed')>;
  if (typeof dist.runAllReduceBench !== 'function') return { skipped: 'src/distributed exports no runAllReduceBench' };
  if (!__filename.endsWith('.js')) return { skipped: 'the all-reduce bench launches compiled workers; run it from dist (npm run bench)' };
  return dist.runAllReduceBench(quick ? { worldSizes: [2], sizesBytes: [1 << 20], transports: ['tcp', 'shm'], exchanges: ['float32'] } : {});
}

export async function runBench(opts: BenchOptions = {}): Promise<BenchReport> {
  const quick = opts.quick ?? false;
  const log = opts.log ?? (() => undefined);
  const started = performance.now();
  const loadAverageStart = os.loadavg();
  const cfg = presetConfig('tiny');
  const threads = opts.wasmThreads ?? 1;
  const threadsReady = prepareWasmThreads(threads);
  await initBackend('wasm');
  const wasmThreads = threadsReady();
  // The threaded wasm build's heap is a SharedArrayBuffer and its XNNPACK threads would compete with ours.
  if (wasmThreads > 1) setNativeEnabled(false);
  resetKernelCallCounts();
  const sgemmSizes: [number, number, number][] = quick ? [[256, 256, 256]] : [[512, 512, 512], [768, 256, 704], [1024, 1024, 1024]];

  log('sgemm');
  const sgemm = await benchSgemm({ sizes: sgemmSizes, reps: quick ? 2 : 5 });

  log('reference step (kernels in use)');
  const batch = quick ? 2 : REFERENCE_SHAPE.batch;
  const steps = quick ? 1 : 5;
  const ref = await benchReferenceStep({ steps, warmup: quick ? 1 : 2, batch });
  const flops = referenceStepFlops(cfg, { batch, textLen: REFERENCE_SHAPE.textLen, imageLen: REFERENCE_SHAPE.imageLen }).training;
  const gflops = flops / (ref.msPerStep * 1e6);
  const referenceStep: ReferenceStepReport = {
    ...ref,
    batch,
    textLen: REFERENCE_SHAPE.textLen,
    imageLen: REFERENCE_SHAPE.imageLen,
    steps,
    modelFlopsPerStep: flops,
    modelGflopsPerSecond: gflops,
    fractionOfSgemmPeak: gflops / sgemm.peakGflops,
  };

  const native = await benchNative({ sizes: sgemmSizes, reps: quick ? 2 : 5, steps, warmup: quick ? 1 : 2, batch }, log);

  let torch: TorchComparison | Skipped = { skipped: 'run with --compare-torch' };
  if (opts.compareTorch) {
    log('PyTorch reference step (1 and 2 threads)');
    const tsteps = quick ? 3 : 7;
    const t1 = await runTorchBench(cfg, 1, { script: opts.torchScript, steps: tsteps });
    const t2 = await runTorchBench(cfg, 2, { script: opts.torchScript, steps: tsteps });
    const ratio = (ours: number, t: TorchResult | Skipped) => (isSkipped(t) ? null : ours / t.tokensPerSecond);
    const n = native.referenceStep;
    const ours1 = isSkipped(n) ? ref.tokensPerSecond : n.threads1.tokensPerSecond;
    const ours2 = isSkipped(n) ? ref.tokensPerSecond : n.threads2.tokensPerSecond;
    const w = native.wasm.referenceStep.tokensPerSecond;
    torch = { threads1: t1, threads2: t2, ratio: { threads1: ratio(ours1, t1), threads2: ratio(ours2, t2) }, wasmRatio: { threads1: ratio(w, t1), threads2: ratio(w, t2) } };
  }

  log('generation');
  const generation = await benchGeneration({ images: quick ? 1 : 4, promptTokens: 24 });

  log('VQ encode / decode');
  const codec = [
    await benchVqCodec(cfg, { imageSize: quick ? 32 : 64, batch: quick ? 2 : 8, reps: quick ? 1 : 3, warmup: 1 }),
    // One image, no warm-up: a call takes tens of seconds, so first-call setup is noise.
    await benchVqCodec(presetConfig('janus-pro-1b'), { imageSize: quick ? 32 : 384, batch: 1, reps: 1, warmup: 0 }),
  ];
  log('VQ training step');
  const vqTrain = await benchVqTrainStep(cfg, { imageSize: quick ? 32 : 64, batch: quick ? 2 : 16, steps: quick ? 1 : 2, warmup: 1 });

  log('prepare');
  const prepare = await benchPrepare({ images: quick ? 8 : 64, batchSize: 16 });

  log('kernel coverage');
  const cpuFallback = await fallbackReport();
  const cpuFallbackOps = [...new Set(Object.values(cpuFallback).flatMap((w) => w.cpuFallback))].sort();

  log('reference step (cpu backend)');
  await initBackend('cpu');
  // The cpu step takes tens of seconds; it has no first-call setup worth a warm-up step.
  const cpuSteps = 1;
  const cpuRef = await benchReferenceStep({ steps: cpuSteps, warmup: 0, batch });
  await initBackend('wasm');

  let allreduce: AllReduceBenchReport | Skipped = { skipped: 'turned off (--no-allreduce)' };
  if (opts.allreduce ?? true) {
    log('all-reduce');
    allreduce = await allreduceSection(quick);
  }

  // Over the whole run (training, generation, VQ): which kernels took the native path.
  const kernelCalls = kernelCallCounts();
  return {
    schema: 'janus4o-bench/2',
    quick,
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', node: process.version, platform: `${os.platform()} ${os.release()}`, loadAverageStart, loadAverageEnd: os.loadavg() },
    backend: { name: tf.getBackend(), wasmThreads },
    sgemm,
    referenceStep,
    native: { ...native, kernelCalls, nativeKernels: Object.keys(kernelCalls).filter((k) => kernelCalls[k].native > 0).sort() },
    cpuBackend: { referenceStep: { ...cpuRef, batch, steps: cpuSteps }, wasmSpeedup: cpuRef.msPerStep / ref.msPerStep },
    torch,
    generation,
    vq: { codec, trainStep: vqTrain },
    prepare,
    allreduce,
    cpuFallback,
    cpuFallbackOps,
    peakRssMiB: peakRssMiB(),
    seconds: (performance.now() - started) / 1000,
  };
}
