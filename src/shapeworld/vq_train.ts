/**
 * `janus4o train-vq`: trains the VQ image tokenizer of a small config on a ShapeWorld dataset, so the language
 * model downstream predicts codes that mean something (a randomly initialised tokenizer maps near-identical
 * patches to unrelated codes). Reconstruction + codebook + commitment loss with the straight-through
 * estimator, AdamW without decay, warmup then cosine, dead codes restarted from live latents (LlamaGen recipe
 * without its GAN and perceptual terms). Trains on random token-aligned crops: the tokenizer is convolutional,
 * and a 32 px crop costs a quarter of a 64 px image.
 *
 * The result is a model folder that holds only `gen_vision_model.*` (config.json says the whole Janus config
 * the tokenizer belongs to); `model.vq_pretrained` in a training config loads it.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import seedrandom from 'seedrandom';
import { UserError } from '../errors';
import { Scene } from './scene';
import { readScenes } from './synth';
import { detectScene } from './detect';
import { sceneKey } from './shapeeval_run';
import { JanusConfig } from '../model/config';
import { ParamStore } from '../model/params';
import { VQModel, codebookUsage, l2Normalize, reconstructionError } from '../model/vq';
import { loadIntoStore, savePretrained } from '../io/pretrained';
import { readHfConfig } from '../io/hf_config';
import { SaveDtype } from '../io/safetensors';
import { concatFloat32 } from '../io/dtypes';
import { imageGrid, loadImage, tensorToRgb } from '../tokenizer/image';
import { AdamW } from '../train/optimizer';
import { PatchDictionary, classMeanCodebook, cropCodes, dictionaryFingerprint, patchCodeLoss, patchCodes, recordedDictionary } from './patch_codes';
import { lrFactor } from '../train/schedule';

export const VQ_PREFIX = 'gen_vision_model.';

export interface VQTrainOptions {
  /** A ShapeWorld dataset folder (scenes.jsonl + images/). */
  data: string;
  /** Output model folder. */
  out: string;
  config: JanusConfig;
  steps: number;
  batch: number;
  lr: number;
  /** Square crop side in pixels (a multiple of the downsample factor); 0 or the image size: whole images. */
  crop: number;
  /** Training images read from the dataset (the held-out ones are not among them). */
  images: number;
  heldout: number;
  /** Codes unused over this many steps are restarted from live latents (first half of the run only). */
  reviveEvery: number;
  /** Held-out evaluation (logged) every this many steps; 0: only at the end. */
  evalEvery: number;
  recon: 'l1' | 'l2';
  /**
   * Steps of plain autoencoder training (no quantisation) before the codebook is set by k-means over the
   * encoder's latents; 0 skips it. Straight-through VQ from a random codebook collapses onto a few dozen codes
   * here; an autoencoder first and a k-means codebook start the quantised phase with every code in use.
   */
  aeSteps: number;
  /**
   * Weight of object pixels (those that differ from the image's corner colour, which ShapeWorld always leaves
   * as background) in the reconstruction term; 1 = plain mean. Objects cover a small share of the pixels, so
   * with uniform weights the colours of objects are the last thing a small tokenizer learns.
   */
  objectWeight: number;
  /**
   * 'learned': codes found by the quantiser (straight-through VQ). 'patches': one code per distinct token-sized
   * patch of the training images (src/train/patch_codes.ts); the encoder learns to emit it (cross-entropy over
   * cosine similarities to the codebook) and the decoder to draw it. No autoencoder phase, no code restarts.
   */
  codes: 'learned' | 'patches';
  /** A tokenizer folder (an earlier train-vq output) to continue from instead of a random init. */
  init?: string;
  seed: number;
  dtype: SaveDtype;
  log: (line: string) => void;
  onStep?: (step: number, loss: number) => void;
}

export interface VQEvaluation {
  /** Mean squared error of decode(encode(x)) in [-1, 1] units. */
  mse: number;
  codesUsed: number;
  perplexity: number;
  /** Fraction of held-out images whose reconstruction the ShapeEval detector reads as exactly the drawn scene. */
  sceneMatch: number;
  /** --codes patches: fraction of held-out tokens (of patches seen in training) encoded as their patch's code. */
  codeAccuracy?: number;
}

export interface VQTrainResult {
  before: VQEvaluation;
  after: VQEvaluation;
  steps: number;
  seconds: number;
  files: string[];
}

interface SceneImage {
  image: string;
  scene: Scene;
}

async function readSceneList(root: string): Promise<SceneImage[]> {
  const file = path.join(root, 'scenes.jsonl');
  if (!fs.existsSync(file)) throw new UserError(`train-vq: ${file} not found; --data must be a ShapeWorld dataset (make one with \`janus4o synth --out ${root}\`).`);
  try {
    return [...(await readScenes(root))].map(([image, scene]) => ({ image, scene }));
  } catch (e) {
    throw new UserError(`train-vq: ${(e as Error).message}`);
  }
}

async function loadBatch(root: string, items: readonly SceneImage[], size: number): Promise<tf.Tensor4D> {
  const parts: tf.Tensor4D[] = [];
  for (const it of items) parts.push(await loadImage(path.join(root, it.image), { size }));
  const all = tf.concat(parts, 0) as tf.Tensor4D;
  tf.dispose(parts);
  return all;
}

export async function evaluateVQ(vq: VQModel, images: tf.Tensor4D, scenes: readonly Scene[], codebookSize: number, expected?: Int32Array): Promise<VQEvaluation> {
  const ids = tf.tidy(() => vq.encode(images));
  const got = (await ids.data()) as Int32Array;
  let codeAccuracy: number | undefined;
  if (expected) {
    let hit = 0;
    let known = 0;
    expected.forEach((e, k) => {
      if (e < 0) return;
      known++;
      if (got[k] === e) hit++;
    });
    codeAccuracy = known ? hit / known : 0;
  }
  const recon = tf.tidy(() => vq.decode(ids));
  const mse = tf.tidy(() => tf.mean(tf.square(tf.sub(recon, images))).dataSync()[0]);
  const usage = codebookUsage(got, codebookSize);
  let match = 0;
  for (let i = 0; i < scenes.length; i++) {
    const one = tf.slice(recon, [i, 0, 0, 0], [1, -1, -1, -1]);
    const rgb = tensorToRgb(one);
    one.dispose();
    if (sceneKey(scenes[i]) === sceneKey(detectScene(rgb.data, rgb.width, rgb.height))) match++;
  }
  tf.dispose([ids, recon]);
  return { mse, codesUsed: usage.used, perplexity: usage.perplexity, sceneMatch: scenes.length ? match / scenes.length : 0, ...(codeAccuracy !== undefined ? { codeAccuracy } : {}) };
}

/**
 * Spherical k-means over unit vectors (rows of `x`, `dim` wide), k-means++ seeding; identical rows (ShapeWorld
 * repeats patches exactly) are merged first and weighted by their count. Returns k unit centroids, row-major.
 */
export function sphericalKMeans(x: Float32Array, dim: number, k: number, rng: () => number, iterations = 15): Float32Array {
  const weightOf = new Map<string, number>();
  const firstOf = new Map<string, number>();
  const n = x.length / dim;
  for (let i = 0; i < n; i++) {
    let key = '';
    for (let d = 0; d < dim; d++) key += `${x[i * dim + d].toFixed(4)},`;
    weightOf.set(key, (weightOf.get(key) ?? 0) + 1);
    if (!firstOf.has(key)) firstOf.set(key, i);
  }
  const rows = [...firstOf.values()];
  const w = [...weightOf.values()];
  const m = rows.length;
  const pts = new Float32Array(m * dim);
  rows.forEach((r, j) => pts.set(x.subarray(r * dim, (r + 1) * dim), j * dim));
  const cent = new Float32Array(k * dim);
  const dist = (j: number, c: number) => {
    let dot = 0;
    for (let d = 0; d < dim; d++) dot += pts[j * dim + d] * cent[c * dim + d];
    return 1 - dot;
  };
  // k-means++: each next centroid drawn with probability ~ weight x distance to the nearest so far.
  const near = new Float64Array(m).fill(Infinity);
  for (let c = 0; c < k; c++) {
    let pick = 0;
    if (c === 0 || c >= m) {
      pick = Math.floor(rng() * m);
    } else {
      let total = 0;
      for (let j = 0; j < m; j++) total += w[j] * near[j];
      let r = rng() * total;
      for (pick = 0; pick < m - 1; pick++) {
        r -= w[pick] * near[pick];
        if (r <= 0) break;
      }
    }
    cent.set(pts.subarray(pick * dim, (pick + 1) * dim), c * dim);
    for (let j = 0; j < m; j++) near[j] = Math.min(near[j], Math.max(0, dist(j, c)));
  }
  const assign = new Int32Array(m);
  for (let it = 0; it < iterations; it++) {
    for (let j = 0; j < m; j++) {
      let best = 0;
      let bestD = Infinity;
      for (let c = 0; c < k; c++) {
        const dd = dist(j, c);
        if (dd < bestD) {
          bestD = dd;
          best = c;
        }
      }
      assign[j] = best;
    }
    const sum = new Float64Array(k * dim);
    const has = new Uint8Array(k);
    for (let j = 0; j < m; j++) {
      has[assign[j]] = 1;
      for (let d = 0; d < dim; d++) sum[assign[j] * dim + d] += w[j] * pts[j * dim + d];
    }
    for (let c = 0; c < k; c++) {
      if (!has[c]) continue; // an empty cluster keeps its centroid
      let norm = 0;
      for (let d = 0; d < dim; d++) norm += sum[c * dim + d] ** 2;
      norm = Math.sqrt(norm) || 1;
      for (let d = 0; d < dim; d++) cent[c * dim + d] = sum[c * dim + d] / norm;
    }
  }
  return cent;
}

/** Random crops of `crop` px at token-aligned offsets, one per image, and their offsets [y, x] in pixels. */
function randomCrops(batch: tf.Tensor4D, crop: number, align: number, rng: () => number): { crops: tf.Tensor4D; offsets: [number, number][] } {
  const size = batch.shape[1];
  if (crop >= size) return { crops: tf.clone(batch), offsets: Array.from({ length: batch.shape[0] }, () => [0, 0]) };
  const slots = (size - crop) / align + 1;
  const offsets: [number, number][] = [];
  const crops = tf.tidy(() => {
    const parts: tf.Tensor4D[] = [];
    for (let i = 0; i < batch.shape[0]; i++) {
      const y = Math.floor(rng() * slots) * align;
      const x = Math.floor(rng() * slots) * align;
      offsets.push([y, x]);
      parts.push(tf.slice(batch, [i, y, x, 0], [1, crop, crop, 3]));
    }
    return tf.concat(parts, 0) as tf.Tensor4D;
  });
  return { crops, offsets };
}

/**
 * Loads an earlier tokenizer. With another codebook size (only the config's codebook differs) everything but the
 * codebook is kept (`--codes patches` sets the codebook from the encoder's latents). Returns whether the codebook
 * was loaded.
 */
function loadInit(store: ParamStore, vq: VQModel, cfg: JanusConfig, dir: string, log: (line: string) => void): boolean {
  const initCfg = readHfConfig(path.join(dir, 'config.json'));
  if (initCfg.vq.codebookSize === cfg.vq.codebookSize) {
    loadIntoStore(store, dir);
    log(`train-vq: continuing from ${dir}`);
    return true;
  }
  const other = new ParamStore();
  new VQModel(other, initCfg);
  try {
    loadIntoStore(other, dir);
    for (const spec of store.list()) {
      if (spec.name === vq.quantize.embedding) continue;
      store.setValue(spec.name, other.get(spec.name).dataSync() as Float32Array);
    }
  } finally {
    other.dispose();
  }
  log(`train-vq: continuing from ${dir} with a new codebook of ${cfg.vq.codebookSize} (was ${initCfg.vq.codebookSize})`);
  return false;
}

/** L2-normalised encoder latents of every image, raster order per image ([n * h * w * dim]), 64 images at a time. */
async function unitLatents(vq: VQModel, pixels: tf.Tensor4D): Promise<Float32Array> {
  const n = pixels.shape[0];
  const parts: Float32Array[] = [];
  for (let i = 0; i < n; i += 64) {
    const z = tf.tidy(() => l2Normalize(vq.latents(tf.slice(pixels, [i, 0, 0, 0], [Math.min(64, n - i), -1, -1, -1]) as tf.Tensor4D)));
    parts.push((await z.data()) as Float32Array);
    z.dispose();
  }
  return concatFloat32(parts);
}

function codeText(e: VQEvaluation): string {
  return e.codeAccuracy === undefined ? '' : `, code accuracy ${(e.codeAccuracy * 100).toFixed(1)}%`;
}

export async function trainVQ(o: VQTrainOptions): Promise<VQTrainResult> {
  const t0 = Date.now();
  const cfg = o.config;
  const size = cfg.imageSize;
  const store = new ParamStore();
  const vq = new VQModel(store, cfg);
  const crop = o.crop > 0 ? Math.min(o.crop, size) : size;
  if (crop % vq.downsample !== 0) throw new UserError(`train-vq: --crop ${crop} must be a multiple of the tokenizer's downsample factor ${vq.downsample}.`);
  store.materialize(o.seed);
  const codebookLoaded = o.init ? loadInit(store, vq, cfg, o.init, o.log) : false;

  const list = await readSceneList(o.data);
  if (list.length < o.heldout + o.batch) throw new UserError(`train-vq: ${o.data} has ${list.length} images; need at least --heldout ${o.heldout} + --batch ${o.batch}.`);
  // Held-out: the last images of the list; training: the first `images` of the rest.
  const held = list.slice(list.length - o.heldout);
  const train = list.slice(0, Math.min(o.images, list.length - o.heldout));
  o.log(`train-vq: loading ${train.length} training and ${held.length} held-out images from ${o.data} at ${size} px`);
  const trainPixels = await loadBatch(o.data, train, size);
  const heldPixels = await loadBatch(o.data, held, size);
  const heldScenes = held.map((h) => h.scene);
  const codebook = cfg.vq.codebookSize;
  const g = size / vq.downsample;
  let trainCodes: Int32Array | undefined;
  let heldCodes: Int32Array | undefined;
  let dictionarySize: number | undefined;
  let dictionaryHash: string | undefined;
  if (o.codes === 'patches') {
    const dict: PatchDictionary = { patch: vq.downsample, codes: new Map() };
    try {
      trainCodes = patchCodes(dict, (await trainPixels.data()) as Float32Array, train.length, size, true, codebook);
    } catch (e) {
      tf.dispose([trainPixels, heldPixels]);
      store.dispose();
      throw new UserError(`train-vq --codes patches: ${o.data}: ${(e as Error).message}`);
    }
    heldCodes = patchCodes(dict, (await heldPixels.data()) as Float32Array, held.length, size, false);
    dictionarySize = dict.codes.size;
    dictionaryHash = dictionaryFingerprint(dict);
    // The codebook of --init means these codes only if it was trained on this very dictionary.
    if (codebookLoaded && recordedDictionary(o.init) === dictionaryHash) o.log(`train-vq: keeping the codebook of ${o.init} (same patch dictionary)`);
    else {
      const table = (await store.get(vq.quantize.embedding).data()) as Float32Array;
      store.setValue(vq.quantize.embedding, classMeanCodebook(table, await unitLatents(vq, trainPixels), trainCodes, cfg.vq.codebookDim));
    }
    const unseen = heldCodes.filter((c) => c < 0).length;
    o.log(`train-vq: ${dictionarySize} distinct ${vq.downsample}x${vq.downsample} patches in the training images, one code each (codebook ${codebook}); ${unseen} of ${heldCodes.length} held-out patches unseen`);
  }
  const before = await evaluateVQ(vq, heldPixels, heldScenes, codebook, heldCodes);
  o.log(`train-vq: before: mse ${before.mse.toFixed(4)}, ${before.codesUsed}/${codebook} codes, scene match ${(before.sceneMatch * 100).toFixed(1)}%${codeText(before)}`);

  const opt = new AdamW(store.list(), { weightDecay: 0, betas: [0.9, 0.95] });
  const warmup = Math.max(1, Math.round(o.steps * 0.05));
  const vars = store.variables();
  const rng = seedrandom(`train-vq:${o.seed}`);
  const counts = new Float64Array(codebook);
  let revived = 0;
  let recent = 0;
  const cropTokens = crop / vq.downsample;
  const pickBatch = (): { batch: tf.Tensor4D; corners: tf.Tensor4D; targets?: Int32Array } => {
    const idx = Array.from({ length: o.batch }, () => Math.floor(rng() * train.length));
    const picked = tf.tidy(() => tf.gather(trainPixels, tf.tensor1d(idx, 'int32')) as tf.Tensor4D);
    const { crops: batch, offsets } = randomCrops(picked, crop, vq.downsample, rng);
    const corners = tf.slice(picked, [0, 0, 0, 0], [-1, 1, 1, 3]) as tf.Tensor4D;
    picked.dispose();
    if (!trainCodes) return { batch, corners };
    const targets = new Int32Array(o.batch * cropTokens * cropTokens);
    idx.forEach((image, k) => cropCodes(trainCodes!, image, g, offsets[k], cropTokens, vq.downsample, targets, k * cropTokens * cropTokens));
    return { batch, corners, targets };
  };
  /** One AdamW step on `loss` over `params`; returns the loss value. Parameters without a gradient are left alone. */
  const update = (loss: () => tf.Scalar, params: tf.Variable[], lr: number): number => {
    let value = 0;
    const grads = tf.tidy(() => {
      const r = tf.variableGrads(loss, params);
      value = r.value.dataSync()[0];
      return r.grads;
    });
    opt.step(store, new Map(store.list().filter((p) => grads[store.get(p.name).name]).map((p) => [p.name, grads[store.get(p.name).name]])), lr);
    tf.dispose(grads);
    return value;
  };
  const weightsOf = (batch: tf.Tensor4D, corners: tf.Tensor4D): tf.Tensor4D | undefined =>
    o.objectWeight === 1 ? undefined : tf.tidy(() => {
      const far = tf.greater(tf.max(tf.abs(tf.sub(batch, corners)), 3, true), 0.1);
      return tf.add(1, tf.mul(tf.cast(far, 'float32'), o.objectWeight - 1)) as tf.Tensor4D;
    });
  // The autoencoder phase never touches the codebook.
  const aeVars = store.variables((name) => name !== vq.quantize.embedding);
  for (let step = 0; o.codes === 'learned' && step < o.aeSteps; step++) {
    const { batch, corners } = pickBatch();
    const weights = weightsOf(batch, corners);
    const lr = o.lr * lrFactor(step + 1, { warmupSteps: warmup, totalSteps: o.aeSteps + 1, minLrRatio: 0.5 });
    const lossValue = update(() => reconstructionError(vq.decodeLatents(l2Normalize(vq.latents(batch))), batch, o.recon, weights), aeVars, lr);
    tf.dispose([batch, corners, ...(weights ? [weights] : [])]);
    recent = step === 0 ? lossValue : 0.9 * recent + 0.1 * lossValue;
    if ((step + 1) % 50 === 0 || step + 1 === o.aeSteps) o.log(`train-vq: autoencoder step ${step + 1}/${o.aeSteps}: recon ${recent.toFixed(4)}`);
  }
  if (o.codes === 'learned' && o.aeSteps > 0) {
    // k-means over the latents of every training image sets the codebook the quantised phase starts from.
    const all = await unitLatents(vq, trainPixels);
    const cent = sphericalKMeans(all, cfg.vq.codebookDim, codebook, rng);
    store.setValue(vq.quantize.embedding, cent);
    const e = await evaluateVQ(vq, heldPixels, heldScenes, codebook);
    o.log(`train-vq: codebook from k-means over ${all.length / cfg.vq.codebookDim} latents: held-out mse ${e.mse.toFixed(4)}, ${e.codesUsed} codes, scene match ${(e.sceneMatch * 100).toFixed(1)}%`);
  }
  for (let step = 0; step < o.steps; step++) {
    const { batch, corners, targets } = pickBatch();
    const weights = weightsOf(batch, corners);
    const lr = o.lr * lrFactor(step + 1, { warmupSteps: warmup, totalSteps: o.steps + 1, minLrRatio: 0.1 });
    const lossValue = update(() => {
      if (targets) return patchCodeLoss(vq, batch, targets, o.recon, weights);
      const r = vq.lossAndIds(batch, { recon: o.recon, pixelWeights: weights });
      for (const id of r.ids.dataSync()) counts[id]++;
      return r.loss;
    }, vars, lr);
    if (o.codes === 'learned' && o.reviveEvery > 0 && (step + 1) % o.reviveEvery === 0 && step + 1 <= o.steps / 2) {
      const z = tf.tidy(() => tf.reshape(vq.latents(batch), [-1, cfg.vq.codebookDim]) as tf.Tensor2D);
      revived += vq.quantize.reviveDeadCodes(counts, z, (m) => Math.floor(rng() * m));
      z.dispose();
      counts.fill(0);
    }
    tf.dispose([batch, corners, ...(weights ? [weights] : [])]);
    recent = step === 0 ? lossValue : 0.9 * recent + 0.1 * lossValue;
    o.onStep?.(step + 1, recent);
    if (o.evalEvery > 0 && (step + 1) % o.evalEvery === 0 && step + 1 < o.steps) {
      const e = await evaluateVQ(vq, heldPixels, heldScenes, codebook, heldCodes);
      o.log(`train-vq: step ${step + 1}: loss ${recent.toFixed(4)}, held-out mse ${e.mse.toFixed(4)}, ${e.codesUsed} codes (perplexity ${e.perplexity.toFixed(1)}), scene match ${(e.sceneMatch * 100).toFixed(1)}%${codeText(e)}, lr ${lr.toExponential(2)}`);
    }
  }
  const after = await evaluateVQ(vq, heldPixels, heldScenes, codebook, heldCodes);
  o.log(`train-vq: after ${o.steps} steps: mse ${after.mse.toFixed(4)}, ${after.codesUsed}/${codebook} codes (perplexity ${after.perplexity.toFixed(1)}), scene match ${(after.sceneMatch * 100).toFixed(1)}%${codeText(after)}, ${revived} dead codes restarted`);
  // Originals over reconstructions, for the eye (the README shows it).
  const show = tf.tidy(() => tf.slice(heldPixels, [0, 0, 0, 0], [Math.min(8, held.length), -1, -1, -1]) as tf.Tensor4D);
  const recon = tf.tidy(() => vq.decode(vq.encode(show)));
  const both = tf.concat([show, recon], 0) as tf.Tensor4D;
  fs.mkdirSync(o.out, { recursive: true });
  fs.writeFileSync(path.join(o.out, 'reconstructions.png'), await imageGrid(both, show.shape[0]));
  tf.dispose([show, recon, both, trainPixels, heldPixels]);

  savePretrained(store, cfg, o.out, { dtype: o.dtype, only: (name) => name.startsWith(VQ_PREFIX) });
  const seconds = (Date.now() - t0) / 1000;
  const facts = { kind: 'vq-tokenizer', init: o.init ?? null, data: o.data, codes: o.codes, ...(dictionarySize !== undefined ? { dictionarySize, dictionaryHash } : {}), recon: o.recon, aeSteps: o.aeSteps, objectWeight: o.objectWeight, reviveEvery: o.reviveEvery, steps: o.steps, batch: o.batch, lr: o.lr, crop, images: train.length, heldout: held.length, seed: o.seed, dtype: o.dtype, revived, before, after, seconds };
  fs.writeFileSync(path.join(o.out, 'vq_train.json'), `${JSON.stringify(facts, null, 2)}\n`);
  store.dispose();
  opt.dispose();
  return { before, after, steps: o.steps, seconds, files: ['model.safetensors', 'config.json', 'vq_train.json', 'reconstructions.png'] };
}
