/**
 * Model FLOPs of the reference step, counted from the config: 2 FLOPs per multiply-add of every matrix product
 * in the forward pass (projections, attention scores and values over the full L x L square as the dense kernels
 * compute it, gen_aligner, gen_head), times 3 for forward + backward (each product has two gradient products).
 * Elementwise work, gathers and the optimizer are not counted, which is the usual "model FLOPs" convention.
 */
import { JanusConfig, headDim } from '../model/config';

export interface StepShape {
  batch: number;
  textLen: number;
  imageLen: number;
}

export function referenceStepFlops(cfg: JanusConfig, s: StepShape): { forward: number; training: number } {
  const l = cfg.llm;
  const d = l.hiddenSize;
  const hd = headDim(l);
  const kvDim = l.numKvHeads * hd;
  const len = s.textLen + s.imageLen;
  const tokens = s.batch * len;
  const perTokenLayer = d * d + 2 * d * kvDim + d * d + 3 * d * l.intermediateSize;
  const attentionLayer = 2 * s.batch * l.numHeads * len * len * hd;
  const decoder = l.numLayers * (tokens * perTokenLayer + attentionLayer);
  const imageTokens = s.batch * s.imageLen;
  const aligner = imageTokens * (cfg.genEmbedDim * d + d * d);
  const head = imageTokens * (d * d + d * cfg.vq.codebookSize);
  const forward = 2 * (decoder + aligner + head);
  return { forward, training: 3 * forward };
}
