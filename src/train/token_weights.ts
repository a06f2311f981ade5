/**
 * Frequency-balanced image-token loss weights (train.token_weight_power).
 *
 * Why: on sparse synthetic scenes almost every target is a background code that the previous token already
 * gives away, and an object's identity decides only its first token, so a few percent of the targets carry
 * what the prompt says. Under a uniform loss the heads settle on the easy targets (and on attention sinks)
 * before any of them learns to read the prompt's object words; once attention to those words has collapsed,
 * their gradient is gone (measured: 100 steps of loss on those targets alone move a trained uniform-loss base
 * not at all, a fresh model by over a nat). Weighting a code by count^-power keeps the rare codes' gradient
 * large from the first step (on ShapeWorld that was not enough: docs/token-weights.md). The weights depend only on the training targets, so every data-parallel rank and
 * every resume computes the same ones.
 */
import { TokenSample } from '../data/batch';

export interface TokenWeightSource {
  size: number;
  sample(index: number): Pick<TokenSample, 'target'>;
}

/** How often each code occurs among the training targets (checked against the codebook). */
export function codeCounts(data: TokenWeightSource, codebookSize: number): Float64Array {
  const counts = new Float64Array(codebookSize);
  for (let i = 0; i < data.size; i++) {
    const target = data.sample(i).target;
    for (let k = 0; k < target.length; k++) {
      const c = target[k];
      if (!Number.isInteger(c) || c < 0 || c >= codebookSize) throw new Error(`training record ${i}: target code ${c} is outside 0..${codebookSize - 1}`);
      counts[c] += 1;
    }
  }
  return counts;
}

/**
 * Weight per code with sum over all training targets of w[target] = their number, or null when `power` is 0
 * (uniform). Codes that never occur as a target get the largest weight of those that do.
 */
export function weightsFromCounts(counts: Float64Array, power: number): Float32Array | null {
  if (power === 0) return null;
  let total = 0;
  let massSum = 0;
  let maxRaw = 0;
  const raw = new Float64Array(counts.length);
  for (let c = 0; c < counts.length; c++) {
    if (counts[c] === 0) continue;
    raw[c] = Math.pow(counts[c], -power);
    total += counts[c];
    massSum += counts[c] * raw[c];
    maxRaw = Math.max(maxRaw, raw[c]);
  }
  if (total === 0) throw new Error('train.token_weight_power: the training set has no image-token targets');
  const scale = total / massSum;
  const out = new Float32Array(counts.length);
  for (let c = 0; c < counts.length; c++) out[c] = (counts[c] === 0 ? maxRaw : raw[c]) * scale;
  return out;
}

/**
 * The power in force at optimizer step `step` (0-based) of `total`: `power` throughout, or with `anneal` = f,
 * falling linearly to 0 at step f * total and uniform after. Weighted cross-entropy trains a biased
 * distribution (rare codes over-predicted, which sampling then draws), so a run that samples afterwards
 * anneals to the plain loss to get the calibration back (docs/token-weights.md: what a full trial gained, and
 * did not).
 */
export function tokenWeightPower(step: number, total: number, power: number, anneal: number | undefined): number {
  if (anneal === undefined || power === 0) return power;
  const end = anneal * total;
  return step >= end ? 0 : power * (1 - step / end);
}
