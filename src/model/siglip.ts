/**
 * The SigLIP-style semantic encoder of Janus (`vision_model.vision_tower.*`, janus-spec 3.1): patch embedding,
 * learned positional embedding, pre-norm transformer blocks with a fused qkv projection and exact-GELU MLP,
 * final LayerNorm, no pooling (all patch tokens are returned).
 */
import * as tf from '@tensorflow/tfjs-core';
import { JanusConfig } from './config';
import { Linear, gelu, layerNorm } from './layers';
import { ParamStore } from './params';

class VitBlock {
  readonly norm1: [string, string];
  readonly norm2: [string, string];
  readonly qkv: Linear;
  readonly proj: Linear;
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(private readonly store: ParamStore, prefix: string, private readonly cfg: JanusConfig['siglip']) {
    const w = cfg.width;
    const ln = (name: string): [string, string] => [
      store.declare(`${prefix}.${name}.weight`, [w], 'plain', { kind: 'ones' }),
      store.declare(`${prefix}.${name}.bias`, [w], 'plain', { kind: 'zeros' }),
    ];
    this.norm1 = ln('norm1');
    this.qkv = new Linear(store, `${prefix}.attn.qkv`, w, 3 * w);
    this.proj = new Linear(store, `${prefix}.attn.proj`, w, w);
    this.norm2 = ln('norm2');
    this.fc1 = new Linear(store, `${prefix}.mlp.fc1`, w, cfg.mlpDim);
    this.fc2 = new Linear(store, `${prefix}.mlp.fc2`, cfg.mlpDim, w);
  }

  private ln(x: tf.Tensor, p: [string, string]): tf.Tensor {
    return layerNorm(x, this.store.get(p[0]), this.store.get(p[1]), this.cfg.layerNormEps);
  }

  apply(x: tf.Tensor3D): tf.Tensor3D {
    const [b, n, w] = x.shape;
    const h = this.cfg.numHeads;
    const hd = w / h;
    // qkv output is [q; k; v], each head-major (head i uses dims i*hd .. i*hd+hd-1).
    const qkv = tf.transpose(tf.reshape(this.qkv.apply(this.ln(x, this.norm1)), [b, n, 3, h, hd]), [2, 0, 3, 1, 4]);
    const [q, k, v] = tf.unstack(qkv, 0);
    const att = tf.softmax(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(hd)));
    const y = tf.reshape(tf.transpose(tf.matMul(att, v), [0, 2, 1, 3]), [b, n, w]);
    const x1 = tf.add(x, this.proj.apply(y));
    const mlp = this.fc2.apply(gelu(this.fc1.apply(this.ln(x1, this.norm2))));
    return tf.add(x1, mlp) as tf.Tensor3D;
  }
}

export class SiglipEncoder {
  readonly patchWeight: string;
  readonly patchBias: string;
  readonly posEmbed: string;
  readonly blocks: VitBlock[];
  readonly norm: [string, string];
  readonly numTokens: number;

  constructor(private readonly store: ParamStore, private readonly cfg: JanusConfig, prefix = 'vision_model.vision_tower') {
    const s = cfg.siglip;
    const p = s.patchSize;
    this.numTokens = (cfg.imageSize / p) ** 2;
    this.patchWeight = store.declare(`${prefix}.patch_embed.proj.weight`, [p, p, 3, s.width], 'conv2d', { kind: 'normal', std: 0.02 });
    this.patchBias = store.declare(`${prefix}.patch_embed.proj.bias`, [s.width], 'plain', { kind: 'zeros' });
    this.posEmbed = store.declare(`${prefix}.pos_embed`, [1, this.numTokens, s.width], 'plain', { kind: 'normal', std: 0.02 });
    this.blocks = Array.from({ length: s.depth }, (_, i) => new VitBlock(store, `${prefix}.blocks.${i}`, s));
    this.norm = [store.declare(`${prefix}.norm.weight`, [s.width], 'plain', { kind: 'ones' }), store.declare(`${prefix}.norm.bias`, [s.width], 'plain', { kind: 'zeros' })];
  }

  /** Images [B, S, S, 3] in [-1, 1] -> patch features [B, tokens, width] (raster order). */
  apply(images: tf.Tensor4D): tf.Tensor3D {
    const s = this.cfg.siglip;
    const b = images.shape[0];
    const patches = tf.conv2d(images, this.store.get(this.patchWeight) as tf.Tensor4D, s.patchSize, 'valid');
    let x = tf.add(tf.add(tf.reshape(patches, [b, this.numTokens, s.width]), this.store.get(this.patchBias)), this.store.get(this.posEmbed)) as tf.Tensor3D;
    for (const blk of this.blocks) x = blk.apply(x);
    return layerNorm(x, this.store.get(this.norm[0]), this.store.get(this.norm[1]), s.layerNormEps) as tf.Tensor3D;
  }
}
