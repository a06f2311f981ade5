/**
 * The LLaMA decoder of Janus (`language_model.model.*`): RMSNorm (fp32), rotate-half RoPE, causal multi-head
 * attention with optional GQA, SwiGLU MLP, no biases. Works on embeddings, not ids, because Janus feeds text,
 * image-token and image-feature embeddings through one sequence.
 */
import * as tf from '@tensorflow/tfjs-core';
import { LlamaConfig, headDim } from './config';
import { KVCache } from './kv_cache';
import { Linear, rmsNorm, silu } from './layers';
import { ParamStore } from './params';
import { RotaryTable, applyRotary, applyRotaryMatMul } from './rope';

/** Additive attention bias value for masked keys: large but finite, so fully masked rows stay NaN-free. */
const MASKED = -1e9;

export interface DecoderInputs {
  /** Input embeddings [B, L, D]. */
  embeds: tf.Tensor3D;
  /** Position ids [B][L]. */
  positions: number[][];
  /** 1 = real token, 0 = padding, [B][L]; keys that are padding are never attended to. */
  mask: number[][];
}

class DecoderLayer {
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly o: Linear;
  readonly gate: Linear;
  readonly up: Linear;
  readonly down: Linear;
  readonly inputNorm: string;
  readonly postNorm: string;

  constructor(private readonly store: ParamStore, prefix: string, private readonly cfg: LlamaConfig) {
    const d = cfg.hiddenSize;
    const kvDim = cfg.numKvHeads * headDim(cfg);
    const nb = { bias: false };
    this.q = new Linear(store, `${prefix}.self_attn.q_proj`, d, d, nb);
    this.k = new Linear(store, `${prefix}.self_attn.k_proj`, d, kvDim, nb);
    this.v = new Linear(store, `${prefix}.self_attn.v_proj`, d, kvDim, nb);
    this.o = new Linear(store, `${prefix}.self_attn.o_proj`, d, d, nb);
    this.gate = new Linear(store, `${prefix}.mlp.gate_proj`, d, cfg.intermediateSize, nb);
    this.up = new Linear(store, `${prefix}.mlp.up_proj`, d, cfg.intermediateSize, nb);
    this.down = new Linear(store, `${prefix}.mlp.down_proj`, cfg.intermediateSize, d, nb);
    this.inputNorm = store.declare(`${prefix}.input_layernorm.weight`, [d], 'plain', { kind: 'ones' });
    this.postNorm = store.declare(`${prefix}.post_attention_layernorm.weight`, [d], 'plain', { kind: 'ones' });
  }

  /**
   * One block. `rotation` is RotaryTable.rotationMatrix() (rotate-half as a product); without it RoPE falls back
   * to split + concat, which gives the same values.
   */
  apply(
    x: tf.Tensor3D,
    rope: { cos: tf.Tensor4D; sin: tf.Tensor4D },
    bias: tf.Tensor4D,
    cache: KVCache | null,
    layerIndex: number,
    rotation: tf.Tensor2D | null = null,
  ): tf.Tensor3D {
    const [b, l, d] = x.shape;
    const cfg = this.cfg;
    const hd = headDim(cfg);
    const h = rmsNorm(x, this.store.get(this.inputNorm), cfg.rmsNormEps);
    const heads = (t: tf.Tensor, n: number) => tf.transpose(tf.reshape(t, [b, l, n, hd]), [0, 2, 1, 3]) as tf.Tensor4D;
    const rotary = (t: tf.Tensor4D) => (rotation ? applyRotaryMatMul(t, rope.cos, rope.sin, rotation) : applyRotary(t, rope.cos, rope.sin));
    // The 1/sqrt(hd) scale goes on q ([B, H, L, hd]) rather than on the scores ([B, H, L, T], T >= L).
    const q = tf.mul(rotary(heads(this.q.apply(h), cfg.numHeads)), 1 / Math.sqrt(hd)) as tf.Tensor4D;
    let k = rotary(heads(this.k.apply(h), cfg.numKvHeads));
    let v = heads(this.v.apply(h), cfg.numKvHeads);
    if (cache) ({ k, v } = cache.append(layerIndex, k, v));
    const rep = cfg.numHeads / cfg.numKvHeads;
    if (rep > 1) {
      k = repeatKv(k, rep);
      v = repeatKv(v, rep);
    }
    const attn = l === 1 ? attendOne(q, k, v, bias) : tf.matMul(tf.softmax(tf.add(tf.matMul(q, k, false, true), bias)), v);
    const merged = tf.reshape(tf.transpose(attn, [0, 2, 1, 3]), [b, l, d]);
    const x1 = tf.add(x, this.o.apply(merged)) as tf.Tensor3D;
    const h2 = rmsNorm(x1, this.store.get(this.postNorm), cfg.rmsNormEps);
    const mlp = this.down.apply(tf.mul(silu(this.gate.apply(h2)), this.up.apply(h2)));
    return tf.add(x1, mlp) as tf.Tensor3D;
  }
}

/**
 * Attention of one query position per row: q [B, H, 1, hd] (already scaled), k and v [B, H, T, hd], bias
 * [B, 1, 1, T]. Broadcast multiply + sum instead of batched matmuls: with one query row each of the B*H products
 * is a matrix-vector product, where creating an XNNPACK operator per (row, head) costs more than the arithmetic.
 */
function attendOne(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, bias: tf.Tensor4D): tf.Tensor4D {
  const [b, h, , hd] = q.shape;
  const t = k.shape[2];
  const scores = tf.add(tf.reshape(tf.sum(tf.mul(q, k), 3), [b, h, 1, t]), bias);
  const p = tf.reshape(tf.softmax(scores), [b, h, t, 1]);
  return tf.reshape(tf.sum(tf.mul(p, v), 2), [b, h, 1, hd]) as tf.Tensor4D;
}

/** [B, kvH, T, hd] -> [B, kvH*rep, T, hd], each kv head serving `rep` consecutive query heads (HF repeat_kv). */
function repeatKv(t: tf.Tensor4D, rep: number): tf.Tensor4D {
  const [b, kvh, len, hd] = t.shape;
  const expanded = tf.mul(tf.reshape(t, [b, kvh, 1, len, hd]), tf.ones([1, 1, rep, 1, 1]));
  return tf.reshape(expanded, [b, kvh * rep, len, hd]) as tf.Tensor4D;
}

export class LlamaDecoder {
  readonly embedTokens: string;
  readonly layers: DecoderLayer[];
  readonly norm: string;
  readonly rotary: RotaryTable;

  constructor(private readonly store: ParamStore, readonly cfg: LlamaConfig, prefix = 'language_model.model') {
    this.embedTokens = store.declare(`${prefix}.embed_tokens.weight`, [cfg.vocabSize, cfg.hiddenSize], 'plain', { kind: 'normal', std: 0.02 });
    this.layers = Array.from({ length: cfg.numLayers }, (_, i) => new DecoderLayer(store, `${prefix}.layers.${i}`, cfg));
    this.norm = store.declare(`${prefix}.norm.weight`, [cfg.hiddenSize], 'plain', { kind: 'ones' });
    this.rotary = new RotaryTable(headDim(cfg), cfg.ropeTheta, cfg.maxPositionEmbeddings);
  }

  /** Text embeddings for flat ids. */
  embed(ids: tf.Tensor1D): tf.Tensor2D {
    return tf.gather(this.store.get(this.embedTokens), ids) as tf.Tensor2D;
  }

  /**
   * Runs the decoder and returns the final-normed hidden states [B, L, D]. With a cache, the inputs are the next
   * L positions after the cached ones, and the cache is extended.
   */
  forward(inputs: DecoderInputs, cache: KVCache | null = null): tf.Tensor3D {
    const ctx = this.context(inputs, cache);
    let x = inputs.embeds;
    for (let i = 0; i < this.layers.length; i++) x = this.block(i, x, ctx);
    if (cache) cache.commit(inputs.mask, inputs.positions);
    return this.finalNorm(x);
  }

  /** RoPE tables and the attention bias shared by every block of one forward. */
  context(inputs: Omit<DecoderInputs, 'embeds'> & { embeds: { shape: number[] } }, cache: KVCache | null = null): BlockContext {
    const past = cache ? cache.length : 0;
    return { rope: this.rotary.lookupRows(inputs.positions), bias: attentionBias(inputs.mask, cache ? cache.keyMask : null, past), cache };
  }

  /** Decoder block i (the unit that activation checkpointing recomputes). */
  block(i: number, x: tf.Tensor3D, ctx: BlockContext): tf.Tensor3D {
    return this.layers[i].apply(x, ctx.rope, ctx.bias, ctx.cache, i, this.rotary.rotationMatrix());
  }

  finalNorm(x: tf.Tensor3D): tf.Tensor3D {
    return rmsNorm(x, this.store.get(this.norm), this.cfg.rmsNormEps) as tf.Tensor3D;
  }

  /** Parameter names of block i (for gradients taken block by block). */
  blockParams(i: number): string[] {
    const l = this.layers[i];
    return [l.q, l.k, l.v, l.o, l.gate, l.up, l.down].map((lin) => lin.weight).concat([l.inputNorm, l.postNorm]);
  }
}

export interface BlockContext {
  rope: { cos: tf.Tensor4D; sin: tf.Tensor4D };
  bias: tf.Tensor4D;
  cache: KVCache | null;
}

/**
 * Additive bias [B, 1, L, past + L]: query i (absolute past + i) sees cached keys and new keys up to itself,
 * never padding keys.
 */
function attentionBias(mask: number[][], pastMask: number[][] | null, past: number): tf.Tensor4D {
  const b = mask.length;
  const l = mask[0].length;
  const t = past + l;
  const out = new Float32Array(b * l * t);
  for (let r = 0; r < b; r++) {
    const keyOk = new Uint8Array(t);
    for (let j = 0; j < past; j++) keyOk[j] = pastMask![r][j] ? 1 : 0;
    for (let j = 0; j < l; j++) keyOk[past + j] = mask[r][j] ? 1 : 0;
    for (let i = 0; i < l; i++) {
      const base = (r * l + i) * t;
      for (let j = 0; j < t; j++) if (j > past + i || !keyOk[j]) out[base + j] = MASKED;
    }
  }
  return tf.tensor4d(out, [b, 1, l, t]);
}
