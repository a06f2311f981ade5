/**
 * ShapeWorld's sections of a training config: `data.synth` (how the dataset is synthesised when data.root is
 * missing) and `report` (ShapeEval, samples and report.html after the run). The core schema keeps both as plain
 * objects and this plugin validates them, with errors in the core's words (train/config.ts parseConfigSection).
 */
import { z } from 'zod';
import { TrainConfig, parseConfigSection } from '../train/config';
import { MAX_OBJECTS } from './edits';
import { SYNTH_CAPTIONS } from './synth';

const int = (min: number, what: string) => z.number().int({ message: `must be an integer` }).min(min, { message: `must be ${what}` });
const prob = z.number().min(0, { message: 'must be between 0 and 1' }).max(1, { message: 'must be between 0 and 1' });
const posInt = int(1, 'a positive integer');

const synthSchema = z
  .object({
    t2i: int(0, 'a non-negative integer').default(2000),
    edit: int(0, 'a non-negative integer').default(2000),
    size: posInt.default(64),
    seed: int(0, 'a non-negative integer').default(1),
    caption_noise: prob.default(0),
    /** Most objects in a T2I image (1-4); 1 writes a single-object curriculum set. */
    max_objects: int(1, `an integer from 1 to ${MAX_OBJECTS}`).max(MAX_OBJECTS, `max_objects must be at most ${MAX_OBJECTS}`).default(MAX_OBJECTS),
    /** T2I captions: rich (default) or class (one object, "a {colour} {shape} on a {background} background"). */
    captions: z.enum(SYNTH_CAPTIONS).default('rich'),
  })
  .strict();

/** data.synth when a config leaves it out: what `janus4o synth` writes by default. */
export function synthDefaults(): SynthSettings {
  return synthSchema.parse({});
}


const shapeEvalSchema = z
  .object({
    /** T2I prompts per category (six categories). */
    per_category: posInt.default(8),
    /** Edits per category (seven categories); 0 skips edits. */
    edits_per_category: int(0, 'a non-negative integer').default(4),
    images_per_prompt: posInt.default(4),
    seed: int(0, 'a non-negative integer').default(0),
    // ShapeWorld's own defaults, not the reference's w = 5: these small models draw clean scenes only without
    // guidance, and edit best at temperature 0.5 (checkpoints/pretrained/README.md, finding 6; docs/edit-copying.md).
    // They also become generation_config.json of every model a ShapeWorld run writes.
    cfg: z.number().min(0, { message: 'must be >= 0' }).default(1),
    cfg2: z.number().min(0, { message: 'must be >= 0' }).default(1),
    /** Softmax temperature of the samples (1 = the reference; 0 = greedy). */
    temperature: z.number().min(0, { message: 'must be >= 0' }).default(1),
    /** Softmax temperature of the edits. */
    edit_temperature: z.number().min(0, { message: 'must be >= 0' }).default(0.5),
  })
  .strict();

const reportSchema = z
  .object({
    /** After training (rank 0): ShapeEval and samples of the starting model and of the result, and report.html. */
    enabled: z.boolean().default(false),
    shapeeval: shapeEvalSchema.default({}),
    /** Fixed prompts shown before/after. */
    samples: z.array(z.string().min(1)).default([]),
    /** Edit examples drawn from the ShapeEval edit set. */
    edit_examples: int(0, 'a non-negative integer').default(4),
  })
  .strict();


export type SynthSettings = z.infer<typeof synthSchema>;
export type ReportSettings = z.infer<typeof reportSchema>;

/** The ShapeWorld settings of a config, validated and with defaults filled. */
export interface ShapeWorldSettings {
  synth: SynthSettings;
  synthesizeIfMissing: boolean;
  report: ReportSettings;
}

/** Validates ShapeWorld's sections of `cfg`; errors name `source` and the key. */
export function shapeWorldSettings(cfg: TrainConfig, source: string): ShapeWorldSettings {
  return {
    synth: parseConfigSection(synthSchema, cfg.data.synth ?? {}, ['data', 'synth'], source),
    synthesizeIfMissing: cfg.data.synthesize_if_missing ?? true,
    report: parseConfigSection(reportSchema, cfg.report, ['report'], source),
  };
}

/** `cfg` with its ShapeWorld sections resolved (defaults filled), so a checkpoint's config says exactly what ran. */
export function resolveShapeWorldConfig(cfg: TrainConfig, source: string): TrainConfig {
  const s = shapeWorldSettings(cfg, source);
  return { ...cfg, data: { ...cfg.data, synth: s.synth, synthesize_if_missing: s.synthesizeIfMissing }, report: s.report };
}
