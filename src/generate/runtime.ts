/**
 * A model ready to draw: weights, tokenizer and prompt templates, plus the two image conversions generation
 * needs (ids -> PNG through the VQ decoder; a source image -> VQ ids and SigLIP features for edits). The CLI
 * commands and the ShapeEval runner all start from one of these.
 */
import * as tf from '@tensorflow/tfjs-core';
import { UserError } from '../errors';
import { PromptIds } from '../data/batch';
import { promptIds } from '../data/prompt_ids';
import { GenerationDefaults, REFERENCE_GENERATION, loadModelFolder, readGenerationConfig } from '../io/model_folder';
import { JanusConfig, imageTokenCount } from '../model/config';
import { Janus4o } from '../model/janus';
import { ImagePositions } from '../model/positions';
import { ImageInputError, imageToPng, loadImage } from '../tokenizer/image';
import { loadPromptTokenizer } from '../tokenizer/load';

export interface GenerationRuntime {
  readonly model: Janus4o;
  readonly templates: PromptIds;
  /** Where the weights came from (recorded in every sidecar). */
  readonly source: string;
  /** The model's recommended sampling settings (its folder's generation_config.json): the CLI's defaults. */
  readonly generation: GenerationDefaults;
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
export function runtimeFromModel(model: Janus4o, templates: PromptIds, tokenizerVocab: number, source: string, generation: GenerationDefaults = { ...REFERENCE_GENERATION }): GenerationRuntime {
  const cfg = model.config;
  if (tokenizerVocab > cfg.llm.vocabSize) {
    throw new UserError(`${source}: the tokenizer has ${tokenizerVocab} tokens but the model's text vocabulary is ${cfg.llm.vocabSize}; they do not belong together.`);
  }
  const n = imageTokenCount(cfg);
  return {
    model,
    templates,
    source,
    generation,
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

/** Prompt templates for the folder's tokenizer, through the same `promptIds` the trainer uses. */
function loadTemplates(dir: string, imagePositions: ImagePositions | undefined): { templates: PromptIds; vocabSize: number } {
  const { tok } = loadPromptTokenizer(dir);
  return { templates: promptIds(tok, imagePositions), vocabSize: tok.vocabSize };
}

/**
 * Loads a checkpoint for generation: a training checkpoint (checkpoint.json; validated by the trainer's
 * loader), a checkpoint root (its `latest`), or a model folder (config.json + safetensors or PyTorch .bin
 * weights, e.g. a Janus-Pro download) read by io/pretrained.ts. The sampling settings are the folder's
 * generation_config.json (the reference ones when it has none).
 */
export async function loadRuntime(target: string): Promise<GenerationRuntime> {
  const { model, dir } = await loadModelFolder(target);
  try {
    const generation = readGenerationConfig(dir);
    const { templates, vocabSize } = loadTemplates(dir, model.config.imagePositions);
    return runtimeFromModel(model, templates, vocabSize, dir, generation);
  } catch (e) {
    model.dispose();
    throw e;
  }
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
