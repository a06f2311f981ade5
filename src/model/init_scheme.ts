/**
 * How a from-scratch model's weights start (loaded checkpoints replace them). `reference`: every module as declared,
 * normal(0.02) like HF LLaMA's initializer_range. `unit-input`: the decoder's inputs at unit scale, text embeddings
 * normal(1) and the aligners' (MlpProjector) layers normal(1.6 / sqrt(fan_in)), so text and image-token inputs are
 * not drowned by what the first block adds (docs/init-scale.md: a fresh tiny model reads a fixed-cell prompt in
 * ~200 steps instead of >300, and the full ShapeWorld base ends at held-out 0.225 instead of 0.237).
 */
import { MlpProjector } from './layers';
import { ParamStore } from './params';

export const INIT_SCHEMES = ['reference', 'unit-input'] as const;
export type InitScheme = (typeof INIT_SCHEMES)[number];

/** About 1 / RMS(GELU(N(0, 1))): unit-scale inputs then leave each projector layer at RMS ~1-2. */
const PROJECTOR_GAIN = 1.6;

/** The parameters a scheme re-initialises, named by the modules that declared them. */
export interface InputPath {
  /** The text embedding table's parameter name. */
  textEmbeddings: string;
  /** The projectors that carry image tokens and image features into the decoder. */
  projectors: readonly MlpProjector[];
}

/** Rewrites the initialisers of a declared (not yet materialised) store for `scheme`. */
export function applyInitScheme(store: ParamStore, scheme: InitScheme, inputs: InputPath): void {
  if (scheme === 'reference') return;
  store.setInit(inputs.textEmbeddings, { kind: 'normal', std: 1 });
  for (const layer of inputs.projectors.flatMap((p) => [p.fc1, p.fc2])) {
    store.setInit(layer.weight, { kind: 'normal', std: PROJECTOR_GAIN / Math.sqrt(layer.inDim) });
  }
}
