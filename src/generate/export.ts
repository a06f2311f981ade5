/**
 * Where generated images go on disk: the plain layout of `janus4o generate` (a folder per prompt, a sidecar
 * JSON per image, a grid), and the layouts the official benchmark tools read:
 *
 * GenEval (github.com/djghosh13/geneval, README "Image generation"; evaluation/evaluate_images.py reads only
 * digit-named folders and `\d+.png` samples):
 *   <out>/00000/metadata.jsonl    the prompt's line of evaluation_metadata.jsonl, verbatim
 *   <out>/00000/grid.png          optional
 *   <out>/00000/samples/0000.png  ..0003.png
 * DPG-Bench (ELLA's compute_dpg_bench.py): one 2x2 grid of 4 samples per prompt, `<out>/<prompt id>.png`,
 * where the prompt id is the name of the prompt's .txt file in dpg_bench/prompts.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import sharp from 'sharp';

export const pad = (i: number, width: number): string => String(i).padStart(width, '0');

/** `0000.png`-style sample names (GenEval pads to 4 digits). */
export function sampleFileName(i: number, ext = 'png'): string {
  return `${pad(i, 4)}.${ext}`;
}

/** Prompt folder names (GenEval pads the line index to 5 digits). */
export function promptFolderName(i: number): string {
  return pad(i, 5);
}

/** Tiles equal-sized PNGs into a grid, row-major, `columns` wide (default: a near-square grid). */
export async function pngGrid(pngs: readonly Buffer[], columns?: number): Promise<Buffer> {
  if (pngs.length === 0) throw new Error('pngGrid: no images');
  const meta = await Promise.all(pngs.map((p) => sharp(p).metadata()));
  const w = meta[0].width ?? 0;
  const h = meta[0].height ?? 0;
  if (meta.some((m) => m.width !== w || m.height !== h)) throw new Error('pngGrid: images differ in size');
  const cols = columns ?? Math.ceil(Math.sqrt(pngs.length));
  const rows = Math.ceil(pngs.length / cols);
  return sharp({ create: { width: cols * w, height: rows * h, channels: 3, background: { r: 0, g: 0, b: 0 } } })
    .composite(pngs.map((input, i) => ({ input, left: (i % cols) * w, top: Math.floor(i / cols) * h })))
    .png()
    .toBuffer();
}

/** What every image's sidecar JSON records, so a result can be traced to how it was made. */
export interface SampleRecord {
  prompt: string;
  /** The base seed; the image's stream is (seed, prompt_index, sample_index). */
  seed: string | number;
  prompt_index: number;
  sample_index: number;
  cfg: number;
  /** Edits only. */
  cfg2?: number;
  temperature: number;
  top_k?: number;
  top_p?: number;
  checkpoint: string;
  backend: string;
  /** Wall time of the prompt's generation and decoding, shared by its samples. */
  seconds: number;
  /** Edits: the source image. */
  image?: string;
}

/** Plain layout: <out>/<00000>/{0000.png, 0000.json, ..., grid.png, prompt.txt}. Returns the written paths. */
export async function writePromptSamples(out: string, promptIndex: number, pngs: readonly Buffer[], records: readonly SampleRecord[], grid: boolean): Promise<string[]> {
  if (records.length !== pngs.length) throw new Error(`writePromptSamples: ${pngs.length} images but ${records.length} records`);
  const dir = path.join(out, promptFolderName(promptIndex));
  await fs.mkdir(dir, { recursive: true });
  const written: string[] = [];
  const put = async (name: string, data: Buffer | string) => {
    await fs.writeFile(path.join(dir, name), data);
    written.push(path.join(dir, name));
  };
  await put('prompt.txt', `${records[0]?.prompt ?? ''}\n`);
  for (let i = 0; i < pngs.length; i++) {
    await put(sampleFileName(i), pngs[i]);
    await put(sampleFileName(i, 'json'), `${JSON.stringify(records[i], null, 2)}\n`);
  }
  if (grid) await put('grid.png', await pngGrid(pngs));
  return written;
}

// ------------------------------------------------------------------------------------------------ GenEval

export interface GenEvalPrompt {
  /** 0-based line index among the non-empty lines: the folder name. */
  index: number;
  /** The line exactly as read (the evaluator json.loads it back). */
  line: string;
  prompt: string;
  tag: string;
}

/** Reads evaluation_metadata.jsonl; every line must be a JSON object with a string `prompt`. */
export async function readGenEvalMetadata(file: string): Promise<GenEvalPrompt[]> {
  const text = await fs.readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new Error(`${file}: cannot read GenEval metadata (${e.code ?? e.message})`);
  });
  const out: GenEvalPrompt[] = [];
  text.split('\n').forEach((raw, lineNo) => {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '') return;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      throw new Error(`${file}:${lineNo + 1}: not a JSON line`);
    }
    const o = obj as { prompt?: unknown; tag?: unknown };
    if (typeof o !== 'object' || o === null || typeof o.prompt !== 'string') throw new Error(`${file}:${lineNo + 1}: expected an object with a string "prompt"`);
    out.push({ index: out.length, line, prompt: o.prompt, tag: typeof o.tag === 'string' ? o.tag : '' });
  });
  if (out.length === 0) throw new Error(`${file}: no prompts`);
  return out;
}

/** One prompt's GenEval folder. Nothing else goes in it, so the tree is exactly the official one. */
export async function writeGenEvalPrompt(out: string, p: GenEvalPrompt, pngs: readonly Buffer[], grid: boolean): Promise<string[]> {
  const dir = path.join(out, promptFolderName(p.index));
  const samples = path.join(dir, 'samples');
  await fs.mkdir(samples, { recursive: true });
  const written = [path.join(dir, 'metadata.jsonl')];
  await fs.writeFile(written[0], `${p.line}\n`);
  for (let i = 0; i < pngs.length; i++) {
    const f = path.join(samples, sampleFileName(i));
    await fs.writeFile(f, pngs[i]);
    written.push(f);
  }
  if (grid) {
    const f = path.join(dir, 'grid.png');
    await fs.writeFile(f, await pngGrid(pngs));
    written.push(f);
  }
  return written;
}

// ------------------------------------------------------------------------------------------------ DPG-Bench

export interface DpgPrompt {
  /** The prompt file's name without .txt. */
  id: string;
  prompt: string;
}

/** Every `<id>.txt` of a DPG-Bench prompts folder, sorted by id. */
export async function readDpgPrompts(dir: string): Promise<DpgPrompt[]> {
  const names = await fs.readdir(dir).catch((e: NodeJS.ErrnoException) => {
    throw new Error(`${dir}: cannot read the DPG-Bench prompts folder (${e.code ?? e.message})`);
  });
  const files = names.filter((n) => n.endsWith('.txt')).sort();
  if (files.length === 0) throw new Error(`${dir}: no .txt prompt files`);
  return Promise.all(
    files.map(async (f) => {
      const prompt = (await fs.readFile(path.join(dir, f), 'utf8')).trim();
      if (!prompt) throw new Error(`${path.join(dir, f)}: empty prompt`);
      return { id: f.slice(0, -4), prompt };
    }),
  );
}

/** `<out>/<id>.png`: the 2x2 grid DPG-Bench scores (exactly 4 samples). */
export async function writeDpgGrid(out: string, p: DpgPrompt, pngs: readonly Buffer[]): Promise<string> {
  if (pngs.length !== 4) throw new Error(`DPG-Bench grids take exactly 4 images per prompt, got ${pngs.length}`);
  await fs.mkdir(out, { recursive: true });
  const f = path.join(out, `${p.id}.png`);
  await fs.writeFile(f, await pngGrid(pngs, 2));
  return f;
}
