/**
 * Writes a ShapeWorld dataset in the ShareGPT-4o-Image layout (janus-spec section 9), plus the ground truth
 * evaluation needs. A directory written by `janus4o synth` holds:
 *
 *   text_to_image.json            [{"input_prompt": str, "output_image": "images/t2i_000000.png"}, ...]
 *   text_and_image_to_image.json  [{"input_prompt": str, "input_image": ["images/edit_000000_src.png"],
 *                                   "output_image": "images/edit_000000_tgt.png"}, ...]
 *   images/                       PNG, RGB 8-bit, size x size, rendered by src/shapeworld/render.ts
 *   scenes.jsonl                  one line per image: {"image": path, "scene": Scene}; renderScene(scene, size)
 *                                 reproduces the file byte for byte
 *   records.jsonl                 one line per record, T2I records first, in the JSON files' order:
 *                                 T2I:  {"task": "t2i", "index", "pipeline": "prompt-first"|"image-first",
 *                                        "prompt", "output_image", "spec": PromptSpec (what the prompt asserts),
 *                                        "noise": NoiseEvent[]}
 *                                 edit: {"task": "edit", "index", "category": EditCategory, "ops": EditOp[],
 *                                        "prompt", "input_image", "output_image", "source_scene", "target_scene"}
 *   shapeworld.json               {"format": "shapeworld", "version", "seed", "size", "t2i", "edit",
 *                                  "caption_noise", "images", "vocab_size"}, plus "max_objects" when below 4 and
 *                                  "captions" when not "rich"
 *
 * Paths are relative to the directory. Nothing depends on time or machine, so equal options give equal
 * bytes. The directory is built beside the target under a temporary name and renamed into place at the end,
 * so an interrupted run never leaves a half dataset where a complete one is expected.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { renderScene } from './render';
import type { Scene } from './scene';
import { MAX_OBJECTS, SHAPEWORLD_VOCAB, checkScene, makeClassSample, makeEditSample, makeT2ISample } from './samples';
import { UserError } from '../errors';

export const SYNTH_FORMAT_VERSION = 1;
export const MANIFEST_FILE = 'shapeworld.json';

export const SYNTH_CAPTIONS = ['rich', 'class'] as const;
export type SynthCaptions = (typeof SYNTH_CAPTIONS)[number];

export interface SynthOptions {
  out: string;
  t2i: number;
  edit: number;
  /** Image side in pixels (64 for the tiny model, 384 for Janus). */
  size: number;
  seed: string | number;
  /** Probability that each stated caption attribute is dropped or wrong (T2I captions only). Default 0. */
  captionNoise?: number;
  /** Most objects in a T2I image, 1-4 (default 4). Fewer makes a curriculum set; edits always use up to 4. */
  maxObjects?: number;
  /**
   * T2I captions: 'rich' (default; both pipelines, 1 to maxObjects objects, counts, cells, relations) or 'class'
   * (one object per image, `a {colour} {shape} on a {background} background`; maxObjects is not used).
   */
  captions?: SynthCaptions;
  /** Replace an existing dataset at `out` (only one that a previous synth wrote). */
  force?: boolean;
  /** Images rendered at once. Default 4. */
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface SynthResult {
  out: string;
  t2i: number;
  edit: number;
  images: number;
  /** Total bytes written, all files. */
  bytes: number;
}

interface ImageJob {
  file: string;
  scene: Scene;
}

const pad = (i: number): string => String(i).padStart(6, '0');

/** A JSON array with one record per line: valid JSON, diff-friendly, and streamable by the reader. */
function jsonArray(items: readonly object[]): string {
  return items.length === 0 ? '[]\n' : `[\n${items.map((x) => `  ${JSON.stringify(x)}`).join(',\n')}\n]\n`;
}

const jsonl = (items: readonly object[]): string => items.map((x) => `${JSON.stringify(x)}\n`).join('');

function checkOptions(o: SynthOptions): void {
  const count = (name: string, v: number): void => {
    if (!Number.isInteger(v) || v < 0) throw new UserError(`synth: --${name} must be a non-negative integer, got ${v}`);
  };
  count('t2i', o.t2i);
  count('edit', o.edit);
  if (o.t2i + o.edit === 0) throw new UserError('synth: nothing to write (--t2i and --edit are both 0)');
  if (!Number.isInteger(o.size) || o.size < 16) throw new UserError(`synth: --size must be an integer >= 16, got ${o.size}`);
  const p = o.captionNoise ?? 0;
  if (!(p >= 0 && p <= 1)) throw new UserError(`synth: --caption-noise must be in [0, 1], got ${p}`);
  if (o.captions !== undefined && !SYNTH_CAPTIONS.includes(o.captions)) throw new UserError(`synth: --captions must be one of ${SYNTH_CAPTIONS.join(', ')}, got ${String(o.captions)}`);
  const m = o.maxObjects ?? MAX_OBJECTS;
  if (!Number.isInteger(m) || m < 1 || m > MAX_OBJECTS) throw new UserError(`synth: --max-objects must be an integer in 1..${MAX_OBJECTS}, got ${m}`);
}

async function exists(p: string): Promise<boolean> {
  return fs.stat(p).then(
    () => true,
    () => false,
  );
}

/** Refuse to clobber anything that is not an earlier synth output; say how to proceed. */
async function checkTarget(out: string, force: boolean): Promise<'absent' | 'empty' | 'replace'> {
  if (!(await exists(out))) return 'absent';
  if (!(await fs.stat(out)).isDirectory()) throw new UserError(`synth: ${out} is a file, not a directory`);
  const entries = await fs.readdir(out);
  if (entries.length === 0) return 'empty';
  if (!entries.includes(MANIFEST_FILE)) throw new UserError(`synth: ${out} exists and is not a ShapeWorld dataset; choose another --out`);
  if (!force) throw new UserError(`synth: ${out} already holds a ShapeWorld dataset; pass --force to replace it`);
  return 'replace';
}

async function clearTarget(out: string, force: boolean): Promise<void> {
  const state = await checkTarget(out, force);
  if (state === 'empty') await fs.rmdir(out);
  else if (state === 'replace') await fs.rm(out, { recursive: true, force: true });
}

async function runPool<T>(items: readonly T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await work(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}

/** Generate and write a dataset; see the file header for the layout. */
export async function synthesize(options: SynthOptions): Promise<SynthResult> {
  checkOptions(options);
  const { t2i, edit, size, seed } = options;
  const noise = options.captionNoise ?? 0;
  const maxObjects = options.maxObjects ?? MAX_OBJECTS;
  const captions = options.captions ?? 'rich';
  const out = path.resolve(options.out);
  // Checked before the long part so a refusal is immediate, and again before the rename.
  await checkTarget(out, options.force ?? false);

  const jobs: ImageJob[] = [];
  const t2iJson: object[] = [];
  const editJson: object[] = [];
  const records: object[] = [];
  for (let i = 0; i < t2i; i++) {
    const s = captions === 'class' ? makeClassSample(seed, i, noise) : makeT2ISample(seed, i, noise, maxObjects);
    const image = `images/t2i_${pad(i)}.png`;
    jobs.push({ file: image, scene: s.scene });
    t2iJson.push({ input_prompt: s.prompt, output_image: image });
    records.push({ task: 't2i', index: i, pipeline: s.pipeline, prompt: s.prompt, output_image: image, spec: s.spec, noise: s.noise });
  }
  for (let i = 0; i < edit; i++) {
    const s = makeEditSample(seed, i);
    const src = `images/edit_${pad(i)}_src.png`;
    const tgt = `images/edit_${pad(i)}_tgt.png`;
    jobs.push({ file: src, scene: s.source }, { file: tgt, scene: s.target });
    editJson.push({ input_prompt: s.instruction, input_image: [src], output_image: tgt });
    records.push({
      task: 'edit',
      index: i,
      category: s.category,
      ops: s.ops,
      prompt: s.instruction,
      input_image: src,
      output_image: tgt,
      source_scene: s.source,
      target_scene: s.target,
    });
  }
  // A generator bug must never reach disk as a mislabelled image.
  for (const j of jobs) checkScene(j.scene);

  const tmp = `${out}.partial-${process.pid}`;
  await fs.rm(tmp, { recursive: true, force: true });
  await fs.mkdir(path.join(tmp, 'images'), { recursive: true });
  let bytes = 0;
  let done = 0;
  try {
    await runPool(jobs, options.concurrency ?? 4, async (job) => {
      const png = await renderScene(job.scene, size);
      await fs.writeFile(path.join(tmp, job.file), png);
      bytes += png.length;
      options.onProgress?.(++done, jobs.length);
    });
    const manifest = {
      format: 'shapeworld',
      version: SYNTH_FORMAT_VERSION,
      // String, so `--seed 1` on the command line and seed 1 from code write the same bytes.
      seed: String(seed),
      size,
      t2i,
      edit,
      caption_noise: noise,
      // Only when set, so a default dataset's manifest keeps the bytes it had before the option existed.
      ...(maxObjects !== MAX_OBJECTS && captions === 'rich' ? { max_objects: maxObjects } : {}),
      ...(captions !== 'rich' ? { captions } : {}),
      images: jobs.length,
      vocab_size: SHAPEWORLD_VOCAB.length,
    };
    const files: [string, string][] = [
      ['text_to_image.json', jsonArray(t2iJson)],
      ['text_and_image_to_image.json', jsonArray(editJson)],
      ['scenes.jsonl', jsonl(jobs.map((j) => ({ image: j.file, scene: j.scene })))],
      ['records.jsonl', jsonl(records)],
      [MANIFEST_FILE, `${JSON.stringify(manifest, null, 2)}\n`],
    ];
    for (const [name, text] of files) {
      const buf = Buffer.from(text, 'utf8');
      await fs.writeFile(path.join(tmp, name), buf);
      bytes += buf.length;
    }
    await clearTarget(out, options.force ?? false);
    await fs.rename(tmp, out);
  } catch (e) {
    await fs.rm(tmp, { recursive: true, force: true });
    throw e;
  }
  return { out, t2i, edit, images: jobs.length, bytes };
}

/** The scene of every image, keyed by its dataset-relative path, read back from scenes.jsonl. */
export async function readScenes(dir: string): Promise<Map<string, Scene>> {
  const file = path.join(dir, 'scenes.jsonl');
  const text = await fs.readFile(file, 'utf8');
  const map = new Map<string, Scene>();
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let rec: { image?: unknown; scene?: unknown };
    try {
      rec = JSON.parse(line) as { image?: unknown; scene?: unknown };
    } catch (e) {
      throw new Error(`${file} line ${i + 1} is not JSON: ${(e as Error).message}`);
    }
    const { image, scene } = rec;
    // Image paths are read relative to the dataset; one that leaves it is refused.
    if (typeof image !== 'string' || path.isAbsolute(image) || image.split(/[\\/]/).includes('..') || typeof scene !== 'object' || scene === null) {
      throw new Error(`${file} line ${i + 1}: expected {"image": "<path inside the dataset>", "scene": {...}}`);
    }
    map.set(image, scene as Scene);
  });
  return map;
}
