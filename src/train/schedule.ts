/**
 * Learning-rate schedule of the Janus-4o recipe (janus-spec 8.5): linear warmup, then a half cosine down to a
 * floor. Reproduces `get_custom_cosine_schedule_with_warmup` of the reference train_janus.py, driven through
 * torch's LambdaLR:
 *
 *   factor(s) = s / max(1, W)                                       for s < W
 *   factor(s) = floor + (1 - floor) * 0.5 * (1 + cos(pi * p))       with p = (s - W) / max(1, N - W)
 *
 * where `s` is the number of optimizer updates already applied (LambdaLR starts at 0 and is stepped after each
 * `optimizer.step()`), so the very first update runs at factor 0, update W+1 at the peak, and the floor is
 * reached only at s = N, one past the last update (the last update, s = N-1, is a hair above the floor).
 * W = floor(warmupRatio * N) exactly like the reference's `int(warmup_rates * num_training_steps)`.
 */

export interface ScheduleOptions {
  /** Optimizer updates in the whole run (the reference's `num_training_steps`). */
  totalSteps: number;
  /** Fraction of totalSteps spent warming up. Default 0.05. */
  warmupRatio?: number;
  /** Explicit warmup length; wins over warmupRatio (used when rebuilding a stored schedule). */
  warmupSteps?: number;
  /** Floor of the cosine as a fraction of the peak lr. Default 0.15. */
  minLrRatio?: number;
  /** Cosine cycles; 0.5 = one half period from peak to floor (the reference default). */
  numCycles?: number;
}

/** What trainer_state.json records about the schedule, enough to rebuild it and check a resume. */
export interface ScheduleState {
  kind: 'warmup_cosine';
  peakLr: number;
  totalSteps: number;
  warmupSteps: number;
  minLrRatio: number;
  numCycles: number;
  /** Updates applied so far: the index whose factor the next update uses. */
  position: number;
}

export const DEFAULT_WARMUP_RATIO = 0.05;
export const DEFAULT_MIN_LR_RATIO = 0.15;

/** int(ratio * total), as the reference computes it (double arithmetic, truncation). */
export function warmupStepCount(totalSteps: number, warmupRatio = DEFAULT_WARMUP_RATIO): number {
  return Math.trunc(warmupRatio * totalSteps);
}

interface Resolved {
  totalSteps: number;
  warmupSteps: number;
  minLrRatio: number;
  numCycles: number;
}

function checkOptions(o: ScheduleOptions): Resolved {
  const warmupRatio = o.warmupRatio ?? DEFAULT_WARMUP_RATIO;
  const minLrRatio = o.minLrRatio ?? DEFAULT_MIN_LR_RATIO;
  const numCycles = o.numCycles ?? 0.5;
  if (!Number.isInteger(o.totalSteps) || o.totalSteps < 1) throw new Error(`schedule: totalSteps must be a positive integer, got ${o.totalSteps}`);
  if (!(warmupRatio >= 0 && warmupRatio < 1)) throw new Error(`schedule: warmupRatio must be in [0, 1), got ${warmupRatio}`);
  if (!(minLrRatio >= 0 && minLrRatio <= 1)) throw new Error(`schedule: minLrRatio must be in [0, 1], got ${minLrRatio}`);
  if (!(numCycles > 0)) throw new Error(`schedule: numCycles must be positive, got ${numCycles}`);
  const warmupSteps = o.warmupSteps ?? warmupStepCount(o.totalSteps, warmupRatio);
  if (!Number.isInteger(warmupSteps) || warmupSteps < 0 || warmupSteps >= o.totalSteps) {
    throw new Error(`schedule: warmupSteps must be an integer in [0, totalSteps), got ${warmupSteps}`);
  }
  return { totalSteps: o.totalSteps, warmupSteps, minLrRatio, numCycles };
}

/**
 * Multiplier of the peak lr for the update that follows `step` completed updates. Steps past totalSteps keep
 * following the cosine, like the reference (it never gets there because it stops at totalSteps).
 */
export function lrFactor(step: number, options: ScheduleOptions): number {
  return factorOf(step, checkOptions(options));
}

function factorOf(step: number, o: Resolved): number {
  if (!Number.isInteger(step) || step < 0) throw new Error(`schedule: step must be a non-negative integer, got ${step}`);
  const warmup = o.warmupSteps;
  if (step < warmup) return step / Math.max(1, warmup);
  const progress = (step - warmup) / Math.max(1, o.totalSteps - warmup);
  const cosine = 0.5 * (1 + Math.cos(Math.PI * 2 * o.numCycles * progress));
  return (1 - o.minLrRatio) * cosine + o.minLrRatio;
}

/** A schedule bound to a peak lr, with the state a checkpoint stores. */
export class WarmupCosineSchedule {
  private readonly o: Resolved;

  constructor(readonly peakLr: number, options: ScheduleOptions) {
    if (!(peakLr > 0) || !Number.isFinite(peakLr)) throw new Error(`schedule: peak lr must be a positive number, got ${peakLr}`);
    this.o = checkOptions(options);
  }

  get totalSteps(): number {
    return this.o.totalSteps;
  }

  get warmupSteps(): number {
    return this.o.warmupSteps;
  }

  factor(step: number): number {
    return factorOf(step, this.o);
  }

  /** The lr of the update that follows `step` completed updates. */
  lr(step: number): number {
    return this.peakLr * this.factor(step);
  }

  state(position: number): ScheduleState {
    return {
      kind: 'warmup_cosine',
      peakLr: this.peakLr,
      totalSteps: this.o.totalSteps,
      warmupSteps: this.o.warmupSteps,
      minLrRatio: this.o.minLrRatio,
      numCycles: this.o.numCycles,
      position,
    };
  }

  /** Rebuilds the schedule a checkpoint was written with; returns it and the position to continue from. */
  static fromState(s: ScheduleState): { schedule: WarmupCosineSchedule; position: number } {
    if (s.kind !== 'warmup_cosine') throw new Error(`schedule: unknown schedule kind "${String(s.kind)}"`);
    const schedule = new WarmupCosineSchedule(s.peakLr, {
      totalSteps: s.totalSteps,
      warmupSteps: s.warmupSteps,
      minLrRatio: s.minLrRatio,
      numCycles: s.numCycles,
    });
    return { schedule, position: s.position };
  }
}

/**
 * The reference's run length: int(len(dataloader) * epochs) // accum // world, where len(dataloader) counts
 * micro-batches of the *unsharded* dataset with drop_last. For ShareGPT-4o-Image (92,256 records, batch 1,
 * 3 epochs, accum 8, 8 ranks) this is 4,324.
 */
export function referenceTotalSteps(a: { datasetSize: number; microBatch: number; epochs: number; gradAccum: number; worldSize: number }): number {
  const batches = Math.floor(a.datasetSize / a.microBatch);
  return Math.floor(Math.floor(Math.trunc(batches * a.epochs) / a.gradAccum) / a.worldSize);
}
