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
import { GENERATION_CONFIG_FILE, LATEST_FILE, MANIFEST_FILE, loadCheckpoint, loadWeightsIntoStore, resolveCheckpoint } from './checkpoint';
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
  GENERATION_CONFIG_FILE,
];

/** Absolute paths of the side files `dir` has. */
export function sideFilesOf(dir: string): string[] {
  return SIDE_FILES.map((f) => path.join(dir, f)).filter((f) => fs.existsSync(f));
}

/**
 * Recommended sampling settings of a model, its generation_config.json: the guidance weights (w, or w1 and w2 of
 * an edit's 3-branch CFG) and the softmax temperatures of text-to-image and of edits.
 */
export interface GenerationDefaults {
  cfg_weight: number;
  cfg_weight2: number;
  temperature: number;
  edit_temperature: number;
}

const GENERATION_KEYS: readonly (keyof GenerationDefaults)[] = ['cfg_weight', 'cfg_weight2', 'temperature', 'edit_temperature'];

/** The Janus-Pro / Janus-4o reference settings (janus-spec 7.1 and 8.4): w = w1 = w2 = 5, T = 1. */
export const REFERENCE_GENERATION: Readonly<GenerationDefaults> = Object.freeze({ cfg_weight: 5, cfg_weight2: 5, temperature: 1, edit_temperature: 1 });

function describeGeneration(g: Readonly<GenerationDefaults>): string {
  return GENERATION_KEYS.map((k) => `${k} ${g[k]}`).join(', ');
}

/**
 * The sampling settings `dir` recommends: its generation_config.json (every key a finite number >= 0; other keys
 * are ignored), or REFERENCE_GENERATION when it has none.
 */
export function readGenerationConfig(dir: string): GenerationDefaults {
  const file = path.join(dir, GENERATION_CONFIG_FILE);
  if (!fs.existsSync(file)) return { ...REFERENCE_GENERATION };
  const fix = `fix it, or delete the file to sample with the reference settings (${describeGeneration(REFERENCE_GENERATION)})`;
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${file}: cannot read the generation settings (${(e as Error).message}); ${fix}.`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new UserError(`${file}: expected a JSON object with ${GENERATION_KEYS.join(', ')}; ${fix}.`);
  const obj = raw as Record<string, unknown>;
  const out = { ...REFERENCE_GENERATION };
  for (const k of GENERATION_KEYS) {
    const v = obj[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
      throw new UserError(`${file}: "${k}" must be a finite number >= 0, got ${v === undefined ? 'nothing' : JSON.stringify(v)}; ${fix}.`);
    }
    out[k] = v;
  }
  return out;
}

/**
 * What every checkpoint of a run writes as generation_config.json: the dataset plugin's settings when it has some;
 * else null, so the starting folder's own file (one of `sideFiles`, checked here) is copied unchanged; else the
 * reference settings. Either way a checkpoint always has one.
 */
export function checkpointGeneration(pluginDefaults: GenerationDefaults | null | undefined, sideFiles: readonly string[]): GenerationDefaults | null {
  if (pluginDefaults) return pluginDefaults;
  const own = sideFiles.find((f) => path.basename(f) === GENERATION_CONFIG_FILE);
  if (own === undefined) return { ...REFERENCE_GENERATION };
  readGenerationConfig(path.dirname(own));
  return null;
}
