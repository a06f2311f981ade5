/**
 * The semantic (understanding) encoder of Janus: a timm-style SigLIP ViT (janus-spec.md 3.1) and the
 * understanding aligner (3.2). Patch conv -> + learned positional embedding -> pre-norm blocks (fused qkv,
 * exact-GELU MLP) -> final LayerNorm; no class token, no pooling (`attn_pool` exists in the checkpoint but is
 * unused), all blocks used. Output: one feature per patch in raster order.
 */
import * as tf from '@tensorflow/tfjs-core';
import { JanusConfig, SiglipConfig } from './config';
import { Linear, MlpProjector, gelu, layerNorm } from './layers';
import { ParamStore } from './params';
import { Conv2d } from './vision_layers';

/** LayerNorm with affine weight/bias under `${prefix}.weight` / `${prefix}.bias`. */
class LayerNorm {
  readonly weight: string;
  readonly bias: string;

  constructor(
    private readonly store: ParamStore,
    prefix: string,
    dim: number,
    private readonly eps: number,
  ) {
    this.weight = store.declare(`${prefix}.weight`, [dim], 'plain', { kind: 'ones' });
    this.bias = store.declare(`${prefix}.bias`, [dim], 'plain', { kind: 'zeros' });
  }

  apply(x: tf.Tensor): tf.Tensor {
    return layerNorm(x, this.store.get(this.weight), this.store.get(this.bias), this.eps);
  }
}

/** One pre-norm transformer block: x + attn(norm1(x)); x + mlp(norm2(x)). */
export class SiglipBlock {
  readonly norm1: LayerNorm;
  readonly qkv: Linear;
  readonly proj: Linear;
  readonly norm2: LayerNorm;
  readonly fc1: Linear;
  readonly fc2: Linear;
  private readonly heads: number;
  private readonly headDim: number;

  constructor(store: ParamStore, prefix: string, s: SiglipConfig) {
    this.heads = s.numHeads;
    this.headDim = s.width / s.numHeads;
    this.norm1 = new LayerNorm(store, `${prefix}.norm1`, s.width, s.layerNormEps);
    this.qkv = new Linear(store, `${prefix}.attn.qkv`, s.width, 3 * s.width);
    this.proj = new Linear(store, `${prefix}.attn.proj`, s.width, s.width);
    this.norm2 = new LayerNorm(store, `${prefix}.norm2`, s.width, s.layerNormEps);
    this.fc1 = new Linear(store, `${prefix}.mlp.fc1`, s.width, s.mlpDim);
    this.fc2 = new Linear(store, `${prefix}.mlp.fc2`, s.mlpDim, s.width);
  }

  apply(x: tf.Tensor3D): tf.Tensor3D {
    // A scope per block keeps only the block output alive between blocks (24 blocks at Janus-Pro size).
    return tf.tidy(() => {
      const h = tf.add(x, this.attention(this.norm1.apply(x) as tf.Tensor3D));
      return tf.add(h, this.fc2.apply(gelu(this.fc1.apply(this.norm2.apply(h))))) as tf.Tensor3D;
    });
  }

  private attention(x: tf.Tensor3D): tf.Tensor3D {
    const [b, n, w] = x.shape;
    // timm splits the fused output as [q; k; v], each head-major: reshape(B, N, 3, heads, headDim).
    const [q, k, v] = tf.split(this.qkv.apply(x), 3, -1).map((t) => tf.transpose(tf.reshape(t, [b, n, this.heads, this.headDim]), [0, 2, 1, 3]));
    const weights = tf.softmax(tf.mul(tf.matMul(q, k, false, true), this.headDim ** -0.5));
    const merged = tf.reshape(tf.transpose(tf.matMul(weights, v), [0, 2, 1, 3]), [b, n, w]);
    return this.proj.apply(merged) as tf.Tensor3D;
  }
}

export class SiglipEncoder {
  readonly patchEmbed: Conv2d;
  readonly posEmbed: string;
  readonly blocks: SiglipBlock[] = [];
  readonly norm: LayerNorm;
  readonly width: number;
  /** Patches per image ((imageSize / patchSize)^2; 576 for Janus-Pro). */
  readonly numTokens: number;

  constructor(
    private readonly store: ParamStore,
    readonly cfg: JanusConfig,
    readonly prefix = 'vision_model.vision_tower',
  ) {
    const s = cfg.siglip;
    if (cfg.imageSize % s.patchSize !== 0) throw new Error(`SigLIP: imageSize ${cfg.imageSize} is not a multiple of patchSize ${s.patchSize}.`);
    this.width = s.width;
    this.numTokens = (cfg.imageSize / s.patchSize) ** 2;
    this.patchEmbed = new Conv2d(store, `${prefix}.patch_embed.proj`, 3, s.width, s.patchSize, { stride: s.patchSize, pad: 0 });
    // timm initialises pos_embed with trunc_normal(std=0.02).
    this.posEmbed = store.declare(`${prefix}.pos_embed`, [1, this.numTokens, s.width], 'plain', { kind: 'normal', std: 0.02 });
    for (let i = 0; i < s.depth; i++) this.blocks.push(new SiglipBlock(store, `${prefix}.blocks.${i}`, s));
    this.norm = new LayerNorm(store, `${prefix}.norm`, s.width, s.layerNormEps);
  }

  /** Images NHWC in [-1, 1], [B, imageSize, imageSize, 3] -> features [B, tokens, width] in raster patch order. */
  apply(images: tf.Tensor4D): tf.Tensor3D {
    const s = images.shape;
    if (s.length !== 4 || s[1] !== this.cfg.imageSize || s[2] !== this.cfg.imageSize || s[3] !== 3) {
      throw new Error(`SigLIP: expected images [B, ${this.cfg.imageSize}, ${this.cfg.imageSize}, 3], got [${s.join(', ')}].`);
    }
    return tf.tidy(() => {
      const patches = this.patchEmbed.apply(images);
      let x = tf.add(tf.reshape(patches, [s[0], this.numTokens, this.width]), this.store.get(this.posEmbed)) as tf.Tensor3D;
      for (const block of this.blocks) x = block.apply(x);
      return this.norm.apply(x) as tf.Tensor3D;
    });
  }
}

/**
 * SigLIP followed by the understanding aligner (`aligner.layers.{0,2}`, Linear -> GELU -> Linear to the LLM
 * width): the image features that replace the `<image_placeholder>` embeddings. Pass an existing aligner when
 * the model already declared one (Janus4o does), since a name can be declared only once.
 */
export class UnderstandingEncoder {
  readonly siglip: SiglipEncoder;
  readonly aligner: MlpProjector;

  constructor(store: ParamStore, cfg: JanusConfig, opts: { aligner?: MlpProjector; prefix?: string } = {}) {
    this.siglip = new SiglipEncoder(store, cfg, opts.prefix);
    this.aligner = opts.aligner ?? new MlpProjector(store, 'aligner', cfg.siglip.width, cfg.llm.hiddenSize);
  }

  /** Images NHWC in [-1, 1] -> [B, tokens, llm.hiddenSize]. */
  apply(images: tf.Tensor4D): tf.Tensor3D {
    return tf.tidy(() => this.aligner.apply(this.siglip.apply(images)) as tf.Tensor3D);
  }
}
