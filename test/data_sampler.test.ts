import { DistributedSampler, epochPermutation } from '../src/data/sampler';
import { makeRng, shuffled } from '../src/data/rng';

describe('makeRng', () => {
  test('same seed gives the same stream; number and string seeds agree', () => {
    const a = makeRng(7);
    const b = makeRng('7');
    const xs = Array.from({ length: 20 }, () => a.next());
    const ys = Array.from({ length: 20 }, () => b.next());
    expect(xs).toEqual(ys);
    expect(new Set(xs).size).toBe(20);
    expect(makeRng(8).next()).not.toBe(xs[0]);
  });

  test('a saved state replays every later draw, and saving does not disturb the stream', () => {
    const r = makeRng('s');
    for (let i = 0; i < 13; i++) r.next();
    const saved = r.state();
    const after = Array.from({ length: 50 }, () => r.int(1000));
    const resumed = makeRng('ignored', JSON.parse(JSON.stringify(saved)));
    expect(Array.from({ length: 50 }, () => resumed.int(1000))).toEqual(after);
    // The saved object is a copy: drawing from the resumed generator must not mutate it.
    const again = makeRng('x', saved);
    expect(Array.from({ length: 50 }, () => again.int(1000))).toEqual(after);
  });

  test('rejects something that is not a state', () => {
    expect(() => makeRng(1, { i: 0, j: 0, S: [1, 2, 3] })).toThrow(/saved RNG state/);
  });

  test('shuffled is a permutation and leaves its input alone', () => {
    const input = Array.from({ length: 100 }, (_, i) => i);
    const out = shuffled(input, makeRng(3));
    expect(input).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(out).not.toEqual(input);
    expect(out.slice().sort((x, y) => x - y)).toEqual(input);
  });
});

describe('DistributedSampler', () => {
  const size = 103; // prime, so every N in 2..4 leaves a remainder for drop_last to trim

  test.each([1, 2, 3, 4])('N=%i: ranks partition the epoch permutation, minus drop_last', (n) => {
    for (const epoch of [0, 1, 5]) {
      const perm = epochPermutation(size, 42, epoch);
      expect(perm.slice().sort((a, b) => a - b)).toEqual(Array.from({ length: size }, (_, i) => i));
      const shares = Array.from({ length: n }, (_, r) => new DistributedSampler({ size, rank: r, worldSize: n, seed: 42 }).epochIndices(epoch));
      const per = Math.floor(size / n);
      for (const s of shares) expect(s).toHaveLength(per);
      // Interleave the shares back in step order: that must be exactly the permutation's first n*per entries.
      const merged: number[] = [];
      for (let k = 0; k < per; k++) for (let r = 0; r < n; r++) merged.push(shares[r][k]);
      expect(merged).toEqual(perm.slice(0, n * per));
      expect(new Set(merged).size).toBe(merged.length);
      // Same seed and epoch, fresh objects: identical.
      const again = new DistributedSampler({ size, rank: 0, worldSize: n, seed: 42 }).epochIndices(epoch);
      expect(again).toEqual(shares[0]);
    }
  });

  test('epochs and seeds give different permutations', () => {
    expect(epochPermutation(size, 42, 0)).not.toEqual(epochPermutation(size, 42, 1));
    expect(epochPermutation(size, 42, 0)).not.toEqual(epochPermutation(size, 43, 0));
  });

  test('without drop_last every record is covered and ranks still get equal counts', () => {
    const n = 4;
    const shares = Array.from({ length: n }, (_, r) => new DistributedSampler({ size, rank: r, worldSize: n, seed: 1, dropLast: false }).epochIndices(0));
    for (const s of shares) expect(s).toHaveLength(Math.ceil(size / n));
    expect(new Set(shares.flat()).size).toBe(size);
  });

  test('next() walks the epoch then rolls into the next one', () => {
    const s = new DistributedSampler({ size: 10, rank: 1, worldSize: 3, seed: 9 });
    const e0 = s.epochIndices(0);
    const e1 = s.epochIndices(1);
    const got = s.take(e0.length + 2);
    expect(got.map((g) => g.index)).toEqual([...e0, ...e1.slice(0, 2)]);
    expect(got[e0.length]).toEqual({ index: e1[0], epoch: 1, position: 0 });
    expect(s.cursor()).toEqual({ epoch: 1, position: 2 });
  });

  test('restoring a mid-epoch cursor continues with exactly the remaining indices', () => {
    for (const n of [1, 2, 3, 4]) {
      for (let r = 0; r < n; r++) {
        const opts = { size, rank: r, worldSize: n, seed: 'resume' };
        const full = new DistributedSampler(opts);
        full.take(Math.floor(size / n) + 3); // into epoch 1
        full.take(4);
        const saved = JSON.parse(JSON.stringify(full.cursor()));
        const expected = full.take(Math.floor(size / n) + 5).map((x) => x.index);
        const resumed = new DistributedSampler(opts, saved);
        expect(resumed.remainingInEpoch()).toEqual(resumed.epochIndices(1).slice(7));
        expect(resumed.take(expected.length).map((x) => x.index)).toEqual(expected);
      }
    }
  });

  test('shuffle: false keeps dataset order', () => {
    const s = new DistributedSampler({ size: 7, rank: 1, worldSize: 2, seed: 0, shuffle: false });
    expect(s.epochIndices(3)).toEqual([1, 3, 5]);
  });

  test('rejects bad ranks, cursors and datasets too small to share', () => {
    expect(() => new DistributedSampler({ size: 10, rank: 2, worldSize: 2, seed: 0 })).toThrow(/rank 2/);
    expect(() => new DistributedSampler({ size: 3, rank: 0, worldSize: 4, seed: 0 })).toThrow(/cannot give/);
    const s = new DistributedSampler({ size: 10, rank: 0, worldSize: 2, seed: 0 });
    expect(() => s.restore({ epoch: 0, position: 6 })).toThrow(/invalid/);
    expect(() => s.restore({ epoch: -1, position: 0 })).toThrow(/invalid/);
  });
});
