/**
 * The before/after part of a training run (config `report.enabled`): ShapeEval, fixed-prompt samples and edit
 * examples of the starting model (measured before the first step and kept in the checkpoint folder, so a
 * resumed run compares against the same base) and of the result, then report.html beside the checkpoints.
 */
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { PromptIds } from '../data/batch';
import { renderScene } from './render';
import { ShapeEvalReport, modelGenerator, runShapeEval, shapeEvalEdits } from './shapeeval_run';
import { copyingProbe } from './copying_probe';
import { EDIT_CATEGORIES, EditCategory, Summary, T2ICategory, T2I_CATEGORIES } from './shapeeval';
import { runtimeFromModel } from '../generate/runtime';
import { Janus4o } from '../model/janus';
import { EvaluationComparison, ReportData, writeReport, WrittenReport } from '../report/html';
import { readStepLog } from '../io/steplog';
import { ConditionUse } from '../train/evaluate';
import { atomicWriteFile } from '../io/atomic';
import { TrainConfig } from '../train/config';
import type { ReportSettings } from './config';

export const BASE_DIR = 'report-base';

/** One model's ShapeEval results; a null suite was not run. */
export interface ShapeEvalRun {
  t2i: Summary<T2ICategory> | null;
  edit: Summary<EditCategory> | null;
}

/** ShapeEval of the base and of the fine-tuned model as the report's evaluation section. */
export function shapeEvalComparison(base: ShapeEvalRun | null, finetuned: ShapeEvalRun | null, note?: string): EvaluationComparison {
  return {
    title: 'ShapeEval',
    note,
    tables: [
      { caption: 'Text to image (accuracy)', categories: T2I_CATEGORIES, base: base?.t2i ?? null, finetuned: finetuned?.t2i ?? null },
      { caption: 'Editing (accuracy)', categories: EDIT_CATEGORIES, base: base?.edit ?? null, finetuned: finetuned?.edit ?? null },
    ],
  };
}

/** What the report shows of one model. */
export interface Showcase {
  shapeEval: ShapeEvalRun;
  /** ShapeEval's figures as `janus4o eval` prints them. */
  summary: { t2i: ShapeEvalReport['t2i']['summary']; edit: NonNullable<ShapeEvalReport['edit']>['summary'] | null; seconds: number };
  /** One PNG row of images per fixed prompt. */
  samples: Buffer[];
  edits: { instruction: string; category: string; input: Buffer; output: Buffer }[];
  /** The copying probe's object-start hit rates (docs/edit-copying.md), with the VQ block and SigLIP-only; null without edits. */
  copying: { full: number; part: number } | null;
}

/** Edits per category of the report's copying probe. */
export const COPYING_PER_CATEGORY = 6;
const COPYING_NOTE =
  'Kept objects started: teacher-forced on ShapeEval-style edits, the share of objects the edit keeps whose first token (nothing of the object drawn above it or to its left) the model predicts. Only copying the input image can do that, and an edit is right only if every kept object is copied (janus4o eval --suite copying; docs/edit-copying.md).';

/** Images side by side, one PNG. */
async function pngRow(pngs: readonly Buffer[]): Promise<Buffer> {
  const metas = await Promise.all(pngs.map((p) => sharp(p).metadata()));
  const h = Math.max(...metas.map((m) => m.height ?? 0));
  const gap = 2;
  const w = metas.reduce((s, m) => s + (m.width ?? 0), 0) + gap * (pngs.length - 1);
  let x = 0;
  const layers = pngs.map((input, i) => {
    const left = x;
    x += (metas[i].width ?? 0) + gap;
    return { input, left, top: 0 };
  });
  return sharp({ create: { width: w, height: h, channels: 3, background: { r: 255, g: 255, b: 255 } } }).composite(layers).png().toBuffer();
}

export async function showcase(model: Janus4o, tpl: PromptIds, vocab: number, r: ReportSettings, exclude: ReadonlySet<string>, log: (l: string) => void): Promise<Showcase> {
  const se = r.shapeeval;
  const rt = runtimeFromModel(model, tpl, vocab, 'training run');
  const size = model.config.imageSize;
  const sampling = { cfg: se.cfg, cfg2: se.cfg2, temperature: se.temperature, seed: se.seed };
  const editSampling = { ...sampling, temperature: se.edit_temperature ?? se.temperature };
  let last = 0;
  const report = await runShapeEval(modelGenerator(rt, sampling, editSampling), {
    seed: se.seed,
    perCategory: se.per_category,
    editsPerCategory: se.edits_per_category,
    imagesPerPrompt: se.images_per_prompt,
    exclude,
    renderSource: (scene) => renderScene(scene, size),
    onProgress: (done, total) => {
      if (done - last >= total / 4 || done === total) {
        last = done;
        log(`report: ShapeEval ${done}/${total} prompts`);
      }
    },
  });
  // A fresh generator: the fixed prompts get the same random streams for every model.
  const gen = modelGenerator(rt, sampling, editSampling);
  const samples: Buffer[] = [];
  for (const prompt of r.samples) samples.push(await pngRow((await gen.t2i([prompt], 4))[0]));
  const edits: Showcase['edits'] = [];
  const examples = shapeEvalEdits(`${se.seed}:examples`, 1, exclude).slice(0, r.edit_examples);
  for (const e of examples) {
    const input = await renderScene(e.source, size);
    const [outs] = await gen.edit!([{ instruction: e.instruction, source: input }], 1);
    edits.push({ instruction: e.instruction, category: e.category, input, output: outs[0] });
  }
  const probe = se.edits_per_category > 0 ? await copyingProbe(rt, { seed: se.seed, perCategory: COPYING_PER_CATEGORY, exclude }) : null;
  return {
    shapeEval: { t2i: report.t2i.summary, edit: report.edit?.summary ?? null },
    summary: { t2i: report.t2i.summary, edit: report.edit?.summary ?? null, seconds: report.seconds },
    samples,
    edits,
    copying: probe ? { full: probe.full.objectStart.hit, part: probe.part.objectStart.hit } : null,
  };
}

/**
 * What a stored base showcase was measured with: the starting model (as the config builds it) and the report's
 * settings. A resumed run reuses the stored one only when this matches, since its starting model is gone.
 */
export function showcaseKey(cfg: TrainConfig, report: ReportSettings): string {
  const m = cfg.model;
  return JSON.stringify({ model: { pretrained: m.pretrained ?? null, preset: m.preset ?? null, vq_pretrained: m.vq_pretrained ?? null, init: m.init, overrides: m.overrides ?? {} }, seed: cfg.train.seed, report });
}

/** Stores the base model's showcase in the checkpoint folder (PNG files + base.json, with the settings' key). */
export async function saveShowcase(dir: string, s: Showcase, key: string): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  const samples = await Promise.all(s.samples.map(async (png, i) => {
    const name = `sample-${i}.png`;
    await atomicWriteFile(path.join(dir, name), png);
    return name;
  }));
  const edits = await Promise.all(s.edits.map(async (e, i) => {
    await atomicWriteFile(path.join(dir, `edit-${i}-input.png`), e.input);
    await atomicWriteFile(path.join(dir, `edit-${i}-output.png`), e.output);
    return { instruction: e.instruction, category: e.category, input: `edit-${i}-input.png`, output: `edit-${i}-output.png` };
  }));
  await atomicWriteFile(path.join(dir, 'base.json'), `${JSON.stringify({ key, shapeEval: s.shapeEval, summary: s.summary, samples, edits, copying: s.copying }, null, 2)}\n`);
}

/** The stored base showcase: 'missing', 'stale' (measured with another model or report settings), or the showcase. */
export function loadShowcase(dir: string, key: string): Showcase | 'missing' | 'stale' {
  const file = path.join(dir, 'base.json');
  if (!fs.existsSync(file)) return 'missing';
  const j = JSON.parse(fs.readFileSync(file, 'utf8')) as Omit<Showcase, 'samples' | 'edits'> & { key?: string; samples: string[]; edits: { instruction: string; category: string; input: string; output: string }[] };
  if (j.key !== key) return 'stale';
  const read = (name: string) => fs.readFileSync(path.join(dir, path.basename(name)));
  return {
    shapeEval: j.shapeEval,
    summary: j.summary,
    samples: j.samples.map(read),
    edits: j.edits.map((e) => ({ instruction: e.instruction, category: e.category, input: read(e.input), output: read(e.output) })),
    copying: j.copying ?? null,
  };
}

export interface RunSummary {
  backend: string;
  steps: number;
  wallSeconds: number;
  command: string;
  checkpoint: string | null;
  heldoutBefore: number | null;
  heldoutAfter: number | null;
  heldoutNote: string;
  conditionUseBefore: ConditionUse | null;
  conditionUseAfter: ConditionUse | null;
}

export async function writeRunReport(cfg: TrainConfig, report: ReportSettings, base: Showcase | null, tuned: Showcase, run: RunSummary): Promise<WrittenReport> {
  const dir = cfg.checkpoint.dir;
  const logFile = path.join(dir, 'train_log.jsonl');
  const steps = fs.existsSync(logFile) ? await readStepLog(logFile) : [];
  const t = cfg.train;
  const se = report.shapeeval;
  const data: ReportData = {
    title: `janus4o-tf training report: ${path.basename(path.resolve(dir))}`,
    facts: {
      backend: run.backend,
      preset: cfg.model.pretrained ?? cfg.model.preset ?? 'tiny',
      steps: run.steps,
      wallSeconds: run.wallSeconds,
      tokensPerSecond: null,
      config: {
        lr: t.lr,
        batch: t.micro_batch * t.grad_accum * cfg.distributed.nproc,
        textMaskProb: t.text_mask_prob,
        imageMaskProb: t.image_mask_prob,
        extra: { data: cfg.data.root, weight_decay: t.weight_decay, warmup_ratio: t.warmup_ratio, min_lr_ratio: t.min_lr_ratio, seed: t.seed },
      },
      command: run.command,
      date: new Date().toISOString(),
      checkpoint: run.checkpoint ?? undefined,
    },
    steps,
    heldOut: {
      before: run.heldoutBefore,
      after: run.heldoutAfter,
      note: run.heldoutNote,
      conditionUse: [
        { label: 'Prompt use, T2I (nats/image)', before: run.conditionUseBefore?.prompt ?? null, after: run.conditionUseAfter?.prompt ?? null },
        { label: 'Input-image VQ block use, edits (nats/image)', before: run.conditionUseBefore?.inputImageTokens ?? null, after: run.conditionUseAfter?.inputImageTokens ?? null },
        { label: 'Kept objects started from the input image, edits (share; VQ block present)', before: base?.copying?.full ?? null, after: tuned.copying?.full ?? null },
        { label: 'Kept objects started from the input image, edits (share; SigLIP features only)', before: base?.copying?.part ?? null, after: tuned.copying?.part ?? null },
      ].filter((r) => r.before !== null || r.after !== null),
      notes: base?.copying || tuned.copying ? [COPYING_NOTE] : [],
    },
    evaluation: shapeEvalComparison(
      base?.shapeEval ?? null,
      tuned.shapeEval,
      `${se.per_category} T2I prompts and ${se.edits_per_category} edits per category, ${se.images_per_prompt} images each, CFG ${se.cfg}/${se.cfg2}, temperature ${se.temperature}${se.edit_temperature !== undefined ? ` (edits ${se.edit_temperature})` : ''}, seed ${se.seed}; scenes of the training data excluded`,
    ),
    samples: report.samples.map((prompt, i) => ({ prompt, base: base?.samples[i] ?? null, finetuned: tuned.samples[i] })),
    edits: tuned.edits.map((e, i) => ({ instruction: e.instruction, category: e.category, input: e.input, base: base?.edits[i]?.output ?? null, finetuned: e.output })),
    reproduce: [`janus4o eval --checkpoint ${dir} --per-category ${se.per_category} --edits-per-category ${se.edits_per_category} -n ${se.images_per_prompt} --seed ${se.seed} --cfg ${se.cfg} --cfg2 ${se.cfg2} --temperature ${se.temperature}${se.edit_temperature !== undefined ? ` --edit-temperature ${se.edit_temperature}` : ''}`],
  };
  return writeReport(dir, data);
}
