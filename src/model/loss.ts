/**
 * The image-token loss, in one place, as the reference keeps it with the model (janus-spec 8.3): gen_head logits
 * at the loss positions, cross-entropy against the target VQ ids in float32, one mean over all of a batch's
 * labels. Training (src/train/step.ts, also its activation-checkpointing stages), the held-out loss
 * (src/train/evaluate.ts) and the teacher-forced probes all score through these functions, so they cannot
 * drift apart. Which positions are scored (the reference's one-position shift, or every target) is the
 * collate's choice (train.loss_alignment), not the loss's.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Janus4o } from './janus';
import { SequenceInput } from './sequence';

function idTensor(targets: tf.Tensor1D | ArrayLike<number>): tf.Tensor1D {
  return targets instanceof tf.Tensor ? (tf.cast(targets, 'int32') as tf.Tensor1D) : tf.tensor1d(Array.from(targets), 'int32');
}

/** Per-position cross-entropy [P] of image logits [P, V] against target ids [P]. */
export function perPositionCE(logits: tf.Tensor2D, targets: tf.Tensor1D | ArrayLike<number>): tf.Tensor1D {
  const count = targets instanceof tf.Tensor ? targets.size : targets.length;
  if (count !== logits.shape[0]) throw new Error(`Invalid loss input: ${logits.shape[0]} loss positions but ${count} target ids`);
  return tf.tidy(() => {
    const logp = tf.logSoftmax(logits);
    return tf.neg(tf.sum(tf.mul(logp, tf.oneHot(idTensor(targets), logits.shape[1])), 1)) as tf.Tensor1D;
  });
}

/** Mean cross-entropy of image logits [N, V] against target ids [N]: the mean of perPositionCE. */
export function imageTokenLoss(logits: tf.Tensor2D, targets: tf.Tensor1D | ArrayLike<number>): tf.Scalar {
  return tf.tidy(() => tf.mean(perPositionCE(logits, targets)) as tf.Scalar);
}

/** The scores of one batch's loss positions. */
export interface ImageTokenScores {
  /** Cross-entropy per loss position [P] (nats). */
  ce: tf.Tensor1D;
  /** The most likely image id per loss position [P] (int32), for accuracy. */
  predicted: tf.Tensor1D;
}

/**
 * Scores from final-normed hidden states [B, L, D] (the last stage of the forward, for staged callers such as
 * activation checkpointing): gen_head at the flat positions `at` (into B*L), cross-entropy against `targets`.
 */
export function imageTokenScoresOfHidden(model: Janus4o, hidden: tf.Tensor3D, at: ArrayLike<number>, targets: tf.Tensor1D | ArrayLike<number>): ImageTokenScores {
  const [b, l] = hidden.shape;
  const logits = model.heads(hidden, b * l, { imageLogitsAt: at }).imageLogits!;
  return scoresOf(logits, targets);
}

/**
 * Forwards a sequence through the model and scores its image tokens: gen_head logits at the flat positions
 * `at` (into B*L) against the target ids, one cross-entropy per position. Call inside tf.tidy (or dispose
 * both outputs); the sum over positions divided by their count is the reference's loss.
 */
export function imageTokenScores(model: Janus4o, input: SequenceInput, at: ArrayLike<number>, targets: tf.Tensor1D | ArrayLike<number>): ImageTokenScores {
  const logits = model.forward(input, { imageLogitsAt: at }).imageLogits!;
  return scoresOf(logits, targets);
}

function scoresOf(logits: tf.Tensor2D, targets: tf.Tensor1D | ArrayLike<number>): ImageTokenScores {
  return { ce: perPositionCE(logits, targets), predicted: tf.argMax(logits, 1) as tf.Tensor1D };
}
