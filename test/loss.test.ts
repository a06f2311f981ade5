/**
 * The image-token loss lives in one place (src/model/loss.ts): the training step (plain and activation
 * checkpointing), the held-out loss and the probes all score through it, so they agree to the last bit.
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import { collate } from '../src/data/batch';
import { makeRng } from '../src/data/rng';
import { imageTokenCount } from '../src/model/config';
import { imageTokenLoss, imageTokenScores, perPositionCE } from '../src/model/loss';
import { batchInput, microStep } from '../src/train/step';
import { fixtureConfig, fixtureData, fixtureModel, fixtureTemplates } from './train_fixture';

beforeAll(async () => {
  await initBackend('cpu');
});

test('perPositionCE is -log softmax at the target; imageTokenLoss is its mean; lengths are checked', () => {
  const logits = tf.tensor2d([[0, Math.log(3)], [2, 2]]);
  const ce = perPositionCE(logits, [1, 0]);
  const v = ce.dataSync();
  expect(v[0]).toBeCloseTo(-Math.log(3 / 4), 6);
  expect(v[1]).toBeCloseTo(Math.log(2), 6);
  const mean = imageTokenLoss(logits, tf.tensor1d([1, 0], 'int32'));
  expect(mean.dataSync()[0]).toBeCloseTo((v[0] + v[1]) / 2, 6);
  expect(() => perPositionCE(logits, [1])).toThrow(/2 loss positions but 1 target ids/);
  tf.dispose([logits, ce, mean]);
});

test.each([false, true])('the training step (activation checkpointing %s) scores exactly what imageTokenScores does', async (activationCheckpointing) => {
  const { data, tok } = fixtureData(6, 'loss');
  const model = fixtureModel(4);
  const samples = [0, 1, 2, 3].map((i) => data.sample(i));
  samples[2] = { ...samples[2], sourceImage: 0 };
  const batch = collate(samples, fixtureTemplates(tok), imageTokenCount(fixtureConfig()), { textMaskProb: 0, imageMaskProb: 0, lossAlignment: 'reference' }, () => makeRng(1));
  const pixels = tf.stack([await data.sourceImage(2)]) as tf.Tensor4D;
  const [ce, predicted] = tf.tidy(() => {
    const s = imageTokenScores(model, batchInput(model, batch, pixels), batch.lossPositions, batch.lossTargets);
    return [s.ce.dataSync(), s.predicted.dataSync()];
  });
  const trainable = ['gen_head.vision_head.weight'];
  const r = microStep(model, batch, { denominator: batch.lossPositions.length, trainable, sourcePixels: pixels, activationCheckpointing });
  let t2i = 0;
  let edit = 0;
  let correct = 0;
  batch.lossTasks.forEach((task, i) => {
    if (task === 't2i') t2i += ce[i];
    else edit += ce[i];
    if (predicted[i] === batch.lossTargets[i]) correct++;
  });
  expect(r.lossSum).toEqual({ t2i, edit });
  expect(r.correct).toBe(correct);
  tf.dispose([...r.grads.values(), pixels]);
  model.dispose();
});

test('every trainable parameter gets a gradient; zeros where the loss does not reach it (SigLIP without edits)', () => {
  const { data, tok } = fixtureData(6, 'zeros');
  const model = fixtureModel(4);
  const samples = [0, 1, 3, 4].map((i) => data.sample(i)).filter((s) => s.task === 't2i');
  const batch = collate(samples, fixtureTemplates(tok), imageTokenCount(fixtureConfig()), { textMaskProb: 0, imageMaskProb: 0, lossAlignment: 'reference' }, () => makeRng(1));
  const trainable = ['gen_head.vision_head.weight', 'vision_model.vision_tower.pos_embed', 'aligner.layers.0.weight'];
  for (const activationCheckpointing of [false, true]) {
    const r = microStep(model, batch, { denominator: batch.lossPositions.length, trainable, sourcePixels: null, activationCheckpointing });
    expect([...r.grads.keys()]).toEqual(trainable);
    for (const n of trainable) expect(r.grads.get(n)!.shape).toEqual(model.params.get(n).shape);
    expect(tf.tidy(() => tf.max(tf.abs(r.grads.get('gen_head.vision_head.weight')!)).dataSync()[0])).toBeGreaterThan(0);
    for (const n of trainable.slice(1)) expect(tf.tidy(() => tf.max(tf.abs(r.grads.get(n)!)).dataSync()[0])).toBe(0);
    tf.dispose([...r.grads.values()]);
  }
  model.dispose();
});
