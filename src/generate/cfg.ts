/**
 * Classifier-free guidance and the categorical draw (janus-spec 7.1 and 8.4).
 *
 * Row layout, shared by the sampler and these functions: the rows of one sample are adjacent, sample-major,
 * in branch order. T2I: [cond, uncond, cond, uncond, ...] (the reference's interleaving); edits:
 * [full, part, uncond, full, part, uncond, ...]. Row `s * k + b` is branch b of sample s.
 *
 * Guidance runs on the device in float32 (like the reference); the softmax, top-k/top-p and the draw run on
 * the host in float64 from a seeded stream, so the only backend dependence left is the float32 logits.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Rng } from '../data/rng';

export type GuidanceMode = 't2i' | 'edit';

export const BRANCHES: Readonly<Record<GuidanceMode, readonly string[]>> = {
  t2i: ['cond', 'uncond'],
  edit: ['full', 'part', 'uncond'],
};

/** Rows per sample: 2 for T2I, 3 for edits. */
export function branchCount(mode: GuidanceMode): number {
  return BRANCHES[mode].length;
}

export interface GuidanceWeights {
  /** w (T2I) or w1 (edits): the weight of the condition over the unconditional row. Reference default 5. */
  cfg: number;
  /** w2 (edits only): the weight of the image-dropped 'part' row inside the condition. Reference default 5. */
  cfg2?: number;
}

export const DEFAULT_CFG = 5;
export const DEFAULT_CFG2 = 5;

/** u + w (c - u), elementwise. */
export function guideT2I(cond: tf.Tensor2D, uncond: tf.Tensor2D, w: number): tf.Tensor2D {
  return tf.tidy(() => tf.add(uncond, tf.mul(tf.sub(cond, uncond), w)) as tf.Tensor2D);
}

/** lc = (lfull + w2 lpart) / (1 + w2); l = lu + w1 (lc - lu). */
export function guideEdit(full: tf.Tensor2D, part: tf.Tensor2D, uncond: tf.Tensor2D, w1: number, w2: number): tf.Tensor2D {
  return tf.tidy(() => {
    const lc = tf.div(tf.add(full, tf.mul(part, w2)), 1 + w2) as tf.Tensor2D;
    return guideT2I(lc, uncond, w1);
  });
}

/** Row logits [S*k, V] in the layout above -> guided logits [S, V]. */
export function guideLogits(rowLogits: tf.Tensor2D, mode: GuidanceMode, weights: GuidanceWeights): tf.Tensor2D {
  const k = branchCount(mode);
  const [rows, v] = rowLogits.shape;
  if (rows % k !== 0) throw new Error(`guideLogits: ${rows} rows do not split into samples of ${k} (${BRANCHES[mode].join(', ')})`);
  const s = rows / k;
  return tf.tidy(() => {
    const grouped = tf.reshape(rowLogits, [s, k, v]);
    const branch = (b: number) => tf.reshape(tf.slice(grouped, [0, b, 0], [s, 1, v]), [s, v]) as tf.Tensor2D;
    if (mode === 't2i') return guideT2I(branch(0), branch(1), weights.cfg);
    return guideEdit(branch(0), branch(1), branch(2), weights.cfg, weights.cfg2 ?? DEFAULT_CFG2);
  });
}

export interface DrawOptions {
  /** Softmax temperature; 0 picks the argmax (greedy). Reference default 1. */
  temperature: number;
  /** Keep only the k most likely ids (0 or undefined: all). The reference samples without it. */
  topK?: number;
  /** Keep the smallest set of most likely ids whose mass reaches p (1 or undefined: all). */
  topP?: number;
}

/** Throws on weights or draw options outside their domain; messages name the CLI flags. */
export function checkSamplingOptions(mode: GuidanceMode, w: GuidanceWeights, d: DrawOptions): void {
  const bad = (msg: string): never => {
    throw new RangeError(msg);
  };
  if (!Number.isFinite(w.cfg) || w.cfg < 0) bad(`--cfg must be a finite number >= 0, got ${w.cfg}`);
  if (mode === 'edit' && w.cfg2 !== undefined && (!Number.isFinite(w.cfg2) || w.cfg2 < 0)) bad(`--cfg2 must be a finite number >= 0, got ${w.cfg2}`);
  if (!Number.isFinite(d.temperature) || d.temperature < 0) bad(`--temperature must be a finite number >= 0, got ${d.temperature}`);
  if (d.topK !== undefined && (!Number.isInteger(d.topK) || d.topK < 0)) bad(`--top-k must be a non-negative integer, got ${d.topK}`);
  if (d.topP !== undefined && !(d.topP > 0 && d.topP <= 1)) bad(`--top-p must be in (0, 1], got ${d.topP}`);
}

/**
 * The sampling distribution of one row of guided logits: softmax(l / T) restricted by top-k then top-p
 * (the order of HF's warpers), renormalised. Float64 so the draw does not depend on summation order.
 */
export function probabilities(logits: ArrayLike<number>, d: DrawOptions): Float64Array {
  const v = logits.length;
  const p = new Float64Array(v);
  if (d.temperature === 0) {
    let best = 0;
    for (let i = 1; i < v; i++) if (logits[i] > logits[best]) best = i;
    p[best] = 1;
    return p;
  }
  let max = -Infinity;
  for (let i = 0; i < v; i++) max = Math.max(max, logits[i]);
  let total = 0;
  for (let i = 0; i < v; i++) {
    p[i] = Math.exp((logits[i] - max) / d.temperature);
    total += p[i];
  }
  for (let i = 0; i < v; i++) p[i] /= total;
  const topK = d.topK && d.topK < v ? d.topK : 0;
  const topP = d.topP !== undefined && d.topP < 1 ? d.topP : 1;
  if (topK === 0 && topP === 1) return p;
  // Ties broken by id so the kept set is a pure function of the logits.
  const order = Array.from({ length: v }, (_, i) => i).sort((a, b) => p[b] - p[a] || a - b);
  let keep = topK || v;
  if (topP < 1) {
    let mass = 0;
    let n = 0;
    // A token is kept while the mass before it is below p, so the most likely token always survives.
    while (n < keep && mass < topP) mass += p[order[n++]];
    keep = n;
  }
  const out = new Float64Array(v);
  let kept = 0;
  for (let j = 0; j < keep; j++) kept += p[order[j]];
  for (let j = 0; j < keep; j++) out[order[j]] = p[order[j]] / kept;
  return out;
}

/** Inverse-CDF categorical draw with one uniform from `rng`; never returns an id of probability 0. */
export function drawCategorical(p: ArrayLike<number>, rng: Rng): number {
  const u = rng.next();
  let acc = 0;
  let last = -1;
  for (let i = 0; i < p.length; i++) {
    if (p[i] <= 0) continue;
    acc += p[i];
    last = i;
    if (u < acc) return i;
  }
  // Rounding left the total a hair below u: the last id with mass is the right answer.
  if (last < 0) throw new Error('drawCategorical: the distribution has no mass');
  return last;
}

/** One id from a row of guided logits. */
export function sampleToken(logits: ArrayLike<number>, d: DrawOptions, rng: Rng): number {
  return drawCategorical(probabilities(logits, d), rng);
}
