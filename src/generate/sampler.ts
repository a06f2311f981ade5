/**
 * Image-token sampling with classifier-free guidance (janus-spec 7.1 T2I, 8.4 edits).
 *
 * Every sample (one image of one prompt) owns k adjacent CFG rows (cfg.ts) and its own seeded random stream,
 * keyed by (seed, job, image index). So the ids of a sample do not depend on which other samples share its
 * forward pass, how many rows a chunk holds, or whether the KV cache is used: chunking for memory changes
 * nothing but the speed.
 *
 * The CFG rows come from the training code's own builders (`uncondIds`, `editRowVariant` in data/batch.ts),
 * so the condition the sampler drops is exactly the one the model learned to see dropped.
 */
import * as tf from '@tensorflow/tfjs-core';
import { EditPrefix, PromptIds, editRowVariant, uncondIds } from '../data/batch';
import { ImagePositions, consecutivePositions, followingImagePositions, isReference, prefixThenImages } from '../model/positions';
import { Rng, makeRng } from '../data/rng';
import { JanusConfig, headDim, imageTokenCount } from '../model/config';
import type { ForwardOptions, ForwardOutput } from '../model/janus';
import type { KVCache } from '../model/kv_cache';
import type { SequenceInput } from '../model/sequence';
import { DEFAULT_CFG, DEFAULT_CFG2, DrawOptions, GuidanceMode, branchCount, checkSamplingOptions, guideLogits, sampleToken } from './cfg';

/** What sampling needs of a model; Janus4o provides it. */
export interface ImageTokenModel {
  readonly config: JanusConfig;
  forward(input: SequenceInput, opts?: ForwardOptions): ForwardOutput;
  newCache(batch: number): KVCache;
  stepImageTokens(cache: KVCache, ids: tf.Tensor1D | ArrayLike<number>): tf.Tensor2D;
}

/** One CFG row of a sample before left padding; block starts are row-local. */
export interface BranchRow {
  ids: number[];
  /** The edit X block: image-token embeddings of the source VQ ids. */
  gen?: { start: number; ids: ArrayLike<number> };
  /** The edit E block: semantic features [n, D] (aligner(SigLIP(source))). Owned by the caller. */
  features?: { start: number; embeds: tf.Tensor2D };
  /** Position ids of `ids` where they are not 0..L-1 (edit rows of a model with imagePositions). */
  positions?: number[];
}

export interface SampleRows {
  rows: BranchRow[];
  rng: Rng;
}

export interface SamplingOptions {
  /** w (T2I) / w1 (edits). Default 5. */
  cfg?: number;
  /** w2 (edits). Default 5. */
  cfg2?: number;
  /** Default 1. 0 = greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** Base seed of the per-sample streams. Default 0. */
  seed?: string | number;
  /** Decode with the KV cache (default) or recompute the whole sequence every step (reference check). */
  useCache?: boolean;
  /** Most CFG rows in one forward; default: what memoryBudgetBytes allows. */
  maxRows?: number;
  /** Estimated working memory per chunk (KV cache + prefill activations). Default 1 GiB. */
  memoryBudgetBytes?: number;
  onProgress?: (p: SamplingProgress) => void;
}

export interface SamplingProgress {
  tokens: number;
  totalTokens: number;
  seconds: number;
  tokensPerSecond: number;
}

export interface SamplingStats {
  samples: number;
  chunks: number;
  rowsPerChunk: number;
  /** Largest KV cache held (0 without the cache). */
  peakCacheBytes: number;
  seconds: number;
  tokensPerSecond: number;
}

export interface SamplingResult {
  /** Image ids per sample, in input order, each of length imageTokenCount(config). */
  ids: number[][];
  stats: SamplingStats;
}

const DEFAULT_BUDGET = 1 << 30;

/** Bytes of a float32 KV cache holding `rows` rows of `length` positions. */
export function kvCacheBytes(cfg: JanusConfig, rows: number, length: number): number {
  return cfg.llm.numLayers * 2 * rows * cfg.llm.numKvHeads * headDim(cfg.llm) * length * 4;
}

/** Working-memory estimate of one row: its KV cache at the final length plus the prefill's largest activations. */
export function bytesPerRow(cfg: JanusConfig, prefixLength: number): number {
  const l = cfg.llm;
  const total = prefixLength + imageTokenCount(cfg);
  const scores = l.numHeads * prefixLength * total * 4 * 2;
  const activations = prefixLength * (3 * l.intermediateSize + 8 * l.hiddenSize) * 4;
  return kvCacheBytes(cfg, 1, total) + scores + activations;
}

/** Samples per forward so that a chunk's rows fit the budget; never fewer than one sample. */
export function samplesPerChunk(cfg: JanusConfig, prefixLength: number, rowsPerSample: number, opts: Pick<SamplingOptions, 'maxRows' | 'memoryBudgetBytes'>): number {
  const maxRows = opts.maxRows ?? Math.floor((opts.memoryBudgetBytes ?? DEFAULT_BUDGET) / bytesPerRow(cfg, prefixLength));
  return Math.max(1, Math.floor(maxRows / rowsPerSample));
}

/**
 * Prefix + generated image tokens must fit the position table. `prefix` is the prefix's length, or its position
 * ids where the model numbers them itself (edit rows with imagePositions).
 */
export function checkPositionBudget(cfg: JanusConfig, prefix: number | readonly number[], what: string): void {
  const n = imageTokenCount(cfg);
  const max = cfg.llm.maxPositionEmbeddings;
  const length = typeof prefix === 'number' ? prefix : prefix.length;
  const last = typeof prefix === 'number' ? prefix - 1 : prefix[prefix.length - 1];
  const needed = followingImagePositions(last, n, cfg.imagePositions)[n - 1] + 1;
  if (needed > max) {
    throw new RangeError(`${what} is ${length} tokens; with ${n} image tokens that is ${needed} positions, over the model's budget of ${max} (max_position_embeddings). Shorten it.`);
  }
}

/** The stream of image `image` of job `job`. */
export function sampleRng(seed: string | number, job: number, image: number): Rng {
  return makeRng(`janus4o:sample:${seed}:${job}:${image}`);
}

/** T2I rows [cond, uncond] for a tokenised prefix. */
export function t2iRows(prefix: number[], pad: number): BranchRow[] {
  return [{ ids: prefix.slice() }, { ids: uncondIds(prefix, pad) }];
}

/** Edit rows [full, part, uncond]: E + X, E + pad X block, neither. */
export function editRows(prefix: EditPrefix, sourceIds: ArrayLike<number>, features: tf.Tensor2D, pad: number): BranchRow[] {
  const n = prefix.xBlock[1] - prefix.xBlock[0];
  if (sourceIds.length !== n) throw new Error(`edit: ${sourceIds.length} source image ids for an X block of ${n}`);
  if (features.shape[0] !== prefix.eBlock[1] - prefix.eBlock[0]) throw new Error(`edit: ${features.shape[0]} source features for an E block of ${prefix.eBlock[1] - prefix.eBlock[0]}`);
  return (['full', 'part', 'uncond'] as const).map((v) => {
    const r = editRowVariant(prefix, v, pad);
    return {
      ids: r.ids,
      gen: r.xBlock ? { start: r.xBlock[0], ids: sourceIds } : undefined,
      features: r.eBlock ? { start: r.eBlock[0], embeds: features } : undefined,
      ...(r.positions ? { positions: r.positions } : {}),
    };
  });
}

/** Left-padded model input for the rows of one chunk, `extra` generated tokens appended (recompute mode). */
function chunkInput(rows: readonly BranchRow[], pad: number, generated: readonly number[][], k: number, features: tf.Tensor2D | null, scheme: ImagePositions | undefined): { input: SequenceInput; last: number[] } {
  const extra = generated.length ? generated[0].length : 0;
  const base = Math.max(...rows.map((r) => r.ids.length));
  const width = base + extra;
  const textIds: number[][] = [];
  const attentionMask: number[][] = [];
  const genPositions: number[] = [];
  const genIds: number[] = [];
  const featurePositions: number[] = [];
  const last: number[] = [];
  const explicit = !isReference(scheme) || rows.some((row) => row.positions);
  const positionIds: number[][] = [];
  rows.forEach((row, r) => {
    const shift = base - row.ids.length;
    const at = r * width + shift;
    textIds.push([...new Array<number>(shift).fill(pad), ...row.ids, ...new Array<number>(extra).fill(pad)]);
    attentionMask.push([...new Array<number>(shift).fill(0), ...new Array<number>(row.ids.length + extra).fill(1)]);
    if (explicit) {
      positionIds.push([...new Array<number>(shift).fill(0), ...prefixThenImages(row.positions ?? consecutivePositions(row.ids.length), extra, scheme)]);
    }
    if (row.gen) {
      for (let i = 0; i < row.gen.ids.length; i++) {
        genPositions.push(at + row.gen.start + i);
        genIds.push(row.gen.ids[i]);
      }
    }
    if (row.features) {
      for (let i = 0; i < row.features.embeds.shape[0]; i++) featurePositions.push(at + row.features.start + i);
    }
    for (let j = 0; j < extra; j++) {
      genPositions.push(r * width + base + j);
      genIds.push(generated[Math.floor(r / k)][j]);
    }
    last.push(r * width + width - 1);
  });
  const input: SequenceInput = { textIds, attentionMask };
  if (explicit) input.positionIds = positionIds;
  if (genPositions.length) input.genTokens = { positions: genPositions, ids: genIds };
  if (features) input.imageEmbeds = { positions: featurePositions, embeds: features };
  return { input, last };
}

/**
 * Samples image tokens for prepared CFG rows: `samples[s].rows` holds the k rows of `mode`, all sharing the
 * sampled id at every step. Returns one id list per sample.
 */
export async function sampleImageTokens(model: ImageTokenModel, mode: GuidanceMode, samples: readonly SampleRows[], pad: number, opts: SamplingOptions = {}): Promise<SamplingResult> {
  const k = branchCount(mode);
  const weights = { cfg: opts.cfg ?? DEFAULT_CFG, cfg2: opts.cfg2 ?? DEFAULT_CFG2 };
  const draw: DrawOptions = { temperature: opts.temperature ?? 1, topK: opts.topK, topP: opts.topP };
  checkSamplingOptions(mode, weights, draw);
  for (const s of samples) if (s.rows.length !== k) throw new Error(`${mode} samples need ${k} CFG rows, got ${s.rows.length}`);
  const cfg = model.config;
  const n = imageTokenCount(cfg);
  const v = cfg.vq.codebookSize;
  const maxPrefix = Math.max(0, ...samples.map((s) => Math.max(...s.rows.map((r) => r.ids.length))));
  const scheme = cfg.imagePositions;
  for (const s of samples) for (const r of s.rows) checkPositionBudget(cfg, r.positions ?? r.ids.length, 'the prompt');
  const perChunk = samplesPerChunk(cfg, maxPrefix, k, opts);
  const total = samples.length * n;
  const started = performance.now();
  let done = 0;
  let peak = 0;
  let chunks = 0;
  const tick = () => {
    done++;
    if (!opts.onProgress) return;
    const seconds = (performance.now() - started) / 1000;
    opts.onProgress({ tokens: done, totalTokens: total, seconds, tokensPerSecond: seconds > 0 ? done / seconds : 0 });
  };
  const out: number[][] = [];
  for (let c = 0; c < samples.length; c += perChunk) {
    const chunk = samples.slice(c, c + perChunk);
    const rows = chunk.flatMap((s) => s.rows);
    const generated: number[][] = chunk.map(() => []);
    // The chunk's E-block features in row order, matching the positions chunkInput lists.
    const featureParts = rows.filter((r) => r.features).map((r) => r.features!.embeds);
    const features = featureParts.length ? tf.concat(featureParts, 0) : null;
    // Reads back this step's guided logits, draws one id per sample, returns them per row.
    const drawStep = async (guided: tf.Tensor2D): Promise<number[]> => {
      const data = (await guided.data()) as Float32Array;
      guided.dispose();
      const ids = chunk.map((s, j) => sampleToken(data.subarray(j * v, (j + 1) * v), draw, s.rng));
      ids.forEach((id, j) => generated[j].push(id));
      ids.forEach(tick);
      return rows.map((_, r) => ids[Math.floor(r / k)]);
    };
    try {
      if (opts.useCache === false) {
        for (let t = 0; t < n; t++) {
          const guided = tf.tidy(() => {
            const { input, last } = chunkInput(rows, pad, generated, k, features, scheme);
            return guideLogits(model.forward(input, { imageLogitsAt: last }).imageLogits!, mode, weights);
          });
          await drawStep(guided);
        }
      } else {
        const cache = model.newCache(rows.length);
        try {
          let guided = tf.tidy(() => {
            const { input, last } = chunkInput(rows, pad, [], k, features, scheme);
            return guideLogits(model.forward(input, { cache, imageLogitsAt: last }).imageLogits!, mode, weights);
          });
          for (let t = 0; t < n; t++) {
            const rowIds = await drawStep(guided);
            // The n-th token is never fed back (janus-spec 7.1).
            if (t === n - 1) break;
            guided = tf.tidy(() => guideLogits(model.stepImageTokens(cache, rowIds), mode, weights));
          }
          peak = Math.max(peak, cache.bytes);
        } finally {
          cache.dispose();
        }
      }
    } finally {
      features?.dispose();
    }
    out.push(...generated);
    chunks++;
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    ids: out,
    stats: { samples: samples.length, chunks, rowsPerChunk: Math.min(perChunk, samples.length) * k, peakCacheBytes: peak, seconds, tokensPerSecond: seconds > 0 ? total / seconds : 0 },
  };
}

/** What keys a job's random streams: its index in the whole run (default: its position in this call). */
export interface Keyed {
  index?: number;
}

export interface T2IJob extends Keyed {
  prompt: string;
  /** Images for this prompt (parallel rows). */
  count: number;
}

export interface EditJob extends Keyed {
  instruction: string;
  /** VQ ids of the source image (the X block). */
  sourceIds: ArrayLike<number>;
  /** aligner(SigLIP(source)) [n, D] (the E block). Owned by the caller. */
  sourceFeatures: tf.Tensor2D;
  count: number;
}

function checkCount(count: number, job: number): void {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`job ${job}: the number of images must be a positive integer, got ${count}`);
}

/** Templates built for another position scheme than the model's would sample from positions it never saw. */
function checkTemplates(model: ImageTokenModel, templates: PromptIds): void {
  const want = isReference(model.config.imagePositions) ? undefined : model.config.imagePositions;
  if (JSON.stringify(want) !== JSON.stringify(templates.imagePositions)) {
    throw new Error(`prompt templates number image positions ${JSON.stringify(templates.imagePositions ?? 'as the reference')} but the model ${JSON.stringify(want ?? 'as the reference')}: build them with promptIds(tokenizer, model.config.imagePositions)`);
  }
}

/** Text-to-image: ids[job][image] of every prompt, 2-branch CFG. */
export async function generateT2I(model: ImageTokenModel, templates: PromptIds, jobs: readonly T2IJob[], opts: SamplingOptions = {}): Promise<{ ids: number[][][]; stats: SamplingStats }> {
  checkTemplates(model, templates);
  const seed = opts.seed ?? 0;
  const samples: SampleRows[] = [];
  jobs.forEach((job, j) => {
    checkCount(job.count, j);
    const prefix = templates.t2iPrefix(job.prompt);
    checkPositionBudget(model.config, prefix.length, `prompt ${j + 1} ("${job.prompt.slice(0, 40)}")`);
    for (let i = 0; i < job.count; i++) samples.push({ rows: t2iRows(prefix, templates.pad), rng: sampleRng(seed, job.index ?? j, i) });
  });
  const res = await sampleImageTokens(model, 't2i', samples, templates.pad, opts);
  return { ids: regroup(res.ids, jobs), stats: res.stats };
}

/** Edits: ids[job][image], 3-branch CFG [full, part, uncond]. */
export async function generateEdits(model: ImageTokenModel, templates: PromptIds, jobs: readonly EditJob[], opts: SamplingOptions = {}): Promise<{ ids: number[][][]; stats: SamplingStats }> {
  checkTemplates(model, templates);
  const seed = opts.seed ?? 0;
  const n = imageTokenCount(model.config);
  const samples: SampleRows[] = [];
  jobs.forEach((job, j) => {
    checkCount(job.count, j);
    const prefix = templates.editPrefix(job.instruction, n);
    checkPositionBudget(model.config, prefix.positions ?? prefix.ids.length, `edit instruction ${j + 1} ("${job.instruction.slice(0, 40)}") with its two image blocks`);
    const rows = editRows(prefix, job.sourceIds, job.sourceFeatures, templates.pad);
    for (let i = 0; i < job.count; i++) samples.push({ rows, rng: sampleRng(seed, job.index ?? j, i) });
  });
  const res = await sampleImageTokens(model, 'edit', samples, templates.pad, opts);
  return { ids: regroup(res.ids, jobs), stats: res.stats };
}

function regroup(flat: number[][], jobs: readonly { count: number }[]): number[][][] {
  const out: number[][][] = [];
  let i = 0;
  for (const j of jobs) {
    out.push(flat.slice(i, i + j.count));
    i += j.count;
  }
  return out;
}
