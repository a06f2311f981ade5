/**
 * The gradient of one micro-batch: forward the collated rows, cross-entropy on the target image tokens
 * (src/model/loss.ts), and gradients of the trainable parameters. The loss is divided by the loss-position count
 * of the whole accumulated batch, so summing micro-batch gradients gives the gradient of the batch mean however
 * it is split.
 *
 * Every trainable parameter gets a gradient, zeros where it is off this batch's loss path (SigLIP and the
 * understanding aligner on rows without an input image; anything else `train.trainable` names that the image
 * loss never reaches). That is what the reference's optimizer sees (janus-spec 8.6: DeepSpeed's flat gradient
 * buffer holds zeros for them), so AdamW still weight-decays them and advances their moments and step counts.
 * A parameter frozen by config is not in `trainable` and gets nothing.
 */
import * as tf from '@tensorflow/tfjs-core';
import { CollatedBatch, Task } from '../data/batch';
import { Janus4o } from '../model/janus';
import { imageTokenScoresOfHidden } from '../model/loss';
import { SequenceInput } from '../model/sequence';
import { StagedLoss, checkpointedGrads } from './checkpointing';

export interface MicroStepResult {
  /** A gradient for every trainable parameter, in `trainable` order, zeros off the loss path (owned by the caller). */
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

/** The batch as a staged loss: embeddings, decoder inputs, and the head's summed CE over the denominator (recording metrics). */
function stagedLoss(model: Janus4o, batch: CollatedBatch, opts: MicroStepOptions, record: (ce: tf.Tensor1D, pred: tf.Tensor1D) => void): StagedLoss {
  const input = (): SequenceInput => batchInput(model, batch, opts.sourcePixels);
  // Host-side checks and positions, once (no tensors survive).
  const { positions, mask } = tf.tidy(() => model.embedInputs({ textIds: batch.textIds, attentionMask: batch.attentionMask, positionIds: batch.positionIds }).decoderInputs);
  return {
    embed: () => model.embedInputs(input()).embeds,
    positions,
    mask,
    head: (x) => {
      const { ce, predicted } = imageTokenScoresOfHidden(model, model.llm.finalNorm(x), batch.lossPositions, batch.lossTargets);
      record(ce, predicted);
      return tf.div(tf.sum(ce), opts.denominator) as tf.Scalar;
    },
  };
}

/** Plain backprop through the whole forward (all activations kept). Names off the loss path get no entry. */
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
    // tfjs returns nothing for a variable off the loss path (e.g. SigLIP on a T2I-only batch); microStep fills zeros.
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
  const reached = opts.activationCheckpointing ? checkpointedGrads(model, s, opts.trainable) : fullGrads(model, s, opts.trainable);
  // The reference's zero gradient for every trainable parameter the loss does not reach (see the file comment).
  const grads = new Map(opts.trainable.map((name) => [name, reached.grads.get(name) ?? tf.zeros(model.params.get(name).shape)] as const));
  const peakBytes = reached.peakBytes;
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
