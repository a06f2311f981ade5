/**
 * Datasets are plugins of the training pipeline (design.md, "Datasets are plugins"). The pipeline reads records
 * of the ShareGPT-4o-Image layout from data.root whatever the dataset; a plugin adds what is particular to it:
 * its config sections, data it writes before the run (ShapeWorld synthesises its folder), the tokenizer of a model
 * built from a preset, and measurements before and after training (reports). ShareGPT-4o-Image needs none of
 * that, so its plugin only refuses the sections that belong to other datasets.
 */
import type { PromptIds } from '../data/batch';
import type { GenerationDefaults } from '../io/model_folder';
import type { Janus4o } from '../model/janus';
import type { PromptTokenizer } from '../tokenizer/text';
import { UserError } from '../errors';
import type { TrainConfig } from './config';
import type { ConditionUse } from './evaluate';

/** What every hook is told. */
export interface RunContext {
  cfg: TrainConfig;
  /** The config file (for messages). */
  source: string;
  log: (line: string) => void;
}

/** The run's model, once built (rank 0 only). */
export interface ModelContext extends RunContext {
  model: Janus4o;
  templates: PromptIds;
  tokenizer: PromptTokenizer;
  /** True when the run continues from a checkpoint: the starting model is gone. */
  resumed: boolean;
}

/** How a run ended, for the after-run hook. */
export interface RunOutcome {
  steps: number;
  /** Stopped early (signal or shouldStop): the hook should not spend time measuring. */
  stopped: boolean;
  checkpoint: string | null;
  heldoutBefore: number | null;
  heldoutAfter: number | null;
  heldoutNote: string;
  conditionUseBefore: ConditionUse | null;
  conditionUseAfter: ConditionUse | null;
  wallSeconds: number;
}

/** Recommended sampling settings of a trained model, written to its generation_config.json (defined in io). */
export type { GenerationDefaults };

export interface DatasetPlugin {
  /** The config's data.kind. */
  readonly kind: string;
  /**
   * Validates the plugin's own config sections and fills their defaults, so the config saved in a checkpoint
   * says exactly what ran. Called once before any work (and before any worker starts).
   */
  resolveConfig(cfg: TrainConfig, source: string): TrainConfig;
  /** Checks, before any worker starts, that what the dataset reads exists or can be made. */
  checkPaths?(cfg: TrainConfig, source: string): void;
  /** Rank 0, before the model loads: writes what the run needs and does not have yet. */
  prepare?(ctx: RunContext): Promise<void>;
  /** The tokenizer folder of a preset model whose config names none (model.tokenizer). */
  presetTokenizerDir?(ctx: RunContext): string;
  /** The sampling settings a model trained on this dataset is recommended with; absent: the starting folder's. */
  generationDefaults?(cfg: TrainConfig): GenerationDefaults | null;
  /** Rank 0, before the first step (measures the starting model). */
  beforeTraining?(ctx: ModelContext): Promise<void>;
  /** Rank 0, after the last step. */
  afterTraining?(ctx: ModelContext, outcome: RunOutcome): Promise<void>;
}

/** ShareGPT-4o-Image (and any folder in its layout): records only, nothing to synthesise or report. */
export const shareGPT4oDataset: DatasetPlugin = {
  kind: 'sharegpt4o',
  resolveConfig(cfg, source) {
    if (cfg.data.synth !== undefined || cfg.data.synthesize_if_missing !== undefined) {
      throw new UserError(`Invalid training config ${source}: data.synth and data.synthesize_if_missing apply to data.kind shapeworld (a generated dataset); remove them for data.kind sharegpt4o.`);
    }
    const keys = Object.keys(cfg.report);
    if (keys.length > 0) {
      throw new UserError(`Invalid training config ${source}: report.${keys[0]} belongs to the ShapeWorld report (ShapeEval); data.kind sharegpt4o has no after-run report. Remove the report section, and evaluate with GenEval / DPG-Bench (README, "Generating, editing, evaluating").`);
    }
    return cfg;
  },
};

/** The plugin for `cfg.data.kind`: ShareGPT-4o-Image is built in; other kinds come from the caller. */
export function datasetFor(cfg: TrainConfig, given: DatasetPlugin | undefined, source: string): DatasetPlugin {
  if (given) {
    if (given.kind !== cfg.data.kind) throw new Error(`runTraining: the dataset plugin is for ${given.kind}, the config's data.kind is ${cfg.data.kind}`);
    return given;
  }
  if (cfg.data.kind === shareGPT4oDataset.kind) return shareGPT4oDataset;
  throw new UserError(`data.kind ${cfg.data.kind} in ${source} needs its dataset plugin: the janus4o CLI brings it; from code, pass RunOptions.dataset (e.g. shapeWorldDataset from 'janus4o-tf').`);
}
