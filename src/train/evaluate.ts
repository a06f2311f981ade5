/**
 * Held-out image-token loss (no condition dropout, every target token scored, in small batches) and condition
 * use: the same loss with the conditions dropped the way classifier-free guidance drops them, so the difference
 * says how many nats per image the model actually takes from its prompt and from an edit's input image. A model
 * can reach a low held-out loss while ignoring most of its prompt (the tokens an image's own earlier tokens
 * determine dominate the mean), so the loss alone does not show whether fine-tuning taught conditioning.
 */
import * as tf from '@tensorflow/tfjs-core';
import { PromptIds, Task, TokenSample, collate } from '../data/batch';
import { makeRng } from '../data/rng';
import { imageTokenCount } from '../model/config';
import { Janus4o } from '../model/janus';
import { imageTokenScores } from '../model/loss';
import { batchInput } from './step';

/** Held-out samples scored per forward. */
const HELDOUT_BATCH = 8;

export interface TaskLoss {
  /** Mean cross-entropy per target token. */
  loss: number;
  tokens: number;
}

export interface HeldoutResult {
  loss: number;
  accuracy: number;
  tokens: number;
  /** The loss of each task's samples; null when there were none. */
  byTask: Record<Task, TaskLoss | null>;
}

export interface HeldoutOptions {
  batchSize?: number;
  /**
   * Score every sample with its conditions dropped as in training's condition dropout: a text-to-image prompt
   * replaced by pads (the CFG unconditional row), an edit's input-image VQ block replaced by pads (the CFG
   * "part" row; the semantic block and the instruction stay).
   */
  dropConditions?: boolean;
}

export async function heldoutLoss(
  model: Janus4o,
  samples: readonly TokenSample[],
  tpl: PromptIds,
  sourcePixels: (s: TokenSample) => Promise<tf.Tensor3D | null>,
  opts: HeldoutOptions = {},
): Promise<HeldoutResult> {
  const [result] = await heldoutPasses(model, samples, tpl, sourcePixels, [opts.dropConditions ?? false], opts.batchSize ?? HELDOUT_BATCH);
  return result;
}

/** One held-out pass per entry of `drops` (conditions kept / dropped), reading each edit's source image once. */
async function heldoutPasses(
  model: Janus4o,
  samples: readonly TokenSample[],
  tpl: PromptIds,
  sourcePixels: (s: TokenSample) => Promise<tf.Tensor3D | null>,
  drops: readonly boolean[],
  batchSize: number,
): Promise<HeldoutResult[]> {
  const n = imageTokenCount(model.config);
  const tally = drops.map(() => ({ sum: { t2i: 0, edit: 0 } as Record<Task, number>, count: { t2i: 0, edit: 0 } as Record<Task, number>, correct: 0 }));
  const rng = makeRng('heldout'); // probabilities 0 or 1: the draws decide nothing
  for (let i = 0; i < samples.length; i += batchSize) {
    const chunk = samples.slice(i, i + batchSize);
    const pix: tf.Tensor3D[] = [];
    const withIdx = await Promise.all(
      chunk.map(async (s) => {
        if (s.task !== 'edit') return s;
        const p = await sourcePixels(s);
        if (!p) return s;
        pix.push(p);
        return { ...s, sourceImage: pix.length - 1 };
      }),
    );
    drops.forEach((dropped, v) => {
      const drop = dropped ? 1 : 0;
      const batch = collate(withIdx, tpl, n, { textMaskProb: drop, imageMaskProb: drop, lossAlignment: 'full' }, () => rng);
      const [ceV, predV] = tf.tidy(() => {
        const pixels = pix.length ? (tf.stack(pix) as tf.Tensor4D) : null;
        const { ce, predicted } = imageTokenScores(model, batchInput(model, batch, pixels), batch.lossPositions, batch.lossTargets);
        return [ce.dataSync(), predicted.dataSync()];
      });
      const t = tally[v];
      for (let k = 0; k < ceV.length; k++) {
        const task = batch.lossTasks[k];
        t.sum[task] += ceV[k];
        t.count[task] += 1;
        if (predV[k] === batch.lossTargets[k]) t.correct++;
      }
    });
    tf.dispose(pix);
  }
  return tally.map(({ sum, count, correct }) => {
    const total = count.t2i + count.edit;
    const of = (t: Task): TaskLoss | null => (count[t] ? { loss: sum[t] / count[t], tokens: count[t] } : null);
    return { loss: (sum.t2i + sum.edit) / total, accuracy: correct / total, tokens: total, byTask: { t2i: of('t2i'), edit: of('edit') } };
  });
}

/** Nats per image the model takes from each condition (loss with it dropped minus loss with it); null: no such samples. */
export interface ConditionUse {
  /** Text-to-image samples: the prompt. */
  prompt: number | null;
  /** Edit samples: the input image's VQ block (X). */
  inputImageTokens: number | null;
}

export async function conditionUse(
  model: Janus4o,
  samples: readonly TokenSample[],
  tpl: PromptIds,
  sourcePixels: (s: TokenSample) => Promise<tf.Tensor3D | null>,
): Promise<{ heldout: HeldoutResult; use: ConditionUse }> {
  const [heldout, dropped] = await heldoutPasses(model, samples, tpl, sourcePixels, [false, true], HELDOUT_BATCH);
  const n = imageTokenCount(model.config);
  const gain = (t: Task): number | null => {
    const own = heldout.byTask[t];
    const without = dropped.byTask[t];
    return own && without ? (without.loss - own.loss) * n : null;
  };
  return { heldout, use: { prompt: gain('t2i'), inputImageTokens: gain('edit') } };
}

/** "prompt 12.3 nats/image, input-image tokens 4.5 nats/image" (the parts that were measured). */
export function formatConditionUse(u: ConditionUse): string {
  const parts: string[] = [];
  if (u.prompt !== null) parts.push(`prompt ${u.prompt.toFixed(2)} nats/image (T2I)`);
  if (u.inputImageTokens !== null) parts.push(`input-image VQ block ${u.inputImageTokens.toFixed(2)} nats/image (edits)`);
  return parts.join(', ');
}
