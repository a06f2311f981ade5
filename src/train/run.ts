/**
 * `janus4o train`: one pipeline for every dataset, read top to bottom like nanoGPT's train.py.
 *
 *   config -> join the data-parallel job -> backend -> dataset plugin prepares its data -> starting model and its
 *   tokenizer -> VQ-encoded shards (cached) -> held-out split -> Trainer (resumed when asked) -> held-out loss
 *   before -> train -> held-out loss after -> the plugin's after-run hook -> result.
 *
 * The dataset plugin (train/dataset.ts) is the only place where a dataset differs; ShareGPT-4o-Image is built in.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../backend';
import type { Communicator } from '../distributed/collectives';
import { readDistEnv } from '../distributed/env';
import { initDistributed } from '../distributed/init';
import { PromptIds, TokenSample } from '../data/batch';
import { promptIds } from '../data/prompt_ids';
import { formatReport, readShareGPT4o } from '../data/sharegpt4o';
import { INDEX_FILE, ShardDataset, prepareShards } from '../data/shards';
import { splitHeldOut } from '../data/split';
import { findLatestCheckpoint, loadCheckpoint, resolveCheckpoint } from '../io/checkpoint';
import { checkpointGeneration } from '../io/model_folder';
import { imageTokenCount } from '../model/config';
import { Janus4o } from '../model/janus';
import { loadImage } from '../tokenizer/image';
import { TrainConfig, checkConfigPaths, configHash } from './config';
import { DatasetPlugin, ModelContext, RunContext, datasetFor } from './dataset';
import { ConditionUse, conditionUse, formatConditionUse } from './evaluate';
import { checkResumeConfig } from './resume';
import { checkBackendFits, loadStartingModel } from './starting_model';
import { StepLog, StepProgress, Trainer, TrainingSet, checkResumeWorld } from './trainer';

export interface RunOptions {
  /** Config file the config came from (for messages). */
  source: string;
  /** 'auto' resumes from the newest checkpoint in checkpoint.dir when there is one; a path resumes from it. */
  resume?: string | null;
  /** Config keys allowed to differ from the checkpoint's on resume (e.g. train.lr). */
  allowChanges?: readonly string[];
  /** The plugin of cfg.data.kind; ShareGPT-4o-Image's is built in. */
  dataset?: DatasetPlugin;
  /** Let a model of 1B+ parameters train on wasm or cpu (refused by default: hours per step). */
  allowSlowBackend?: boolean;
  log?: (line: string) => void;
  /** Every optimizer step (rank 0), with the run's total step count. */
  onStep?: (s: StepLog, progress: StepProgress) => void;
  /** Polled after every step; true stops the run with a checkpoint. */
  shouldStop?: () => boolean;
}

export interface RunResult {
  checkpoint: string | null;
  steps: number;
  heldoutBefore: number | null;
  heldoutAfter: number | null;
  /** Nats per image taken from the prompt / the edit input's VQ block, on the held-out records (null: not measured). */
  conditionUseBefore: ConditionUse | null;
  conditionUseAfter: ConditionUse | null;
  seconds: number;
}

/**
 * Everything about a config that can be checked before any work or worker starts: the dataset plugin's sections
 * (defaults filled), the folders it reads, and whether the backend can carry the model. Returns the resolved config.
 */
export function prepareRunConfig(cfg: TrainConfig, o: Pick<RunOptions, 'source' | 'dataset' | 'allowSlowBackend'>): { cfg: TrainConfig; dataset: DatasetPlugin } {
  const dataset = datasetFor(cfg, o.dataset, o.source);
  const resolved = dataset.resolveConfig(cfg, o.source);
  checkConfigPaths(resolved, o.source);
  dataset.checkPaths?.(resolved, o.source);
  checkBackendFits(resolved, resolved.backend, o.source, o.allowSlowBackend ?? false);
  return { cfg: resolved, dataset };
}

export async function runTraining(config: TrainConfig, o: RunOptions): Promise<RunResult> {
  const t0 = Date.now();
  const { cfg, dataset } = prepareRunConfig(config, o);
  // A worker of a data-parallel job (our launcher, torchrun-style launchers or Slurm) joins it first, so a
  // misconfigured job fails before any data work.
  const dist = readDistEnv(process.env);
  let comm: Communicator | null = null;
  if (dist.worldSize > 1) {
    // The fingerprint ignores where checkpoints go and the backend; everything that shapes training must match.
    const shared = { ...cfg, checkpoint: undefined, backend: undefined };
    comm = (await initDistributed({ configFingerprint: configHash(shared as unknown as TrainConfig) })).comm;
  }
  const rank0 = (comm?.rank ?? 0) === 0;
  // Only rank 0 talks, except for warnings and errors that name their rank.
  const log = rank0 ? (o.log ?? (() => undefined)) : () => undefined;
  try {
    return await runOnRank({ cfg, source: o.source, log }, dataset, o, comm, t0);
  } finally {
    await comm?.close();
  }
}

async function runOnRank(ctx: RunContext, dataset: DatasetPlugin, o: RunOptions, comm: Communicator | null, t0: number): Promise<RunResult> {
  const { cfg, log } = ctx;
  const rank0 = (comm?.rank ?? 0) === 0;
  const backend = await initBackend(cfg.backend, log);
  checkBackendFits(cfg, backend.name, ctx.source, o.allowSlowBackend ?? false);

  // Data the dataset writes itself (rank 0; the others wait), then the model and the VQ codes of every image.
  if (rank0) await dataset.prepare?.(ctx);
  await comm?.barrier({ tag: 'data' });
  const { model, tokenizer, sideFiles } = await loadStartingModel(cfg, dataset, ctx);
  const shardDir = await encodeDataset(cfg, model, rank0, log);
  await comm?.barrier({ tag: 'shards' });
  const templates = promptIds(tokenizer, model.config.imagePositions);
  const split = heldOutSplit(cfg, ShardDataset.load(shardDir, path.resolve(cfg.data.root)), model, templates);

  const stop = { requested: false };
  const stopped = () => stop.requested || (o.shouldStop?.() ?? false);
  const trainer = new Trainer(model, cfg, split.train, templates, { log, onStep: o.onStep, shouldStop: stopped, comm: comm ?? undefined }, sideFiles, checkpointGeneration(dataset.generationDefaults?.(cfg), sideFiles));
  const resumeFrom = await resumePoint(cfg, o, log);
  if (resumeFrom) {
    const ck = await loadCheckpoint(resumeFrom);
    const diffs = checkResumeConfig(ck.trainConfig, cfg, o.allowChanges ?? [], resumeFrom);
    checkResumeWorld(ck, cfg, comm?.worldSize ?? 1, o.allowChanges ?? []);
    for (const d of diffs) log(`resume: ${d.key} changed from ${JSON.stringify(d.saved)} to ${JSON.stringify(d.current)}`);
    await trainer.restore(ck);
    if (trainer.step >= trainer.totalSteps) {
      // A finished run: nothing to train, and its measurements were made when it finished.
      log(`resume: the run is complete: ${resumeFrom} is step ${trainer.step} of ${trainer.totalSteps}; nothing to train or measure`);
      model.dispose();
      return { checkpoint: resumeFrom, steps: 0, heldoutBefore: null, heldoutAfter: null, conditionUseBefore: null, conditionUseAfter: null, seconds: (Date.now() - t0) / 1000 };
    }
    log(`resume: continuing from ${resumeFrom} at step ${trainer.step} of ${trainer.totalSteps}`);
  }
  const mctx: ModelContext = { ...ctx, model, templates, tokenizer, resumed: resumeFrom !== null };

  const start = split.held.length && !resumeFrom && rank0 ? await split.measure() : null;
  if (start) log(`held-out image-token loss before training: ${start.loss.toFixed(4)} (${split.held.length} records); condition use: ${formatConditionUse(start.use)}`);
  if (rank0) await dataset.beforeTraining?.(mctx);

  const steps = await withStopSignals(stop, log, () => trainer.run());

  const end = split.held.length && rank0 ? await split.measure() : null;
  const before = start?.loss ?? null;
  if (end) {
    log(`held-out image-token loss after step ${trainer.step}: ${end.loss.toFixed(4)}${before !== null ? ` (${(((before - end.loss) / before) * 100).toFixed(1)}% lower)` : ''}`);
    log(`condition use after step ${trainer.step}: ${formatConditionUse(end.use)}`);
  }
  const latest = await findLatestCheckpoint(cfg.checkpoint.dir);
  const outcome = {
    steps: trainer.step,
    stopped: stopped(),
    checkpoint: latest,
    heldoutBefore: before,
    heldoutAfter: end?.loss ?? null,
    heldoutNote: `${split.held.length} held-out records of ${cfg.data.root}`,
    conditionUseBefore: start?.use ?? null,
    conditionUseAfter: end?.use ?? null,
    wallSeconds: (Date.now() - t0) / 1000,
  };
  if (rank0) await dataset.afterTraining?.(mctx, outcome);
  model.dispose();
  return { checkpoint: latest, steps, heldoutBefore: before, heldoutAfter: outcome.heldoutAfter, conditionUseBefore: outcome.conditionUseBefore, conditionUseAfter: outcome.conditionUseAfter, seconds: (Date.now() - t0) / 1000 };
}

/** Reads the records of data.root and VQ-encodes their images into cached shards (rank 0 writes them); returns their folder. */
async function encodeDataset(cfg: TrainConfig, model: Janus4o, rank0: boolean, log: (l: string) => void): Promise<string> {
  const root = path.resolve(cfg.data.root);
  const { records, report } = await readShareGPT4o({ root, files: cfg.data.files, maxBadFraction: cfg.data.max_bad_fraction });
  if (report.bad.length) log(formatReport(report));
  const fp = await model.weightsFingerprint('gen_vision_model.');
  const shardDir = path.resolve(cfg.data.cache_dir ?? path.join(root, '.janus4o-shards', fp));
  const encodedBefore = fs.existsSync(path.join(shardDir, INDEX_FILE));
  log(`data: ${records.length} records; ${encodedBefore ? `VQ codes cached in ${shardDir}` : `VQ-encoding into ${shardDir} (kept for later runs)`}`);
  const mcfg = model.config;
  if (rank0) {
    await prepareShards({
      records,
      root,
      outDir: shardDir,
      encoder: { imageSize: mcfg.imageSize, tokens: imageTokenCount(mcfg), codebookSize: mcfg.vq.codebookSize, fingerprint: fp, encode: (x) => model.vq.encode(x) },
      loadImage: (file, size) => loadImage(file, { size }),
    });
  }
  return shardDir;
}

/**
 * The training set and the held-out records: the tail of each task (data/split.ts), so condition use measures
 * both the prompt and an edit's input image on mixed data.
 */
function heldOutSplit(cfg: TrainConfig, all: ShardDataset, model: Janus4o, templates: PromptIds) {
  const heldN = Math.min(cfg.data.heldout, Math.floor(all.size / 2));
  const { train: trainIdx, held: heldIdx } = splitHeldOut(Array.from({ length: all.size }, (_, i) => all.meta(i).task), heldN);
  const pixelsOf = async (file: string): Promise<tf.Tensor3D> => {
    const img = await loadImage(file, { size: model.config.imageSize });
    const out = tf.squeeze(img, [0]) as tf.Tensor3D;
    img.dispose();
    return out;
  };
  const train: TrainingSet = {
    size: trainIdx.length,
    sample: (i) => all.sample(trainIdx[i]),
    sourceImage: (i) => pixelsOf(all.sourcePath(trainIdx[i])),
  };
  const sourceOf = new Map<TokenSample, string>();
  const held = heldIdx.map((i) => {
    const s = all.sample(i);
    if (s.task === 'edit') sourceOf.set(s, all.sourcePath(i));
    return s;
  });
  return {
    train,
    held,
    measure: async () => {
      const { heldout, use } = await conditionUse(model, held, templates, async (s) => (sourceOf.has(s) ? pixelsOf(sourceOf.get(s)!) : null));
      return { loss: heldout.loss, use };
    },
  };
}

/** The checkpoint to continue from: --resume auto (the newest, if any) or a given one. */
async function resumePoint(cfg: TrainConfig, o: RunOptions, log: (l: string) => void): Promise<string | null> {
  if (o.resume === 'auto') return findLatestCheckpoint(cfg.checkpoint.dir, log);
  if (o.resume) return resolveCheckpoint(o.resume, cfg.checkpoint.dir, log);
  return null;
}

/** Runs `body` with SIGINT / SIGTERM turned into a request to stop after the current step (with a checkpoint). */
async function withStopSignals<T>(stop: { requested: boolean }, log: (l: string) => void, body: () => Promise<T>): Promise<T> {
  const onSignal = (sig: string) => {
    if (stop.requested) return;
    stop.requested = true;
    log(`${sig}: finishing the current step, then writing a checkpoint`);
  };
  const sigint = () => onSignal('SIGINT');
  const sigterm = () => onSignal('SIGTERM');
  process.on('SIGINT', sigint);
  process.on('SIGTERM', sigterm);
  try {
    return await body();
  } finally {
    process.off('SIGINT', sigint);
    process.off('SIGTERM', sigterm);
  }
}
