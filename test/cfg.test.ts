import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { makeRng } from '../src/data/rng';
import { branchCount, checkSamplingOptions, drawCategorical, guideEdit, guideLogits, guideT2I, probabilities, sampleToken } from '../src/generate/cfg';
import { maxAbsDiff } from './helpers';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** Fixed, distinct logits: row r, id j. */
function rowLogits(rows: number, v: number): number[][] {
  return Array.from({ length: rows }, (_, r) => Array.from({ length: v }, (_, j) => Math.sin(1.7 * r + 0.31 * j) * (1 + r) + 0.1 * j));
}

function softmax(l: number[], t: number): number[] {
  const m = Math.max(...l);
  const e = l.map((x) => Math.exp((x - m) / t));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

async function arr(t: tf.Tensor): Promise<number[][]> {
  const out = (await t.array()) as number[][];
  t.dispose();
  return out;
}

describe('2-branch guidance (T2I)', () => {
  test('guided distribution equals softmax((u + w(c - u)) / T)', async () => {
    const [c, u] = rowLogits(2, 9);
    for (const [w, t] of [
      [5, 1],
      [3.5, 0.7],
      [0, 1],
    ]) {
      const g = (await arr(guideT2I(tf.tensor2d([c]), tf.tensor2d([u]), w)))[0];
      const expected = softmax(
        u.map((ui, j) => ui + w * (c[j] - ui)),
        t,
      );
      expect(maxAbsDiff(probabilities(g, { temperature: t }), expected)).toBeLessThan(1e-6);
    }
  });

  test('w = 1 gives the conditional logits; w = 0 the unconditional ones', async () => {
    const [c, u] = rowLogits(2, 7);
    expect(maxAbsDiff((await arr(guideT2I(tf.tensor2d([c]), tf.tensor2d([u]), 1)))[0], c)).toBeLessThan(1e-5);
    expect(maxAbsDiff((await arr(guideT2I(tf.tensor2d([c]), tf.tensor2d([u]), 0)))[0], u)).toBeLessThan(1e-6);
  });
});

describe('3-branch guidance (edits)', () => {
  test('lc = (lfull + w2 lpart)/(1 + w2), l = lu + w1 (lc - lu)', async () => {
    const [f, p, u] = rowLogits(3, 11);
    for (const [w1, w2] of [
      [5, 5],
      [2, 0.5],
      [7.5, 1],
    ]) {
      const g = (await arr(guideEdit(tf.tensor2d([f]), tf.tensor2d([p]), tf.tensor2d([u]), w1, w2)))[0];
      const expected = u.map((uj, j) => uj + w1 * ((f[j] + w2 * p[j]) / (1 + w2) - uj));
      expect(maxAbsDiff(g, expected)).toBeLessThan(1e-4);
    }
  });

  test('w1 = 1 and w2 = 0 give the full-condition logits', async () => {
    const [f, p, u] = rowLogits(3, 11);
    const g = (await arr(guideEdit(tf.tensor2d([f]), tf.tensor2d([p]), tf.tensor2d([u]), 1, 0)))[0];
    expect(maxAbsDiff(g, f)).toBeLessThan(1e-5);
  });
});

describe('row layout: samples own adjacent rows in branch order', () => {
  // 2 prompts x 2 images: samples s = 0..3, each with its named rows.
  const v = 6;
  const named = Array.from({ length: 4 }, (_, s) => {
    const [a, b, c] = rowLogits(3, v).map((row) => row.map((x) => x + 3 * s));
    return { cond: a, uncond: b, full: a, part: b, u3: c };
  });

  /** True when guideLogits over `rows` gives, for every sample, the formula over that sample's own rows. */
  async function t2iPairedCorrectly(rows: number[][]): Promise<boolean> {
    const g = await arr(guideLogits(tf.tensor2d(rows), 't2i', { cfg: 5 }));
    return named.every((s, i) => maxAbsDiff(g[i], s.uncond.map((u, j) => u + 5 * (s.cond[j] - u))) < 1e-4);
  }

  test('T2I: [c0, u0, c1, u1, ...] is paired; a swapped order is caught', async () => {
    const good = named.flatMap((s) => [s.cond, s.uncond]);
    expect(await t2iPairedCorrectly(good)).toBe(true);
    // The mistakes a layout bug makes: blocks of conds then unconds, or two samples' rows exchanged.
    const blocked = [...named.map((s) => s.cond), ...named.map((s) => s.uncond)];
    expect(await t2iPairedCorrectly(blocked)).toBe(false);
    const swapped = good.slice();
    [swapped[1], swapped[3]] = [swapped[3], swapped[1]];
    expect(await t2iPairedCorrectly(swapped)).toBe(false);
  });

  test('edits: [full, part, uncond] per sample; a swapped order is caught', async () => {
    const check = async (rows: number[][]) => {
      const g = await arr(guideLogits(tf.tensor2d(rows), 'edit', { cfg: 5, cfg2: 5 }));
      return named.every((s, i) => maxAbsDiff(g[i], s.u3.map((u, j) => u + 5 * ((s.full[j] + 5 * s.part[j]) / 6 - u))) < 1e-4);
    };
    const good = named.flatMap((s) => [s.full, s.part, s.u3]);
    expect(await check(good)).toBe(true);
    const swapped = good.slice();
    [swapped[0], swapped[1]] = [swapped[1], swapped[0]];
    expect(await check(swapped)).toBe(false);
    expect(branchCount('edit')).toBe(3);
    expect(() => guideLogits(tf.zeros([4, v]) as tf.Tensor2D, 'edit', { cfg: 5 })).toThrow(/do not split/);
  });
});

describe('host-side draw', () => {
  test('top-k keeps the k most likely ids, top-p the smallest set reaching p', () => {
    const l = [0, 3, 1, 2, -1];
    const pk = probabilities(l, { temperature: 1, topK: 2 });
    expect(Array.from(pk, (x) => x > 0)).toEqual([false, true, false, true, false]);
    const full = softmax(l, 1);
    expect(pk[1]).toBeCloseTo(full[1] / (full[1] + full[3]), 12);
    // full[1] ~ 0.64, full[3] ~ 0.24: p = 0.5 keeps one id, p = 0.8 keeps two.
    expect(Array.from(probabilities(l, { temperature: 1, topP: 0.5 }), (x) => x > 0).filter(Boolean).length).toBe(1);
    expect(Array.from(probabilities(l, { temperature: 1, topP: 0.8 }), (x) => x > 0).filter(Boolean).length).toBe(2);
    expect(Array.from(probabilities(l, { temperature: 0 }))).toEqual([0, 1, 0, 0, 0]);
  });

  test('the seeded draw follows the distribution and replays from the seed', () => {
    const p = [0.1, 0.6, 0, 0.3];
    const counts = [0, 0, 0, 0];
    const rng = makeRng('draw');
    const seq: number[] = [];
    for (let i = 0; i < 20000; i++) {
      const id = drawCategorical(p, rng);
      counts[id]++;
      if (i < 50) seq.push(id);
    }
    expect(counts[2]).toBe(0);
    p.forEach((q, i) => expect(Math.abs(counts[i] / 20000 - q)).toBeLessThan(0.015));
    const again = makeRng('draw');
    expect(Array.from({ length: 50 }, () => drawCategorical(p, again))).toEqual(seq);
    expect(sampleToken([0, 0, 50], { temperature: 1 }, makeRng(1))).toBe(2);
  });

  test('out-of-domain options are refused with the flag name', () => {
    expect(() => checkSamplingOptions('t2i', { cfg: -1 }, { temperature: 1 })).toThrow(/--cfg must/);
    expect(() => checkSamplingOptions('edit', { cfg: 5, cfg2: -0.5 }, { temperature: 1 })).toThrow(/--cfg2 must/);
    expect(() => checkSamplingOptions('t2i', { cfg: 5 }, { temperature: Number.NaN })).toThrow(/--temperature/);
    expect(() => checkSamplingOptions('t2i', { cfg: 5 }, { temperature: 1, topP: 0 })).toThrow(/--top-p/);
    expect(() => checkSamplingOptions('t2i', { cfg: 5 }, { temperature: 1, topK: 2.5 })).toThrow(/--top-k/);
  });
});
