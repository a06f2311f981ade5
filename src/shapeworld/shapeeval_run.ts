/**
 * ShapeEval runner: a GenEval-style benchmark on ShapeWorld. Prompt and edit sets are drawn from a seed in
 * their own namespace (`shapeeval:<seed>:...`, never the dataset's `shapeworld:<seed>:...` streams), and any
 * draw whose scene equals a training scene is skipped, so an evaluation set is disjoint from the training
 * scenes by construction. Images come from an injected generator (the model, or anything else that draws),
 * are read back by the detector (detect.ts) and scored GenEval's way (shapeeval.ts).
 */
import type * as tf from '@tensorflow/tfjs-core';
import { detectPng } from './detect';
import { EDIT_CATEGORIES, EditCategory, Summary, T2ICategory, T2IPrompt, T2I_CATEGORIES, checkEdit, scoreT2I, summariseEdits, summariseT2I, t2iPromptFromScene } from './shapeeval';
import { makeRng } from '../data/rng';
import type { Scene } from './scene';
import { EditSample, makeEditSample, makeT2ISample, sampleEdit, sampleScene } from './samples';
import { readScenes } from './synth';
import { GenerationRuntime, loadImagePixels } from '../generate/runtime';
import { SamplingOptions, generateEdits, generateT2I } from '../generate/sampler';

/** A canonical key of a scene (drawn or detected): equal keys, same background and objects in any order. */
export function sceneKey(scene: { background: string; objects: readonly { shape: string; color: string; cell: { row: number; col: number } }[] }): string {
  const objs = scene.objects.map((o) => `${o.shape}|${o.color}|${o.cell.row},${o.cell.col}`).sort();
  return `${scene.background}#${objs.join(';')}`;
}

/** Keys of the scenes a ShapeWorld dataset folder holds, read from its scenes.jsonl. */
export async function datasetSceneKeys(root: string): Promise<Set<string>> {
  return new Set([...(await readScenes(root)).values()].map(sceneKey));
}

/** Keys of every scene a ShapeWorld dataset of these synth options contains (samples are pure functions of the index). */
export function shapeworldTrainingScenes(synth: { seed: string | number; t2i: number; edit: number }): Set<string> {
  const keys = new Set<string>();
  for (let i = 0; i < synth.t2i; i++) keys.add(sceneKey(makeT2ISample(synth.seed, i).scene));
  for (let i = 0; i < synth.edit; i++) {
    const e = makeEditSample(synth.seed, i);
    keys.add(sceneKey(e.source));
    keys.add(sceneKey(e.target));
  }
  return keys;
}

export interface EvalT2IItem {
  category: T2ICategory;
  prompt: T2IPrompt;
  /** The scene the prompt was read from (one witness; the image may satisfy the prompt differently). */
  scene: Scene;
}

const MAX_TRIES = 10000;

/** `perCategory` prompts of each category, none read from a training scene. */
export function shapeEvalT2IPrompts(seed: string | number, perCategory: number, exclude: ReadonlySet<string> = new Set()): EvalT2IItem[] {
  const out: EvalT2IItem[] = [];
  for (const category of T2I_CATEGORIES) {
    let found = 0;
    for (let i = 0; found < perCategory; i++) {
      if (i >= MAX_TRIES + perCategory) throw new Error(`ShapeEval: cannot draw ${perCategory} ${category} prompts outside the training scenes`);
      const rng = makeRng(`shapeeval:${seed}:t2i:${category}:${i}`);
      const scene = sampleScene(rng);
      if (exclude.has(sceneKey(scene))) continue;
      const prompt = t2iPromptFromScene(scene, category, () => rng.next());
      if (!prompt) continue;
      out.push({ category, prompt, scene });
      found++;
    }
  }
  return out;
}

/** `perCategory` edits of each category whose source and target scenes are both outside the training set. */
export function shapeEvalEdits(seed: string | number, perCategory: number, exclude: ReadonlySet<string> = new Set()): EditSample[] {
  const out: EditSample[] = [];
  for (const category of EDIT_CATEGORIES) {
    let found = 0;
    for (let i = 0; found < perCategory; i++) {
      if (i >= MAX_TRIES + perCategory) throw new Error(`ShapeEval: cannot draw ${perCategory} ${category} edits outside the training scenes`);
      const rng = makeRng(`shapeeval:${seed}:edit:${category}:${i}`);
      const source = sampleScene(rng);
      let edit: EditSample;
      try {
        edit = sampleEdit(source, rng, category);
      } catch {
        continue; // the category does not apply to this scene (e.g. add on a full scene)
      }
      if (exclude.has(sceneKey(edit.source)) || exclude.has(sceneKey(edit.target))) continue;
      out.push(edit);
      found++;
    }
  }
  return out;
}

/** Draws PNGs: `count` per prompt, and `count` per edit of a source PNG. */
export interface ShapeEvalGenerator {
  t2i(prompts: readonly string[], count: number): Promise<Buffer[][]>;
  edit?(items: readonly { instruction: string; source: Buffer }[], count: number): Promise<Buffer[][]>;
}

export interface ShapeEvalOptions {
  seed: string | number;
  /** T2I prompts per category (default 8). */
  perCategory?: number;
  /** Edits per category (default 4; 0 skips the edit suite). */
  editsPerCategory?: number;
  /** Images per prompt or edit (GenEval uses 4; default 4). */
  imagesPerPrompt?: number;
  /** Scene keys to stay away from (sceneKey of every training scene). */
  exclude?: ReadonlySet<string>;
  /** Renders an edit's source scene as PNG at the model's size. */
  renderSource?: (scene: Scene) => Promise<Buffer>;
  /** Prompts (or edits) sent to the generator at once. Default 8. */
  batch?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface T2IItemResult {
  category: T2ICategory;
  prompt: string;
  /** Per image: every clause held. */
  correct: boolean[];
}

export interface EditItemResult {
  category: EditCategory;
  instruction: string;
  correct: boolean[];
  targetHolds: boolean[];
  preserved: boolean[];
}

export interface ShapeEvalReport {
  suite: 'shapeeval';
  seed: string | number;
  images_per_prompt: number;
  excluded_training_scenes: number;
  t2i: { summary: Summary<T2ICategory>; items: T2IItemResult[] };
  edit: { summary: Summary<EditCategory>; items: EditItemResult[] } | null;
  seconds: number;
}

async function inBatches<T, R>(items: readonly T[], size: number, work: (batch: readonly T[]) => Promise<R[]>, progress: (n: number) => void): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) {
    const batch = items.slice(i, i + size);
    const res = await work(batch);
    if (res.length !== batch.length) throw new Error(`ShapeEval: the generator returned ${res.length} results for ${batch.length} inputs`);
    out.push(...res);
    progress(batch.length);
  }
  return out;
}

/** Generates, detects and scores the whole suite; the JSON summary of `janus4o eval`. */
export async function runShapeEval(gen: ShapeEvalGenerator, opts: ShapeEvalOptions): Promise<ShapeEvalReport> {
  const started = performance.now();
  const count = opts.imagesPerPrompt ?? 4;
  const batch = opts.batch ?? 8;
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`images per prompt must be a positive integer, got ${count}`);
  const exclude = opts.exclude ?? new Set<string>();
  const prompts = shapeEvalT2IPrompts(opts.seed, opts.perCategory ?? 8, exclude);
  const editsWanted = opts.editsPerCategory ?? 4;
  const edits = editsWanted > 0 && gen.edit ? shapeEvalEdits(opts.seed, editsWanted, exclude) : [];
  if (edits.length && !opts.renderSource) throw new Error('ShapeEval: edits need renderSource to draw the source images');
  const total = prompts.length + edits.length;
  let done = 0;
  const progress = (n: number) => {
    done += n;
    opts.onProgress?.(done, total);
  };
  const images = await inBatches(prompts, batch, (b) => gen.t2i(b.map((p) => p.prompt.text), count), progress);
  const t2iItems: T2IItemResult[] = [];
  for (let i = 0; i < prompts.length; i++) {
    const correct: boolean[] = [];
    for (const png of images[i]) correct.push(scoreT2I(prompts[i].prompt, await detectPng(png)));
    t2iItems.push({ category: prompts[i].category, prompt: prompts[i].prompt.text, correct });
  }
  let edit: ShapeEvalReport['edit'] = null;
  if (edits.length) {
    const sources = await Promise.all(edits.map((e) => opts.renderSource!(e.source)));
    const outs = await inBatches(
      edits.map((e, i) => ({ instruction: e.instruction, source: sources[i] })),
      batch,
      (b) => gen.edit!(b, count),
      progress,
    );
    const items: EditItemResult[] = [];
    for (let i = 0; i < edits.length; i++) {
      const e = edits[i];
      const r: EditItemResult = { category: e.category, instruction: e.instruction, correct: [], targetHolds: [], preserved: [] };
      for (const png of outs[i]) {
        const c = checkEdit(e.category, e.source, e.target, await detectPng(png));
        r.correct.push(c.correct);
        r.targetHolds.push(c.targetHolds);
        r.preserved.push(c.preserved);
      }
      items.push(r);
    }
    edit = { summary: summariseEdits(items.flatMap((it) => it.correct.map((correct) => ({ category: it.category, correct })))), items };
  }
  return {
    suite: 'shapeeval',
    seed: opts.seed,
    images_per_prompt: count,
    excluded_training_scenes: exclude.size,
    t2i: { summary: summariseT2I(t2iItems.flatMap((it) => it.correct.map((correct) => ({ category: it.category, correct })))), items: t2iItems },
    edit,
    seconds: (performance.now() - started) / 1000,
  };
}

/**
 * The generator of a loaded model. Jobs are keyed by their running index so every prompt of the suite has
 * its own random streams, whatever the batch size. Edits may sample with their own options (`editSampling`).
 */
export function modelGenerator(rt: GenerationRuntime, sampling: SamplingOptions, editSampling: SamplingOptions = sampling): ShapeEvalGenerator {
  let t2iJobs = 0;
  let editJobs = 0;
  const chunks = <T>(xs: readonly T[], n: number): T[][] => Array.from({ length: Math.ceil(xs.length / n) }, (_, i) => xs.slice(i * n, (i + 1) * n));
  return {
    async t2i(prompts, count) {
      const res = await generateT2I(rt.model, rt.templates, prompts.map((prompt) => ({ prompt, count, index: t2iJobs++ })), sampling);
      return chunks(await rt.decode(res.ids.flat()), count);
    },
    async edit(items, count) {
      const sources: { ids: number[]; features: tf.Tensor2D }[] = [];
      try {
        for (const it of items) {
          const pixels = await loadImagePixels(it.source, rt.model.config.imageSize, 'edit source');
          try {
            sources.push(rt.encodeSource(pixels));
          } finally {
            pixels.dispose();
          }
        }
        const jobs = items.map((it, i) => ({ instruction: it.instruction, sourceIds: sources[i].ids, sourceFeatures: sources[i].features, count, index: editJobs++ }));
        const res = await generateEdits(rt.model, rt.templates, jobs, editSampling);
        return chunks(await rt.decode(res.ids.flat()), count);
      } finally {
        for (const s of sources) s.features.dispose();
      }
    },
  };
}
