/**
 * conditionUse: the held-out loss with the conditions dropped minus the loss with them, in nats per image. Checked
 * against the one case where the answer is known exactly (a model whose text embeddings are all equal cannot take
 * anything from its prompt) and against a model with large random weights, which reads everything it is given.
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import { TokenSample } from '../src/data/batch';
import { imageTokenCount } from '../src/model/config';
import { Janus4o } from '../src/model/janus';
import { conditionUse, formatConditionUse, heldoutLoss } from '../src/train/evaluate';
import { intRng } from './helpers';
import { fixtureData, fixtureModel, fixtureTemplates } from './train_fixture';

const { data, tok } = fixtureData(12, 'condition-use');
const tpl = fixtureTemplates(tok);
const samples: TokenSample[] = Array.from({ length: data.size }, (_, i) => data.sample(i));
const pixels = (s: TokenSample) => data.sourceImage(samples.indexOf(s));

/** Large random weights (norms near 1): attention far from uniform, so every input moves the output. */
function sharpModel(): Janus4o {
  const model = fixtureModel(5);
  for (const spec of model.params.list()) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const r = intRng(`w:${spec.name}`);
    const isNorm = /norm\d?\.weight$|layernorm\.weight$/.test(spec.name);
    model.params.setValue(spec.name, Float32Array.from({ length: n }, () => (isNorm ? 1 : 0) + ((r(2001) - 1000) / 1000) * (isNorm ? 0.2 : 0.35)));
  }
  return model;
}

describe('conditionUse', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  it('splits the held-out loss by task and measures both conditions of a model that reads its inputs', async () => {
    expect(samples.some((s) => s.task === 'edit') && samples.some((s) => s.task === 't2i')).toBe(true);
    const model = sharpModel();
    await heldoutLoss(model, samples.slice(0, 2), tpl, pixels); // builds the model's cached RoPE tables
    const tensors = tf.memory().numTensors;
    const { heldout, use } = await conditionUse(model, samples, tpl, pixels);
    expect(tf.memory().numTensors).toBe(tensors);
    const { t2i, edit } = heldout.byTask;
    expect(t2i!.tokens + edit!.tokens).toBe(heldout.tokens);
    expect((t2i!.loss * t2i!.tokens + edit!.loss * edit!.tokens) / heldout.tokens).toBeCloseTo(heldout.loss, 5);
    // Equal to the difference of the two held-out passes, in nats per image.
    const dropped = await heldoutLoss(model, samples, tpl, pixels, { dropConditions: true });
    const n = imageTokenCount(model.config);
    expect(use.prompt).toBeCloseTo((dropped.byTask.t2i!.loss - t2i!.loss) * n, 4);
    expect(use.inputImageTokens).toBeCloseTo((dropped.byTask.edit!.loss - edit!.loss) * n, 4);
    // A model this far from uniform attention is moved by both conditions.
    expect(Math.abs(use.prompt!)).toBeGreaterThan(0.05);
    expect(Math.abs(use.inputImageTokens!)).toBeGreaterThan(0.05);
    expect(formatConditionUse(use)).toMatch(/^prompt -?\d+\.\d\d nats\/image \(T2I\), input-image VQ block -?\d+\.\d\d nats\/image \(edits\)$/);
    model.dispose();
  });

  it('is exactly zero for the prompt when every text token has the same embedding', async () => {
    const model = sharpModel();
    const name = 'language_model.model.embed_tokens.weight';
    const [v, d] = model.params.get(name).shape;
    const row = Array.from({ length: d }, (_, j) => Math.sin(j + 1));
    model.params.setValue(name, Float32Array.from({ length: v * d }, (_, i) => row[i % d]));
    const t2iOnly = samples.filter((s) => s.task === 't2i');
    const { use } = await conditionUse(model, t2iOnly, tpl, pixels);
    expect(use.prompt).toBe(0);
    expect(use.inputImageTokens).toBeNull();
    expect(formatConditionUse(use)).toBe('prompt 0.00 nats/image (T2I)');
    model.dispose();
  });
});
