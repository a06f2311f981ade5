/**
 * `janus4o eval --checkpoint DIR --suite shapeeval`: generate the ShapeEval prompt and edit sets with the
 * model, read the images back with the detector, score them GenEval's way. A table of the categories on stdout
 * (`--json`: the summary as one JSON object), the full per-prompt report in a file, and with `--out DIR` every
 * image with its prompt or edit, the detector's reading and the verdict (shapeEvalFolder).
 * `--suite reading`: the teacher-forced reading probe of generate/reading_probe.ts (no sampling; seconds).
 * `--suite copying`: the teacher-forced copying probe of generate/copying_probe.ts (does an edit copy its input?).
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Argv, CommandModule } from 'yargs';
import { renderScene } from '../shapeworld/render';
import type { SamplingOptions } from '../generate/sampler';
import { ShapeEvalReport, datasetSceneKeys, modelGenerator, runShapeEval, shapeEvalFolder, shapeworldTrainingScenes } from '../shapeworld/shapeeval_run';
import type { CategoryScore, Summary } from '../shapeworld/shapeeval';
import { UserError } from '../errors';
import { ReadingProbeResult, readingProbe } from '../shapeworld/reading_probe';
import { CopyingProbeResult, copyingProbe } from '../shapeworld/copying_probe';
import { SamplingArgs, asUserError, samplingFlags, samplingNote, samplingOptions, startRuntime, tokenProgress } from './generate';
import type { GenerationRuntime } from '../generate/runtime';

export interface EvalArgs extends SamplingArgs {
  suite: string;
  /** Unset: the model folder's cfg_weight2 (generation_config.json). */
  cfg2?: number;
  'per-category': number;
  'edits-per-category': number;
  /** One or more datasets; their scenes together are kept out of the evaluation. */
  'train-data'?: string | string[];
  report: string;
  batch: number;
  /** Softmax temperature of the edits (default: --temperature when given, else the model folder's edit_temperature). */
  'edit-temperature'?: number;
  /** --suite shapeeval: write every image with its prompt or edit, input, reading and verdict here (shapeEvalFolder). */
  out?: string;
  /** Print the summary as one JSON object instead of a table. */
  json?: boolean;
}

/**
 * The training scenes to keep out of the evaluation: --train-data's scenes.jsonl, else the ShapeWorld
 * dataset the checkpoint's train_config.json names (its scenes.jsonl, or regenerated from its synth options).
 */
export async function trainingSceneKeys(trainData: string | string[] | undefined, checkpointDir: string, log: (l: string) => void): Promise<Set<string>> {
  const roots = trainData === undefined ? [] : Array.isArray(trainData) ? trainData : [trainData];
  if (roots.length > 0) {
    const keys = new Set<string>();
    for (const root of roots) {
      const scenes = await datasetSceneKeys(root).catch((e: Error) => {
        throw new UserError(`--train-data ${root}: cannot read scenes.jsonl (${e.message})`);
      });
      for (const k of scenes) keys.add(k);
    }
    return keys;
  }
  const file = path.join(checkpointDir, 'train_config.json');
  if (fs.existsSync(file)) {
    const cfg = JSON.parse(fs.readFileSync(file, 'utf8')) as { data?: { kind?: string; root?: string; synth?: { seed: number; t2i: number; edit: number } } };
    const data = cfg.data;
    if (data?.kind === 'shapeworld' && data.root && fs.existsSync(path.join(data.root, 'scenes.jsonl'))) {
      return datasetSceneKeys(data.root);
    }
    if (data?.kind === 'shapeworld' && data.synth) return shapeworldTrainingScenes(data.synth);
  }
  log('eval: no ShapeWorld training data found for this checkpoint (pass --train-data DIR); no training scenes excluded');
  return new Set();
}

export const EVAL_SUITES = ['shapeeval', 'reading', 'copying'] as const;
/** --report's default; the probes write reading-report.json / copying-report.json instead unless told otherwise. */
const DEFAULT_REPORT = 'shapeeval-report.json';

/** Runs a teacher-forced probe on the checkpoint and writes its figures to --report (default `<suite>-report.json`). */
async function runProbe<T extends object>(a: EvalArgs, log: (line: string) => void, suite: 'reading' | 'copying', probe: (rt: GenerationRuntime) => Promise<T>): Promise<T & { report: string }> {
  const { runtime } = await startRuntime(a, log);
  try {
    const result = await probe(runtime).catch((e: unknown) => {
      throw asUserError(e);
    });
    const file = path.resolve(a.report === DEFAULT_REPORT ? `${suite}-report.json` : a.report);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, `${JSON.stringify({ suite, checkpoint: runtime.source, ...result }, null, 2)}\n`);
    return { ...result, report: file };
  } finally {
    runtime.dispose();
  }
}

/** `--suite reading`: the probe's figures, and its full log-probability table in the report file. */
export function runReadingEval(a: EvalArgs, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<ReadingProbeResult & { report: string }> {
  return runProbe(a, log, 'reading', (rt) => readingProbe(rt));
}

/** `--suite copying`: the probe's figures per token kind, with and without the input's VQ block, in the report file. */
export async function runCopyingEval(a: EvalArgs, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<CopyingProbeResult & { report: string }> {
  const perCategory = a['edits-per-category'];
  if (!Number.isInteger(perCategory) || perCategory < 1) throw new UserError(`--edits-per-category must be a positive integer for --suite copying, got ${perCategory}`);
  return runProbe(a, log, 'copying', (rt) => copyingProbe(rt, { seed: a.seed, perCategory, batch: a.batch }));
}

export type EvalResult = ShapeEvalReport & { report: string; out?: string; checkpoint: string; temperature?: number; edit_temperature: number };

export async function runEval(a: EvalArgs, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<EvalResult> {
  if (a.suite !== 'shapeeval') throw new UserError(`--suite ${a.suite}: runEval runs shapeeval (the reading probe is runReadingEval)`);
  samplingOptions(a, 'edit', a.cfg2, { temperature: 'temperature' });
  const flagEditTemperature = a['edit-temperature'] ?? a.temperature;
  if (flagEditTemperature !== undefined && (!Number.isFinite(flagEditTemperature) || flagEditTemperature < 0)) throw new UserError(`--edit-temperature must be a number >= 0, got ${a['edit-temperature']}`);
  for (const k of ['per-category', 'batch'] as const) {
    if (!Number.isInteger(a[k]) || a[k] < 1) throw new UserError(`--${k} must be a positive integer, got ${a[k]}`);
  }
  if (!Number.isInteger(a['edits-per-category']) || a['edits-per-category'] < 0) throw new UserError(`--edits-per-category must be a non-negative integer, got ${a['edits-per-category']}`);
  // Before the model loads: a bad --out should not cost a run.
  const sink = a.out === undefined ? undefined : await shapeEvalFolder(path.resolve(a.out));
  const { runtime, backend } = await startRuntime(a, log);
  const bar = tokenProgress(a.progress, 'eval');
  try {
    const opts = samplingOptions(a, 'edit', a.cfg2, { generation: runtime.generation, temperature: 'temperature' });
    const editTemperature = flagEditTemperature ?? runtime.generation.edit_temperature;
    log(samplingNote(opts, ` --edit-temperature ${editTemperature}`));
    const exclude = await trainingSceneKeys(a['train-data'], runtime.source, log);
    const size = runtime.model.config.imageSize;
    const sampling: SamplingOptions = { ...opts, onProgress: (p) => bar.update(p, '') };
    const report = await runShapeEval(modelGenerator(runtime, sampling, { ...sampling, temperature: editTemperature }), {
      seed: a.seed,
      perCategory: a['per-category'],
      editsPerCategory: a['edits-per-category'],
      imagesPerPrompt: a.n,
      exclude,
      batch: a.batch,
      renderSource: (scene) => renderScene(scene, size),
      sink,
    }).catch((e: unknown) => {
      throw asUserError(e);
    });
    const file = path.resolve(a.report);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const full = { ...report, checkpoint: runtime.source, backend, cfg: opts.cfg, cfg2: opts.cfg2, temperature: opts.temperature, edit_temperature: editTemperature };
    fs.writeFileSync(file, `${JSON.stringify(full, null, 2)}\n`);
    return { ...full, report: file, ...(a.out === undefined ? {} : { out: path.resolve(a.out) }) };
  } finally {
    bar.stop();
    runtime.dispose();
  }
}

const pct = (x: number | null): string => (x === null ? '-' : `${(100 * x).toFixed(1)}%`);

function categoryRows<C extends string>(title: string, s: Summary<C>, width: number): string[] {
  const rows = [`${title.padEnd(width)}  ${'accuracy'.padStart(8)}  correct / images`];
  for (const n of Object.keys(s.categories) as C[]) {
    const c: CategoryScore = s.categories[n];
    rows.push(`  ${n.padEnd(width - 2)}  ${pct(c.accuracy).padStart(8)}  ${c.correct} / ${c.total}`);
  }
  rows.push(`  ${'overall'.padEnd(width - 2)}  ${pct(s.overall).padStart(8)}  (mean of the categories)`);
  return rows;
}

/** `janus4o eval --suite shapeeval`'s default output: categories x accuracy for T2I and edits, then where the files are. */
export function formatShapeEvalTable(r: EvalResult): string {
  const lines = [
    `ShapeEval, seed ${r.seed}, ${r.images_per_prompt} image${r.images_per_prompt === 1 ? '' : 's'} per prompt, ${r.excluded_training_scenes} training scenes excluded, ${r.seconds.toFixed(0)} s`,
    `checkpoint ${r.checkpoint} (temperature ${r.temperature ?? 1}, edits ${r.edit_temperature})`,
    '',
  ];
  const names = [...Object.keys(r.t2i.summary.categories), ...Object.keys(r.edit?.summary.categories ?? {})];
  const width = Math.max('text-to-image'.length, ...names.map((n) => n.length + 2));
  lines.push(...categoryRows('text-to-image', r.t2i.summary, width));
  if (r.edit) lines.push('', ...categoryRows('edit', r.edit.summary, width));
  lines.push('', `report: ${r.report}`);
  if (r.out) lines.push(`images, readings and verdicts: ${r.out}`);
  return `${lines.join('\n')}\n`;
}

/** The one-line JSON object of `eval --json` (shapeeval). */
export function shapeEvalSummaryJson(r: EvalResult): string {
  const summary = { suite: r.suite, seed: r.seed, t2i: r.t2i.summary, edit: r.edit?.summary ?? null, excluded_training_scenes: r.excluded_training_scenes, seconds: r.seconds, report: r.report, ...(r.out ? { out: r.out } : {}) };
  return `${JSON.stringify(summary)}\n`;
}

export const evalCommand: CommandModule<object, EvalArgs> = {
  command: 'eval',
  describe: 'ShapeEval: GenEval-style T2I and edit accuracy on held-out ShapeWorld prompts, scored by a detector',
  builder: (y) =>
    samplingFlags(y)
      .option('suite', { type: 'string', default: 'shapeeval', choices: EVAL_SUITES, describe: 'shapeeval (sampled, detector-scored), reading (teacher-forced: does the image depend on the colour and shape words?) or copying (teacher-forced: do edits copy the input image?)' })
      .option('cfg2', { type: 'number', describe: "w2 of the edit CFG; default: the model folder's generation_config.json cfg_weight2, else 5" })
      .option('per-category', { type: 'number', default: 8, describe: 'T2I prompts per category (six categories)' })
      .option('edits-per-category', { type: 'number', default: 4, describe: 'edits per category (seven categories; 0 skips edits)' })
      .option('train-data', { type: 'string', array: true, describe: 'ShapeWorld dataset(s) the model was trained on (their scenes are excluded); repeat it to compare models on one prompt set' })
      .option('report', { type: 'string', default: DEFAULT_REPORT, describe: 'where to write the full report (--suite reading / copying: reading-report.json / copying-report.json by default)' })
      .option('batch', { type: 'number', default: 4, describe: 'prompts sampled together' })
      .option('edit-temperature', { type: 'number', describe: "softmax temperature of the edits (default: --temperature when given, else the model folder's generation_config.json edit_temperature); copying the input image wants a lower one than drawing a new scene" })
      .option('out', { type: 'string', describe: '--suite shapeeval: write every image with its prompt or edit (and input image), the detector\'s reading and the verdict here; text-to-image in GenEval\'s folder layout, edits under edits/. Must be a new or empty folder' })
      .option('json', { type: 'boolean', default: false, describe: 'print the summary as one JSON object instead of a table' }) as unknown as Argv<EvalArgs>,
  handler: async (a) => {
    if (a.out !== undefined && a.suite !== 'shapeeval') throw new UserError(`--out writes ShapeEval's images; --suite ${a.suite} samples none (drop --out)`);
    if (a.suite === 'reading') {
      const p = await runReadingEval(a);
      if (a.json) {
        process.stdout.write(`${JSON.stringify({ suite: 'reading', margin: Number(p.margin.toFixed(3)), top1: p.top1, colour: p.colour, shape: p.shape, of: p.captions.length, report: p.report })}\n`);
      } else {
        const n = p.captions.length;
        process.stdout.write(
          `reading probe (teacher-forced, ${n} one-object captions x ${n} images)\n` +
            `  margin        ${p.margin.toFixed(3)} nats per image (log p of the caption's own image minus the others' mean)\n` +
            `  own image top ${p.top1} / ${n}\n  right colour  ${p.colour} / ${n}\n  right shape   ${p.shape} / ${n}\n\nreport: ${p.report}\n`,
        );
      }
      return;
    }
    if (a.suite === 'copying') {
      const c = await runCopyingEval(a);
      if (a.json) {
        const brief = (s: CopyingProbeResult['full']) => Object.fromEntries(Object.entries(s).map(([k, v]) => [k, Number(v.hit.toFixed(3))]));
        process.stdout.write(`${JSON.stringify({ suite: 'copying', seed: c.seed, edits: c.edits, hit_full: brief(c.full), hit_part: brief(c.part), object_start_ce_full: Number(c.full.objectStart.ce.toFixed(3)), report: c.report })}\n`);
      } else {
        const rows = [`copying probe (teacher-forced), seed ${c.seed}, ${c.edits} edits: argmax hit rate per target token kind`, `  ${'token kind'.padEnd(12)}  ${'with VQ block'.padStart(13)}  ${'SigLIP only'.padStart(11)}  tokens`];
        for (const k of Object.keys(c.full) as (keyof CopyingProbeResult['full'])[]) {
          rows.push(`  ${k.padEnd(12)}  ${pct(c.full[k].hit).padStart(13)}  ${pct(c.part[k].hit).padStart(11)}  ${c.full[k].tokens}`);
        }
        process.stdout.write(`${rows.join('\n')}\n\nreport: ${c.report}\n`);
      }
      return;
    }
    const r = await runEval(a);
    process.stdout.write(a.json ? shapeEvalSummaryJson(r) : formatShapeEvalTable(r));
  },
};
