/**
 * Which kernels each workload runs, and which of them the wasm backend would have to take from the cpu
 * backend. tfjs does not fall back by itself: a kernel missing on wasm throws "Kernel 'X' not registered" at
 * the first call, so each workload is run once on wasm (small shapes: the kernel set does not depend on size)
 * and both the listed gaps and any such error count as fallbacks.
 */
import * as tf from '@tensorflow/tfjs-core';
import { listCpuFallbackOps } from '../kernels';
import { Janus4o } from '../model/janus';
import { AdamW } from '../train/optimizer';
import { sampleImageTokens, sampleRng, t2iRows } from '../generate/sampler';
import { referenceBatch, referenceTrainable, trainStep } from './reference_step';
import { randomImages, vqLossAndGrads } from './vq';

export interface WorkloadKernels {
  kernels: number;
  cpuFallback: string[];
}

async function kernelsOf(fn: () => Promise<tf.TensorContainer>): Promise<WorkloadKernels> {
  try {
    const info = await tf.profile(fn);
    tf.dispose(info.result);
    const names = [...new Set(info.kernelNames)];
    return { kernels: names.length, cpuFallback: listCpuFallbackOps(names, 'wasm') };
  } catch (e) {
    const m = /Kernel '(\w+)' not registered for backend 'wasm'/.exec((e as Error).message);
    if (m) return { kernels: -1, cpuFallback: [m[1]] };
    throw e;
  }
}

/** Kernel coverage of the reference training step, T2I generation (tokens + VQ decode), and VQ / SigLIP training. */
export async function fallbackReport(): Promise<Record<'referenceStep' | 'generation' | 'vqTrainStep' | 'siglipTrainStep', WorkloadKernels>> {
  if (tf.getBackend() !== 'wasm') throw new Error('the fallback check runs on the wasm backend');
  const model = Janus4o.create('tiny', { seed: 1 });
  try {
    const referenceStep = await kernelsOf(async () => {
      const trainable = referenceTrainable(model);
      const opt = new AdamW(trainable.map((name) => ({ name, shape: model.params.spec(name).shape })));
      trainStep(model, opt, referenceBatch(model, 1), trainable);
      opt.dispose();
      return [];
    });
    const generation = await kernelsOf(async () => {
      const res = await sampleImageTokens(model, 't2i', [{ rows: t2iRows([1, 5, 9, 13], 0), rng: sampleRng('fallback', 0, 0) }], 0, {});
      return model.vq.decode(tf.tensor2d(res.ids, [1, res.ids[0].length], 'int32'));
    });
    const vqNames = model.params.list().map((s) => s.name).filter((n) => n.startsWith('gen_vision_model.'));
    const vqTrainStep = await kernelsOf(async () => {
      const images = randomImages(1, 16);
      const { loss, grads } = vqLossAndGrads(model.vq, model.params, vqNames, images);
      const opt = new AdamW(vqNames.map((name) => ({ name, shape: model.params.spec(name).shape })));
      opt.step(model.params, grads, 1e-4);
      opt.dispose();
      tf.dispose([images, ...grads.values()]);
      return loss;
    });
    const siglipTrainStep = await kernelsOf(async () => {
      const names = model.params.list().map((s) => s.name).filter((n) => n.startsWith('vision_model.') || n.startsWith('aligner.'));
      const pixels = randomImages(1, model.config.imageSize);
      const vars = names.map((n) => model.params.get(n));
      const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(model.aligner.apply(model.siglip.apply(pixels)))) as tf.Scalar, vars);
      tf.dispose([pixels, ...Object.values(grads)]);
      return value;
    });
    return { referenceStep, generation, vqTrainStep, siglipTrainStep };
  } finally {
    model.dispose();
  }
}
