/**
 * Model folders: what a run or a sampler loads a model from. A training checkpoint (checkpoint.json), a run folder
 * (its `latest`), or a model folder (config.json in the Janus layout or ours, safetensors or the official
 * PyTorch .bin weights, e.g. a Janus-Pro download read by pretrained.ts).
 */
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { JanusConfig, validateConfig } from '../model/config';
import { Janus4o } from '../model/janus';
import { ImagePositions } from '../model/positions';
import { LATEST_FILE, MANIFEST_FILE, loadCheckpoint, loadWeightsIntoStore, resolveCheckpoint } from './checkpoint';
import { janusConfigFromHf } from './hf_config';
import { loadIntoStore } from './pretrained';

/** config.json of a training checkpoint (a JanusConfig) or of a Janus model folder (HF layout). */
export function readModelConfig(file: string): JanusConfig {
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
 * Loads a model (weights and config, no tokenizer): a training checkpoint, a checkpoint root (its `latest`),
 * or a model folder. `dir` is the folder the weights came from (where its tokenizer.json lives).
 */
export async function loadModelFolder(target: string, opts: { imagePositions?: ImagePositions } = {}): Promise<{ model: Janus4o; dir: string }> {
  const abs = path.resolve(target);
  if (!fs.existsSync(abs)) throw new UserError(`Checkpoint directory ${abs} does not exist.`);
  if (!fs.statSync(abs).isDirectory()) throw new UserError(`--checkpoint ${abs} is a file; pass the checkpoint directory.`);
  const trainingLayout = fs.existsSync(path.join(abs, MANIFEST_FILE)) || fs.existsSync(path.join(abs, LATEST_FILE)) || !fs.existsSync(path.join(abs, 'config.json'));
  const dir = trainingLayout ? await resolveCheckpoint(abs) : abs;
  const read = readModelConfig(path.join(dir, 'config.json'));
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


/**
 * The files beside the weights that make a model folder usable (design.md, "Model folders are complete"): the
 * tokenizer and its settings, the processor settings, and the recommended sampling settings. Checkpoints and
 * exports carry every one the starting folder has.
 */
export const SIDE_FILES: readonly string[] = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'processor_config.json',
  'preprocessor_config.json',
  'generation_config.json',
];

/** Absolute paths of the side files `dir` has. */
export function sideFilesOf(dir: string): string[] {
  return SIDE_FILES.map((f) => path.join(dir, f)).filter((f) => fs.existsSync(f));
}
