/**
 * VQ tokenizer speed: encode and decode throughput at a config and image size (random weights), and the VQ
 * training step (reconstruction + codebook + commitment loss, AdamW) with our wasm conv-gradient kernels against
 * the cpu backend's own conv-gradient kernels.
 *
 * The cpu conv-gradient kernels are too slow to run a whole batch-16 step in a bench (Conv2DBackpropFilter does
 * ~1.5 M multiply-adds/s: over an hour per step), so their share is estimated: every conv-gradient call of the
 * measured wasm step is recorded, each distinct one is timed with the cpu kernel on a spatial crop of batch 1, and
 * scaled by its multiply-add count (those kernels are plain loops, linear in it). The estimate leaves out the
 * cost of moving tensors between backends, so it is a lower bound of the cpu-kernel step.
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../backend';
import { JanusConfig } from '../model/config';
import { ParamStore } from '../model/params';
import { VQModel } from '../model/vq';
import { AdamW } from '../train/optimizer';
import { KernelCall, recordKernels } from './kernel_swap';
import { CallTimes, median, timeCalls } from './util';

export const CONV_GRAD_KERNELS = ['Conv2DBackpropFilter', 'Conv2DBackpropInput'] as const;

/** A VQ model with its own parameter store, randomly initialised. */
export function randomVq(cfg: JanusConfig, seed = 0): { vq: VQModel; store: ParamStore } {
  const store = new ParamStore();
  const vq = new VQModel(store, cfg);
  store.materialize(seed);
  return { vq, store };
}

export function randomImages(batch: number, size: number, seed = 0): tf.Tensor4D {
  return tf.randomUniform([batch, size, size, 3], -1, 1, 'float32', seed) as tf.Tensor4D;
}

export interface CodecResult {
  config: string;
  imageSize: number;
  batch: number;
  encodeImagesPerSecond: number;
  decodeImagesPerSecond: number;
}

export async function benchVqCodec(cfg: JanusConfig, opts: { imageSize: number; batch: number; reps: number; warmup: number }): Promise<CodecResult> {
  const { vq, store } = randomVq(cfg);
  const images = randomImages(opts.batch, opts.imageSize);
  try {
    // The last timed encode's ids feed the decode, so no untimed encode is spent (a minute at 384 px).
    let ids: tf.Tensor2D | null = null;
    const enc = await timeCalls(() => {
      ids?.dispose();
      ids = vq.encode(images);
      ids.dataSync();
    }, opts.reps, opts.warmup);
    const codes = ids as unknown as tf.Tensor2D;
    const dec = await timeCalls(() => {
      const out = vq.decode(codes);
      out.dataSync();
      out.dispose();
    }, opts.reps, opts.warmup);
    codes.dispose();
    return {
      config: cfg.name,
      imageSize: opts.imageSize,
      batch: opts.batch,
      encodeImagesPerSecond: (opts.batch * 1000) / median(enc.wall),
      decodeImagesPerSecond: (opts.batch * 1000) / median(dec.wall),
    };
  } finally {
    images.dispose();
    store.dispose();
  }
}

/** Loss and gradients of every VQ parameter for one batch (the body of a VQ training step). */
export function vqLossAndGrads(vq: VQModel, params: { get(name: string): tf.Variable }, names: readonly string[], images: tf.Tensor4D): { loss: tf.Scalar; grads: Map<string, tf.Tensor> } {
  const vars = names.map((n) => params.get(n));
  const [loss, ...list] = tf.tidy(() => {
    const { value, grads } = tf.variableGrads(() => vq.lossAndIds(images).loss, vars);
    return [value, ...vars.map((v) => grads[v.name] ?? tf.zeros(v.shape))];
  });
  return { loss: loss as tf.Scalar, grads: new Map(names.map((n, i) => [n, list[i]])) };
}

export interface VqTrainResult {
  config: string;
  imageSize: number;
  batch: number;
  msPerStep: number;
  cpuMsPerStep: number;
  /** Our conv-gradient kernels' share of one step. */
  convGradMs: number;
  convGradCalls: number;
  /** Estimated time of the same calls with the cpu backend's kernels (see the file comment). */
  cpuConvGradMsEstimate: number;
  /** msPerStep - convGradMs + cpuConvGradMsEstimate. */
  cpuKernelStepMsEstimate: number;
  /** cpuKernelStepMsEstimate / msPerStep. */
  speedup: number;
  method: string;
}

export async function benchVqTrainStep(cfg: JanusConfig, opts: { imageSize: number; batch: number; steps: number; warmup: number; macTarget?: number }): Promise<VqTrainResult> {
  const { vq, store } = randomVq(cfg);
  const images = randomImages(opts.batch, opts.imageSize);
  const names = store.list().map((s) => s.name);
  const opt = new AdamW(store.list().map((s) => ({ name: s.name, shape: s.shape })), { weightDecay: 0 });
  const step = () => {
    const { loss, grads } = vqLossAndGrads(vq, store, names, images);
    opt.step(store, grads, 1e-4);
    loss.dataSync();
    tf.dispose([loss, ...grads.values()]);
  };
  let calls: KernelCall[];
  let times: CallTimes;
  try {
    for (let i = 0; i < opts.warmup; i++) step();
    // The timed steps also record the conv-gradient calls (a performance.now() pair per call, noise-level).
    ({ result: times, calls } = await recordKernels(CONV_GRAD_KERNELS, () => timeCalls(step, opts.steps, 0)));
  } finally {
    opt.dispose();
    images.dispose();
    store.dispose();
  }
  const ms = median(times.wall);
  // Per step: the recording spans all timed steps.
  const convGradMs = calls.reduce((a, c) => a + c.ms, 0) / opts.steps;
  const perStep = calls.slice(0, calls.length / opts.steps);
  const cpuConvGradMsEstimate = await estimateCpuKernelMs(perStep, opts.macTarget ?? 1e6);
  const cpuStep = ms - convGradMs + cpuConvGradMsEstimate;
  return {
    config: cfg.name,
    imageSize: opts.imageSize,
    batch: opts.batch,
    msPerStep: ms,
    cpuMsPerStep: median(times.cpu),
    convGradMs,
    convGradCalls: perStep.length,
    cpuConvGradMsEstimate,
    cpuKernelStepMsEstimate: cpuStep,
    speedup: cpuStep / ms,
    method: 'cpu-kernel step = wasm step - our conv-gradient kernel time + cpu conv-gradient kernels timed on batch-1 spatial crops, scaled by multiply-adds',
  };
}

interface ConvCall {
  kernel: string;
  xShape: [number, number, number, number];
  filterShape: [number, number, number, number];
  attrs: tf.NamedAttrMap;
}

function convCallOf(c: KernelCall): ConvCall {
  const a = c.attrs as { filterShape?: number[]; inputShape?: number[] };
  if (c.kernel === 'Conv2DBackpropFilter') return { kernel: c.kernel, xShape: c.inputs.x as ConvCall['xShape'], filterShape: a.filterShape as ConvCall['filterShape'], attrs: c.attrs };
  return { kernel: c.kernel, xShape: a.inputShape as ConvCall['xShape'], filterShape: c.inputs.filter as ConvCall['filterShape'], attrs: c.attrs };
}

function infoOf(call: ConvCall, xShape: [number, number, number, number]): tf.backend_util.Conv2DInfo {
  const a = call.attrs as { strides: number | [number, number]; pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding; dilations?: number | [number, number]; dimRoundingMode?: 'floor' | 'round' | 'ceil' };
  return tf.backend_util.computeConv2DInfo(xShape, call.filterShape, a.strides, a.dilations ?? 1, a.pad, a.dimRoundingMode);
}

const macsOf = (info: tf.backend_util.Conv2DInfo) => info.batchSize * info.outHeight * info.outWidth * info.filterHeight * info.filterWidth * info.inChannels * info.outChannels;

/** The smallest square crop (batch 1) with at least `target` multiply-adds and 16 output pixels, or the whole image. */
function cropFor(call: ConvCall, target: number): [number, number, number, number] {
  const [, h, w, c] = call.xShape;
  for (let s = 4; s < Math.max(h, w); s *= 2) {
    const shape: [number, number, number, number] = [1, Math.min(h, s), Math.min(w, s), c];
    const info = infoOf(call, shape);
    if (info.outHeight * info.outWidth >= 16 && macsOf(info) >= target) return shape;
  }
  return [1, h, w, c];
}

/** Times each distinct recorded call with the cpu backend's kernel on a crop; returns the scaled total in ms. */
async function estimateCpuKernelMs(calls: KernelCall[], target: number): Promise<number> {
  const distinct = new Map<string, { call: ConvCall; count: number }>();
  for (const c of calls) {
    const call = convCallOf(c);
    const key = JSON.stringify(call);
    const e = distinct.get(key);
    if (e) e.count++;
    else distinct.set(key, { call, count: 1 });
  }
  await initBackend('cpu');
  let total = 0;
  try {
    for (const { call, count } of distinct.values()) {
      const crop = cropFor(call, target);
      const small = infoOf(call, crop);
      const dyShape = [1, small.outHeight, small.outWidth, small.outChannels];
      const ms = tf.tidy(() => {
        const dy = tf.randomNormal(dyShape, 0, 1, 'float32', 3);
        const other = tf.randomNormal(call.kernel === 'Conv2DBackpropFilter' ? crop : call.filterShape, 0, 1, 'float32', 4);
        other.dataSync();
        dy.dataSync();
        const t0 = performance.now();
        const out =
          call.kernel === 'Conv2DBackpropFilter'
            ? tf.engine().runKernel(call.kernel, { x: other, dy }, { ...call.attrs, filterShape: call.filterShape })
            : tf.engine().runKernel(call.kernel, { dy, filter: other }, { ...call.attrs, inputShape: crop });
        (out as tf.Tensor).dataSync();
        return performance.now() - t0;
      });
      total += (ms * count * macsOf(infoOf(call, call.xShape))) / macsOf(small);
    }
  } finally {
    await initBackend('wasm');
  }
  return total;
}
