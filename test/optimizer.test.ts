import * as tf from '@tensorflow/tfjs-core';
import seedrandom from 'seedrandom';
import { initBackend } from '../src/backend';
import { AdamW, clipByGlobalNorm, ExportedOptimizerState, inMemorySource, ParamShape, planShards } from '../src/train/optimizer';
import { maxAbsDiff } from './helpers';

const f = Math.fround;

/** torch.optim.AdamW (single-tensor path) written out with float32 rounding after every operation. */
class ReferenceAdamW {
  private m = new Map<string, Float32Array>();
  private v = new Map<string, Float32Array>();
  private t = new Map<string, number>();
  constructor(private b1: number, private b2: number, private eps: number, private wd: number, private noDecay: string[]) {}
  step(params: Map<string, Float32Array>, grads: Map<string, Float32Array>, lr: number): void {
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (!g) continue;
      const t = (this.t.get(name) ?? 0) + 1;
      this.t.set(name, t);
      const m = this.m.get(name) ?? new Float32Array(p.length);
      const v = this.v.get(name) ?? new Float32Array(p.length);
      this.m.set(name, m);
      this.v.set(name, v);
      const decay = this.noDecay.some((s) => name.includes(s)) ? 0 : this.wd;
      const w = f(1 - this.b1);
      const stepSize = f(-(lr / (1 - this.b1 ** t)));
      const bc2 = f(Math.sqrt(1 - this.b2 ** t));
      for (let i = 0; i < p.length; i++) {
        if (decay > 0) p[i] = f(p[i] * f(1 - lr * decay));
        m[i] = f(m[i] + f(w * f(g[i] - m[i])));
        v[i] = f(f(v[i] * f(this.b2)) + f(f(f(1 - this.b2) * g[i]) * g[i]));
        const denom = f(f(f(Math.sqrt(v[i])) / bc2) + f(this.eps));
        p[i] = f(p[i] + f(stepSize * f(m[i] / denom)));
      }
    }
  }
  moments(name: string): [Float32Array, Float32Array] {
    return [this.m.get(name) as Float32Array, this.v.get(name) as Float32Array];
  }
}

function vars(values: Record<string, number[][] | number[]>): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  for (const [k, v] of Object.entries(values)) out.set(k, tf.variable(tf.tensor(v), true));
  return out;
}

function disposeAll(m: Map<string, tf.Tensor>): void {
  for (const t of m.values()) t.dispose();
}

function shapes(m: Map<string, tf.Tensor>): ParamShape[] {
  return [...m].map(([name, t]) => ({ name, shape: t.shape }));
}

function randomProblem(seed: string, specs: [string, number[]][]) {
  const rng = seedrandom(seed);
  const rand = (n: number, scale: number) => Float32Array.from({ length: n }, () => (rng() * 2 - 1) * scale);
  const params = new Map(specs.map(([n, s]) => [n, rand(s.reduce((a, b) => a * b, 1), 1)] as const));
  const grads = (k: number) => new Map(specs.map(([n, s]) => [n, rand(s.reduce((a, b) => a * b, 1), k % 3 === 0 ? 1e-3 : 1)] as const));
  return { params, grads, rng };
}

const SPECS: [string, number[]][] = [
  ['language_model.model.embed_tokens.weight', [7, 5]],
  ['language_model.model.layers.0.input_layernorm.weight', [5]],
  ['vision_model.vision_tower.blocks.0.norm1.bias', [5]],
  ['aligner.layers.0.weight', [5, 3]],
  ['x.LayerNorm.weight', [4]],
];

beforeAll(async () => {
  await initBackend('cpu');
});

describe('AdamW', () => {
  test('matches hand-computed values for three steps, with bias correction and a no-decay name', async () => {
    const v = vars({ w: [1, -2], 'layer.bias': [0.5] });
    const opt = new AdamW(shapes(v), { weightDecay: 0.1 });
    const gradSteps = [
      { w: [0.5, -1], b: [0.2], lr: 0.1 },
      { w: [-1, 2], b: [0.2], lr: 0.1 },
      { w: [0.25, 0.5], b: [-0.4], lr: 0.05 },
    ];
    const seen: number[][] = [];
    for (const s of gradSteps) {
      const g = new Map([['w', tf.tensor(s.w)], ['layer.bias', tf.tensor(s.b)]]);
      opt.step(v, g, s.lr);
      disposeAll(g);
      seen.push([...(await v.get('w')!.data()), ...(await v.get('layer.bias')!.data())]);
    }
    // Step 1: w *= 1 - 0.1*0.1 -> [0.99, -1.98]; m = 0.1 g, v = 0.001 g^2, bias corrections 0.1 and 0.001, so
    // the update is lr * g/|g| = [0.1, -0.1] -> [0.89, -1.88]. The bias is not decayed: 0.5 - 0.1 = 0.4
    // (decayed it would be 0.395).
    expect(maxAbsDiff(seen[0], [0.89, -1.88, 0.4])).toBeLessThan(1e-6);
    // Step 2: m = [-0.055, 0.11], v = [0.00124975, 0.004999], bc1 = 0.19, bc2 = 0.001999:
    // w = 0.99 w - 0.1 * (m/0.19) / sqrt(v/0.001999). Bias: constant gradient -> another lr-sized step.
    expect(maxAbsDiff(seen[1], [0.917710354, -1.89781035, 0.3])).toBeLessThan(1e-6);
    // Step 3 at lr 0.05: m = [-0.0245, 0.149], v = [0.00131100025, 0.005244001].
    expect(maxAbsDiff(seen[2], [0.919956335, -1.90910386, 0.303782476])).toBeLessThan(1e-6);
    const st = await opt.exportState();
    expect(maxAbsDiff(st.tensors.get('w.exp_avg')!, [-0.0245, 0.149])).toBeLessThan(1e-7);
    expect(maxAbsDiff(st.tensors.get('w.exp_avg_sq')!, [0.00131100025, 0.005244001])).toBeLessThan(1e-9);
    expect(st.meta.segments.map((s) => s.step)).toEqual([3, 3]);
    opt.dispose();
    disposeAll(v);
  });

  test.each(['cpu', 'wasm'] as const)('equals a float32 JS reference over 10 random steps (bit-exact on %s)', async (backend) => {
    await initBackend(backend);
    const { params, grads, rng } = randomProblem('adamw-ref', SPECS);
    const v = new Map([...params].map(([n, d]) => [n, tf.variable(tf.tensor(d, SPECS.find((s) => s[0] === n)![1]), true)] as const));
    const opt = new AdamW(shapes(v), { weightDecay: 0.1, betas: [0.9, 0.95], eps: 1e-6 });
    const ref = new ReferenceAdamW(0.9, 0.95, 1e-6, 0.1, ['bias', 'LayerNorm.weight']);
    const before = tf.memory().numTensors;
    let afterFirst = -1;
    for (let k = 0; k < 10; k++) {
      const g = grads(k);
      const lr = 1e-3 * (0.5 + rng());
      const gt = new Map([...g].map(([n, d]) => [n, tf.tensor(d, SPECS.find((s) => s[0] === n)![1])] as const));
      opt.step(v, gt, lr);
      disposeAll(gt);
      ref.step(params, g, lr);
      if (k === 0) afterFirst = tf.memory().numTensors;
    }
    // Moments are allocated on the first update (2 per parameter) and nothing leaks afterwards.
    expect(afterFirst).toBe(before + 2 * SPECS.length);
    expect(tf.memory().numTensors).toBe(afterFirst);
    const st = await opt.exportState();
    for (const [name] of SPECS) {
      expect(maxAbsDiff(await v.get(name)!.data(), params.get(name)!)).toBe(0);
      const [m, vv] = ref.moments(name);
      expect(maxAbsDiff(st.tensors.get(`${name}.exp_avg`)!, m)).toBe(0);
      expect(maxAbsDiff(st.tensors.get(`${name}.exp_avg_sq`)!, vv)).toBe(0);
    }
    opt.dispose();
    disposeAll(v);
    expect(tf.memory().numTensors).toBe(before - SPECS.length);
    await initBackend('cpu');
  });

  test('no-decay rule: substrings, case-sensitive, configurable', () => {
    const opt = new AdamW([{ name: 'a', shape: [1] }]);
    expect(opt.decays('language_model.model.layers.3.input_layernorm.weight')).toBe(true); // RMSNorm decays
    expect(opt.decays('vision_model.vision_tower.blocks.0.norm1.bias')).toBe(false);
    expect(opt.decays('enc.LayerNorm.weight')).toBe(false);
    expect(opt.decays('enc.layernorm.weight')).toBe(true);
    const custom = new AdamW([{ name: 'a', shape: [1] }], { noDecay: ['norm'] });
    expect(custom.decays('x.norm1.weight')).toBe(false);
    expect(custom.decays('x.bias')).toBe(true);
  });

  test('a parameter without a gradient is skipped entirely, like torch', async () => {
    const v = vars({ a: [1, 2], b: [3] });
    const opt = new AdamW(shapes(v), { weightDecay: 0.5 });
    const g = new Map([['a', tf.tensor([0.1, 0.1])]]);
    opt.step(v, g, 0.1);
    disposeAll(g);
    expect(Array.from(await v.get('b')!.data())).toEqual([3]);
    expect(opt.stepOf('a')).toBe(1);
    expect(opt.stepOf('b')).toBe(0);
    expect((await opt.exportState()).tensors.has('b.exp_avg')).toBe(false);
    opt.dispose();
    disposeAll(v);
  });

  test('a zero gradient is a gradient: decoupled decay only, zero moments, the step counted (torch with a zero .grad)', async () => {
    const v = vars({ w: [1, -2], 'x.bias': [3] });
    const opt = new AdamW(shapes(v), { weightDecay: 0.5 });
    const g = new Map([['w', tf.zeros([2])], ['x.bias', tf.zeros([1])]]);
    opt.step(v, g, 0.1);
    disposeAll(g);
    expect(Array.from(await v.get('w')!.data())).toEqual([f(1 * f(1 - 0.05)), f(-2 * f(1 - 0.05))]);
    expect(Array.from(await v.get('x.bias')!.data())).toEqual([3]); // no-decay rule
    expect([opt.stepOf('w'), opt.stepOf('x.bias')]).toEqual([1, 1]);
    const st = await opt.exportState();
    for (const k of ['w.exp_avg', 'w.exp_avg_sq', 'x.bias.exp_avg']) expect(Array.from(st.tensors.get(k)!).every((x) => x === 0)).toBe(true);
    // The same through a ZeRO flat shard: zeros in the slice, no flag needed.
    const v2 = vars({ w: [1, -2], 'x.bias': [3] });
    const opt2 = new AdamW(shapes(v2), { weightDecay: 0.5 });
    const flat = tf.zeros([3]);
    opt2.step(v2, { flat }, 0.1);
    flat.dispose();
    expect(Array.from(await v2.get('w')!.data())).toEqual(Array.from(await v.get('w')!.data()));
    expect(opt2.stepOf('x.bias')).toBe(1);
    [opt, opt2].forEach((o) => o.dispose());
    disposeAll(v);
    disposeAll(v2);
  });

  test('ZeRO-1 flat slices: 3 ranks (map and flat gradients) equal one process; state re-shards 3 -> 2', async () => {
    const { params, grads } = randomProblem('zero', SPECS);
    const shapeOf = (n: string) => SPECS.find((s) => s[0] === n)![1];
    const makeVars = () => new Map([...params].map(([n, d]) => [n, tf.variable(tf.tensor(d, shapeOf(n)), true)] as const));
    const specs = SPECS.map(([name, shape]) => ({ name, shape }));
    const plan = planShards(specs, 0, 3);
    expect(plan.total).toBe(35 + 5 + 5 + 15 + 4);
    // Slices are contiguous and balanced like the ring collectives' shards: 64 = 22 + 21 + 21.
    expect([0, 1, 2].map((r) => { const p = planShards(specs, r, 3); return [p.start, p.end]; })).toEqual([[0, 22], [22, 43], [43, 64]]);

    const single = makeVars();
    const one = new AdamW(specs, { weightDecay: 0.1 });
    const rankVars = [0, 1, 2].map(() => makeVars());
    const ranks = [0, 1, 2].map((r) => new AdamW(specs, { weightDecay: 0.1 }, { rank: r, worldSize: 3 }));
    const stepAll = (k: number, useFlat: boolean) => {
      const g = grads(k);
      const gt = new Map([...g].map(([n, d]) => [n, tf.tensor(d, shapeOf(n))] as const));
      one.step(single, gt, 1e-2);
      const flatAll = Float32Array.from(SPECS.flatMap(([n]) => Array.from(g.get(n)!)));
      ranks.forEach((opt, r) => {
        if (useFlat) {
          const flat = tf.tensor1d(flatAll.slice(opt.plan.start, opt.plan.end));
          opt.step(rankVars[r], { flat }, 1e-2);
          flat.dispose();
        } else opt.step(rankVars[r], gt, 1e-2);
      });
      disposeAll(gt);
      // The all-gather: every rank's owned values, concatenated, become everyone's parameters.
      const owned = ranks.map((opt, r) => opt.ownedValues(rankVars[r]));
      const gathered = tf.concat(owned);
      for (const p of plan.params) {
        const value = tf.reshape(tf.slice(gathered, [p.flatOffset], [p.size]), p.shape as number[]);
        for (const rv of rankVars) rv.get(p.name)!.assign(value);
        value.dispose();
      }
      gathered.dispose();
      owned.forEach((t) => t.dispose());
    };
    for (let k = 0; k < 3; k++) stepAll(k, k % 2 === 1);
    for (const [n] of SPECS) expect(maxAbsDiff(await rankVars[1].get(n)!.data(), await single.get(n)!.data())).toBe(0);

    // Resume the 3-rank state on 2 ranks and on 1, then take one more step each.
    const exported: ExportedOptimizerState[] = await Promise.all(ranks.map((o) => o.exportState()));
    const two = [0, 1].map((r) => new AdamW(specs, { weightDecay: 0.1 }, { rank: r, worldSize: 2 }));
    for (const o of two) await o.importState(exported.map(inMemorySource));
    const oneAgain = new AdamW(specs, { weightDecay: 0.1 });
    await oneAgain.importState(exported.map(inMemorySource));
    const full = await one.exportState();
    const again = await oneAgain.exportState();
    for (const [key, data] of full.tensors) expect(maxAbsDiff(again.tensors.get(key)!, data)).toBe(0);
    const g = grads(7);
    const gt = new Map([...g].map(([n, d]) => [n, tf.tensor(d, shapeOf(n))] as const));
    const twoVars = [0, 1].map(() => new Map([...single].map(([n, t]) => [n, tf.variable(t.clone(), true)] as const)));
    two.forEach((o, r) => o.step(twoVars[r], gt, 1e-2));
    one.step(single, gt, 1e-2);
    disposeAll(gt);
    for (const p of plan.params) {
      const ref = await single.get(p.name)!.data();
      const got = new Float32Array(p.size);
      two.forEach((o, r) => {
        for (const s of o.plan.segments.filter((x) => x.name === p.name)) {
          got.set((twoVars[r].get(p.name)!.dataSync() as Float32Array).subarray(s.offset, s.offset + s.length), s.offset);
        }
      });
      expect(maxAbsDiff(got, ref)).toBe(0);
    }
    for (const o of [one, oneAgain, ...ranks, ...two]) o.dispose();
    for (const m of [single, ...rankVars, ...twoVars]) disposeAll(m);
  });

  test('importState refuses state for a different model', async () => {
    const a = new AdamW([{ name: 'w', shape: [4] }]);
    const v = vars({ w: [1, 2, 3, 4] });
    const g = new Map([['w', tf.tensor([1, 1, 1, 1])]]);
    a.step(v, g, 0.1);
    const st = await a.exportState();
    const b = new AdamW([{ name: 'w', shape: [5] }]);
    await expect(b.importState([inMemorySource(st)])).rejects.toThrow(/covers 4 parameter elements, the model has 5/);
    const c = new AdamW([{ name: 'w', shape: [4] }], {}, { rank: 0, worldSize: 2 });
    const partial = { ...st, meta: { ...st.meta, segments: st.meta.segments.map((s) => ({ ...s, length: 1 })) } };
    partial.tensors = new Map([['w.exp_avg', new Float32Array(1)], ['w.exp_avg_sq', new Float32Array(1)]]);
    await expect(c.importState([inMemorySource(partial)])).rejects.toThrow(/cover 1 of 2/);
    for (const o of [a, b, c]) o.dispose();
    disposeAll(g);
    disposeAll(v);
  });
});

describe('clipByGlobalNorm', () => {
  test('scales to maxNorm like clip_grad_norm_ and returns the norm before clipping', async () => {
    const before = tf.memory().numTensors;
    const a = tf.tensor([3, 0]);
    const b = tf.tensor([[0], [4]]);
    const { grads, norm } = clipByGlobalNorm(new Map([['a', a], ['b', b]]), 1);
    expect(norm).toBeCloseTo(5, 6);
    expect(a.isDisposed && b.isDisposed).toBe(true);
    const coef = 1 / (5 + 1e-6);
    expect(maxAbsDiff(await grads.get('a')!.data(), [3 * coef, 0])).toBeLessThan(1e-7);
    expect(maxAbsDiff(await grads.get('b')!.data(), [0, 4 * coef])).toBeLessThan(1e-7);
    disposeAll(grads);
    expect(tf.memory().numTensors).toBe(before);
  });

  test('leaves small, disabled and non-finite gradients untouched', () => {
    const small = new Map([['a', tf.tensor([0.3, 0.4])]]);
    const r1 = clipByGlobalNorm(small, 1);
    expect(r1.grads.get('a')).toBe(small.get('a'));
    expect(r1.norm).toBeCloseTo(0.5, 6);
    const r2 = clipByGlobalNorm(small, 0);
    expect(r2.grads.get('a')).toBe(small.get('a'));
    const bad = new Map([['a', tf.tensor([NaN, 1])]]);
    const r3 = clipByGlobalNorm(bad, 1);
    expect(Number.isNaN(r3.norm)).toBe(true);
    expect(r3.grads.get('a')).toBe(bad.get('a'));
    disposeAll(small);
    disposeAll(bad);
  });
});
