/**
 * The model a run starts from and its prompt tokenizer: a pretrained folder (an official Janus-Pro download, one
 * of our checkpoints or model folders) with the tokenizer in it, or a preset initialised from the seed with the
 * tokenizer of model.tokenizer (or the dataset plugin's), optionally with a trained VQ tokenizer.
 */
import * as path from 'path';
import { UserError } from '../errors';
import { readHfConfig } from '../io/hf_config';
import { SIDE_FILES, loadModelFolder, readModelConfig, sideFilesOf } from '../io/model_folder';
import { loadIntoStore } from '../io/pretrained';
import { JanusConfig, presetConfig } from '../model/config';
import { Janus4o } from '../model/janus';
import { loadPromptTokenizer } from '../tokenizer/load';
import type { PromptTokenizer } from '../tokenizer/text';
import type { TrainConfig } from './config';
import type { DatasetPlugin, RunContext } from './dataset';

/** Models of this many parameters or more are refused on wasm and cpu unless allowed: days per step there. */
export const SLOW_BACKEND_LIMIT = 1e9;

export interface StartingModel {
  model: Janus4o;
  tokenizer: PromptTokenizer;
  /** The folder's side files (tokenizer.json, tokenizer_config.json, ...) that every checkpoint carries. */
  sideFiles: string[];
}

/** The folder a preset model takes its tokenizer from. */
function presetTokenizerDir(cfg: TrainConfig, dataset: DatasetPlugin, ctx: RunContext): string {
  if (cfg.model.tokenizer) return path.resolve(cfg.model.tokenizer);
  if (dataset.presetTokenizerDir) return dataset.presetTokenizerDir(ctx);
  throw new UserError(`model.preset in ${ctx.source} needs a tokenizer: set model.tokenizer to a folder with tokenizer.json (for example a Janus-Pro download), or start from model.pretrained.`);
}

/** The architecture the config asks for, without allocating anything (for the backend check). */
export function plannedModelConfig(cfg: TrainConfig, vocabSize = 8): JanusConfig {
  if (cfg.model.pretrained) return readModelConfig(path.join(path.resolve(cfg.model.pretrained), 'config.json'));
  const overrides = cfg.model.overrides ?? {};
  const vqCfg = cfg.model.vq_pretrained ? readHfConfig(path.join(path.resolve(cfg.model.vq_pretrained), 'config.json')) : null;
  return presetConfig(cfg.model.preset ?? 'tiny', {
    ...overrides,
    ...(vqCfg ? { imageSize: vqCfg.imageSize, vq: vqCfg.vq } : {}),
    llm: { ...overrides.llm, vocabSize: Math.max(vocabSize, overrides.llm?.vocabSize ?? 0, 8) },
  });
}

/**
 * Refuses a model of SLOW_BACKEND_LIMIT parameters or more on wasm / cpu: such a run would take days per step
 * instead of failing, which is worse. `allow` (the CLI's --allow-slow-backend) lets it through.
 */
export function checkBackendFits(cfg: TrainConfig, backend: string, source: string, allow: boolean): void {
  if (allow || backend === 'tensorflow' || backend === 'auto') return;
  const params = new Janus4o(plannedModelConfig(cfg)).parameterCount();
  if (params < SLOW_BACKEND_LIMIT) return;
  throw new UserError(
    `${source}: the model has ${(params / 1e9).toFixed(2)}B parameters and the backend is ${backend}, which would take hours per optimizer step. ` +
      `Train it on a GPU with backend: tensorflow (npm i @tensorflow/tfjs-node-gpu@4.22.0 on a CUDA machine), or pass --allow-slow-backend to run it here anyway.`,
  );
}

export async function loadStartingModel(cfg: TrainConfig, dataset: DatasetPlugin, ctx: RunContext): Promise<StartingModel> {
  const log = ctx.log;
  if (cfg.model.pretrained) {
    // Position ids are not weights, so they are the one architecture setting a pretrained model can take anew.
    const { imagePositions, ...others } = cfg.model.overrides ?? {};
    const fixed = Object.keys(others);
    if (fixed.length > 0) throw new UserError(`model.overrides.${fixed[0]} cannot change model.pretrained's architecture (its config.json decides it); only model.overrides.imagePositions applies to a pretrained model.`);
    const { model, dir } = await loadModelFolder(cfg.model.pretrained, { imagePositions });
    try {
      if (imagePositions) log(`model: image positions from model.overrides: ${imagePositions.stride} ids apart, edit targets ${imagePositions.editTargetOffset ?? 'not aligned'} ids after their input`);
      const { tok } = loadPromptTokenizer(dir);
      if (tok.vocabSize > model.config.llm.vocabSize) throw new UserError(`${path.join(dir, 'tokenizer.json')} has ${tok.vocabSize} tokens but the model's text vocabulary is ${model.config.llm.vocabSize}.`);
      log(`model: ${dir} (${(model.parameterCount() / 1e6).toFixed(2)}M parameters)`);
      return { model, tokenizer: tok, sideFiles: sideFilesOf(dir) };
    } catch (e) {
      model.dispose();
      throw e;
    }
  }
  const tokDir = presetTokenizerDir(cfg, dataset, ctx);
  const { tok } = loadPromptTokenizer(tokDir);
  const mcfg = plannedModelConfig(cfg, tok.vocabSize);
  const model = Janus4o.create(mcfg, { seed: cfg.train.seed, init: cfg.model.init });
  if (cfg.model.init !== 'reference') log(`model: ${cfg.model.init} initialisation (docs/init-scale.md)`);
  const vqDir = cfg.model.vq_pretrained ? path.resolve(cfg.model.vq_pretrained) : null;
  if (vqDir) {
    try {
      loadIntoStore(model.params, vqDir, { allowMissing: (name) => !name.startsWith('gen_vision_model.') });
    } catch (e) {
      model.dispose();
      throw new UserError(`model.vq_pretrained ${vqDir}: ${(e as Error).message}`);
    }
    log(`model: ${cfg.model.preset} with the VQ tokenizer of ${vqDir} (codebook ${mcfg.vq.codebookSize})`);
  }
  if (mcfg.imagePositions) log(`model: image tokens ${mcfg.imagePositions.stride} position ids apart, edit targets ${mcfg.imagePositions.editTargetOffset ?? 'not aligned'} ids after their input (RoPE base ${mcfg.llm.ropeTheta})`);
  return { model, tokenizer: tok, sideFiles: sideFilesOf(tokDir).filter((f) => SIDE_FILES.includes(path.basename(f))) };
}
