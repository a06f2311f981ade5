/**
 * Training rows of the Janus-4o recipe (janus-spec 8.1-8.3): the token sequence of each sample from the prompt
 * templates, the condition dropout (10% prompt -> pad on T2I, 50% X block -> pad embeddings on edits), the
 * target image tokens and their loss positions, and left padding of rows of different lengths.
 *
 * The CFG rows that generation builds come from the same functions (`uncondIds`, `editRowVariant`), so what
 * the model is trained to see when a condition is dropped is exactly what sampling feeds it.
 */
import { Rng } from './rng';
import { ImagePositions, consecutivePositions, prefixThenImages } from '../model/positions';
import { uncondIds } from '../tokenizer/template';

export { uncondIds };

/** Token-id builders of the prompt templates (src/tokenizer/template.ts provides them for a tokenizer). */
export interface PromptIds {
  /** `[BOS, ..."<|User|>: {prompt}\n\n<|Assistant|>:", BOI]`. */
  t2iPrefix(prompt: string): number[];
  /** The edit prefix with the E (semantic) and X (VQ) blocks of `n` slots, ending in BOI; block spans [start, end). */
  editPrefix(instruction: string, n: number): EditPrefix;
  pad: number;
  /** The model's non-reference image-token positions (editPrefix then returns position ids), if any. */
  imagePositions?: ImagePositions;
}

/** An edit prefix; `positions` (RoPE position ids, one per id) is present when the model declares imagePositions. */
export interface EditPrefix {
  ids: number[];
  eBlock: [number, number];
  xBlock: [number, number];
  positions?: number[];
}

export type Task = 't2i' | 'edit';

/** One prepared sample: ids of the target image (and, for edits, of the source image). */
export interface TokenSample {
  task: Task;
  prompt: string;
  target: ArrayLike<number>;
  /** Edits: VQ ids of the input image (the X block). */
  source?: ArrayLike<number>;
  /** Edits: index of the input image in the batch's pixel inputs (the E block goes through SigLIP). */
  sourceImage?: number;
}

export type LossAlignment = 'full' | 'reference';

export interface MaskOptions {
  /** Probability of replacing a T2I prompt by pads (Janus-4o: 0.10). */
  textMaskProb: number;
  /** Probability of leaving an edit's X block as pad embeddings (Janus-4o: 0.50). */
  imageMaskProb: number;
  /**
   * 'full' trains every target token (the hidden state at the final BOI predicts token 0); 'reference'
   * reproduces the released Janus-4o code, whose shifted causal-LM loss never supervises token 0.
   */
  lossAlignment: LossAlignment;
}

export interface RowLayout {
  ids: number[];
  /** Positions of the target image tokens (row-local). */
  targetStart: number;
  /** E block span for edits (SigLIP features), else null. */
  eBlock: [number, number] | null;
  /** X block span for edits when it carries the source VQ tokens, else null (dropped or T2I). */
  xBlock: [number, number] | null;
  textMasked: boolean;
  imageMasked: boolean;
  /** Position ids of `ids` when they are not 0..L-1 (rows of a model that declares imagePositions). */
  positions?: number[];
}

/**
 * The edit rows of 3-branch CFG and of training: 'full' has E + X, 'part' has E and a pad X block (the
 * 50%-dropped training condition), 'uncond' has neither (all pads but BOS and BOI).
 */
export function editRowVariant(prefix: EditPrefix, variant: 'full' | 'part' | 'uncond', pad: number): Omit<RowLayout, 'targetStart' | 'textMasked' | 'imageMasked'> {
  // Every variant keeps the prefix's length, so the three CFG rows share its position ids.
  const positions = prefix.positions ? { positions: prefix.positions.slice() } : {};
  if (variant === 'uncond') return { ids: uncondIds(prefix.ids, pad), eBlock: null, xBlock: null, ...positions };
  return { ids: prefix.ids.slice(), eBlock: prefix.eBlock, xBlock: variant === 'full' ? prefix.xBlock : null, ...positions };
}

/** Position ids of a prefix followed by its n image slots, or undefined where they are the reference's. */
function rowPositions(prefixPositions: readonly number[] | undefined, prefixLength: number, n: number, scheme: ImagePositions | undefined): number[] | undefined {
  if (!prefixPositions && !scheme) return undefined;
  return prefixThenImages(prefixPositions ?? consecutivePositions(prefixLength), n, scheme);
}

/** Lays out one sample: prefix (with dropout applied) + N target slots holding pad ids. */
export function layoutSample(s: TokenSample, tpl: PromptIds, n: number, opts: MaskOptions, rng: Rng): RowLayout {
  if (s.target.length !== n) throw new Error(`sample "${s.prompt.slice(0, 40)}": ${s.target.length} target ids, expected ${n}`);
  if (s.task === 't2i') {
    const prefix = tpl.t2iPrefix(s.prompt);
    const textMasked = rng.chance(opts.textMaskProb);
    const ids = textMasked ? uncondIds(prefix, tpl.pad) : prefix;
    const positions = rowPositions(undefined, ids.length, n, tpl.imagePositions);
    return { ids: [...ids, ...new Array<number>(n).fill(tpl.pad)], targetStart: ids.length, eBlock: null, xBlock: null, textMasked, imageMasked: false, ...(positions ? { positions } : {}) };
  }
  if (!s.source || s.source.length !== n) throw new Error(`edit sample "${s.prompt.slice(0, 40)}": needs ${n} source ids, got ${s.source?.length ?? 0}`);
  const prefix = tpl.editPrefix(s.prompt, n);
  const imageMasked = rng.chance(opts.imageMaskProb);
  const row = editRowVariant(prefix, imageMasked ? 'part' : 'full', tpl.pad);
  const positions = rowPositions(row.positions, row.ids.length, n, tpl.imagePositions);
  return { ...row, ids: [...row.ids, ...new Array<number>(n).fill(tpl.pad)], targetStart: prefix.ids.length, textMasked: false, imageMasked, ...(positions ? { positions } : {}) };
}

/** A collated batch, ready for Janus4o.forward (left-padded rows). */
export interface CollatedBatch {
  textIds: number[][];
  attentionMask: number[][];
  /** Position ids [B][L], present when some row has its own (else the model counts real tokens). */
  positionIds?: number[][];
  genPositions: number[];
  genIds: number[];
  /** Flat positions of E-block slots, grouped per edit row in row order, with the pixel input they come from. */
  featurePositions: number[];
  featureImages: number[];
  /** Flat positions whose image logits are scored, and their target ids. */
  lossPositions: number[];
  lossTargets: number[];
  /** Task of each loss position's row (for per-task loss logging). */
  lossTasks: Task[];
  rows: RowLayout[];
}

/**
 * Collates samples into one left-padded batch. `rngFor(k)` gives the masking stream of the k-th sample: the
 * trainer derives it from (seed, epoch, dataset index), so a sample's dropout does not depend on which rank or
 * micro-batch it lands in, nor on what was drawn before it (resume and data-parallel runs replay it exactly).
 */
export function collate(samples: readonly TokenSample[], tpl: PromptIds, n: number, opts: MaskOptions, rngFor: (k: number) => Rng): CollatedBatch {
  const rows = samples.map((s, k) => layoutSample(s, tpl, n, opts, rngFor(k)));
  const L = Math.max(...rows.map((r) => r.ids.length));
  const explicitPositions = rows.some((x) => x.positions);
  const out: CollatedBatch = { textIds: [], attentionMask: [], genPositions: [], genIds: [], featurePositions: [], featureImages: [], lossPositions: [], lossTargets: [], lossTasks: [], rows };
  rows.forEach((row, r) => {
    const shift = L - row.ids.length;
    const base = r * L + shift;
    out.textIds.push([...new Array<number>(shift).fill(tpl.pad), ...row.ids]);
    out.attentionMask.push([...new Array<number>(shift).fill(0), ...new Array<number>(row.ids.length).fill(1)]);
    if (explicitPositions) {
      // Left padding takes position 0 (it is never attended to); real tokens keep their row's ids.
      (out.positionIds ??= []).push([...new Array<number>(shift).fill(0), ...(row.positions ?? consecutivePositions(row.ids.length))]);
    }
    const s = samples[r];
    for (let k = 0; k < n; k++) {
      out.genPositions.push(base + row.targetStart + k);
      out.genIds.push(s.target[k]);
    }
    if (row.xBlock) {
      for (let k = 0; k < n; k++) {
        out.genPositions.push(base + row.xBlock[0] + k);
        out.genIds.push(s.source![k]);
      }
    }
    if (row.eBlock) {
      if (s.sourceImage === undefined) throw new Error(`edit sample "${s.prompt.slice(0, 40)}" has no source image for the E block`);
      for (let k = row.eBlock[0]; k < row.eBlock[1]; k++) {
        out.featurePositions.push(base + k);
        out.featureImages.push(s.sourceImage);
      }
    }
    // Position p predicts the token at p + 1: the final BOI predicts target 0.
    const first = opts.lossAlignment === 'full' ? 0 : 1;
    for (let k = first; k < n; k++) {
      out.lossPositions.push(base + row.targetStart + k - 1);
      out.lossTargets.push(s.target[k]);
      out.lossTasks.push(s.task);
    }
  });
  return out;
}

/** Number of loss positions a sample contributes (needed up front to average over an accumulated batch). */
export function lossPositionsPerSample(n: number, alignment: LossAlignment): number {
  return alignment === 'full' ? n : n - 1;
}
