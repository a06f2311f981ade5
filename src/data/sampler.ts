/**
 * Data-parallel sampler: every epoch is one seeded permutation of all record indices (T2I and edit records
 * mixed in one stream, as the reference trainer does); rank r of N takes positions r, r+N, r+2N, ... of it.
 *
 * drop_last (the default, and what the reference uses) trims the permutation to a multiple of N so every
 * rank runs the same number of steps; otherwise it is padded by wrapping round to its start, as PyTorch's
 * DistributedSampler does, so a few records are seen twice in that epoch.
 *
 * The cursor {epoch, position} counts this rank's samples already handed out; saving it with a checkpoint and
 * passing it back resumes with exactly the remaining indices. All ranks share one permutation because it
 * depends only on (seed, epoch), never on the rank.
 */
import { makeRng, shuffled } from './rng';

export interface SamplerCursor {
  epoch: number;
  /** Samples this rank has already taken from the epoch. */
  position: number;
}

export interface SamplerOptions {
  /** Number of records in the dataset. */
  size: number;
  rank: number;
  worldSize: number;
  seed: string | number;
  /** Default true. */
  dropLast?: boolean;
  /** Default true; false keeps dataset order (for evaluation). */
  shuffle?: boolean;
}

export interface SampledIndex {
  index: number;
  epoch: number;
  /** Position within this rank's share of the epoch. */
  position: number;
}

/** The epoch's permutation of 0..size-1; a pure function of (seed, epoch). */
export function epochPermutation(size: number, seed: string | number, epoch: number): number[] {
  const identity = Array.from({ length: size }, (_, i) => i);
  // The epoch is part of the seed string, so each epoch has an independent stream and none depends on how
  // far an earlier one was consumed.
  return shuffled(identity, makeRng(`sampler:${seed}:epoch:${epoch}`));
}

export class DistributedSampler {
  readonly size: number;
  readonly rank: number;
  readonly worldSize: number;
  readonly seed: string | number;
  readonly dropLast: boolean;
  readonly shuffle: boolean;
  private cur: SamplerCursor;
  private cache: { epoch: number; indices: number[] } | null = null;

  constructor(options: SamplerOptions, cursor?: SamplerCursor) {
    const { size, rank, worldSize } = options;
    if (!Number.isInteger(size) || size < 0) throw new Error(`sampler: size must be a non-negative integer, got ${size}`);
    if (!Number.isInteger(worldSize) || worldSize < 1) throw new Error(`sampler: worldSize must be >= 1, got ${worldSize}`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
      throw new Error(`sampler: rank ${rank} is outside 0..${worldSize - 1}`);
    }
    this.size = size;
    this.rank = rank;
    this.worldSize = worldSize;
    this.seed = options.seed;
    this.dropLast = options.dropLast ?? true;
    this.shuffle = options.shuffle ?? true;
    if (this.perRank === 0) {
      throw new Error(`sampler: ${size} records cannot give each of ${worldSize} ranks one sample${this.dropLast ? ' with drop_last' : ''}`);
    }
    this.cur = { epoch: 0, position: 0 };
    if (cursor) this.restore(cursor);
  }

  /** Samples each rank takes per epoch (the same on every rank). */
  get perRank(): number {
    return this.dropLast ? Math.floor(this.size / this.worldSize) : Math.ceil(this.size / this.worldSize);
  }

  /** This rank's indices for a whole epoch, in the order they are handed out. */
  epochIndices(epoch: number): number[] {
    if (this.cache && this.cache.epoch === epoch) return this.cache.indices;
    const order = this.shuffle ? epochPermutation(this.size, this.seed, epoch) : Array.from({ length: this.size }, (_, i) => i);
    const indices: number[] = [];
    // Under drop_last rank + k*N < size always; the modulo only wraps in the padded case.
    for (let k = 0; k < this.perRank; k++) indices.push(order[(this.rank + k * this.worldSize) % order.length]);
    this.cache = { epoch, indices };
    return indices;
  }

  /** The next index, moving into the next epoch when this one is used up. */
  next(): SampledIndex {
    if (this.cur.position >= this.perRank) this.cur = { epoch: this.cur.epoch + 1, position: 0 };
    const { epoch, position } = this.cur;
    const index = this.epochIndices(epoch)[position];
    this.cur = { epoch, position: position + 1 };
    return { index, epoch, position };
  }

  /** The next `n` indices (a per-rank batch); may cross an epoch boundary. */
  take(n: number): SampledIndex[] {
    const out: SampledIndex[] = [];
    for (let i = 0; i < n; i++) out.push(this.next());
    return out;
  }

  /** What is left of the current epoch, without consuming it. */
  remainingInEpoch(): number[] {
    return this.epochIndices(this.cur.epoch).slice(this.cur.position);
  }

  cursor(): SamplerCursor {
    return { epoch: this.cur.epoch, position: this.cur.position };
  }

  restore(cursor: SamplerCursor): void {
    const { epoch, position } = cursor;
    if (!Number.isInteger(epoch) || epoch < 0 || !Number.isInteger(position) || position < 0 || position > this.perRank) {
      throw new Error(`sampler: cursor {epoch: ${epoch}, position: ${position}} is invalid for ${this.perRank} samples per rank`);
    }
    this.cur = { epoch, position };
  }
}
