/**
 * The gradient of one micro-batch: forward the collated rows, cross-entropy on the target image tokens, and
 * gradients of the trainable parameters. The loss is divided by the loss-position count of the whole
 * accumulated batch, so summing micro-batch gradients gives the gradient of the batch mean however it is split.
 */
import * as tf from '@tensorflow/tfjs-core';
import { CollatedBatch, Task } from '../data/batch';
import { Janus4o } from '../model/janus';
import { SequenceInput } from '../model/sequence';
import { StagedLoss, checkpointedGrads } from './checkpointing';

export interface MicroStepResult {
  /** Gradients by parameter name (owned by the caller). */
  grads: Map<string, tf.Tensor>;
  /** Sum of per-position CE over this micro-batch's loss positions, split by task. */
  lossSum: Record<Task, number>;
  count: Record<Task, number>;
  correct: number;
  /** Peak tensor bytes seen during the step's forward passes. */
  peakBytes: number;
}

export interface MicroStepOptions {
  /** Loss positions of the whole accumulated batch (on every rank), the mean's denominator. */
  denominator: number;
  /** Parameters to differentiate. */
  trainable: readonly string[];
  /** Source images of the batch's edit rows [K, S, S, 3] in [-1, 1], or null when the batch has none. */
  sourcePixels: tf.Tensor4D | null;
  /** Recompute each decoder block in backward instead of keeping its activations. */
  activationCheckpointing?: boolean;
  /**
   * Loss weight of each image code as a target (token_weights.ts); absent = every target weighs 1 (the recipe).
   * Only the gradient is weighted: lossSum stays the plain cross-entropy.
   */
  codeWeights?: Float32Array | null;
}

/** Per-position cross-entropy [P] of logits [P, V] against targets. */
export function perPositionCE(logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Tensor1D {
  const logp = tf.logSoftmax(logits);
  return tf.neg(tf.sum(tf.mul(logp, tf.oneHot(targets, logits.shape[1])), 1)) as tf.Tensor1D;
}

/**
 * The model input of a collated batch; its E-block features come from `sourcePixels` (aligner(SigLIP)).
 * Call inside tf.tidy: the features are tensors of that scope.
 */
export function batchInput(model: Janus4o, batch: CollatedBatch, sourcePixels: tf.Tensor4D | null): SequenceInput {
  const features = batch.featurePositions.length > 0 ? model.imageFeatures(sourcePixels!, batch.featureImages) : null;
  return {
    textIds: batch.textIds,
    attentionMask: batch.attentionMask,
    positionIds: batch.positionIds,
    genTokens: { positions: batch.genPositions, ids: batch.genIds },
    imageEmbeds: features ? { positions: batch.featurePositions, embeds: features } : undefined,
  };
}

/** The batch as a staged loss: embeddings, decoder inputs, and the head's scaled CE (recording metrics). */
function stagedLoss(model: Janus4o, batch: CollatedBatch, opts: MicroStepOptions, record: (ce: tf.Tensor1D, pred: tf.Tensor1D) => void): StagedLoss {
  const input = (): SequenceInput => batchInput(model, batch, opts.sourcePixels);
  // Host-side checks and positions, once (no tensors survive).
  const { positions, mask } = tf.tidy(() => model.embedInputs({ textIds: batch.textIds, attentionMask: batch.attentionMask, positionIds: batch.positionIds }).decoderInputs);
  const n = batch.textIds.length * batch.textIds[0].length;
  const targets = batch.lossTargets;
  return {
    embed: () => model.embedInputs(input()).embeds,
    positions,
    mask,
    head: (x) => {
      const logits = model.heads(model.llm.finalNorm(x), n, { imageLogitsAt: batch.lossPositions }).imageLogits!;
      const perPos = perPositionCE(logits, tf.tensor1d(targets, 'int32'));
      record(perPos, tf.argMax(logits, 1) as tf.Tensor1D);
      const w = opts.codeWeights;
      const weighted = w ? tf.mul(perPos, tf.tensor1d(targets.map((c) => w[c]))) : perPos;
      return tf.div(tf.sum(weighted), opts.denominator) as tf.Scalar;
    },
  };
}

/** Plain backprop through the whole forward (all activations kept). */
function fullGrads(model: Janus4o, s: StagedLoss, trainable: readonly string[]): { grads: Map<string, tf.Tensor>; peakBytes: number } {
  const vars = trainable.map((n) => model.params.get(n));
  const present: string[] = [];
  let peakBytes = 0;
  const list = tf.tidy(() => {
    const { grads } = tf.variableGrads(() => {
      let x = s.embed();
      const ctx = model.llm.context({ embeds: x, positions: s.positions, mask: s.mask });
      for (let i = 0; i < model.llm.layers.length; i++) x = model.llm.block(i, x, ctx);
      const loss = s.head(x);
      peakBytes = tf.memory().numBytes;
      return loss;
    }, vars);
    // A parameter off the loss path (e.g. SigLIP on a T2I-only batch) gets no gradient, like torch's None.
    const kept: tf.Tensor[] = [];
    vars.forEach((v, i) => {
      const g = grads[v.name];
      if (g) {
        present.push(trainable[i]);
        kept.push(g);
      }
    });
    return kept;
  });
  return { grads: new Map(present.map((name, i) => [name, list[i]])), peakBytes };
}

export function microStep(model: Janus4o, batch: CollatedBatch, opts: MicroStepOptions): MicroStepResult {
  let ce: tf.Tensor1D | null = null;
  let pred: tf.Tensor1D | null = null;
  const s = stagedLoss(model, batch, opts, (c, p) => {
    ce = tf.keep(c.clone());
    pred = tf.keep(p);
  });
  const { grads, peakBytes } = opts.activationCheckpointing ? checkpointedGrads(model, s, opts.trainable) : fullGrads(model, s, opts.trainable);
  const ceT = ce as unknown as tf.Tensor1D;
  const predT = pred as unknown as tf.Tensor1D;
  const ceV = ceT.dataSync();
  const predV = predT.dataSync();
  tf.dispose([ceT, predT]);
  const lossSum: Record<Task, number> = { t2i: 0, edit: 0 };
  const count: Record<Task, number> = { t2i: 0, edit: 0 };
  let correct = 0;
  batch.lossTasks.forEach((task, i) => {
    lossSum[task] += ceV[i];
    count[task] += 1;
    if (predV[i] === batch.lossTargets[i]) correct++;
  });
  return { grads, lossSum, count, correct, peakBytes };
}
