/** Held-out image-token loss: no condition dropout, every target token scored, in small batches. */
import * as tf from '@tensorflow/tfjs-core';
import { PromptIds, TokenSample, collate } from '../data/batch';
import { makeRng } from '../data/rng';
import { imageTokenCount } from '../model/config';
import { Janus4o } from '../model/janus';
import { perPositionCE } from './step';

export interface HeldoutResult {
  loss: number;
  accuracy: number;
  tokens: number;
}

export async function heldoutLoss(
  model: Janus4o,
  samples: readonly TokenSample[],
  tpl: PromptIds,
  sourcePixels: (s: TokenSample) => Promise<tf.Tensor3D | null>,
  batchSize = 8,
): Promise<HeldoutResult> {
  const n = imageTokenCount(model.config);
  let sum = 0;
  let correct = 0;
  let count = 0;
  const rng = makeRng('heldout'); // no condition dropout here: both masking probabilities are 0
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
    const batch = collate(withIdx, tpl, n, { textMaskProb: 0, imageMaskProb: 0, lossAlignment: 'full' }, () => rng);
    const [ceV, predV] = tf.tidy(() => {
      const pixels = pix.length ? (tf.stack(pix) as tf.Tensor4D) : null;
      const features = batch.featurePositions.length ? model.imageFeatures(pixels!, batch.featureImages) : undefined;
      const logits = model.forward(
        {
          textIds: batch.textIds,
          attentionMask: batch.attentionMask,
          genTokens: { positions: batch.genPositions, ids: batch.genIds },
          imageEmbeds: features ? { positions: batch.featurePositions, embeds: features } : undefined,
        },
        { imageLogitsAt: batch.lossPositions },
      ).imageLogits!;
      const t = tf.tensor1d(batch.lossTargets, 'int32');
      return [perPositionCE(logits, t).dataSync(), tf.argMax(logits, 1).dataSync()];
    });
    tf.dispose(pix);
    for (let k = 0; k < ceV.length; k++) {
      sum += ceV[k];
      if (predV[k] === batch.lossTargets[k]) correct++;
    }
    count += ceV.length;
  }
  return { loss: sum / count, accuracy: correct / count, tokens: count };
}
