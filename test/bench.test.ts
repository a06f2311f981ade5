/**
 * `janus4o bench`: the report's schema on a --quick run (no speed is asserted: this machine is shared), the
 * FLOP count behind "fraction of sgemm peak", and the VQ training step with our wasm conv-gradient kernels
 * against the cpu backend's own kernels (numerically equal within 1e-4).
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import { referenceStepFlops } from '../src/bench/flops';
import { formatReport } from '../src/bench/format';
import { withCpuKernels } from '../src/bench/kernel_swap';
import { BenchReport, runBench } from '../src/bench/run';
import { CONV_GRAD_KERNELS, randomImages, randomVq, vqLossAndGrads } from '../src/bench/vq';
import { presetConfig } from '../src/model/config';
import { maxAbsDiff } from './helpers';

const positive = (x: unknown) => typeof x === 'number' && Number.isFinite(x) && x > 0;

/** Paths of `obj` that are not a positive finite number. */
function nonPositive(obj: Record<string, unknown>, keys: string[], at: string): string[] {
  return keys.filter((k) => !positive(obj[k])).map((k) => `${at}.${k} = ${JSON.stringify(obj[k])}`);
}

describe('janus4o bench', () => {
  let report: BenchReport;

  beforeAll(async () => {
    report = await runBench({ quick: true });
  }, 600_000);

  afterAll(async () => {
    await initBackend('cpu');
  });

  test('a --quick run reports every section with finite figures', () => {
    const r = report;
    expect(r.schema).toBe('janus4o-bench/2');
    expect(r.quick).toBe(true);
    expect(r.backend).toEqual({ name: 'wasm', wasmThreads: 1 });
    const bad = [
      ...nonPositive(r.machine as unknown as Record<string, unknown>, ['cpus'], 'machine'),
      ...nonPositive(r.sgemm as unknown as Record<string, unknown>, ['peakGflops'], 'sgemm'),
      ...nonPositive(r.referenceStep as unknown as Record<string, unknown>, ['msPerStep', 'cpuMsPerStep', 'tokensPerSecond', 'modelFlopsPerStep', 'modelGflopsPerSecond', 'fractionOfSgemmPeak', 'loss0', 'params'], 'referenceStep'),
      ...nonPositive(r.cpuBackend.referenceStep as unknown as Record<string, unknown>, ['msPerStep', 'tokensPerSecond'], 'cpuBackend.referenceStep'),
      ...nonPositive(r.cpuBackend as unknown as Record<string, unknown>, ['wasmSpeedup'], 'cpuBackend'),
      ...nonPositive(r.generation.cached as unknown as Record<string, unknown>, ['tokensPerSecond', 'seconds'], 'generation.cached'),
      ...nonPositive(r.generation.recompute as unknown as Record<string, unknown>, ['tokensPerSecond', 'seconds'], 'generation.recompute'),
      ...nonPositive(r.generation as unknown as Record<string, unknown>, ['speedup', 'images', 'imageTokensPerImage'], 'generation'),
      ...r.vq.codec.flatMap((c, i) => nonPositive(c as unknown as Record<string, unknown>, ['encodeImagesPerSecond', 'decodeImagesPerSecond', 'imageSize'], `vq.codec[${i}]`)),
      ...nonPositive(r.vq.trainStep as unknown as Record<string, unknown>, ['msPerStep', 'convGradMs', 'convGradCalls', 'cpuConvGradMsEstimate', 'cpuKernelStepMsEstimate', 'speedup'], 'vq.trainStep'),
      ...nonPositive(r.prepare as unknown as Record<string, unknown>, ['images', 'imagesPerSecond'], 'prepare'),
      ...nonPositive(r as unknown as Record<string, unknown>, ['peakRssMiB', 'seconds'], 'report'),
    ];
    expect(bad).toEqual([]);
    // The native section: the plain wasm figures always; the native ones when the addon is in use.
    expect(positive(r.native.wasm.referenceStep.msPerStep) && positive(r.native.wasm.sgemm.peakGflops)).toBe(true);
    if (r.native.status.active) {
      expect(r.native.nativeKernels).toContain('BatchMatMul');
      expect(positive(r.native.peakGflops)).toBe(true);
      expect((r.native.referenceStep as { threads1: { msPerStep: number } }).threads1.msPerStep).toBeGreaterThan(0);
    } else {
      expect(r.native.nativeKernels).toEqual([]);
      expect((r.native.sgemm as { skipped: string }).skipped).toMatch(/not in use/);
    }
    // The reference step trains exactly the parameters of torch_ref_bench.py's model.
    expect(r.referenceStep.params).toBe(3_749_888);
    expect(r.referenceStep.tensorGrowth).toBe(0);
    expect(r.vq.codec.map((c) => c.config)).toEqual(['tiny', 'janus-pro-1b']);
    // Sections not asked for say so instead of carrying a number.
    expect(r.torch).toEqual({ skipped: 'run with --compare-torch' });
    // Under ts-jest the all-reduce workers (compiled scripts) do not exist; the section says why it has no figures.
    expect((r.allreduce as { skipped: string }).skipped).toMatch(/compiled workers/);
  });

  test('no op falls back to the cpu backend in training, generation, or VQ / SigLIP training', () => {
    expect(Object.keys(report.cpuFallback).sort()).toEqual(['generation', 'referenceStep', 'siglipTrainStep', 'vqTrainStep']);
    for (const w of Object.values(report.cpuFallback)) {
      expect(w.kernels).toBeGreaterThan(10);
      expect(w.cpuFallback).toEqual([]);
    }
    expect(report.cpuFallbackOps).toEqual([]);
  });

  test('the --pretty table names every section', () => {
    const table = formatReport(report);
    for (const label of ['sgemm peak', 'native kernels', 'wasm kernels only', 'reference step', 'cpu backend', 'PyTorch', 'generation', 'VQ tiny', 'VQ janus-pro-1b', 'VQ train step', 'prepare', 'all-reduce', 'cpu fallback: generation', 'peak RSS']) {
      expect(table).toContain(label);
    }
  });
});

test('model FLOPs of the reference step match the hand count (3 x forward matmul FLOPs)', () => {
  // Decoder: 768 tokens x (4 x 256^2 + 3 x 256 x 704) MACs + attention 2 x 8 x 4 x 96^2 x 64, per layer, 4 layers;
  // gen_aligner and gen_head on the 512 image positions.
  const decoder = 4 * (768 * (4 * 256 * 256 + 3 * 256 * 704) + 2 * 8 * 4 * 96 * 96 * 64);
  const heads = 512 * (8 * 256 + 256 * 256) + 512 * (256 * 256 + 256 * 1024);
  const { forward, training } = referenceStepFlops(presetConfig('tiny'), { batch: 8, textLen: 32, imageLen: 64 });
  expect(forward).toBe(2 * (decoder + heads));
  expect(training).toBe(3 * forward);
});

test('VQ training step: our wasm conv-gradient kernels equal the cpu backend kernels within 1e-4', async () => {
  await initBackend('wasm');
  const cfg = presetConfig('tiny');
  const { vq, store } = randomVq(cfg, 3);
  const names = store.list().map((s) => s.name);
  // Batch 1 at 16 px: the cpu Conv2DBackpropFilter does ~1.5 M multiply-adds/s, so this is already ~15 s.
  const images = randomImages(1, 16, 4);
  const run = () => {
    const { loss, grads } = vqLossAndGrads(vq, store, names, images);
    const out = { loss: loss.dataSync()[0], grads: names.map((n) => grads.get(n)!.dataSync() as Float32Array) };
    tf.dispose([loss, ...grads.values()]);
    return out;
  };
  const ours = run();
  const oursKernel = tf.getKernel('Conv2DBackpropFilter', 'wasm')!.kernelFunc;
  const cpu = await withCpuKernels(CONV_GRAD_KERNELS, () => {
    // The swap is in place: this run really goes through the cpu kernels.
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')!.kernelFunc).not.toBe(oursKernel);
    return run();
  });
  expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')!.kernelFunc).toBe(oursKernel);
  expect(Math.abs(ours.loss - cpu.loss)).toBeLessThan(1e-5);
  let worst = 0;
  let largest = 0;
  names.forEach((n, i) => {
    worst = Math.max(worst, maxAbsDiff(ours.grads[i], cpu.grads[i]));
    for (const g of cpu.grads[i]) largest = Math.max(largest, Math.abs(g));
  });
  expect(largest).toBeGreaterThan(1e-2); // gradients are far from zero, so a wrong kernel shows
  expect(worst).toBeLessThan(1e-4);
  images.dispose();
  store.dispose();
  await initBackend('cpu');
}, 600_000);
