/**
 * VQ-16 image tokenizer of Janus (LlamaGen `VQModel`, janus-spec.md section 2): encoder -> quant_conv ->
 * L2-normalised nearest-codebook quantiser -> ids; ids -> codebook rows -> post_quant_conv -> decoder.
 * Also the training loss (reconstruction + codebook + commitment, straight-through) so a small tokenizer can be
 * trained here; the GAN/perceptual terms of LlamaGen are not included.
 */
import * as tf from '@tensorflow/tfjs-core';
import { JanusConfig, vqDownsample } from './config';
import { ParamStore } from './params';
import { Conv2d, stopGradient } from './vision_layers';
import { VQDecoder, VQEncoder } from './vq_blocks';

/** F.normalize(x, dim=-1): x / max(||x||, 1e-12). */
export function l2Normalize<T extends tf.Tensor>(x: T): T {
  const norm = tf.sqrt(tf.sum(tf.square(x), -1, true));
  return tf.div(x, tf.maximum(norm, 1e-12)) as T;
}

/** `quantize.embedding.weight` [codebookSize, codebookDim]; both latents and rows are L2-normalised (codebook_l2_norm). */
export class VectorQuantizer {
  readonly embedding: string;

  constructor(
    private readonly store: ParamStore,
    prefix: string,
    readonly size: number,
    readonly dim: number,
  ) {
    // LlamaGen draws uniform(+-1/n) and then normalises the rows. Only directions matter here, but unit-scale rows
    // keep the gradient through the normalisation (which scales by 1/||row||) from exploding at small codebooks.
    this.embedding = store.declare(`${prefix}.embedding.weight`, [size, dim], 'plain', { kind: 'normal', std: 1 / Math.sqrt(dim) });
  }

  /** The L2-normalised codebook [size, dim] (what both the search and the lookup use). */
  normalizedCodebook(): tf.Tensor2D {
    return l2Normalize(this.store.get(this.embedding) as tf.Tensor2D);
  }

  /**
   * Nearest code of each row of `latents` [N, dim]: argmax of cosine similarity, which for unit vectors is the
   * argmin of the squared distance Janus computes. Returns int32 [N].
   */
  nearest(latents: tf.Tensor2D, codebook: tf.Tensor2D = this.normalizedCodebook()): tf.Tensor1D {
    return tf.argMax(tf.matMul(l2Normalize(latents), codebook, false, true), 1) as tf.Tensor1D;
  }

  /**
   * Codebook restart for training: every code whose count is 0 is moved onto one of `latents` [N, dim] (rows
   * picked by `pick(N)`, e.g. a seeded RNG). Small tokenizers trained from scratch otherwise tend to collapse
   * onto a handful of codes, since unused rows never receive gradient. Returns how many codes were moved.
   */
  reviveDeadCodes(counts: ArrayLike<number>, latents: tf.Tensor2D, pick: (n: number) => number): number {
    if (counts.length !== this.size) throw new Error(`reviveDeadCodes: ${counts.length} counts for a codebook of ${this.size}.`);
    const dead: number[] = [];
    for (let i = 0; i < this.size; i++) if (counts[i] === 0) dead.push(i);
    if (dead.length === 0 || latents.shape[0] === 0) return 0;
    const rows = dead.map(() => pick(latents.shape[0]));
    tf.tidy(() => {
      const table = this.store.get(this.embedding);
      const replacement = l2Normalize(tf.gather(latents, tf.tensor1d(rows, 'int32')));
      const mask = new Float32Array(this.size);
      const source = new Int32Array(this.size);
      dead.forEach((code, j) => {
        mask[code] = 1;
        source[code] = j;
      });
      const m = tf.tensor2d(mask, [this.size, 1]);
      const spread = tf.gather(replacement, tf.tensor1d(source, 'int32'));
      table.assign(tf.add(tf.mul(table, tf.sub(1, m)), tf.mul(spread, m)));
    });
    return dead.length;
  }

  /** Normalised codebook rows for ids of any shape: [..., dim]. */
  lookup(ids: tf.Tensor): tf.Tensor {
    return tf.reshape(tf.gather(this.normalizedCodebook(), tf.reshape(ids, [-1])), [...ids.shape, this.dim]);
  }
}

export interface VQLossOptions {
  /** Reconstruction term: mean squared (default) or mean absolute error. */
  recon?: 'l2' | 'l1';
  /** Commitment weight beta (LlamaGen default 0.25). */
  beta?: number;
  /** Weight of codebook + commitment relative to reconstruction (LlamaGen default 1). */
  codebookWeight?: number;
  /** Per-pixel weights [B, H, W, 1] of the reconstruction term (a weighted mean); default uniform. */
  pixelWeights?: tf.Tensor4D;
}

/** Mean absolute or squared error, optionally weighted per pixel: sum(w * e) / sum(w * channels). */
export function reconstructionError(reconstruction: tf.Tensor4D, images: tf.Tensor4D, kind: 'l1' | 'l2' = 'l2', weights?: tf.Tensor4D): tf.Scalar {
  const diff = tf.sub(reconstruction, images);
  const err = kind === 'l1' ? tf.abs(diff) : tf.square(diff);
  if (!weights) return tf.mean(err) as tf.Scalar;
  return tf.div(tf.sum(tf.mul(err, weights)), tf.mul(tf.sum(weights), images.shape[3])) as tf.Scalar;
}

export interface VQLossOutput {
  /** recon + codebookWeight * (codebook + commitment), commitment already scaled by beta. */
  loss: tf.Scalar;
  recon: tf.Scalar;
  codebook: tf.Scalar;
  /** Already multiplied by beta. */
  commitment: tf.Scalar;
  /** int32 [B, h*w], raster order. */
  ids: tf.Tensor2D;
  /** Decoder output for the quantised latents (unclipped). */
  reconstruction: tf.Tensor4D;
}

export interface CodebookUsage {
  /** Distinct codes among the ids. */
  used: number;
  /** used / codebookSize. */
  fraction: number;
  /** exp(entropy) of the code histogram: the effective number of codes. */
  perplexity: number;
}

/** Codebook usage statistics of a set of ids. */
export function codebookUsage(ids: ArrayLike<number>, codebookSize: number): CodebookUsage {
  const counts = new Float64Array(codebookSize);
  for (let i = 0; i < ids.length; i++) counts[ids[i]]++;
  let used = 0;
  let entropy = 0;
  for (const c of counts) {
    if (c === 0) continue;
    used++;
    const p = c / ids.length;
    entropy -= p * Math.log(p);
  }
  return { used, fraction: used / codebookSize, perplexity: Math.exp(entropy) };
}

export class VQModel {
  readonly encoder: VQEncoder;
  readonly decoder: VQDecoder;
  readonly quantize: VectorQuantizer;
  readonly quantConv: Conv2d;
  readonly postQuantConv: Conv2d;
  /** Pixels per token side (16 for VQ-16). */
  readonly downsample: number;

  constructor(store: ParamStore, readonly cfg: JanusConfig, readonly prefix = 'gen_vision_model') {
    const vq = cfg.vq;
    this.encoder = new VQEncoder(store, `${prefix}.encoder`, vq);
    this.decoder = new VQDecoder(store, `${prefix}.decoder`, vq);
    this.quantize = new VectorQuantizer(store, `${prefix}.quantize`, vq.codebookSize, vq.codebookDim);
    this.quantConv = new Conv2d(store, `${prefix}.quant_conv`, vq.zChannels, vq.codebookDim, 1, { pad: 0 });
    this.postQuantConv = new Conv2d(store, `${prefix}.post_quant_conv`, vq.codebookDim, vq.zChannels, 1, { pad: 0 });
    this.downsample = vqDownsample(vq);
  }

  /** Images NHWC in [-1, 1] -> int32 ids [B, h*w] in raster order (top-left first). */
  encode(images: tf.Tensor4D): tf.Tensor2D {
    this.checkImages(images);
    return tf.tidy(() => {
      const z = this.latents(images);
      const [b, h, w, d] = z.shape;
      const ids = this.quantize.nearest(tf.reshape(z, [b * h * w, d]) as tf.Tensor2D);
      return tf.reshape(ids, [b, h * w]) as tf.Tensor2D;
    });
  }

  /**
   * ids [B, h*w] -> images NHWC clipped to [-1, 1]. The grid is square unless `grid` = [h, w] says otherwise
   * (Janus `decode_code(ids, shape=[B, 8, 24, 24])`).
   */
  decode(ids: tf.Tensor2D, grid?: [number, number]): tf.Tensor4D {
    const [h, w] = this.checkIds(ids, grid);
    return tf.tidy(() => {
      const zq = tf.reshape(this.quantize.lookup(ids), [ids.shape[0], h, w, this.cfg.vq.codebookDim]) as tf.Tensor4D;
      return tf.clipByValue(this.decodeLatents(zq), -1, 1);
    });
  }

  /** Encoder + quant_conv: the continuous latents [B, h, w, codebookDim] before normalisation. */
  latents(images: tf.Tensor4D): tf.Tensor4D {
    return this.quantConv.apply(this.encoder.apply(images));
  }

  /** post_quant_conv + decoder on quantised (normalised) latents [B, h, w, codebookDim]; unclipped. */
  decodeLatents(zq: tf.Tensor4D): tf.Tensor4D {
    return this.decoder.apply(this.postQuantConv.apply(zq));
  }

  /**
   * Training forward: quantise with a straight-through estimator and return the losses, ids and reconstruction.
   * Call inside tf.variableGrads / tf.tidy; the outputs are tensors of the caller's scope.
   */
  lossAndIds(images: tf.Tensor4D, opts: VQLossOptions = {}): VQLossOutput {
    this.checkImages(images);
    const beta = opts.beta ?? 0.25;
    const weight = opts.codebookWeight ?? 1;
    const z = l2Normalize(this.latents(images));
    const [b, h, w, d] = z.shape;
    const flat = tf.reshape(z, [b * h * w, d]) as tf.Tensor2D;
    const codebook = this.quantize.normalizedCodebook();
    const idsFlat = this.quantize.nearest(flat, codebook);
    // oneHot @ codebook instead of gather: the indices depend on variables, and gather's gradient rejects int32
    // indices taped that way; oneHot's gradient is zero, so only the selected rows receive gradient.
    const zq = tf.reshape(tf.matMul(tf.oneHot(idsFlat, this.cfg.vq.codebookSize), codebook), [b, h, w, d]) as tf.Tensor4D;
    const codebookLoss = tf.mean(tf.square(tf.sub(zq, stopGradient(z)))) as tf.Scalar;
    const commitment = tf.mul(tf.mean(tf.square(tf.sub(stopGradient(zq), z))), beta) as tf.Scalar;
    // Straight-through: forward uses zq, backward passes the decoder's gradient to z unchanged.
    const zst = tf.add(z, stopGradient(tf.sub(zq, z))) as tf.Tensor4D;
    const reconstruction = this.decodeLatents(zst);
    const recon = reconstructionError(reconstruction, images, opts.recon, opts.pixelWeights);
    const loss = tf.add(recon, tf.mul(tf.add(codebookLoss, commitment), weight)) as tf.Scalar;
    return { loss, recon, codebook: codebookLoss, commitment, ids: tf.reshape(idsFlat, [b, h * w]) as tf.Tensor2D, reconstruction };
  }

  private checkImages(images: tf.Tensor): void {
    const s = images.shape;
    if (s.length !== 4 || s[3] !== 3) throw new Error(`VQModel: expected images [B, H, W, 3], got [${s.join(', ')}].`);
    if (s[1] % this.downsample !== 0 || s[2] % this.downsample !== 0) {
      throw new Error(`VQModel: image size ${s[1]}x${s[2]} is not divisible by the downsample factor ${this.downsample}.`);
    }
  }

  private checkIds(ids: tf.Tensor2D, grid?: [number, number]): [number, number] {
    if (ids.shape.length !== 2) throw new Error(`VQModel.decode: expected ids [B, N], got [${ids.shape.join(', ')}].`);
    if (ids.dtype !== 'int32') throw new Error(`VQModel.decode: ids must be int32, got ${ids.dtype}.`);
    const n = ids.shape[1];
    const side = Math.round(Math.sqrt(n));
    const [h, w] = grid ?? [side, side];
    if (h * w !== n) throw new Error(`VQModel.decode: ${n} ids per image do not fill a ${h}x${w} token grid.`);
    // An out-of-range id would read garbage or throw deep inside gather on some backends.
    const { min, max } = tf.tidy(() => ({ min: tf.min(ids).dataSync()[0], max: tf.max(ids).dataSync()[0] }));
    if (n > 0 && (min < 0 || max >= this.cfg.vq.codebookSize)) {
      throw new Error(`VQModel.decode: ids must be in 0..${this.cfg.vq.codebookSize - 1}, got values in ${min}..${max}.`);
    }
    return [h, w];
  }
}
