import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import { collate } from '../src/data/batch';
import { makeRng } from '../src/data/rng';
import { imageTokenCount } from '../src/model/config';
import { microStep } from '../src/train/step';
import { Trainer } from '../src/train/trainer';
import { maxAbsDiff } from './helpers';
import { fixtureConfig, fixtureData, fixtureModel, fixtureTemplates, fixtureTrainConfig } from './train_fixture';

let tmp: string;
beforeAll(async () => {
  await initBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-trainer-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function weightsOf(t: Trainer): Promise<Map<string, Float32Array>> {
  return t.model.params.snapshot();
}

function maxDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  let m = 0;
  for (const [k, v] of a) m = Math.max(m, maxAbsDiff(v, b.get(k)!));
  return m;
}

describe('Trainer', () => {
  test('micro-batch 4 x accum 1 and micro-batch 1 x accum 4 give the same update', async () => {
    const run = async (micro: number, accum: number) => {
      const dir = path.join(tmp, `acc-${micro}x${accum}`);
      const { data, tok } = fixtureData(16);
      const model = fixtureModel(3);
      // lr 1e-3 (the tiny recipe's): Adam's first update is ~lr * g/|g|, so float32 summation-order noise on
      // near-zero gradients moves a weight by up to ~lr * 1e-3.
      const t = new Trainer(model, fixtureTrainConfig(dir, { micro_batch: micro, grad_accum: accum, max_steps: 1, clip: 0, lr: 1e-3 }), data, fixtureTemplates(tok));
      await t.run();
      const w = await weightsOf(t);
      model.dispose();
      return w;
    };
    const a = await run(4, 1);
    const b = await run(1, 4);
    const d = maxDiff(a, b);
    expect(d).toBeLessThan(1e-5);
    const init = fixtureModel(3);
    expect(maxDiff(a, await init.params.snapshot())).toBeGreaterThan(5e-4); // the step really moved the weights
    init.dispose();
  });

  test('loss goes down and no tensors leak across steps', async () => {
    const dir = path.join(tmp, 'learn');
    const { data, tok } = fixtureData(8);
    const model = fixtureModel(5);
    const losses: number[] = [];
    const counts: number[] = [];
    const t = new Trainer(model, fixtureTrainConfig(dir, { max_steps: 12, micro_batch: 4, grad_accum: 1, lr: 3e-2, warmup_ratio: 0 }), data, fixtureTemplates(tok), {
      onStep: (s) => {
        losses.push(s.loss);
        counts.push(tf.memory().numTensors);
      },
    });
    t.config.checkpoint.every_steps = 0;
    await t.run();
    expect(losses[losses.length - 1]).toBeLessThan(losses[0] * 0.8);
    expect(new Set(counts.slice(2)).size).toBe(1);
    model.dispose();
  });

  test('activation checkpointing: same gradients, lower peak tensor bytes', async () => {
    const cfg = fixtureConfig();
    const { data, tok } = fixtureData(6, 'ckpt');
    const model = fixtureModel(9);
    const tpl = fixtureTemplates(tok);
    const samples = [0, 1, 2, 3].map((i) => data.sample(i));
    samples[2] = { ...samples[2], sourceImage: 0 };
    const n = imageTokenCount(cfg);
    const batch = collate(samples, tpl, n, { textMaskProb: 0, imageMaskProb: 0, lossAlignment: 'full' }, () => makeRng(1));
    const pixels = tf.stack([await data.sourceImage(2)]) as tf.Tensor4D;
    const trainable = model.params.list().map((s) => s.name).filter((nme) => !nme.startsWith('gen_vision_model.') && nme !== 'language_model.lm_head.weight');
    const plain = microStep(model, batch, { denominator: batch.lossPositions.length, trainable, sourcePixels: pixels });
    const ck = microStep(model, batch, { denominator: batch.lossPositions.length, trainable, sourcePixels: pixels, activationCheckpointing: true });
    expect([...ck.grads.keys()].sort()).toEqual([...plain.grads.keys()].sort());
    expect(plain.grads.has('vision_model.vision_tower.pos_embed')).toBe(true); // the edit row reaches SigLIP
    let worst = 0;
    for (const [k, g] of plain.grads) worst = Math.max(worst, maxAbsDiff(g.dataSync(), ck.grads.get(k)!.dataSync()));
    expect(worst).toBeLessThan(1e-5);
    expect(ck.lossSum).toEqual(plain.lossSum);
    expect(ck.peakBytes).toBeLessThan(plain.peakBytes);
    tf.dispose([...plain.grads.values(), ...ck.grads.values(), pixels]);
    model.dispose();
  });
});

describe('parameters off the loss path (janus-spec 8.6)', () => {
  test('a step of text-to-image samples only still weight-decays SigLIP and the aligner, like the reference zero gradient', async () => {
    const dir = path.join(tmp, 't2i-only');
    const { data: mixed, tok } = fixtureData(12, 't2i-only');
    const t2i = Array.from({ length: mixed.size }, (_, i) => i).filter((i) => mixed.sample(i).task === 't2i');
    const data = { size: t2i.length, sample: (i: number) => mixed.sample(t2i[i]), sourceImage: (i: number) => mixed.sourceImage(t2i[i]) };
    const model = fixtureModel(11);
    const before = await model.params.snapshot();
    const lrs: number[] = [];
    const t = new Trainer(model, fixtureTrainConfig(dir, { max_steps: 1, micro_batch: 2, grad_accum: 2, warmup_ratio: 0 }), data, fixtureTemplates(tok), { onStep: (s) => lrs.push(s.lr) });
    await t.run();
    const lr = lrs[0];
    const wd = t.config.train.weight_decay;
    expect(lr).toBeGreaterThan(0);
    expect(wd).toBeGreaterThan(0);
    const after = await model.params.snapshot();
    const state = await t.optimizer.exportState();
    const editOnly = [...before.keys()].filter((n) => n.startsWith('vision_model.') || n.startsWith('aligner.'));
    expect(editOnly.length).toBeGreaterThan(4);
    const factor = Math.fround(1 - lr * wd);
    let decayed = 0;
    for (const name of editOnly) {
      // torch's AdamW on a zero gradient: p *= 1 - lr * wd (none under the no-decay rule), then p += 0.
      const want = t.optimizer.decays(name) ? before.get(name)!.map((p) => Math.fround(p * factor)) : before.get(name)!;
      if (t.optimizer.decays(name)) decayed++;
      expect(maxAbsDiff(after.get(name)!, want)).toBe(0);
      // The moments are zero and the step is counted, so later edit steps see torch's bias correction.
      expect(state.meta.segments.find((s) => s.name === name)!.step).toBe(1);
      for (const m of ['exp_avg', 'exp_avg_sq']) expect(maxAbsDiff(state.tensors.get(`${name}.${m}`)!, new Float32Array(before.get(name)!.length))).toBe(0);
    }
    expect(decayed).toBeGreaterThan(0);
    // Parameters frozen by config (the VQ, lm_head) are not in the optimizer and stay untouched.
    const frozen = [...before.keys()].filter((n) => n.startsWith('gen_vision_model.') || n === 'language_model.lm_head.weight');
    expect(frozen.length).toBeGreaterThan(0);
    for (const name of frozen) {
      expect(t.trainable).not.toContain(name);
      expect(maxAbsDiff(after.get(name)!, before.get(name)!)).toBe(0);
    }
    model.dispose();
  });
});
