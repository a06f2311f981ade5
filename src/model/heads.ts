/**
 * The generation path around the LLM (janus-spec section 4): `gen_embed` (image-token id -> small vector),
 * `gen_aligner` (MlpProjector to the LLM width), `gen_head` (the `vision_head` class: Linear -> GELU -> Linear to
 * the image vocabulary), and the text `lm_head`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { JanusConfig } from './config';
import { Linear, MlpProjector, gelu } from './layers';
import { ParamStore } from './params';

export class GenEmbedding {
  readonly weight: string;
  constructor(private readonly store: ParamStore, numTokens: number, dim: number, prefix = 'gen_embed') {
    this.weight = store.declare(`${prefix}.weight`, [numTokens, dim], 'plain', { kind: 'normal', std: 1 });
  }
  apply(ids: tf.Tensor1D): tf.Tensor2D {
    return tf.gather(this.store.get(this.weight), ids) as tf.Tensor2D;
  }
}

/** `gen_head`: output_mlp_projector (D -> D), GELU, vision_head (D -> image vocabulary). */
export class VisionHead {
  readonly projector: Linear;
  readonly head: Linear;
  constructor(store: ParamStore, hidden: number, imageVocab: number, prefix = 'gen_head') {
    this.projector = new Linear(store, `${prefix}.output_mlp_projector`, hidden, hidden);
    this.head = new Linear(store, `${prefix}.vision_head`, hidden, imageVocab);
  }
  apply(h: tf.Tensor): tf.Tensor {
    return this.head.apply(gelu(this.projector.apply(h)));
  }
}

/** Every generation-path module of one Janus model. */
export class GenerationModules {
  readonly genEmbed: GenEmbedding;
  readonly genAligner: MlpProjector;
  readonly genHead: VisionHead;
  readonly lmHead: Linear;

  constructor(store: ParamStore, cfg: JanusConfig) {
    const d = cfg.llm.hiddenSize;
    this.genEmbed = new GenEmbedding(store, cfg.vq.codebookSize, cfg.genEmbedDim);
    this.genAligner = new MlpProjector(store, 'gen_aligner', cfg.genEmbedDim, d);
    this.genHead = new VisionHead(store, d, cfg.vq.codebookSize);
    this.lmHead = new Linear(store, 'language_model.lm_head', d, cfg.llm.vocabSize, { bias: false });
  }

  /** LLM input embeddings of image-token ids: gen_aligner(gen_embed(id)). */
  imageTokenEmbeds(ids: tf.Tensor1D): tf.Tensor2D {
    return this.genAligner.apply(this.genEmbed.apply(ids)) as tf.Tensor2D;
  }
}
