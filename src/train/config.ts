/**
 * Training configuration: a YAML file checked against a zod schema, optional dotted command-line overrides
 * (`--train.lr 1e-5`; the key walking, typo suggestions and coercion are in config_overrides.ts), a stable hash,
 * and the comparison a resume makes against the config a checkpoint was written with. Keys are snake_case like the reference's argparse flags, except `model.overrides`, which mirrors
 * JanusConfig (camelCase) so it can be passed to presetConfig unchanged. Every default is the Janus-4o recipe
 * (janus-spec 8.5), so the resolved config of a short file still says exactly what ran.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import YAML from 'yaml';
import { z } from 'zod';
import { UserError } from '../errors';
import { Override, applyOverridesWith, issueText, show } from './config_overrides';
import { DEFAULT_NO_DECAY } from './optimizer';
import { INIT_SCHEMES } from '../model/init_scheme';

/**
 * A number key that must be finite. z.number() accepts Infinity (YAML `.inf`, `--train.lr Infinity`) and refuses NaN
 * (`.nan`) only as a type error; both are refused here first, naming the value, before the key's own range checks.
 */
function finite<T extends z.ZodTypeAny>(schema: T) {
  return z.preprocess((v, ctx) => {
    if (typeof v === 'number' && !Number.isFinite(v)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: `must be a finite number, got ${v}`, fatal: true });
      return z.NEVER;
    }
    return v;
  }, schema);
}
const int = (min: number, what: string) => finite(z.number().int({ message: `must be an integer` }).min(min, { message: `must be ${what}` }));
const prob = finite(z.number().min(0, { message: 'must be between 0 and 1' }).max(1, { message: 'must be between 0 and 1' }));
const posInt = int(1, 'a positive integer');
const beta = finite(z.number().min(0, { message: 'must be in [0, 1)' }).lt(1, { message: 'must be in [0, 1)' }));
const positive = () => finite(z.number().positive({ message: 'must be a positive number' }));
const patterns = z.array(z.string().min(1));

const llmOverrides = z
  .object({
    vocabSize: posInt, hiddenSize: posInt, numLayers: posInt, numHeads: posInt, numKvHeads: posInt, intermediateSize: posInt,
    ropeTheta: positive(), rmsNormEps: positive(), maxPositionEmbeddings: posInt,
  })
  .partial()
  .strict();
const vqOverrides = z
  .object({
    codebookSize: posInt, codebookDim: posInt, baseChannels: posInt, chMult: z.array(posInt).min(1), numResBlocks: posInt,
    zChannels: posInt, normGroups: posInt, numAttnBlocks: int(0, 'a non-negative integer'),
  })
  .partial()
  .strict();
const siglipOverrides = z
  .object({ patchSize: posInt, width: posInt, depth: posInt, numHeads: posInt, mlpDim: posInt, layerNormEps: positive() })
  .partial()
  .strict();
/** Non-reference image-token position ids (src/model/positions.ts); both keys, so a model says all it uses. */
const imagePositionsOverride = z.object({ stride: posInt, editTargetOffset: z.number().int().nonnegative().nullable() }).strict();

export const PRESET_NAMES = ['tiny', 'janus-pro-1b', 'janus-pro-7b'] as const;

const modelSchema = z
  .object({
    /** A built-in size, randomly initialised. Exactly one of preset and pretrained. */
    preset: z.enum(PRESET_NAMES).optional(),
    /** A folder with config.json and weights (Janus-Pro download or one of our checkpoints). */
    pretrained: z.string().min(1).optional(),
    /** With preset: a folder whose tokenizer.json (and side files) the model uses; absent: the dataset plugin's (ShapeWorld builds one). */
    tokenizer: z.string().min(1).optional(),
    /** With preset: a tokenizer folder from `janus4o train-vq` (its config.json sets the VQ config and image size). */
    vq_pretrained: z.string().min(1).optional(),
    /** With preset: how the random weights start (src/model/init_scheme.ts, docs/init-scale.md). */
    init: z.enum(INIT_SCHEMES).default('reference'),
    overrides: z
      .object({ name: z.string().min(1), imageSize: posInt, genEmbedDim: posInt, llm: llmOverrides, vq: vqOverrides, siglip: siglipOverrides, imagePositions: imagePositionsOverride })
      .partial()
      .strict()
      .default({}),
  })
  .strict();

const dataSchema = z
  .object({
    kind: z.enum(['shapeworld', 'sharegpt4o']),
    root: z.string().min(1),
    /** JSON record lists relative to root; the data reader's default when absent. */
    files: z.array(z.string().min(1)).min(1).optional(),
    cache_dir: z.string().min(1).optional(),
    max_bad_fraction: prob.default(0.01),
    /** Records kept out of training for the held-out loss: the tail of each task, in proportion (data/split.ts). */
    heldout: int(0, 'a non-negative integer').default(0),
    /** For datasets that can be generated (ShapeWorld): write the dataset into root when it is missing (default true). */
    synthesize_if_missing: z.boolean().optional(),
    /** How a generated dataset is made; its plugin validates it (ShapeWorld: src/shapeworld/config.ts). */
    synth: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();

const trainSchema = z
  .object({
    lr: positive().default(5e-6),
    weight_decay: finite(z.number().min(0, { message: 'must be >= 0' })).default(0.1),
    betas: z.tuple([beta, beta]).default([0.9, 0.999]),
    eps: finite(z.number().min(0, { message: 'must be >= 0' })).default(1e-8),
    /** Substrings that exclude a parameter name from weight decay (case-sensitive, like the reference). */
    no_decay: z.array(z.string().min(1)).default([...DEFAULT_NO_DECAY]),
    warmup_ratio: beta.default(0.05),
    min_lr_ratio: prob.default(0.15),
    epochs: posInt.default(3),
    /** When set, the run (and the schedule) is exactly this many optimizer steps, whatever `epochs` says. */
    max_steps: posInt.optional(),
    micro_batch: posInt.default(1),
    grad_accum: posInt.default(8),
    /** Global gradient-norm clip; 0 disables. */
    clip: finite(z.number().min(0, { message: 'must be >= 0 (0 disables clipping)' })).default(1.0),
    text_mask_prob: prob.default(0.1),
    image_mask_prob: prob.default(0.5),
    seed: int(0, 'a non-negative integer').default(42),
    /**
     * Which image-token positions are scored (src/data/batch.ts): 'reference', the recipe's causal-LM shift (slot k
     * against target k+1, target 0 never a label; janus-spec 8.3), or 'full', every target, token 0 predicted
     * from the final BOI (the ShapeWorld configs, which say so explicitly).
     */
    loss_alignment: z.enum(['full', 'reference']).default('reference'),
    /** Glob patterns over parameter names (`*` matches anything, dots included). */
    trainable: patterns.default(['*']),
    frozen: patterns.default(['gen_vision_model.*', 'language_model.lm_head.*']),
    activation_checkpointing: z.boolean().default(false),
    /** Non-finite updates skipped in a row before the run aborts. */
    nan_guard_max_skips: int(0, 'a non-negative integer').default(5),
    log_every: posInt.default(1),
  })
  .strict();

const checkpointSchema = z
  .object({
    dir: z.string().min(1).default('checkpoints/run'),
    /** 0: only at epoch ends (and on SIGINT/SIGTERM). */
    every_steps: int(0, 'a non-negative integer').default(0),
    at_epoch_end: z.boolean().default(true),
    keep: posInt.default(3),
  })
  .strict();

const distributedSchema = z
  .object({
    nproc: posInt.default(1),
    zero_stage: z.number().int({ message: 'must be 0, 1 or 2' }).min(0, { message: 'must be 0, 1 or 2' }).max(2, { message: 'must be 0, 1 or 2' }).default(0),
  })
  .strict();

export const TrainConfigSchema = z
  .object({
    model: modelSchema,
    data: dataSchema,
    train: trainSchema.default({}),
    checkpoint: checkpointSchema.default({}),
    distributed: distributedSchema.default({}),
    /** After-run measurements of the dataset's plugin (ShapeWorld: ShapeEval, samples, report.html); it validates this section. */
    report: z.record(z.string(), z.unknown()).default({}),
    backend: z.enum(['auto', 'tensorflow', 'wasm', 'cpu']).default('auto'),
  })
  .strict()
  .superRefine((c, ctx) => {
    const n = (c.model.preset ? 1 : 0) + (c.model.pretrained ? 1 : 0);
    if (n !== 1) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['model'], message: 'needs exactly one of preset (a built-in size) or pretrained (a weights folder)' });
    if (c.model.init !== 'reference' && !c.model.preset) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['model', 'init'], message: 'applies to a preset model only (a pretrained folder brings its own weights)' });
    if (c.model.tokenizer && !c.model.preset) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['model', 'tokenizer'], message: 'applies to a preset model only (a pretrained folder brings its own tokenizer.json)' });
    if (c.model.vq_pretrained && !c.model.preset) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['model', 'vq_pretrained'], message: 'applies to a preset model only (a pretrained folder brings its own tokenizer)' });
  });

export type TrainConfig = z.infer<typeof TrainConfigSchema>;

export { levenshtein, nearestKey, show, splitOverrideArgs } from './config_overrides';
export type { Override } from './config_overrides';

// ---------------------------------------------------------------------------------------------------------
// Parsing and error reporting.

/**
 * Validates a plugin's section of a config (e.g. ShapeWorld's `report`) with its own schema; errors read like
 * the core's, with the section's key path (`keyPath`, e.g. ['report']) in front of every key.
 */
export function parseConfigSection<S extends z.ZodTypeAny>(schema: S, raw: unknown, keyPath: readonly string[], source: string): z.infer<S> {
  const r = schema.safeParse(raw);
  if (r.success) return r.data as z.infer<S>;
  const lines = r.error.issues.flatMap((i) => issueText(i, raw, new Map(), schema, keyPath));
  throw new UserError(`Invalid training config ${source}: ${lines.join('; ')}.`);
}

/**
 * Keys the schema no longer has, each with the one value that still describes what runs. A resolved config holds
 * every key, so the train_config.json of an older checkpoint names them: that value is dropped when it is read,
 * any other is refused with the reason.
 */
export const RETIRED_KEYS: Readonly<Record<string, { kept: unknown; why: string }>> = {
  'train.token_weight_power': { kept: 0, why: 'the frequency-balanced image-token loss was removed after measurement (docs/token-weights.md)' },
  'train.token_weight_anneal': { kept: undefined, why: 'the frequency-balanced image-token loss was removed after measurement (docs/token-weights.md)' },
  'train.optimizer': { kept: 'adamw', why: 'training always uses AdamW, the recipe\'s optimizer' },
};

/**
 * A copy of a raw config without the retired keys that hold their kept value; `refused` describes the others
 * (left in place, so the schema also reports them as unknown keys).
 */
export function dropRetiredKeys(raw: unknown): { raw: unknown; refused: string[] } {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return { raw, refused: [] };
  const out = structuredClone(raw) as Record<string, unknown>;
  const refused: string[] = [];
  for (const [key, { kept, why }] of Object.entries(RETIRED_KEYS)) {
    const [section, leaf] = key.split('.');
    const node = out[section];
    if (node === null || typeof node !== 'object' || !(leaf in node)) continue;
    const value = (node as Record<string, unknown>)[leaf];
    if (canonicalJson(value) === canonicalJson(kept)) delete (node as Record<string, unknown>)[leaf];
    else refused.push(`${key}: no longer exists (${why}); ${kept === undefined ? 'remove it' : `only ${show(kept)}, what now always runs, is still accepted`}, got ${show(value)}`);
  }
  return { raw: out, refused };
}

/** Validates a parsed config object; `source` names the file in errors. Throws UserError (one paragraph). */
export function parseTrainConfig(raw: unknown, source: string, fromFlag: ReadonlyMap<string, string> = new Map()): TrainConfig {
  const retired = dropRetiredKeys(raw);
  const r = TrainConfigSchema.safeParse(retired.raw);
  if (r.success) return r.data;
  const refusedKeys = new Set(retired.refused.map((l) => l.slice(0, l.indexOf(':'))));
  const lines = r.error.issues
    .flatMap((i) => issueText(i, retired.raw, fromFlag, TrainConfigSchema))
    .filter((l) => !refusedKeys.has(l.slice(0, l.indexOf(':'))));
  throw new UserError(`Invalid training config ${source}: ${[...retired.refused, ...lines].join('; ')}.`);
}

/** Applies dotted overrides to a raw config object, coercing each value to the type its key expects. */
export function applyOverrides(raw: Record<string, unknown>, overrides: readonly Override[], source: string): Record<string, unknown> {
  return applyOverridesWith(TrainConfigSchema, raw, overrides, source);
}

/** Reads, overrides and validates a YAML training config. */
export function loadTrainConfig(file: string, overrides: readonly Override[] = []): TrainConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`Cannot read training config ${file}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}. Pass --config with a YAML file such as configs/tiny.yaml.`);
  }
  const doc = YAML.parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length) throw new UserError(`Cannot parse training config ${file}: ${doc.errors[0].message.replace(/\s+/g, ' ').trim()}.`);
  const raw = doc.toJS() as unknown;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new UserError(`Invalid training config ${file}: expected a mapping with sections model, data, train, checkpoint, distributed, backend.`);
  }
  const merged = applyOverrides(raw as Record<string, unknown>, overrides, file);
  return parseTrainConfig(merged, file, new Map(overrides.map((o) => [o.key, `--${o.key}`])));
}

// ---------------------------------------------------------------------------------------------------------
// Hashing, comparison, helpers for the trainer.

/** JSON with object keys sorted at every level and undefined members dropped: a stable text for hashing. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : canonicalJson(x))).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

export function configHash(cfg: TrainConfig): string {
  return createHash('sha256').update(canonicalJson(cfg)).digest('hex');
}

/** Glob over dotted names: `*` matches any run of characters, dots included. */
export function globMatch(name: string, pattern: string): boolean {
  const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return re.test(name);
}

/** Which parameters train: matched by `trainable` and by no `frozen` pattern. */
export function trainableFilter(train: Pick<TrainConfig['train'], 'trainable' | 'frozen'>): (name: string) => boolean {
  return (name) => train.trainable.some((p) => globMatch(name, p)) && !train.frozen.some((p) => globMatch(name, p));
}

const DOWNLOADS: Record<string, string> = {
  'janus-pro-7b': 'deepseek-ai/Janus-Pro-7B',
  'janus-pro-1b': 'deepseek-ai/Janus-Pro-1B',
  'janus-4o-7b': 'FreedomIntelligence/Janus-4o-7B',
};

/**
 * Checks that the folders a config reads exist, relative to `baseDir`; a missing one gives a UserError that says
 * what to download and where to put it.
 */
export function checkConfigPaths(cfg: TrainConfig, source: string, baseDir = process.cwd()): void {
  const pre = cfg.model.pretrained;
  if (pre) {
    const dir = path.resolve(baseDir, pre);
    if (!fs.existsSync(path.join(dir, 'config.json'))) {
      const repo = DOWNLOADS[path.basename(dir).toLowerCase()] ?? 'deepseek-ai/Janus-Pro-7B';
      throw new UserError(
        `model.pretrained in ${source} points at ${dir}, which ${fs.existsSync(dir) ? 'has no config.json' : 'does not exist'}. ` +
          `Download the weights with \`huggingface-cli download ${repo} --local-dir ${pre}\` (or from https://huggingface.co/${repo}), ` +
          `or set model.pretrained to the folder that holds config.json, the safetensors or .bin weights and tokenizer.json.`,
      );
    }
  }
  const vq = cfg.model.vq_pretrained;
  if (vq && !fs.existsSync(path.join(path.resolve(baseDir, vq), 'config.json'))) {
    throw new UserError(`model.vq_pretrained in ${source} points at ${path.resolve(baseDir, vq)}, which has no config.json. Train a tokenizer there with \`janus4o train-vq --data <shapeworld dataset> --out ${vq}\`.`);
  }
  const root = path.resolve(baseDir, cfg.data.root);
  if (!fs.existsSync(root) && cfg.data.kind === 'sharegpt4o') {
    throw new UserError(
      `data.root in ${source} points at ${root}, which does not exist. Download the dataset with ` +
        `\`huggingface-cli download --repo-type dataset FreedomIntelligence/ShareGPT-4o-Image --local-dir ${cfg.data.root}\`, ` +
        `unpack its image archives there so the image paths in the JSON files resolve, or set data.root to your copy.`,
    );
  }
  // Other kinds are checked by their dataset plugin (ShapeWorld writes a missing root).
}
