/**
 * The reference training step, the same computation as ../shared/bench/torch_ref_bench.py: the `tiny` preset,
 * 8 rows of 32 text tokens + 64 image tokens, image tokens embedded through gen_aligner(gen_embed(id)), the
 * image positions scored via gen_head (the hidden state before each image token predicts it), mean CE, global
 * norm clip 1.0, AdamW (lr 5e-6, weight decay 0.1 on every parameter, like the script's param list).
 *
 * It runs the library's own training path (microStep -> clipByGlobalNorm -> AdamW.step), so a speed-up here is
 * a speed-up of `janus4o train`, not of a bench-only copy.
 */
import * as tf from '@tensorflow/tfjs-core';
import { CollatedBatch } from '../data/batch';
import { Janus4o } from '../model/janus';
import { AdamW, clipByGlobalNorm } from '../train/optimizer';
import { microStep } from '../train/step';
import { median, timeCalls } from './util';

export const REFERENCE_SHAPE = { batch: 8, textLen: 32, imageLen: 64 } as const;

/** Parameters the reference step trains: those on the T2I loss path (what torch_ref_bench.py's model holds). */
export function referenceTrainable(model: Janus4o): string[] {
  const onPath = (n: string) => n.startsWith('language_model.model.') || n.startsWith('gen_embed.') || n.startsWith('gen_aligner.') || n.startsWith('gen_head.');
  return model.params.list().map((s) => s.name).filter(onPath);
}

/** A fixed random batch in the reference layout (row r: 32 text ids then 64 image tokens). */
export function referenceBatch(model: Janus4o, seed = 0, rows: number = REFERENCE_SHAPE.batch): CollatedBatch {
  const { textLen, imageLen } = REFERENCE_SHAPE;
  const b = rows;
  const len = textLen + imageLen;
  // A small LCG: the bench must not depend on Math.random, and any fixed ids will do.
  let state = (seed * 2654435761 + 12345) >>> 0;
  const next = (n: number) => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state % n;
  };
  const textVocab = model.config.llm.vocabSize;
  const imageVocab = model.config.vq.codebookSize;
  const out: CollatedBatch = { textIds: [], attentionMask: [], genPositions: [], genIds: [], featurePositions: [], featureImages: [], lossPositions: [], lossTargets: [], lossTasks: [], rows: [] };
  for (let r = 0; r < b; r++) {
    const ids = Array.from({ length: len }, (_, j) => (j < textLen ? next(textVocab) : 0));
    out.textIds.push(ids);
    out.attentionMask.push(new Array<number>(len).fill(1));
    for (let j = 0; j < imageLen; j++) {
      const id = next(imageVocab);
      out.genPositions.push(r * len + textLen + j);
      out.genIds.push(id);
      // torch: h[:, text_len-1:-1] predicts img: position textLen-1+j is scored against image token j.
      out.lossPositions.push(r * len + textLen - 1 + j);
      out.lossTargets.push(id);
      out.lossTasks.push('t2i');
    }
  }
  return out;
}

export interface ReferenceStepResult {
  /** Median wall-clock milliseconds per step. */
  msPerStep: number;
  /** Median CPU milliseconds per step (see CallTimes). */
  cpuMsPerStep: number;
  /** Every timed step's wall-clock milliseconds, in order. */
  stepsMs: number[];
  tokensPerSecond: number;
  tokensPerStep: number;
  params: number;
  loss0: number;
  lossLast: number;
  /** Tensors alive after the last step minus after the first (0 = no leak). */
  tensorGrowth: number;
}

/** One optimizer step (forward, backward, clip, AdamW); returns the batch-mean loss. */
export function trainStep(model: Janus4o, opt: AdamW, batch: CollatedBatch, trainable: readonly string[]): number {
  const r = microStep(model, batch, { denominator: batch.lossPositions.length, trainable, sourcePixels: null });
  const { grads } = clipByGlobalNorm(r.grads, 1.0);
  opt.step(model.params, grads, 5e-6);
  tf.dispose([...grads.values()]);
  return r.lossSum.t2i / r.count.t2i;
}

/** Times the reference step; `batch` rows (default 8, the reference) of 32 text + 64 image tokens. */
export async function benchReferenceStep(opts: { steps: number; warmup: number; seed?: number; batch?: number }): Promise<ReferenceStepResult> {
  const model = Janus4o.create('tiny', { seed: opts.seed ?? 0 });
  try {
    const trainable = referenceTrainable(model);
    const shapes = trainable.map((name) => ({ name, shape: model.params.spec(name).shape }));
    const opt = new AdamW(shapes, { weightDecay: 0.1, noDecay: [] });
    const batch = referenceBatch(model, opts.seed ?? 0, opts.batch);
    const losses: number[] = [];
    let tensorsAfterFirst = 0;
    const times = await timeCalls(() => {
      losses.push(trainStep(model, opt, batch, trainable));
      if (losses.length === 1) tensorsAfterFirst = tf.memory().numTensors;
    }, opts.steps, opts.warmup);
    const tensorGrowth = tf.memory().numTensors - tensorsAfterFirst;
    opt.dispose();
    const { textLen, imageLen } = REFERENCE_SHAPE;
    const tokensPerStep = batch.textIds.length * (textLen + imageLen);
    const ms = median(times.wall);
    return {
      msPerStep: ms,
      cpuMsPerStep: median(times.cpu),
      stepsMs: times.wall,
      tokensPerSecond: (tokensPerStep * 1000) / ms,
      tokensPerStep,
      params: model.params.count((n) => trainable.includes(n)),
      loss0: losses[0],
      lossLast: losses[losses.length - 1],
      tensorGrowth,
    };
  } finally {
    model.dispose();
  }
}
