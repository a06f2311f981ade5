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
import { UserError } from '../cli/errors';
import { Scene } from '../data/scene';
import { detectScene } from '../generate/detect';
import { JanusConfig } from '../model/config';
import { ParamStore, checkpointShape } from '../model/params';
import { VQModel, codebookUsage } from '../model/vq';
import { writeHfConfig } from '../io/hf_config';
import { toCheckpointLayout } from '../io/pretrained';
import { writeSafetensors, SaveDtype } from '../io/safetensors';
import { loadImage, tensorToRgb } from '../tokenizer/image';
import { AdamW } from './optimizer';
import { lrFactor } from './schedule';

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
  reviveEvery: number;
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

function readSceneList(root: string): SceneImage[] {
  const file = path.join(root, 'scenes.jsonl');
  if (!fs.existsSync(file)) throw new UserError(`train-vq: ${file} not found; --data must be a ShapeWorld dataset (make one with \`janus4o synth --out ${root}\`).`);
  const out: SceneImage[] = [];
  fs.readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let rec: SceneImage;
    try {
      rec = JSON.parse(line) as SceneImage;
    } catch (e) {
      throw new UserError(`train-vq: ${file} line ${i + 1} is not JSON: ${(e as Error).message}`);
    }
    if (typeof rec.image !== 'string' || rec.image.startsWith('/') || rec.image.split('/').includes('..') || typeof rec.scene !== 'object') {
      throw new UserError(`train-vq: ${file} line ${i + 1}: expected {"image": "<relative path>", "scene": {...}}`);
    }
    out.push(rec);
  });
  return out;
}

async function loadBatch(root: string, items: readonly SceneImage[], size: number): Promise<tf.Tensor4D> {
  const parts: tf.Tensor4D[] = [];
  for (const it of items) parts.push(await loadImage(path.join(root, it.image), { size }));
  const all = tf.concat(parts, 0) as tf.Tensor4D;
  tf.dispose(parts);
  return all;
}

function sameScene(a: Scene, b: { background: string; objects: readonly { shape: string; color: string; cell: { row: number; col: number } }[] }): boolean {
  const key = (o: { shape: string; color: string; cell: { row: number; col: number } }) => `${o.shape}/${o.color}/${o.cell.row},${o.cell.col}`;
  const x = a.objects.map(key).sort().join(' ');
  const y = b.objects.map(key).sort().join(' ');
  return a.background === b.background && x === y;
}

export async function evaluateVQ(vq: VQModel, images: tf.Tensor4D, scenes: readonly Scene[], codebookSize: number): Promise<VQEvaluation> {
  const ids = tf.tidy(() => vq.encode(images));
  const recon = tf.tidy(() => vq.decode(ids));
  const mse = tf.tidy(() => tf.mean(tf.square(tf.sub(recon, images))).dataSync()[0]);
  const usage = codebookUsage((await ids.data()) as Int32Array, codebookSize);
  let match = 0;
  for (let i = 0; i < scenes.length; i++) {
    const one = tf.slice(recon, [i, 0, 0, 0], [1, -1, -1, -1]);
    const rgb = tensorToRgb(one);
    one.dispose();
    if (sameScene(scenes[i], detectScene(rgb.data, rgb.width, rgb.height))) match++;
  }
  tf.dispose([ids, recon]);
  return { mse, codesUsed: usage.used, perplexity: usage.perplexity, sceneMatch: scenes.length ? match / scenes.length : 0 };
}

/** Random crops of `crop` px at token-aligned offsets, one per image. */
function randomCrops(batch: tf.Tensor4D, crop: number, align: number, rng: () => number): tf.Tensor4D {
  const size = batch.shape[1];
  if (crop >= size) return tf.clone(batch);
  const slots = (size - crop) / align + 1;
  return tf.tidy(() => {
    const parts: tf.Tensor4D[] = [];
    for (let i = 0; i < batch.shape[0]; i++) {
      const y = Math.floor(rng() * slots) * align;
      const x = Math.floor(rng() * slots) * align;
      parts.push(tf.slice(batch, [i, y, x, 0], [1, crop, crop, 3]));
    }
    return tf.concat(parts, 0) as tf.Tensor4D;
  });
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

  const list = readSceneList(o.data);
  if (list.length < o.heldout + o.batch) throw new UserError(`train-vq: ${o.data} has ${list.length} images; need at least --heldout ${o.heldout} + --batch ${o.batch}.`);
  // Held-out: the last images of the list; training: the first `images` of the rest.
  const held = list.slice(list.length - o.heldout);
  const train = list.slice(0, Math.min(o.images, list.length - o.heldout));
  o.log(`train-vq: loading ${train.length} training and ${held.length} held-out images from ${o.data} at ${size} px`);
  const trainPixels = await loadBatch(o.data, train, size);
  const heldPixels = await loadBatch(o.data, held, size);
  const heldScenes = held.map((h) => h.scene);
  const codebook = cfg.vq.codebookSize;
  const before = await evaluateVQ(vq, heldPixels, heldScenes, codebook);
  o.log(`train-vq: before: mse ${before.mse.toFixed(4)}, ${before.codesUsed}/${codebook} codes, scene match ${(before.sceneMatch * 100).toFixed(1)}%`);

  const opt = new AdamW(store.list(), { weightDecay: 0, betas: [0.9, 0.95] });
  const warmup = Math.max(1, Math.round(o.steps * 0.05));
  const vars = store.variables();
  const rng = seedrandom(`train-vq:${o.seed}`);
  const counts = new Float64Array(codebook);
  let revived = 0;
  let recent = 0;
  for (let step = 0; step < o.steps; step++) {
    const idx = Array.from({ length: o.batch }, () => Math.floor(rng() * train.length));
    const picked = tf.tidy(() => tf.gather(trainPixels, tf.tensor1d(idx, 'int32')) as tf.Tensor4D);
    const batch = randomCrops(picked, crop, vq.downsample, rng);
    picked.dispose();
    let lossValue = 0;
    const grads = tf.tidy(() => {
      const { value, grads: g } = tf.variableGrads(() => {
        const r = vq.lossAndIds(batch);
        for (const id of r.ids.dataSync()) counts[id]++;
        return r.loss;
      }, vars);
      lossValue = value.dataSync()[0];
      return g;
    });
    const lr = o.lr * lrFactor(step + 1, { warmupSteps: warmup, totalSteps: o.steps + 1, minLrRatio: 0.1 });
    opt.step(store, new Map(store.list().map((p) => [p.name, grads[store.get(p.name).name]])), lr);
    tf.dispose(grads);
    if (o.reviveEvery > 0 && (step + 1) % o.reviveEvery === 0 && step + 1 < o.steps * 0.8) {
      const z = tf.tidy(() => tf.reshape(vq.latents(batch), [-1, cfg.vq.codebookDim]) as tf.Tensor2D);
      revived += vq.quantize.reviveDeadCodes(counts, z, (m) => Math.floor(rng() * m));
      z.dispose();
      counts.fill(0);
    }
    batch.dispose();
    recent = step === 0 ? lossValue : 0.9 * recent + 0.1 * lossValue;
    o.onStep?.(step + 1, recent);
  }
  const after = await evaluateVQ(vq, heldPixels, heldScenes, codebook);
  o.log(`train-vq: after ${o.steps} steps: mse ${after.mse.toFixed(4)}, ${after.codesUsed}/${codebook} codes (perplexity ${after.perplexity.toFixed(1)}), scene match ${(after.sceneMatch * 100).toFixed(1)}%, ${revived} dead codes restarted`);
  tf.dispose([trainPixels, heldPixels]);

  fs.mkdirSync(o.out, { recursive: true });
  const specs = store.list().filter((s) => s.name.startsWith(VQ_PREFIX));
  writeSafetensors(path.join(o.out, 'model.safetensors'), specs.map((spec) => ({
    name: spec.name,
    shape: checkpointShape(spec),
    values: () => toCheckpointLayout(spec, store.get(spec.name).dataSync() as Float32Array),
  })), { dtype: o.dtype });
  writeHfConfig(path.join(o.out, 'config.json'), cfg);
  const seconds = (Date.now() - t0) / 1000;
  const facts = { kind: 'vq-tokenizer', data: o.data, steps: o.steps, batch: o.batch, lr: o.lr, crop, images: train.length, heldout: held.length, seed: o.seed, dtype: o.dtype, revived, before, after, seconds };
  fs.writeFileSync(path.join(o.out, 'vq_train.json'), `${JSON.stringify(facts, null, 2)}\n`);
  store.dispose();
  opt.dispose?.();
  return { before, after, steps: o.steps, seconds, files: ['model.safetensors', 'config.json', 'vq_train.json'] };
}
