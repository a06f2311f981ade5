/**
 * Seeded random streams whose state can be saved and restored, so `train k, stop, resume` replays the same
 * draws as an uninterrupted run (design.md, "Randomness"). Backed by seedrandom's ARC4 generator.
 */
import seedrandom from 'seedrandom';

/** The full ARC4 state: a 256-entry permutation and two indices. Plain JSON, safe to store in trainer_state.json. */
export interface RngState {
  i: number;
  j: number;
  S: number[];
}

export interface Rng {
  /** Uniform float in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** A uniformly chosen element of a non-empty array. */
  pick<T>(items: readonly T[]): T;
  /** True with probability p. */
  chance(p: number): boolean;
  /** A copy of the current state; restoring it replays every later draw. */
  state(): RngState;
}

function copyState(s: RngState): RngState {
  return { i: s.i, j: s.j, S: s.S.slice() };
}

function checkState(s: RngState): void {
  const ok =
    Number.isInteger(s.i) &&
    Number.isInteger(s.j) &&
    Array.isArray(s.S) &&
    s.S.length === 256 &&
    s.S.every((v) => Number.isInteger(v) && v >= 0 && v < 256);
  if (!ok) throw new Error('makeRng: not a saved RNG state (expected {i, j, S[256]})');
}

/**
 * A generator seeded by `seed`, or resumed from `state` (the seed is then ignored: the state already encodes
 * it). Numbers are stringified so seed 1 and seed '1' give the same stream.
 */
export function makeRng(seed: string | number, state?: RngState): Rng {
  if (state) checkState(state);
  // seedrandom mutates the state object it is given, so hand it a copy and keep the caller's intact.
  const prng = seedrandom(String(seed), { state: state ? copyState(state) : true });
  const next = (): number => prng();
  return {
    next,
    int(n: number): number {
      if (!Number.isInteger(n) || n <= 0) throw new Error(`Rng.int: n must be a positive integer, got ${n}`);
      return Math.floor(next() * n);
    },
    pick<T>(items: readonly T[]): T {
      if (items.length === 0) throw new Error('Rng.pick: empty array');
      return items[Math.floor(next() * items.length)];
    },
    chance(p: number): boolean {
      return next() < p;
    },
    state(): RngState {
      return copyState(prng.state() as RngState);
    },
  };
}

/** Fisher-Yates shuffle of a copy, drawing from `rng`. */
export function shuffled<T>(items: readonly T[], rng: Rng): T[] {
  const a = items.slice();
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
  return a;
}
