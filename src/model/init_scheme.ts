/**
 * How a from-scratch model's weights start (loaded checkpoints replace them). `reference`: every module as declared,
 * normal(0.02) like HF LLaMA's initializer_range. `unit-input`: the decoder's inputs at unit scale, text embeddings
 * normal(1) and the aligners' (MlpProjector) layers normal(1.6 / sqrt(fan_in)), so text and image-token inputs are
 * not drowned by what the first block adds (docs/init-scale.md: a fresh tiny model reads a fixed-cell prompt in
 * ~200 steps instead of >300, and the full ShapeWorld base ends at held-out 0.225 instead of 0.237).
 */
import { ParamStore } from './params';

export const INIT_SCHEMES = ['reference', 'unit-input'] as const;
export type InitScheme = (typeof INIT_SCHEMES)[number];

/** About 1 / RMS(GELU(N(0, 1))): unit-scale inputs then leave each projector layer at RMS ~1-2. */
const PROJECTOR_GAIN = 1.6;
const PROJECTOR_WEIGHT = /^(gen_)?aligner\.layers\.[02]\.weight$/;
const TEXT_EMBEDDINGS = /(^|\.)embed_tokens\.weight$/;

/** Rewrites the initialisers of a declared (not yet materialised) store for `scheme`. */
export function applyInitScheme(store: ParamStore, scheme: InitScheme): void {
  if (scheme === 'reference') return;
  for (const spec of store.list()) {
    if (TEXT_EMBEDDINGS.test(spec.name) && spec.name.startsWith('language_model.')) store.setInit(spec.name, { kind: 'normal', std: 1 });
    else if (PROJECTOR_WEIGHT.test(spec.name)) store.setInit(spec.name, { kind: 'normal', std: PROJECTOR_GAIN / Math.sqrt(spec.shape[0]) });
  }
}
