/**
 * Training configuration: a YAML file checked against a zod schema, optional dotted command-line overrides
 * (`--train.lr 1e-5`), a stable hash, and the comparison a resume makes against the config a checkpoint was
 * written with. Keys are snake_case like the reference's argparse flags, except `model.overrides`, which mirrors
 * JanusConfig (camelCase) so it can be passed to presetConfig unchanged. Every default is the Janus-4o recipe
 * (janus-spec 8.5), so the resolved config of a short file still says exactly what ran.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import YAML from 'yaml';
import { z } from 'zod';
import { UserError } from '../errors';
import { DEFAULT_NO_DECAY } from './optimizer';
import { INIT_SCHEMES } from '../model/init_scheme';

const int = (min: number, what: string) => z.number().int({ message: `must be an integer` }).min(min, { message: `must be ${what}` });
const prob = z.number().min(0, { message: 'must be between 0 and 1' }).max(1, { message: 'must be between 0 and 1' });
const posInt = int(1, 'a positive integer');
const beta = z.number().min(0, { message: 'must be in [0, 1)' }).lt(1, { message: 'must be in [0, 1)' });
const patterns = z.array(z.string().min(1));

const llmOverrides = z
  .object({
    vocabSize: posInt, hiddenSize: posInt, numLayers: posInt, numHeads: posInt, numKvHeads: posInt, intermediateSize: posInt,
    ropeTheta: z.number().positive(), rmsNormEps: z.number().positive(), maxPositionEmbeddings: posInt,
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
  .object({ patchSize: posInt, width: posInt, depth: posInt, numHeads: posInt, mlpDim: posInt, layerNormEps: z.number().positive() })
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
    lr: z.number().positive({ message: 'must be a positive number' }).default(5e-6),
    weight_decay: z.number().min(0, { message: 'must be >= 0' }).default(0.1),
    betas: z.tuple([beta, beta]).default([0.9, 0.999]),
    eps: z.number().min(0, { message: 'must be >= 0' }).default(1e-8),
    /** Substrings that exclude a parameter name from weight decay (case-sensitive, like the reference). */
    no_decay: z.array(z.string().min(1)).default([...DEFAULT_NO_DECAY]),
    warmup_ratio: z.number().min(0, { message: 'must be in [0, 1)' }).lt(1, { message: 'must be in [0, 1)' }).default(0.05),
    min_lr_ratio: prob.default(0.15),
    epochs: posInt.default(3),
    /** When set, the run (and the schedule) is exactly this many optimizer steps, whatever `epochs` says. */
    max_steps: posInt.optional(),
    micro_batch: posInt.default(1),
    grad_accum: posInt.default(8),
    /** Global gradient-norm clip; 0 disables. */
    clip: z.number().min(0, { message: 'must be >= 0 (0 disables clipping)' }).default(1.0),
    text_mask_prob: prob.default(0.1),
    image_mask_prob: prob.default(0.5),
    seed: int(0, 'a non-negative integer').default(42),
    loss_alignment: z.enum(['full', 'reference']).default('full'),
    /**
     * Each target's loss weight is (its code's count among the training targets)^-power, scaled to mean 1 over
     * those targets (token_weights.ts). 0 = uniform, the recipe; a pre-training option for sparse data.
     */
    token_weight_power: z.number().min(0, { message: 'must be in [0, 1]' }).max(1, { message: 'must be in [0, 1]' }).default(0),
    /** Fraction of the run over which token_weight_power falls linearly to 0 (absent: constant all run). */
    token_weight_anneal: z.number().gt(0, { message: 'must be in (0, 1]' }).max(1, { message: 'must be in (0, 1]' }).optional(),
    /** 'sgd' (plain, for equivalence checks) instead of the recipe's AdamW. */
    optimizer: z.enum(['adamw', 'sgd']).default('adamw'),
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
    zero_stage: z.number().int({ message: 'must be 0 or 1' }).min(0, { message: 'must be 0 or 1' }).max(1, { message: 'must be 0 or 1' }).default(0),
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

// ---------------------------------------------------------------------------------------------------------
// Schema walking: valid keys for suggestions, leaf kinds for override coercion.

type AnyZod = z.ZodTypeAny;

function unwrap(s: AnyZod): AnyZod {
  for (;;) {
    if (s instanceof z.ZodDefault) s = s._def.innerType;
    else if (s instanceof z.ZodOptional || s instanceof z.ZodNullable) s = s.unwrap();
    else if (s instanceof z.ZodEffects) s = s.innerType();
    else return s;
  }
}

/** The schema at a key path, or the keys valid where the path stops matching. */
function schemaAt(keys: readonly (string | number)[], root: AnyZod = TrainConfigSchema): { schema: AnyZod } | { badIndex: number; valid: string[] } {
  let s = unwrap(root);
  for (let i = 0; i < keys.length; i++) {
    if (s instanceof z.ZodObject) {
      const shape = s.shape as Record<string, AnyZod>;
      const next = shape[String(keys[i])];
      if (!next) return { badIndex: i, valid: Object.keys(shape) };
      s = unwrap(next);
    } else if (s instanceof z.ZodRecord) s = unwrap(s.valueSchema as AnyZod);
    else if (s instanceof z.ZodUnknown) return { schema: s };
    else if (s instanceof z.ZodArray) s = unwrap(s.element);
    else if (s instanceof z.ZodTuple) s = unwrap(s.items[Number(keys[i])] ?? s.items[0]);
    else return { badIndex: i, valid: [] };
  }
  return { schema: s };
}

export function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

/** The closest valid key if it is close enough to be a plausible typo. */
export function nearestKey(key: string, valid: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = Infinity;
  for (const v of valid) {
    const d = levenshtein(key.toLowerCase(), v.toLowerCase());
    if (d < bestD) [best, bestD] = [v, d];
  }
  return best !== null && bestD <= Math.max(2, Math.floor(key.length / 3)) ? best : null;
}

function unknownKeyText(keyPath: string, key: string, valid: readonly string[]): string {
  const near = nearestKey(key, valid);
  if (near) return `${keyPath}: unknown key (did you mean "${near}"?)`;
  return `${keyPath}: unknown key (valid keys here: ${valid.join(', ')})`;
}

// ---------------------------------------------------------------------------------------------------------
// Parsing and error reporting.

export interface Override {
  /** Dotted key path, e.g. `train.lr`. */
  key: string;
  /** The raw command-line text. */
  raw: string;
}

function valueAt(raw: unknown, keys: readonly (string | number)[]): unknown {
  let v = raw;
  for (const k of keys) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[String(k)];
  }
  return v;
}

export function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** `issue` is relative to `root` (the whole config, or a plugin's section found at `prefix`). */
function issueText(issue: z.ZodIssue, raw: unknown, fromFlag: ReadonlyMap<string, string>, root: AnyZod = TrainConfigSchema, prefix: readonly string[] = []): string[] {
  const keyPath = [...prefix, ...issue.path].join('.') || '(top level)';
  const flag = fromFlag.get(keyPath);
  const where = flag ? ` (set by ${flag})` : '';
  const got = valueAt(raw, issue.path);
  if (issue.code === z.ZodIssueCode.unrecognized_keys) {
    const parent = schemaAt(issue.path, root);
    const valid = 'schema' in parent && parent.schema instanceof z.ZodObject ? Object.keys(parent.schema.shape as object) : [];
    return issue.keys.map((k) => unknownKeyText([...prefix, ...issue.path, k].join('.'), k, valid));
  }
  if (issue.code === z.ZodIssueCode.invalid_type) {
    if (issue.received === 'undefined') return [`${keyPath}: missing (expected ${issue.expected})`];
    return [`${keyPath}: expected ${issue.expected}, got ${issue.received} ${show(got)}${where}`];
  }
  if (issue.code === z.ZodIssueCode.invalid_enum_value) {
    return [`${keyPath}: expected one of ${issue.options.join(', ')}, got ${show(got)}${where}`];
  }
  if (issue.code === z.ZodIssueCode.custom) return [`${keyPath}: ${issue.message}`];
  return [`${keyPath}: ${issue.message}, got ${show(got)}${where}`];
}

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

/** Validates a parsed config object; `source` names the file in errors. Throws UserError (one paragraph). */
export function parseTrainConfig(raw: unknown, source: string, fromFlag: ReadonlyMap<string, string> = new Map()): TrainConfig {
  const r = TrainConfigSchema.safeParse(raw);
  if (r.success) return r.data;
  const lines = r.error.issues.flatMap((i) => issueText(i, raw, fromFlag));
  throw new UserError(`Invalid training config ${source}: ${lines.join('; ')}.`);
}

/**
 * Splits dotted `--a.b value` / `--a.b=value` arguments (config overrides; no other flag has a dot) off an argv
 * list. Other arguments are returned untouched in `rest`. Unknown keys are reported by applyOverrides.
 */
export function splitOverrideArgs(argv: readonly string[]): { overrides: Override[]; rest: string[] } {
  const overrides: Override[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([A-Za-z_][\w-]*(?:\.[\w-]+)+)(?:=(.*))?$/s.exec(argv[i]);
    if (!m) {
      rest.push(argv[i]);
      continue;
    }
    if (m[2] !== undefined) overrides.push({ key: m[1], raw: m[2] });
    else if (i + 1 < argv.length) overrides.push({ key: m[1], raw: argv[++i] });
    else throw new UserError(`Command-line override --${m[1]} needs a value (e.g. --${m[1]} VALUE).`);
  }
  return { overrides, rest };
}

function coerce(schema: AnyZod, raw: string): unknown {
  const t = raw.trim();
  if (t === 'null' || t === '~') return undefined;
  if (schema instanceof z.ZodNumber) {
    const n = t === '' ? NaN : Number(t);
    return Number.isNaN(n) ? raw : n;
  }
  if (schema instanceof z.ZodBoolean) {
    if (/^(true|yes|on|1)$/i.test(t)) return true;
    if (/^(false|no|off|0)$/i.test(t)) return false;
    return raw;
  }
  if (schema instanceof z.ZodArray || schema instanceof z.ZodTuple) {
    const items: unknown[] = t.startsWith('[') ? (YAML.parse(t) as unknown[]) : t === '' ? [] : t.split(',');
    if (!Array.isArray(items)) return raw;
    return items.map((x, i) => {
      const el = unwrap(schema instanceof z.ZodArray ? schema.element : (schema.items[i] ?? schema.items[0]));
      return typeof x === 'string' ? coerce(el, x) : x;
    });
  }
  // A plugin's section (data.synth, report) is validated by its plugin: take the value as YAML reads it.
  if (schema instanceof z.ZodObject || schema instanceof z.ZodUnknown) return YAML.parse(t) as unknown;
  return raw;
}

/** Applies overrides to a raw (unvalidated) config object, coercing each value to the type its key expects. */
export function applyOverrides(raw: Record<string, unknown>, overrides: readonly Override[], source: string): Record<string, unknown> {
  const out = structuredClone(raw);
  for (const o of overrides) {
    const keys = o.key.split('.');
    const at = schemaAt(keys);
    if ('badIndex' in at) {
      const keyPath = keys.slice(0, at.badIndex + 1).join('.');
      throw new UserError(`Invalid command-line override --${o.key} for ${source}: ${unknownKeyText(keyPath, keys[at.badIndex], at.valid)}.`);
    }
    let value: unknown;
    try {
      value = coerce(at.schema, o.raw);
    } catch (e) {
      throw new UserError(`Invalid command-line override --${o.key} for ${source}: cannot parse ${show(o.raw)} (${(e as Error).message.split('\n')[0]}).`);
    }
    let node = out;
    for (const k of keys.slice(0, -1)) {
      const child = node[k];
      if (child === null || typeof child !== 'object') node[k] = {};
      node = node[k] as Record<string, unknown>;
    }
    if (value === undefined) delete node[keys[keys.length - 1]];
    else node[keys[keys.length - 1]] = value;
  }
  return out;
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
