/**
 * Patch-dictionary codes for `train-vq --codes patches`. ShapeWorld images are tiled from a small alphabet of
 * token-sized patches (the grid sits on the token grid: 4 backgrounds, and each object's four quarters on each
 * background), so every distinct patch can have a code of its own. A tokenizer trained to emit those codes
 * gives the language model targets that are a function of the patch alone: a tokenizer learned without them
 * spreads one background patch over hundreds of codes depending on what else is in the image (its encoder sees
 * the whole image), which the tiny model downstream cannot learn to predict.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { VQModel, l2Normalize, reconstructionError } from '../model/vq';

/** Distinct token-sized patches numbered in order of first appearance. */
export interface PatchDictionary {
  /** Patch side in pixels (the tokenizer's downsample factor). */
  patch: number;
  codes: Map<string, number>;
}

/** A short hash of the dictionary's patches in code order: equal hashes mean the same code for every patch. */
export function dictionaryFingerprint(dict: PatchDictionary): string {
  const h = createHash('sha256');
  h.update(`${dict.patch}:`);
  for (const key of dict.codes.keys()) h.update(key, 'latin1');
  return h.digest('hex').slice(0, 16);
}

/** Bytes of one patch of a [-1, 1] NHWC image as a string key (pixels were 8-bit before loading). */
function patchKey(pixels: Float32Array, image: number, size: number, y0: number, x0: number, patch: number): string {
  const bytes = Buffer.alloc(patch * patch * 3);
  let k = 0;
  const base = image * size * size * 3;
  for (let y = y0; y < y0 + patch; y++) {
    for (let x = x0; x < x0 + patch; x++) {
      const o = base + (y * size + x) * 3;
      for (let c = 0; c < 3; c++) bytes[k++] = Math.round((pixels[o + c] + 1) * 127.5);
    }
  }
  return bytes.toString('latin1');
}

/**
 * Codes of every patch of `count` square images of side `size` (raster order, [count * (size/patch)^2]).
 * With `grow`, unseen patches get the next free code (an error past `limit`); without it they get -1.
 */
export function patchCodes(dict: PatchDictionary, pixels: Float32Array, count: number, size: number, grow: boolean, limit = Infinity): Int32Array {
  const g = size / dict.patch;
  if (!Number.isInteger(g)) throw new Error(`patchCodes: image side ${size} is not a multiple of the patch side ${dict.patch}`);
  if (pixels.length !== count * size * size * 3) throw new Error(`patchCodes: expected ${count} x ${size} x ${size} x 3 values, got ${pixels.length}`);
  const out = new Int32Array(count * g * g);
  for (let i = 0; i < count; i++) {
    for (let ty = 0; ty < g; ty++) {
      for (let tx = 0; tx < g; tx++) {
        const key = patchKey(pixels, i, size, ty * dict.patch, tx * dict.patch, dict.patch);
        let code = dict.codes.get(key);
        if (code === undefined && grow) {
          if (dict.codes.size >= limit) {
            throw new Error(`the images hold more than ${limit} distinct ${dict.patch}x${dict.patch} patches (image ${i}); raise the codebook size or use --codes learned`);
          }
          code = dict.codes.size;
          dict.codes.set(key, code);
        }
        out[(i * g + ty) * g + tx] = code ?? -1;
      }
    }
  }
  return out;
}

/** The patch codes of a crop: rows of the image's token grid (g x g) inside the crop. */
export function cropCodes(codes: Int32Array, image: number, g: number, offset: [number, number], cropTokens: number, patch: number, out: Int32Array, at: number): void {
  const [ty, tx] = [offset[0] / patch, offset[1] / patch];
  for (let y = 0; y < cropTokens; y++) {
    for (let x = 0; x < cropTokens; x++) out[at + y * cropTokens + x] = codes[(image * g + ty + y) * g + tx + x];
  }
}

/** The patch dictionary an earlier train-vq --codes patches run recorded in its vq_train.json, if any. */
export function recordedDictionary(dir: string | undefined): string | null {
  if (!dir) return null;
  try {
    const facts = JSON.parse(fs.readFileSync(path.join(dir, 'vq_train.json'), 'utf8')) as { dictionaryHash?: unknown };
    return typeof facts.dictionaryHash === 'string' ? facts.dictionaryHash : null;
  } catch {
    return null;
  }
}

/**
 * --codes patches: the codebook with each dictionary code's row set to the mean direction of the encoder's unit
 * latents over that patch (a supervised k-means step), so training starts from the encoder's own separation of
 * the patches. `latents` holds one `dim`-wide row per entry of `codes`; codes no patch has keep their row.
 */
export function classMeanCodebook(table: Float32Array, latents: Float32Array, codes: Int32Array, dim: number): Float32Array {
  if (latents.length !== codes.length * dim) throw new Error(`classMeanCodebook: ${latents.length / dim} latents for ${codes.length} codes`);
  const sums = new Float64Array(table.length);
  codes.forEach((code, k) => {
    for (let j = 0; j < dim; j++) sums[code * dim + j] += latents[k * dim + j];
  });
  const out = Float32Array.from(table);
  for (let c = 0; c < out.length / dim; c++) {
    let norm = 0;
    for (let j = 0; j < dim; j++) norm += sums[c * dim + j] ** 2;
    if (norm === 0) continue;
    for (let j = 0; j < dim; j++) out[c * dim + j] = sums[c * dim + j] / Math.sqrt(norm);
  }
  return out;
}

/** Sharpness of the code classifier: cosine similarities (in [-1, 1]) times this are the logits. */
const PATCH_CODE_SCALE = 20;

/**
 * --codes patches: cross-entropy of the encoder's code choice against each patch's code, plus the reconstruction
 * of the decoder fed the target codes' (normalised) codebook rows. Gradients reach encoder, codebook and decoder.
 */
export function patchCodeLoss(vq: VQModel, batch: tf.Tensor4D, targets: Int32Array, recon: 'l1' | 'l2', weights?: tf.Tensor4D): tf.Scalar {
  const z = l2Normalize(vq.latents(batch));
  const [b, h, w, d] = z.shape;
  const codebook = vq.quantize.normalizedCodebook();
  const t = tf.tensor1d(targets, 'int32');
  const logits = tf.mul(tf.matMul(tf.reshape(z, [b * h * w, d]) as tf.Tensor2D, codebook, false, true), PATCH_CODE_SCALE) as tf.Tensor2D;
  const ce = tf.losses.softmaxCrossEntropy(tf.oneHot(t, codebook.shape[0]), logits) as tf.Scalar;
  const zq = tf.reshape(tf.gather(codebook, t), [b, h, w, d]) as tf.Tensor4D;
  return tf.add(reconstructionError(vq.decodeLatents(zq), batch, recon, weights), ce) as tf.Scalar;
}
