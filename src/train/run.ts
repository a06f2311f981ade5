/**
 * `janus4o train`: from a config to a trained checkpoint. Prepares everything a run needs (synthesises
 * ShapeWorld data when asked, builds or loads the tokenizer and the model, VQ-encodes the dataset into cached
 * shards), then runs the Trainer, resuming from a checkpoint when asked, and reports the held-out loss before
 * and after.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../backend';
import { UserError } from '../cli/errors';
import { TokenSample } from '../data/batch';
import { promptIds } from '../data/prompt_ids';
import { splitHeldOut } from '../data/split';
import { readShareGPT4o, formatReport } from '../data/sharegpt4o';
import { INDEX_FILE, ShardDataset, prepareShards } from '../data/shards';
import { SHAPEWORLD_VOCAB } from '../data/shapeworld';
import { synthesize } from '../data/synth';
import { presetConfig, imageTokenCount } from '../model/config';
import { readHfConfig } from '../io/hf_config';
import { loadIntoStore } from '../io/pretrained';
import { datasetSceneKeys } from '../generate/eval';
import { loadModelFolder } from '../generate/runtime';
import { Janus4o } from '../model/janus';
import { loadImage } from '../tokenizer/image';
import { WordTokenizer } from '../tokenizer/word';
import { findLatestCheckpoint, loadCheckpoint, resolveCheckpoint, checkResumeConfig } from './checkpoint';
import { TrainConfig, checkConfigPaths, configHash, synthDefaults } from './config';
import { initDistributed } from './distributed/init';
import { readDistEnv } from './distributed/env';
import type { Communicator } from './distributed/collectives';
import { ConditionUse, conditionUse, formatConditionUse } from './evaluate';
import { StepLog, Trainer, TrainingSet } from './trainer';
import { BASE_DIR, Showcase, loadShowcase, saveShowcase, showcase, showcaseKey, writeRunReport } from './run_report';

function formatShowcase(s: Showcase): string {
  const pct = (x: number | null) => (x === null ? "n/a" : `${(x * 100).toFixed(1)}%`);
  return `ShapeEval T2I overall ${pct(s.summary.t2i.overall)}${s.summary.edit ? `, edit overall ${pct(s.summary.edit.overall)}` : ''} (${s.summary.seconds.toFixed(0)} s)`;
}

export interface RunOptions {
  /** Config file the config came from (for messages). */
  source: string;
  /** 'auto' resumes from the newest checkpoint in checkpoint.dir when there is one; a path resumes from it. */
  resume?: string | null;
  /** Config keys allowed to differ from the checkpoint's on resume (e.g. train.lr). */
  allowChanges?: readonly string[];
  log?: (line: string) => void;
  onStep?: (s: StepLog) => void;
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

/** The ShapeWorld tokenizer: built from the generator's closed vocabulary, stored beside the data. */
function shapeworldTokenizer(root: string): { tok: WordTokenizer; file: string } {
  const file = path.join(root, 'tokenizer.json');
  if (fs.existsSync(file)) return { tok: WordTokenizer.load(file), file };
  const tok = WordTokenizer.build(SHAPEWORLD_VOCAB);
  fs.writeFileSync(file, tok.toJSON());
  return { tok, file };
}

/**
 * The model a run starts from: a pretrained folder (with its own tokenizer), or a preset initialised from the
 * seed, optionally with a trained VQ tokenizer (model.vq_pretrained) in place of the random one.
 */
async function buildModel(cfg: TrainConfig, root: string, rank0: boolean, log: (l: string) => void): Promise<{ model: Janus4o; tok: WordTokenizer; tokFile: string }> {
  if (cfg.model.pretrained) {
    // Position ids are not weights, so they are the one architecture setting a pretrained model can take anew.
    const { imagePositions, ...others } = cfg.model.overrides ?? {};
    const fixed = Object.keys(others);
    if (fixed.length > 0) throw new UserError(`model.overrides.${fixed[0]} cannot change model.pretrained's architecture (its config.json decides it); only model.overrides.imagePositions applies to a pretrained model.`);
    const { model, dir } = await loadModelFolder(cfg.model.pretrained, { imagePositions });
    if (imagePositions) log(`model: image positions from model.overrides: ${imagePositions.stride} ids apart, edit targets ${imagePositions.editTargetOffset ?? 'not aligned'} ids after their input`);
    const tokFile = path.join(dir, 'tokenizer.json');
    try {
      if (!fs.existsSync(tokFile)) throw new UserError(`model.pretrained ${dir} has no tokenizer.json; a ShapeWorld run needs the word-level tokenizer the model was trained with.`);
      const tok = WordTokenizer.load(tokFile);
      if (tok.vocabSize > model.config.llm.vocabSize) throw new UserError(`${tokFile} has ${tok.vocabSize} tokens but the model's text vocabulary is ${model.config.llm.vocabSize}.`);
      log(`model: ${dir} (${(model.parameterCount() / 1e6).toFixed(2)}M parameters)`);
      return { model, tok, tokFile };
    } catch (e) {
      model.dispose();
      throw e;
    }
  }
  const { tok, file: tokFile } = rank0 ? shapeworldTokenizer(root) : { tok: WordTokenizer.load(path.join(root, 'tokenizer.json')), file: path.join(root, 'tokenizer.json') };
  const preset = cfg.model.preset ?? 'tiny';
  const vqDir = cfg.model.vq_pretrained ? path.resolve(cfg.model.vq_pretrained) : null;
  const vqCfg = vqDir ? readHfConfig(path.join(vqDir, 'config.json')) : null;
  const overrides = cfg.model.overrides ?? {};
  const mcfg = presetConfig(preset, {
    ...overrides,
    ...(vqCfg ? { imageSize: vqCfg.imageSize, vq: vqCfg.vq } : {}),
    llm: { ...overrides.llm, vocabSize: Math.max(tok.vocabSize, 8) },
  });
  const model = Janus4o.create(mcfg, { seed: cfg.train.seed, init: cfg.model.init });
  if (cfg.model.init !== 'reference') log(`model: ${cfg.model.init} initialisation (docs/init-scale.md)`);
  if (vqDir) {
    try {
      loadIntoStore(model.params, vqDir, { allowMissing: (name) => !name.startsWith('gen_vision_model.') });
    } catch (e) {
      model.dispose();
      throw new UserError(`model.vq_pretrained ${vqDir}: ${(e as Error).message}`);
    }
    log(`model: ${preset} with the VQ tokenizer of ${vqDir} (codebook ${mcfg.vq.codebookSize})`);
  }
  if (mcfg.imagePositions) log(`model: image tokens ${mcfg.imagePositions.stride} position ids apart, edit targets ${mcfg.imagePositions.editTargetOffset ?? 'not aligned'} ids after their input (RoPE base ${mcfg.llm.ropeTheta})`);
  return { model, tok, tokFile };
}

export async function runTraining(cfg: TrainConfig, o: RunOptions): Promise<RunResult> {
  const t0 = Date.now();
  // A worker of a data-parallel job (started by our launcher, torchrun-style launchers or Slurm) joins it first,
  // so a misconfigured job fails before any data work.
  const dist = readDistEnv(process.env);
  let comm: Communicator | null = null;
  if (dist.worldSize > 1) {
    // The fingerprint ignores where checkpoints go and the backend; everything that shapes training must match.
    const shared = { ...cfg, checkpoint: undefined, backend: undefined };
    comm = (await initDistributed({ configFingerprint: configHash(shared as unknown as TrainConfig) })).comm;
  }
  const rank = comm?.rank ?? 0;
  const baseLog = o.log ?? (() => undefined);
  // Only rank 0 talks, except for warnings and errors that name their rank.
  const log = rank === 0 ? baseLog : () => undefined;
  try {
    return await runOnRank(cfg, o, comm, log, t0);
  } finally {
    await comm?.close();
  }
}

async function runOnRank(cfg: TrainConfig, o: RunOptions, comm: Communicator | null, log: (l: string) => void, t0: number): Promise<RunResult> {
  await initBackend(cfg.backend, log);
  checkConfigPaths(cfg, o.source);
  if (cfg.data.kind !== 'shapeworld') {
    throw new UserError(`data.kind ${cfg.data.kind} in ${o.source}: training on ShareGPT-4o-Image needs model.pretrained with its tokenizer.json; see README "Training on real weights".`);
  }
  const root = path.resolve(cfg.data.root);
  // Rank 0 synthesises and prepares shared data; the others wait for it.
  const rank0 = (comm?.rank ?? 0) === 0;
  if (rank0 && !fs.existsSync(path.join(root, 'text_to_image.json'))) {
    const s = cfg.data.synth ?? synthDefaults();
    log(`data: synthesising ShapeWorld into ${root} (${s.t2i} T2I + ${s.edit} edits, ${s.size} px, seed ${s.seed})`);
    await synthesize({ out: root, t2i: s.t2i, edit: s.edit, size: s.size, seed: s.seed, captionNoise: s.caption_noise, maxObjects: s.max_objects, captions: s.captions });
  }
  // The tokenizer file too: the other ranks read it as soon as they pass the barrier.
  if (rank0 && !cfg.model.pretrained) shapeworldTokenizer(root);
  await comm?.barrier({ tag: 'data' });
  const { model, tok, tokFile } = await buildModel(cfg, root, rank0, log);
  const mcfg = model.config;
  const n = imageTokenCount(mcfg);

  const { records, report } = await readShareGPT4o({ root, maxBadFraction: cfg.data.max_bad_fraction });
  if (report.bad.length) log(formatReport(report));
  const fp = await model.weightsFingerprint('gen_vision_model.');
  const shardDir = path.resolve(cfg.data.cache_dir ?? path.join(root, '.janus4o-shards', fp));
  const encodedBefore = fs.existsSync(path.join(shardDir, INDEX_FILE));
  log(`data: ${records.length} records; ${encodedBefore ? `VQ codes cached in ${shardDir}` : `VQ-encoding into ${shardDir} (kept for later runs)`}`);
  if (rank0) await prepareShards({
    records,
    root,
    outDir: shardDir,
    encoder: { imageSize: mcfg.imageSize, tokens: n, codebookSize: mcfg.vq.codebookSize, fingerprint: fp, encode: (x) => model.vq.encode(x) },
    loadImage: (file, size) => loadImage(file, { size }),
  });
  await comm?.barrier({ tag: 'shards' });
  const all = ShardDataset.load(shardDir, root);
  // Held-out records: the tail of each task (src/data/split.ts), so condition use measures both the prompt and
  // an edit's input image on mixed data.
  const heldN = Math.min(cfg.data.heldout, Math.floor(all.size / 2));
  const { train: trainIdx, held: heldIdx } = splitHeldOut(Array.from({ length: all.size }, (_, i) => all.meta(i).task), heldN);
  const pathOf = new Map<TokenSample, string>();
  const sampleOf = (i: number): TokenSample => {
    const s = all.sample(i);
    if (s.task === 'edit') pathOf.set(s, all.sourcePath(i));
    return s;
  };
  const pixelsOf = async (file: string): Promise<tf.Tensor3D> => {
    const img = await loadImage(file, { size: mcfg.imageSize });
    const out = tf.squeeze(img, [0]) as tf.Tensor3D;
    img.dispose();
    return out;
  };
  const data: TrainingSet = {
    size: trainIdx.length,
    sample: (i) => all.sample(trainIdx[i]),
    sourceImage: (i) => pixelsOf(all.sourcePath(trainIdx[i])),
  };
  const tpl = promptIds(tok, model.config.imagePositions);
  const stop = { requested: false };
  const trainer = new Trainer(model, cfg, data, tpl, { log, onStep: o.onStep, shouldStop: () => stop.requested || (o.shouldStop?.() ?? false), comm: comm ?? undefined }, [tokFile]);

  let resumeFrom: string | null = null;
  if (o.resume === 'auto') resumeFrom = await findLatestCheckpoint(cfg.checkpoint.dir, log);
  else if (o.resume) resumeFrom = await resolveCheckpoint(o.resume, cfg.checkpoint.dir, log);
  if (resumeFrom) {
    const ck = await loadCheckpoint(resumeFrom);
    const diffs = checkResumeConfig(ck.trainConfig, cfg, o.allowChanges ?? [], resumeFrom);
    for (const d of diffs) log(`resume: ${d.key} changed from ${JSON.stringify(d.saved)} to ${JSON.stringify(d.current)}`);
    await trainer.restore(ck);
    log(`resume: continuing from ${resumeFrom} at step ${trainer.step} of ${trainer.totalSteps}`);
  }

  const held = heldIdx.map(sampleOf);
  const heldPixels = async (s: TokenSample) => (pathOf.has(s) ? pixelsOf(pathOf.get(s)!) : null);
  const measure = async () => {
    const { heldout, use } = await conditionUse(model, held, tpl, heldPixels);
    return { loss: heldout.loss, use };
  };
  const start = held.length && !resumeFrom && rank0 ? await measure() : null;
  const before = start?.loss ?? null;
  if (start) log(`held-out image-token loss before training: ${start.loss.toFixed(4)} (${held.length} records); condition use: ${formatConditionUse(start.use)}`);

  const reportOn = cfg.report.enabled && rank0;
  const exclude = reportOn ? await datasetSceneKeys(root) : new Set<string>();
  let base: Showcase | null = null;
  if (reportOn) {
    const baseDir = path.join(cfg.checkpoint.dir, BASE_DIR);
    const key = showcaseKey(cfg);
    // A new run measures its own starting model; a resumed one can only reuse what its first part stored.
    if (!resumeFrom) {
      log('report: measuring the starting model (ShapeEval, samples, edits)');
      base = await showcase(model, tpl, tok.vocabSize, cfg, exclude, log);
      await saveShowcase(baseDir, base, key);
      log(`report: starting model ${formatShowcase(base)}`);
    } else {
      const stored = loadShowcase(baseDir, key);
      if (stored === 'missing') log(`report: ${baseDir} is missing (the run was started without report.enabled); the report will have no base column`);
      else if (stored === 'stale') log(`report: ${baseDir} was measured with another starting model or other report settings than this config's; the report will have no base column`);
      else base = stored;
    }
  }

  const onSignal = (sig: string) => {
    if (stop.requested) return;
    stop.requested = true;
    log(`${sig}: finishing the current step, then writing a checkpoint`);
  };
  const sigint = () => onSignal('SIGINT');
  const sigterm = () => onSignal('SIGTERM');
  process.on('SIGINT', sigint);
  process.on('SIGTERM', sigterm);
  let steps = 0;
  try {
    steps = await trainer.run();
  } finally {
    process.off('SIGINT', sigint);
    process.off('SIGTERM', sigterm);
  }
  const end = held.length && rank0 ? await measure() : null;
  const after = end?.loss ?? null;
  if (end) {
    log(`held-out image-token loss after step ${trainer.step}: ${end.loss.toFixed(4)}${before !== null ? ` (${(((before - end.loss) / before) * 100).toFixed(1)}% lower)` : ''}`);
    log(`condition use after step ${trainer.step}: ${formatConditionUse(end.use)}`);
  }
  const latest = await findLatestCheckpoint(cfg.checkpoint.dir);
  if (reportOn && !stop.requested && !(o.shouldStop?.() ?? false)) {
    log('report: measuring the trained model');
    const tuned = await showcase(model, tpl, tok.vocabSize, cfg, exclude, log);
    log(`report: trained model ${formatShowcase(tuned)}`);
    const written = await writeRunReport(cfg, base, tuned, {
      backend: tf.getBackend(),
      steps: trainer.step,
      wallSeconds: (Date.now() - t0) / 1000,
      command: ['janus4o', ...process.argv.slice(2)].join(' '),
      checkpoint: latest,
      heldoutBefore: before,
      heldoutAfter: after,
      heldoutNote: `${held.length} held-out records of ${cfg.data.root}`,
      conditionUseBefore: start?.use ?? null,
      conditionUseAfter: end?.use ?? null,
    });
    log(`report: ${path.resolve(written.html)}`);
  }
  model.dispose();
  return { checkpoint: latest, steps, heldoutBefore: before, heldoutAfter: after, conditionUseBefore: start?.use ?? null, conditionUseAfter: end?.use ?? null, seconds: (Date.now() - t0) / 1000 };
}
