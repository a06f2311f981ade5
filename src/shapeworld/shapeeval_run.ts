/**
 * ShapeEval runner: a GenEval-style benchmark on ShapeWorld. Prompt and edit sets are drawn from a seed in
 * their own namespace (`shapeeval:<seed>:...`, never the dataset's `shapeworld:<seed>:...` streams), and any
 * draw whose scene equals a training scene is skipped, so an evaluation set is disjoint from the training
 * scenes by construction. Images come from an injected generator (the model, or anything else that draws),
 * are read back by the detector (detect.ts) and scored GenEval's way (shapeeval.ts).
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import type * as tf from '@tensorflow/tfjs-core';
import { DetectedScene, detectPng } from './detect';
import { EDIT_CATEGORIES, EditCategory, EditCheck, Summary, T2ICategory, T2IPrompt, T2I_CATEGORIES, checkEdit, clauseHolds, genEvalMetadata, makeT2IPrompt, scoreT2I, summariseEdits, summariseT2I, t2iPromptFromScene } from './shapeeval';
import { Rng, makeRng, shuffled } from '../data/rng';
import { BACKGROUND_NAMES, COLOR_NAMES, SHAPES, Scene, SceneObject } from './scene';
import { ALL_CELLS, EditSample, MAX_OBJECTS, makeEditSample, makeT2ISample, sampleEdit, sampleScene } from './samples';
import { readScenes } from './synth';
import { GenerationRuntime, loadImagePixels } from '../generate/runtime';
import { SamplingOptions, generateEdits, generateT2I } from '../generate/sampler';
import { promptFolderName, sampleFileName, writeGenEvalPrompt } from '../generate/export';
import { UserError } from '../errors';

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

/** The counts the counting category asks for, in turn: GenEval's counting asks for 2 to 4 objects. */
export const COUNTING_COUNTS = [2, 3, 4] as const;

/**
 * A counting prompt for exactly `count` objects of one shape, and a witness scene: those objects in random
 * colours, plus up to MAX_OBJECTS - count objects of other shapes (so counting is not just "how many objects").
 */
export function countingItem(rng: Rng, count: number): EvalT2IItem {
  if (!Number.isInteger(count) || count < 1 || count > MAX_OBJECTS) throw new RangeError(`counting: count must be an integer from 1 to ${MAX_OBJECTS}, got ${count}`);
  const shape = rng.pick(SHAPES);
  const others = SHAPES.filter((s) => s !== shape);
  const extra = rng.int(MAX_OBJECTS - count + 1);
  const cells = shuffled(ALL_CELLS, rng);
  const objects: SceneObject[] = [];
  for (let k = 0; k < count + extra; k++) objects.push({ shape: k < count ? shape : rng.pick(others), color: rng.pick(COLOR_NAMES), cell: cells[k] });
  const scene: Scene = { background: rng.pick(BACKGROUND_NAMES), objects: shuffled(objects, rng) };
  return { category: 'counting', prompt: makeT2IPrompt('counting', [{ kind: 'count', object: { shape }, count }]), scene };
}

/**
 * `perCategory` prompts of each category, none read from a training scene. Counting prompts ask for 2, 3 and 4
 * objects in turn (GenEval's counting range); the other categories read a prompt off a random scene.
 */
export function shapeEvalT2IPrompts(seed: string | number, perCategory: number, exclude: ReadonlySet<string> = new Set()): EvalT2IItem[] {
  const out: EvalT2IItem[] = [];
  for (const category of T2I_CATEGORIES) {
    let found = 0;
    for (let i = 0; found < perCategory; i++) {
      if (i >= MAX_TRIES + perCategory) throw new Error(`ShapeEval: cannot draw ${perCategory} ${category} prompts outside the training scenes`);
      const rng = makeRng(`shapeeval:${seed}:t2i:${category}:${i}`);
      if (category === 'counting') {
        const item = countingItem(rng, COUNTING_COUNTS[found % COUNTING_COUNTS.length]);
        if (exclude.has(sceneKey(item.scene))) continue;
        out.push(item);
        found++;
        continue;
      }
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
  /** Receives every prompt's and edit's images with the detector's reading and the verdict (`eval --out`). */
  sink?: ShapeEvalSink;
}

/** One scored image: the PNG, what the detector read in it, and the scorer's verdict. */
export interface ScoredImage<V> {
  png: Buffer;
  detected: DetectedScene;
  verdict: V;
}

/** A T2I verdict: every clause held (GenEval's rule), and each clause's own result. */
export interface T2IVerdict {
  correct: boolean;
  clauses: boolean[];
}

/** Where runShapeEval hands each scored item, in suite order (index counts from 0 within T2I and within edits). */
export interface ShapeEvalSink {
  t2i(index: number, item: EvalT2IItem, images: readonly ScoredImage<T2IVerdict>[]): Promise<void>;
  edit(index: number, edit: EditSample, source: Buffer, images: readonly ScoredImage<EditCheck>[]): Promise<void>;
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
    const scored: ScoredImage<T2IVerdict>[] = [];
    for (const png of images[i]) {
      const detected = await detectPng(png);
      scored.push({ png, detected, verdict: { correct: scoreT2I(prompts[i].prompt, detected), clauses: prompts[i].prompt.clauses.map((c) => clauseHolds(c, detected)) } });
    }
    await opts.sink?.t2i(i, prompts[i], scored);
    t2iItems.push({ category: prompts[i].category, prompt: prompts[i].prompt.text, correct: scored.map((s) => s.verdict.correct) });
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
      const scored: ScoredImage<EditCheck>[] = [];
      for (const png of outs[i]) {
        const detected = await detectPng(png);
        const c = checkEdit(e.category, e.source, e.target, detected);
        scored.push({ png, detected, verdict: c });
        r.correct.push(c.correct);
        r.targetHolds.push(c.targetHolds);
        r.preserved.push(c.preserved);
      }
      await opts.sink?.edit(i, e, sources[i], scored);
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

// ------------------------------------------------------------------------------------------------ --out folders

/**
 * Writes every scored image of a run so it can be inspected and rescored (`janus4o eval --out DIR`):
 *
 *   DIR/evaluation_metadata.jsonl          the T2I prompts as GenEval metadata lines (genEvalMetadata), in order
 *   DIR/00000/metadata.jsonl               GenEval's folder layout (src/generate/export.ts writeGenEvalPrompt):
 *   DIR/00000/samples/0000.png ..          the prompt's line and its images
 *   DIR/00000/shapeeval.json               per image: the detector's reading and the verdict (per clause too)
 *   DIR/edits/edit_metadata.jsonl          the edits, one JSON line each: tag, instruction, source/target scenes, ops
 *   DIR/edits/00000/metadata.jsonl         that edit's line
 *   DIR/edits/00000/input.png              the source image the model was given
 *   DIR/edits/00000/samples/0000.png ..    the edited images
 *   DIR/edits/00000/shapeeval.json         per image: reading and verdict (correct, targetHolds, preserved)
 *
 * GenEval's evaluate_images.py reads only the digit-named folders' metadata.jsonl and samples/<digits>.png, so
 * DIR is also a GenEval image folder. `dir` must be empty or absent: a rerun into an old folder would mix runs.
 */
export async function shapeEvalFolder(dir: string): Promise<ShapeEvalSink> {
  const unusable = (e: NodeJS.ErrnoException) => new UserError(`--out ${dir}: cannot write the images there (${e.code ?? e.message}); give a folder you can write`);
  const entries = await fsp.readdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[];
    throw unusable(e);
  });
  if (entries.length > 0) throw new UserError(`--out ${dir}: the folder is not empty (${entries.length} entries); give a new folder or remove it, so runs are not mixed`);
  await fsp.mkdir(dir, { recursive: true }).catch((e: NodeJS.ErrnoException) => {
    throw unusable(e);
  });
  const editsDir = path.join(dir, 'edits');
  const files = (images: readonly ScoredImage<unknown>[]) => images.map((_, k) => `samples/${sampleFileName(k)}`);
  return {
    async t2i(index, item, images) {
      const meta = genEvalMetadata(item.prompt);
      const line = JSON.stringify(meta);
      await writeGenEvalPrompt(dir, { index, line, prompt: meta.prompt, tag: meta.tag }, images.map((s) => s.png), false);
      const names = files(images);
      const record = {
        index,
        category: item.category,
        prompt: item.prompt.text,
        clauses: item.prompt.clauses,
        witness: item.scene,
        images: images.map((s, k) => ({ file: names[k], ...s.verdict, detected: s.detected })),
      };
      await fsp.writeFile(path.join(dir, promptFolderName(index), 'shapeeval.json'), `${JSON.stringify(record, null, 2)}\n`);
      await fsp.appendFile(path.join(dir, 'evaluation_metadata.jsonl'), `${line}\n`);
    },
    async edit(index, e, source, images) {
      const folder = path.join(editsDir, promptFolderName(index));
      await fsp.mkdir(path.join(folder, 'samples'), { recursive: true });
      const line = JSON.stringify({ tag: e.category, instruction: e.instruction, source: e.source, target: e.target, ops: e.ops });
      await fsp.writeFile(path.join(folder, 'metadata.jsonl'), `${line}\n`);
      await fsp.writeFile(path.join(folder, 'input.png'), source);
      const names = files(images);
      for (let k = 0; k < images.length; k++) await fsp.writeFile(path.join(folder, names[k]), images[k].png);
      const record = {
        index,
        category: e.category,
        instruction: e.instruction,
        input: 'input.png',
        source: e.source,
        target: e.target,
        images: images.map((s, k) => ({ file: names[k], correct: s.verdict.correct, targetHolds: s.verdict.targetHolds, preserved: s.verdict.preserved, detected: s.detected })),
      };
      await fsp.writeFile(path.join(folder, 'shapeeval.json'), `${JSON.stringify(record, null, 2)}\n`);
      await fsp.appendFile(path.join(editsDir, 'edit_metadata.jsonl'), `${line}\n`);
    },
  };
}
