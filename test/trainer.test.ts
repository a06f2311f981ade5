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
