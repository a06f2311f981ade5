/**
 * `janus4o generate`: text-to-image with 2-branch CFG, to a folder per prompt (sidecar JSON per image, a
 * grid), or to the GenEval (--geneval) / DPG-Bench (--dpg) layouts. Also the pieces `edit` and `eval` share:
 * sampling flags, their checks, the progress bar. --cfg, --cfg2 and --temperature default to the model folder's
 * generation_config.json (io/model_folder.ts), so they are resolved once the model is loaded.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { SingleBar } from 'cli-progress';
import type { Argv, CommandModule } from 'yargs';
import { BACKEND_NAMES, BackendName, initBackend } from '../backend';
import { checkSamplingOptions } from '../generate/cfg';
import { DpgPrompt, GenEvalPrompt, SampleRecord, readDpgPrompts, readGenEvalMetadata, writeDpgGrid, writeGenEvalPrompt, writePromptSamples } from '../generate/export';
import { GenerationRuntime, loadRuntime } from '../generate/runtime';
import { GenerationDefaults, REFERENCE_GENERATION } from '../io/model_folder';
import { SamplingOptions, SamplingProgress, checkPositionBudget, generateT2I } from '../generate/sampler';
import { UserError } from '../errors';

/** Flags every sampling command takes. */
export interface SamplingArgs {
  checkpoint: string;
  n: number;
  /** Unset: the model folder's cfg_weight (generation_config.json). */
  cfg?: number;
  /** Unset: the model folder's temperature (edits: its edit_temperature). */
  temperature?: number;
  'top-k': number;
  'top-p': number;
  seed: string;
  cache: boolean;
  'max-rows'?: number;
  backend: string;
  progress: boolean;
}

export function samplingFlags<T>(y: Argv<T>): Argv<T & SamplingArgs> {
  return y
    .option('checkpoint', { type: 'string', demandOption: true, describe: 'checkpoint directory (or a checkpoint root: its latest)' })
    .option('n', { type: 'number', default: 4, describe: 'images per prompt (parallel CFG rows)' })
    .option('cfg', { type: 'number', describe: "guidance weight w (edits: w1); default: the model folder's generation_config.json cfg_weight, else 5" })
    .option('temperature', { type: 'number', describe: "softmax temperature (0 = greedy); default: the model folder's generation_config.json temperature (edit: edit_temperature), else 1" })
    .option('top-k', { type: 'number', default: 0, describe: 'sample from the k most likely ids only (0 = all, the reference)' })
    .option('top-p', { type: 'number', default: 1, describe: 'nucleus sampling mass (1 = all, the reference)' })
    .option('seed', { type: 'string', default: '0', describe: 'seed; same seed and backend give byte-identical PNGs' })
    .option('cache', { type: 'boolean', default: true, describe: 'KV-cached decoding (--no-cache recomputes every step)' })
    .option('max-rows', { type: 'number', describe: 'most CFG rows per forward (default: from a 1 GiB memory estimate)' })
    .option('backend', { type: 'string', default: 'auto', choices: BACKEND_NAMES as unknown as string[], describe: 'tfjs backend' })
    .option('progress', { type: 'boolean', default: true, describe: 'progress bar with image tokens/s (on a terminal)' }) as unknown as Argv<T & SamplingArgs>;
}

/** Where the flags a command leaves unset take their values from. */
export interface SamplingDefaults {
  /** The model's settings (runtime.generation); before the model is loaded, the reference ones stand in. */
  generation?: GenerationDefaults;
  /** Which of them an unset --temperature takes (default: edit_temperature for edits, temperature for T2I). */
  temperature?: 'temperature' | 'edit_temperature';
}

/** Sampling options with the guidance weights and temperature decided: what the sidecars record. */
export type ResolvedSampling = SamplingOptions & { cfg: number; temperature: number };

/**
 * The flags as sampling options, unset ones filled from `d.generation`; every problem is a UserError naming the
 * flag. Called once before anything is loaded (checks the flags given) and again with the model's settings.
 * `cfg2` is the edit's --cfg2 (mode 'edit'; unset: the model's cfg_weight2).
 */
export function samplingOptions(a: SamplingArgs, mode: 't2i' | 'edit', cfg2?: number, d: SamplingDefaults = {}): ResolvedSampling {
  if (!Number.isInteger(a.n) || a.n < 1) throw new UserError(`-n must be a positive integer (images per prompt), got ${a.n}`);
  const maxRows = a['max-rows'];
  if (maxRows !== undefined && (!Number.isInteger(maxRows) || maxRows < 1)) throw new UserError(`--max-rows must be a positive integer, got ${maxRows}`);
  const topK = a['top-k'] || undefined;
  const topP = a['top-p'] === 1 ? undefined : a['top-p'];
  const g = d.generation ?? REFERENCE_GENERATION;
  const cfg = a.cfg ?? g.cfg_weight;
  const w2 = mode === 'edit' ? (cfg2 ?? g.cfg_weight2) : undefined;
  const temperature = a.temperature ?? g[d.temperature ?? (mode === 'edit' ? 'edit_temperature' : 'temperature')];
  try {
    checkSamplingOptions(mode, { cfg, cfg2: w2 }, { temperature, topK, topP });
  } catch (e) {
    throw new UserError((e as Error).message);
  }
  return { cfg, ...(w2 !== undefined ? { cfg2: w2 } : {}), temperature, topK, topP, seed: a.seed, useCache: a.cache, maxRows };
}

/** The log line that says what a command samples with (a flag left unset takes the model's setting). */
export function samplingNote(o: ResolvedSampling, extra = ''): string {
  const w2 = o.cfg2 !== undefined ? ` --cfg2 ${o.cfg2}` : '';
  return `sampling with --cfg ${o.cfg}${w2} --temperature ${o.temperature}${extra} (flags not given: the model folder's generation_config.json)`;
}

/** Sampler errors about the request (too long, bad count) become user errors; anything else stays a bug. */
export function asUserError(e: unknown): unknown {
  return e instanceof RangeError ? new UserError(e.message) : e;
}

export async function startRuntime(a: SamplingArgs, log: (line: string) => void): Promise<{ runtime: GenerationRuntime; backend: string }> {
  const ckpt = path.resolve(a.checkpoint);
  // A missing checkpoint is reported before the backend spends seconds starting.
  await fs.stat(ckpt).catch(() => {
    throw new UserError(`Checkpoint directory ${ckpt} does not exist.`);
  });
  const backend = await initBackend(a.backend as BackendName, log);
  return { runtime: await loadRuntime(ckpt), backend: backend.name };
}

/** A progress bar over image tokens (terminal only) that also reports the running image tokens/s. */
export function tokenProgress(enabled: boolean, label: string): { update: (p: SamplingProgress, note: string) => void; stop: () => void } {
  const on = enabled && Boolean(process.stderr.isTTY);
  const bar = new SingleBar({ format: `${label} |{bar}| {value}/{total} image tokens | {speed} tok/s | {note}`, stream: process.stderr, hideCursor: false });
  let started = false;
  return {
    update(p, note) {
      if (!on) return;
      if (!started) {
        bar.start(p.totalTokens, 0, { speed: '-', note });
        started = true;
      }
      bar.setTotal(p.totalTokens);
      bar.update(p.tokens, { speed: p.tokensPerSecond.toFixed(1), note });
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}

export interface GenerateArgs extends SamplingArgs {
  prompt?: string;
  prompts?: string;
  geneval?: string;
  dpg?: string;
  out: string;
  batch: number;
  grid: boolean;
}

interface PromptItem {
  index: number;
  prompt: string;
  write: (pngs: Buffer[], records: SampleRecord[]) => Promise<unknown>;
}

async function readPromptFile(file: string): Promise<string[]> {
  const text = await fs.readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new UserError(`--prompts ${file}: cannot read it (${e.code ?? e.message})`);
  });
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (!t) continue;
    // A JSONL line with a "prompt" field (GenEval-style files) or a plain line of text.
    if (t.startsWith('{')) {
      try {
        const o = JSON.parse(t) as { prompt?: unknown };
        if (typeof o.prompt === 'string') {
          out.push(o.prompt);
          continue;
        }
      } catch {
        // not JSON: a prompt that starts with a brace
      }
    }
    out.push(t);
  }
  if (out.length === 0) throw new UserError(`--prompts ${file}: no prompts in it`);
  return out;
}

async function promptItems(a: GenerateArgs): Promise<PromptItem[]> {
  const sources = (['prompt', 'prompts', 'geneval', 'dpg'] as const).filter((k) => a[k] !== undefined);
  if (sources.length !== 1) throw new UserError(`Give exactly one of --prompt, --prompts, --geneval, --dpg (got ${sources.length ? sources.map((s) => `--${s}`).join(', ') : 'none'}).`);
  if (a.geneval !== undefined) {
    const ps: GenEvalPrompt[] = await readGenEvalMetadata(a.geneval).catch((e: Error) => {
      throw new UserError(`--geneval: ${e.message}`);
    });
    return ps.map((p) => ({ index: p.index, prompt: p.prompt, write: (pngs) => writeGenEvalPrompt(a.out, p, pngs, a.grid) }));
  }
  if (a.dpg !== undefined) {
    if (a.n !== 4) throw new UserError(`--dpg writes 2x2 grids: it needs -n 4, got -n ${a.n}`);
    const ps: DpgPrompt[] = await readDpgPrompts(a.dpg).catch((e: Error) => {
      throw new UserError(`--dpg: ${e.message}`);
    });
    return ps.map((p, i) => ({ index: i, prompt: p.prompt, write: (pngs) => writeDpgGrid(a.out, p, pngs) }));
  }
  const texts = a.prompt !== undefined ? [a.prompt] : await readPromptFile(a.prompts!);
  texts.forEach((t, i) => {
    if (!t.trim()) throw new UserError(`prompt ${i + 1} is empty`);
  });
  return texts.map((prompt, i) => ({ index: i, prompt, write: (pngs, records) => writePromptSamples(a.out, i, pngs, records, a.grid) }));
}

export interface GenerateSummary {
  out: string;
  prompts: number;
  images: number;
  seconds: number;
  image_tokens_per_s: number;
  backend: string;
  checkpoint: string;
}

/** The whole command; resolves to the summary it prints. */
export async function runGenerate(a: GenerateArgs, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<GenerateSummary> {
  samplingOptions(a, 't2i');
  if (!Number.isInteger(a.batch) || a.batch < 1) throw new UserError(`--batch must be a positive integer (prompts per forward), got ${a.batch}`);
  const items = await promptItems(a);
  const { runtime, backend } = await startRuntime(a, log);
  const started = performance.now();
  let tokens = 0;
  let images = 0;
  const bar = tokenProgress(a.progress, 'generate');
  try {
    const opts = samplingOptions(a, 't2i', undefined, { generation: runtime.generation });
    log(samplingNote(opts));
    // Every prompt is checked against the position budget before the first image is drawn.
    for (const it of items) {
      try {
        checkPositionBudget(runtime.model.config, runtime.templates.t2iPrefix(it.prompt).length, `prompt ${it.index + 1} ("${it.prompt.slice(0, 40)}")`);
      } catch (e) {
        throw asUserError(e);
      }
    }
    await fs.mkdir(a.out, { recursive: true });
    for (let i = 0; i < items.length; i += a.batch) {
      const group = items.slice(i, i + a.batch);
      const t0 = performance.now();
      const note = `prompts ${i + 1}-${i + group.length} of ${items.length}`;
      const res = await generateT2I(
        runtime.model,
        runtime.templates,
        group.map((g) => ({ prompt: g.prompt, count: a.n, index: g.index })),
        { ...opts, onProgress: (p) => bar.update(p, note) },
      ).catch((e: unknown) => {
        throw asUserError(e);
      });
      const pngs = await runtime.decode(res.ids.flat());
      const seconds = (performance.now() - t0) / 1000;
      for (let j = 0; j < group.length; j++) {
        const mine = pngs.slice(j * a.n, (j + 1) * a.n);
        const records = mine.map((_, s): SampleRecord => ({
          prompt: group[j].prompt,
          seed: a.seed,
          prompt_index: group[j].index,
          sample_index: s,
          cfg: opts.cfg,
          temperature: opts.temperature,
          ...(opts.topK ? { top_k: opts.topK } : {}),
          ...(opts.topP ? { top_p: opts.topP } : {}),
          checkpoint: runtime.source,
          backend,
          seconds: Number(seconds.toFixed(3)),
        }));
        await group[j].write(mine, records);
      }
      tokens += res.stats.samples * (res.ids[0]?.[0]?.length ?? 0);
      images += pngs.length;
      if (!a.progress || !process.stderr.isTTY) log(`${note}: ${pngs.length} images in ${seconds.toFixed(1)}s (${res.stats.tokensPerSecond.toFixed(1)} image tokens/s)`);
    }
  } finally {
    bar.stop();
    runtime.dispose();
  }
  const seconds = (performance.now() - started) / 1000;
  return { out: path.resolve(a.out), prompts: items.length, images, seconds, image_tokens_per_s: seconds > 0 ? tokens / seconds : 0, backend, checkpoint: runtime.source };
}

export const generateCommand: CommandModule<object, GenerateArgs> = {
  command: 'generate',
  describe: 'Text-to-image with classifier-free guidance: PNGs with sidecar JSON, or the GenEval / DPG-Bench layouts',
  builder: (y) =>
    samplingFlags(y)
      .option('prompt', { type: 'string', describe: 'one prompt' })
      .option('prompts', { type: 'string', describe: 'file of prompts, one per line (or JSONL with "prompt")' })
      .option('geneval', { type: 'string', describe: 'GenEval evaluation_metadata.jsonl: write the GenEval folder layout' })
      .option('dpg', { type: 'string', describe: 'DPG-Bench prompts folder (<id>.txt): write 2x2 grids <id>.png' })
      .option('out', { type: 'string', demandOption: true, describe: 'output directory' })
      .option('batch', { type: 'number', default: 1, describe: 'prompts sampled together (left-padded rows)' })
      .option('grid', { type: 'boolean', default: true, describe: 'also write grid.png per prompt' }) as unknown as Argv<GenerateArgs>,
  handler: async (a) => {
    const summary = await runGenerate(a);
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  },
};
