/**
 * The training loop of the Janus-4o recipe: micro-batches with gradient accumulation, global-norm clipping,
 * a NaN/Inf guard, AdamW under warmup+cosine, JSONL logs, checkpoints (periodic, at epoch ends, on
 * SIGINT/SIGTERM) and exact resume: the sampler cursor (which also fixes the per-sample masking draws), the
 * optimizer moments and the schedule position all come back from trainer_state.json. With a communicator it
 * trains data-parallel (data_parallel.ts): same weights as one process with the same global batch.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import type { StepLog } from '../io/steplog';
import type { GenerationDefaults } from './dataset';
import { PromptIds, Task, TokenSample, collate, lossPositionsPerSample } from '../data/batch';
import { makeRng } from '../data/rng';
import { DistributedSampler, SamplerCursor } from '../data/sampler';
import { imageTokenCount } from '../model/config';
import { Janus4o } from '../model/janus';
import { CheckpointContent, JsonValue, LoadedCheckpoint, checkpointName, checkpointWriteError, tempCheckpointDir, cleanStaleCheckpointFiles, commitCheckpoint, loadWeightsIntoStore, paramStoreWeights, prepareCheckpoint, saveCheckpoint, writeCheckpointFiles, writeOptimizerShard } from '../io/checkpoint';
import { DataParallel, ZeroStage } from './data_parallel';
import { Communicator } from '../distributed/collectives';
import { UserError } from '../errors';
import { TrainConfig, configHash, globMatch, trainableFilter } from './config';
import { AdamW, clipByGlobalNorm } from './optimizer';
import { ScheduleState, WarmupCosineSchedule, referenceTotalSteps } from './schedule';
import { MicroStepResult, microStep } from './step';

/** What the trainer reads: samples by index, and the pixels of edit sources (for the SigLIP E block). */
export interface TrainingSet {
  size: number;
  sample(index: number): TokenSample;
  /** The source image of an edit sample, [S, S, 3] in [-1, 1]. */
  sourceImage(index: number): Promise<tf.Tensor3D>;
}


export type { StepLog };

/** Where the run stands, passed with every step (the step log itself is the JSONL record and does not carry it). */
export interface StepProgress {
  /** Optimizer steps of the whole run (the schedule's length): the run ends when StepLog.step reaches it. */
  totalSteps: number;
}

export interface TrainerHooks {
  log?: (line: string) => void;
  onStep?: (s: StepLog, progress: StepProgress) => void;
  /** Called after each optimizer step; return true to stop (the trainer then checkpoints and returns). */
  shouldStop?: () => boolean;
  /** Data-parallel communicator (one process per GPU); absent for a single process. */
  comm?: Communicator;
}

interface ResumeState {
  step: number;
  sampler: SamplerCursor;
  schedule: ScheduleState;
  consecutiveSkips: number;
}

export class Trainer {
  readonly optimizer: AdamW;
  readonly schedule: WarmupCosineSchedule;
  readonly sampler: DistributedSampler;
  readonly trainable: string[];
  readonly imageTokens: number;
  step = 0;
  private consecutiveSkips = 0;
  private readonly logFile: string;
  /** Set when more than one rank trains together. */
  readonly dp: DataParallel | null;

  constructor(
    readonly model: Janus4o,
    readonly config: TrainConfig,
    readonly data: TrainingSet,
    readonly templates: PromptIds,
    readonly hooks: TrainerHooks = {},
    readonly extraFiles: readonly string[] = [],
    /** Written into every checkpoint as generation_config.json; null keeps the starting folder's (in extraFiles). */
    readonly generationDefaults: GenerationDefaults | null = null,
  ) {
    const t = config.train;
    const isTrainable = trainableFilter(t);
    this.trainable = model.params.list().map((s) => s.name).filter(isTrainable);
    if (this.trainable.length === 0) throw new Error('train.trainable / train.frozen leave no parameter to train');
    this.imageTokens = imageTokenCount(model.config);
    const rank = hooks.comm?.rank ?? 0;
    const world = hooks.comm?.worldSize ?? 1;
    this.sampler = new DistributedSampler({ size: data.size, rank, worldSize: world, seed: t.seed });
    const total = t.max_steps ?? referenceTotalSteps({ datasetSize: data.size, microBatch: t.micro_batch, epochs: t.epochs, gradAccum: t.grad_accum, worldSize: world });
    if (total < 1) throw new Error(`the dataset (${data.size} records) is too small for one optimizer step of ${t.micro_batch * t.grad_accum} samples`);
    this.schedule = new WarmupCosineSchedule(t.lr, { totalSteps: total, warmupRatio: t.warmup_ratio, minLrRatio: t.min_lr_ratio });
    this.optimizer = new AdamW(
      this.trainable.map((name) => ({ name, shape: model.params.spec(name).shape })),
      { betas: t.betas, eps: t.eps, weightDecay: t.weight_decay, noDecay: t.no_decay },
      config.distributed.zero_stage >= 1 ? { rank, worldSize: world } : { rank: 0, worldSize: 1 },
    );
    this.dp = world > 1 ? new DataParallel(hooks.comm!, this.optimizer, config.distributed.zero_stage as ZeroStage) : null;
    this.logFile = path.join(config.checkpoint.dir, 'train_log.jsonl');
  }

  get totalSteps(): number {
    return this.schedule.totalSteps;
  }

  private log(line: string): void {
    this.hooks.log?.(line);
  }

  /** One optimizer step over grad_accum micro-batches. */
  private async trainStep(): Promise<StepLog> {
    const t = this.config.train;
    const t0 = Date.now();
    const epoch = this.sampler.cursor().epoch;
    const perSample = lossPositionsPerSample(this.imageTokens, t.loss_alignment);
    const denominator = perSample * t.micro_batch * t.grad_accum;
    const acc = new Map<string, tf.Tensor>();
    const lossSum: Record<Task, number> = { t2i: 0, edit: 0 };
    const count: Record<Task, number> = { t2i: 0, edit: 0 };
    let correct = 0;
    let tokens = 0;
    const masks = { textMaskProb: t.text_mask_prob, imageMaskProb: t.image_mask_prob, lossAlignment: t.loss_alignment };
    // ZeRO-2 hands each micro-batch's gradients to the exchange at once and keeps only this rank's slice; its
    // reduce-scatter runs while the next micro-batch computes. Every rank makes one call per micro-batch (not per
    // task group, whose number differs between ranks), so the collectives line up.
    const zero2 = this.dp !== null && this.dp.zeroStage === 2;
    const exchanges: Promise<void>[] = [];
    for (let a = 0; a < t.grad_accum; a++) {
      const picks = this.sampler.take(t.micro_batch).map((p) => ({ ...p, sample: this.data.sample(p.index) }));
      // T2I and edit rows differ ~2.5x in length; one forward per task avoids padding short rows to long ones.
      for (const task of ['t2i', 'edit'] as const) {
        const group = picks.filter((p) => p.sample.task === task);
        if (group.length === 0) continue;
        const samples = group.map((p, k) => (task === 'edit' ? { ...p.sample, sourceImage: k } : p.sample));
        const batch = collate(samples, this.templates, this.imageTokens, masks, (k) => makeRng(`mask:${t.seed}:${group[k].epoch}:${group[k].index}`));
        const pixels = task === 'edit' ? await this.loadPixels(group.map((p) => p.index)) : null;
        let r: MicroStepResult;
        try {
          r = microStep(this.model, batch, { denominator, trainable: this.trainable, sourcePixels: pixels, activationCheckpointing: t.activation_checkpointing });
        } finally {
          pixels?.dispose();
        }
        tokens += batch.textIds.length * batch.textIds[0].length;
        for (const [name, g] of r.grads) {
          const prev = acc.get(name);
          if (prev) {
            acc.set(name, tf.tidy(() => tf.add(prev, g)));
            prev.dispose();
            g.dispose();
          } else acc.set(name, g);
        }
        for (const k of ['t2i', 'edit'] as const) {
          lossSum[k] += r.lossSum[k];
          count[k] += r.count[k];
        }
        correct += r.correct;
      }
      if (zero2) {
        const exchange = this.dp!.accumulate(new Map(acc));
        exchange.catch(() => undefined); // awaited below; this only keeps a failure from being reported unhandled meanwhile
        exchanges.push(exchange);
        acc.clear();
      }
    }
    const lr = this.schedule.lr(this.step);
    let norm: number;
    if (this.dp) {
      // Every rank sees the same averaged gradient, so all agree on its norm and on skipping a NaN step.
      await Promise.all(exchanges);
      const synced = zero2 ? await this.dp.reduceAccumulated() : await this.dp.reduce(acc);
      norm = synced.norm;
      if (Number.isFinite(norm)) await this.dp.step(this.model.params, synced, lr, t.clip);
      DataParallel.dispose(synced);
      const [s2, c2, se, ce, cr, tk] = await this.dp.sum([lossSum.t2i, count.t2i, lossSum.edit, count.edit, correct, tokens]);
      lossSum.t2i = s2;
      count.t2i = c2;
      lossSum.edit = se;
      count.edit = ce;
      correct = cr;
      tokens = tk;
    } else {
      const clipped = clipByGlobalNorm(acc, t.clip);
      norm = clipped.norm;
      if (Number.isFinite(norm)) this.optimizer.step(this.model.params, clipped.grads, lr);
      tf.dispose([...clipped.grads.values()]);
    }
    const finite = Number.isFinite(norm);
    if (finite) this.consecutiveSkips = 0;
    else {
      this.consecutiveSkips++;
      this.log(`warning: step ${this.step + 1}: gradient norm is ${norm}; update skipped (${this.consecutiveSkips} in a row)`);
    }
    this.step++;
    if (this.consecutiveSkips > t.nan_guard_max_skips) {
      throw new Error(`training diverged: ${this.consecutiveSkips} consecutive non-finite updates (train.nan_guard_max_skips = ${t.nan_guard_max_skips})`);
    }
    const seconds = (Date.now() - t0) / 1000;
    const n = count.t2i + count.edit;
    return {
      step: this.step,
      epoch,
      loss: (lossSum.t2i + lossSum.edit) / n,
      loss_t2i: count.t2i ? lossSum.t2i / count.t2i : null,
      loss_edit: count.edit ? lossSum.edit / count.edit : null,
      accuracy: correct / n,
      lr,
      grad_norm: norm,
      skipped: !finite,
      tokens_per_s: tokens / seconds,
      samples_per_s: (t.micro_batch * t.grad_accum) / seconds,
      seconds,
    };
  }

  private async loadPixels(indices: number[]): Promise<tf.Tensor4D> {
    const imgs = await Promise.all(indices.map((i) => this.data.sourceImage(i)));
    const stacked = tf.stack(imgs) as tf.Tensor4D;
    tf.dispose(imgs);
    return stacked;
  }

  /** Runs until the schedule's last step (or a stop request); checkpoints as configured. Returns the steps run. */
  async run(): Promise<number> {
    const c = this.config.checkpoint;
    try {
      fs.mkdirSync(c.dir, { recursive: true });
    } catch (e) {
      throw await checkpointWriteError(e, c.dir, 'the checkpoint folder');
    }
    // Leftovers of a save that was killed: temp folders, or a renamed checkpoint that `latest` does not name yet.
    if ((this.dp?.rank ?? 0) === 0) for (const f of await cleanStaleCheckpointFiles(c.dir, c.keep)) this.log(`checkpoint: cleaned up ${f}`);
    await this.dp?.comm.barrier({ tag: 'start' });
    const startStep = this.step;
    const perEpoch = Math.floor(this.sampler.perRank / (this.config.train.micro_batch * this.config.train.grad_accum));
    const rank0 = (this.dp?.rank ?? 0) === 0;
    if (this.dp) await this.dp.broadcastParams(this.model.params, this.model.params.list().map((p) => p.name));
    while (this.step < this.totalSteps) {
      const s = await this.trainStep();
      if (rank0) {
        try {
          fs.appendFileSync(this.logFile, `${JSON.stringify(s)}\n`);
        } catch (e) {
          throw await checkpointWriteError(e, c.dir, `step ${s.step} to the training log ${path.resolve(this.logFile)}`);
        }
        this.hooks.onStep?.(s, { totalSteps: this.totalSteps });
      }
      const epochEnd = perEpoch > 0 && this.step % perEpoch === 0;
      const localStop = this.hooks.shouldStop?.() ?? false;
      // A signal may reach one rank only: all stop together at the same step.
      const stop = this.dp ? (await this.dp.sum([localStop ? 1 : 0]))[0] > 0 : localStop;
      const periodic = c.every_steps > 0 && this.step % c.every_steps === 0;
      if (periodic || (epochEnd && c.at_epoch_end) || stop || this.step === this.totalSteps) await this.saveCheckpoint();
      if (stop) break;
    }
    return this.step - startStep;
  }

  /** The trainer's resumable state, as stored in trainer_state.json. */
  private resumeState(): ResumeState {
    return {
      step: this.step,
      sampler: this.sampler.cursor(),
      schedule: this.schedule.state(this.step),
      consecutiveSkips: this.consecutiveSkips,
    };
  }

  async saveCheckpoint(): Promise<string> {
    const store = this.model.params;
    const rs = this.resumeState();
    const content: CheckpointContent = {
      step: this.step,
      weights: paramStoreWeights(store),
      modelConfig: this.model.config as unknown as JsonValue,
      trainConfig: this.config as unknown as JsonValue,
      trainerState: {
        step: rs.step,
        epoch: rs.sampler.epoch,
        // The cursor counts this rank's samples; with the world size it gives the global position.
        sampler: { ...rs.sampler, world_size: this.sampler.worldSize },
        // Masking draws are derived per sample from (seed, epoch, index), so the sampler cursor is their state.
        rng: { mask: 'per-sample' },
        schedule: rs.schedule as unknown as JsonValue,
        config_hash: configHash(this.config),
        extra: { consecutive_skips: rs.consecutiveSkips },
      },
      tokenizerFiles: this.extraFiles,
      generationConfig: this.generationDefaults as unknown as JsonValue,
    };
    const c = this.config.checkpoint;
    if (!this.dp) {
      const dir = await saveCheckpoint(c.dir, content, [await this.optimizer.exportState()], c.keep);
      this.log(`checkpoint: ${dir} (step ${this.step})`);
      return dir;
    }
    // Rank 0 writes weights and state, every rank its optimizer shard, then rank 0 commits. A rank that cannot
    // write (disk full, read-only) fails with the message; the others then fail at the next barrier.
    const rank0 = this.dp.rank === 0;
    let dir: string;
    try {
      const tmp = rank0 ? await prepareCheckpoint(c.dir, this.step) : tempCheckpointDir(c.dir, this.step);
      await this.dp.comm.barrier({ tag: 'ckpt-prepared' });
      await writeOptimizerShard(tmp, await this.optimizer.exportState());
      if (rank0) await writeCheckpointFiles(tmp, content);
      await this.dp.comm.barrier({ tag: 'ckpt-written' });
      dir = rank0 ? await commitCheckpoint(c.dir, tmp, this.step, c.keep) : path.join(c.dir, checkpointName(this.step));
    } catch (e) {
      throw await checkpointWriteError(e, c.dir, `the checkpoint of step ${this.step}`);
    }
    if (rank0) this.log(`checkpoint: ${dir} (step ${this.step})`);
    await this.dp.comm.barrier({ tag: 'ckpt-committed' });
    return dir;
  }

  /** Restores weights, optimizer moments and every stream position from a checkpoint. */
  async restore(ckpt: LoadedCheckpoint): Promise<void> {
    await loadWeightsIntoStore(ckpt.weights, this.model.params);
    await this.optimizer.importState(ckpt.optimizer);
    const st = ckpt.trainerState;
    this.step = st.step;
    const saved = st.sampler as unknown as SamplerCursor & { world_size?: number };
    const savedWorld = saved.world_size ?? 1;
    const global = saved.position * savedWorld;
    if (global % this.sampler.worldSize !== 0) {
      throw new Error(`checkpoint ${ckpt.dir}: ${global} samples of epoch ${saved.epoch} were consumed by ${savedWorld} rank(s); that does not split evenly over ${this.sampler.worldSize} ranks`);
    }
    // Resuming on another world size: the same global position, cut into this world's strided shares.
    this.sampler.restore({ epoch: saved.epoch, position: global / this.sampler.worldSize });
    const extra = (st.extra ?? {}) as { consecutive_skips?: number };
    this.consecutiveSkips = extra.consecutive_skips ?? 0;
  }
}

/** How many workers trained a checkpoint: its sampler cursor records it (checkpoints without it: one). */
export function checkpointWorldSize(ck: Pick<LoadedCheckpoint, 'trainerState'>): number {
  const sampler = ck.trainerState.sampler;
  const w = sampler !== null && typeof sampler === 'object' && !Array.isArray(sampler) ? sampler.world_size : undefined;
  return typeof w === 'number' && Number.isInteger(w) && w >= 1 ? w : 1;
}

/**
 * Refuses to continue a checkpoint on another number of workers when that would change its global batch
 * (workers x train.micro_batch x train.grad_accum), which would quietly make it another job: say how to keep the
 * run (the checkpoint's worker count, or a micro-batch that keeps the global batch). A batch change the user asked
 * for (train.micro_batch or train.grad_accum among `allow`, the keys allowed to differ) goes through.
 */
export function checkResumeWorld(ck: Pick<LoadedCheckpoint, 'dir' | 'trainerState' | 'trainConfig'>, cfg: TrainConfig, worldSize: number, allow: readonly string[]): void {
  const saved = checkpointWorldSize(ck);
  if (saved === worldSize) return;
  const raw = ck.trainConfig !== null && typeof ck.trainConfig === 'object' && !Array.isArray(ck.trainConfig) ? ck.trainConfig.train : undefined;
  const t = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? raw : {};
  const micro = typeof t.micro_batch === 'number' ? t.micro_batch : cfg.train.micro_batch;
  const accum = typeof t.grad_accum === 'number' ? t.grad_accum : cfg.train.grad_accum;
  const before = saved * micro * accum;
  const now = worldSize * cfg.train.micro_batch * cfg.train.grad_accum;
  if (before === now) return;
  if (allow.some((p) => globMatch('train.micro_batch', p) || globMatch('train.grad_accum', p))) return;
  const workers = (n: number) => `${n} worker${n === 1 ? '' : 's'}`;
  const keep = before % (worldSize * cfg.train.grad_accum) === 0
    ? `keep ${before} samples per step on ${workers(worldSize)} with --train.micro_batch ${before / (worldSize * cfg.train.grad_accum)} (and --allow-change train.micro_batch when resuming with \`train --resume\`)`
    : `choose train.micro_batch and train.grad_accum that give ${before} samples per step on ${workers(worldSize)}`;
  throw new UserError(
    `Checkpoint ${ck.dir} was trained by ${workers(saved)} with train.micro_batch ${micro} and train.grad_accum ${accum}, ${before} samples per optimizer step; ` +
      `continuing on ${workers(worldSize)} would make it ${now} and the run would no longer be the one it was. ` +
      `Continue on ${workers(saved)} (--nproc ${saved}; \`janus4o resume\` does so by default), or ${keep}.`,
  );
}
