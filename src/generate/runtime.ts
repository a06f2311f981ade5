/**
 * A model ready to draw: weights, tokenizer and prompt templates, plus the two image conversions generation
 * needs (ids -> PNG through the VQ decoder; a source image -> VQ ids and SigLIP features for edits). The CLI
 * commands and the ShapeEval runner all start from one of these.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { UserError } from '../cli/errors';
import { PromptIds } from '../data/batch';
import { renderScene } from '../data/render';
import type { Scene } from '../data/scene';
import { promptIds } from '../data/prompt_ids';
import { JanusConfig, imageTokenCount, validateConfig } from '../model/config';
import { Janus4o } from '../model/janus';
import { janusConfigFromHf } from '../io/hf_config';
import { ImagePositions } from '../model/positions';
import { loadIntoStore } from '../io/pretrained';
import { ImageInputError, imageToPng, loadImage } from '../tokenizer/image';
import { TextTokenizer as BpeTokenizer } from '../tokenizer/text';
import { WordTokenizer } from '../tokenizer/word';
import { LATEST_FILE, MANIFEST_FILE, loadCheckpoint, loadWeightsIntoStore, resolveCheckpoint } from '../train/checkpoint';

export interface GenerationRuntime {
  readonly model: Janus4o;
  readonly templates: PromptIds;
  /** Where the weights came from (recorded in every sidecar). */
  readonly source: string;
  /** Image ids [B][n] -> PNG bytes, one per image. */
  decode(ids: readonly (readonly number[])[]): Promise<Buffer[]>;
  /** An edit's source image [1, S, S, 3] in [-1, 1] -> its X-block ids and E-block features [n, D] (caller disposes). */
  encodeSource(pixels: tf.Tensor4D): { ids: number[]; features: tf.Tensor2D };
  dispose(): void;
}

/** Images [B, S, S, 3] in [-1, 1] -> PNG bytes, through the one tensor -> PNG conversion (tokenizer/image.ts). */
export async function imagesToPngs(images: tf.Tensor4D): Promise<Buffer[]> {
  const parts = tf.unstack(images);
  try {
    const out: Buffer[] = [];
    for (const p of parts) out.push(await imageToPng(p));
    return out;
  } finally {
    tf.dispose(parts);
  }
}

/** Images decoded per VQ-decoder call: the decoder's activations at 384 px are large. */
function decodeBatch(cfg: JanusConfig): number {
  return cfg.imageSize >= 256 ? 1 : 16;
}

/** A runtime around an in-memory model (tests, the embedded models, a freshly trained model). */
export function runtimeFromModel(model: Janus4o, templates: PromptIds, tokenizerVocab: number, source: string): GenerationRuntime {
  const cfg = model.config;
  if (tokenizerVocab > cfg.llm.vocabSize) {
    throw new UserError(`${source}: the tokenizer has ${tokenizerVocab} tokens but the model's text vocabulary is ${cfg.llm.vocabSize}; they do not belong together.`);
  }
  const n = imageTokenCount(cfg);
  return {
    model,
    templates,
    source,
    async decode(ids) {
      const out: Buffer[] = [];
      const step = decodeBatch(cfg);
      for (let i = 0; i < ids.length; i += step) {
        const part = ids.slice(i, i + step);
        const images = tf.tidy(() => model.vq.decode(tf.tensor2d(part.map((r) => Array.from(r)), [part.length, n], 'int32')));
        try {
          out.push(...(await imagesToPngs(images)));
        } finally {
          images.dispose();
        }
      }
      return out;
    },
    encodeSource(pixels) {
      const idsT = tf.tidy(() => model.vq.encode(pixels));
      const ids = Array.from(idsT.dataSync());
      idsT.dispose();
      if (ids.length !== n) throw new Error(`encodeSource: expected one image of ${n} tokens, got ${ids.length} ids`);
      const features = tf.tidy(() => model.imageFeatures(pixels, new Array<number>(n).fill(0)));
      return { ids, features };
    },
    dispose() {
      model.dispose();
    },
  };
}

/** config.json of a training checkpoint (a JanusConfig) or of a Janus model folder (HF layout). */
function readConfig(file: string): JanusConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${file}: cannot read the model config (${(e as Error).message}).`);
  }
  try {
    const c = raw as Partial<JanusConfig>;
    if (c && typeof c === 'object' && typeof c.llm === 'object' && typeof c.vq === 'object') return validateConfig(c as JanusConfig);
    return janusConfigFromHf(raw);
  } catch (e) {
    throw new UserError(`${file}: ${(e as Error).message}`);
  }
}

/**
 * Prompt templates for the folder's tokenizer: a word-level tokenizer.json (ShapeWorld models) goes through
 * the same `promptIds` the trainer uses; a BPE one (Janus-Pro) through the template builders of
 * tokenizer/template.ts.
 */
function loadTemplates(dir: string, imagePositions: ImagePositions | undefined): { templates: PromptIds; vocabSize: number } {
  const file = path.join(dir, 'tokenizer.json');
  if (!fs.existsSync(file)) throw new UserError(`${dir} has no tokenizer.json; a checkpoint for generation needs its tokenizer.`);
  try {
    const json = JSON.parse(fs.readFileSync(file, 'utf8')) as { model?: { type?: string } };
    if (json.model?.type === 'WordLevel') {
      const tok = WordTokenizer.load(file);
      return { templates: promptIds(tok, imagePositions), vocabSize: tok.vocabSize };
    }
    const tok = BpeTokenizer.fromDir(dir);
    return { templates: promptIds(tok, imagePositions), vocabSize: tok.vocabSize };
  } catch (e) {
    throw new UserError(`${file}: ${(e as Error).message}`);
  }
}

/**
 * Loads a checkpoint for generation: a training checkpoint (checkpoint.json; validated by the trainer's
 * loader), a checkpoint root (its `latest`), or a model folder (config.json + safetensors or PyTorch .bin
 * weights, e.g. a Janus-Pro download) read by io/pretrained.ts.
 */
export async function loadRuntime(target: string): Promise<GenerationRuntime> {
  const { model, dir } = await loadModelFolder(target);
  try {
    const { templates, vocabSize } = loadTemplates(dir, model.config.imagePositions);
    return runtimeFromModel(model, templates, vocabSize, dir);
  } catch (e) {
    model.dispose();
    throw e;
  }
}

/**
 * Loads a model (weights and config, no tokenizer): a training checkpoint, a checkpoint root (its `latest`),
 * or a model folder. `dir` is the folder the weights came from (where its tokenizer.json lives).
 */
export async function loadModelFolder(target: string, opts: { imagePositions?: ImagePositions } = {}): Promise<{ model: Janus4o; dir: string }> {
  const abs = path.resolve(target);
  if (!fs.existsSync(abs)) throw new UserError(`Checkpoint directory ${abs} does not exist.`);
  if (!fs.statSync(abs).isDirectory()) throw new UserError(`--checkpoint ${abs} is a file; pass the checkpoint directory.`);
  const trainingLayout = fs.existsSync(path.join(abs, MANIFEST_FILE)) || fs.existsSync(path.join(abs, LATEST_FILE)) || !fs.existsSync(path.join(abs, 'config.json'));
  const dir = trainingLayout ? await resolveCheckpoint(abs) : abs;
  const read = readConfig(path.join(dir, 'config.json'));
  const config = opts.imagePositions ? { ...read, imagePositions: opts.imagePositions } : read;
  const model = Janus4o.create(config, { allocate: false });
  try {
    if (trainingLayout) await loadWeightsIntoStore((await loadCheckpoint(dir)).weights, model.params);
    else loadIntoStore(model.params, dir);
  } catch (e) {
    model.dispose();
    throw e instanceof UserError ? e : new UserError(`${dir}: ${(e as Error).message}`);
  }
  return { model, dir };
}

/** A ShapeWorld scene rendered as the model's input and its VQ ids (the probes' teacher-forced images); the caller owns `pixels`. */
export async function encodeScene(model: Janus4o, scene: Scene): Promise<{ ids: number[]; pixels: tf.Tensor4D }> {
  const size = model.config.imageSize;
  const pixels = await loadImagePixels(await renderScene(scene, size), size);
  const idsT = tf.tidy(() => model.vq.encode(pixels));
  const ids = Array.from(await idsT.data());
  idsT.dispose();
  return { ids, pixels };
}

/**
 * Reads an image (file or bytes) as model input [1, S, S, 3] in [-1, 1] with the Janus preprocessing of
 * tokenizer/image.ts. Bad input is a user error that names the file, prefixed by `label` (e.g. the flag).
 */
export async function loadImagePixels(source: string | Buffer, size: number, label?: string): Promise<tf.Tensor4D> {
  try {
    return await loadImage(source, { size, name: typeof source === 'string' ? undefined : label });
  } catch (e) {
    if (e instanceof ImageInputError && label && typeof source === 'string') throw new UserError(`${label} ${e.message}`);
    throw e;
  }
}
