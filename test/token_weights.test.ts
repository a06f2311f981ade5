/**
 * Frequency-balanced image-token loss weights (train.token_weight_power, src/train/token_weights.ts): the weights
 * themselves, that microStep weights the gradient (not the logged loss) by them, and that the trainer uses them.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import { TokenSample, collate } from '../src/data/batch';
import { makeRng } from '../src/data/rng';
import { promptIds } from '../src/data/prompt_ids';
import { imageTokenCount } from '../src/model/config';
import { parseTrainConfig } from '../src/train/config';
import { microStep } from '../src/train/step';
import { TokenWeightSource, codeCounts, tokenWeightPower, weightsFromCounts } from '../src/train/token_weights';
import { Trainer } from '../src/train/trainer';
import { fixtureConfig, fixtureData, fixtureModel, fixtureTrainConfig } from './train_fixture';

const codeFrequencyWeights = (data: TokenWeightSource, codebook: number, power: number) => weightsFromCounts(codeCounts(data, codebook), power);
const targets = (...rows: number[][]) => ({ size: rows.length, sample: (i: number) => ({ target: rows[i] }) });

beforeAll(async () => {
  await initBackend('cpu');
});

describe('codeCounts and weightsFromCounts', () => {
  test('power 0 is the uniform recipe (no weights)', () => {
    expect(codeFrequencyWeights(targets([0, 1, 1]), 4, 0)).toBeNull();
  });

  test('count^-power, mean 1 over the training targets; unseen codes get the largest seen weight', () => {
    // Code 0 six times, code 1 twice, code 2 once; code 3 never.
    const data = targets([0, 0, 0, 1], [0, 0, 0, 1, 2]);
    for (const power of [0.5, 1]) {
      const w = codeFrequencyWeights(data, 4, power)!;
      expect(w[1] / w[0]).toBeCloseTo(Math.pow(2 / 6, -power), 5);
      expect(w[2] / w[0]).toBeCloseTo(Math.pow(1 / 6, -power), 5);
      expect(w[3]).toBeCloseTo(w[2], 6);
      expect((6 * w[0] + 2 * w[1] + w[2]) / 9).toBeCloseTo(1, 5);
    }
    // power 1: every code carries the same total weight.
    const w = codeFrequencyWeights(data, 4, 1)!;
    expect(6 * w[0]).toBeCloseTo(2 * w[1], 5);
    expect(2 * w[1]).toBeCloseTo(w[2], 5);
  });

  test('a target outside the codebook names its record', () => {
    expect(() => codeFrequencyWeights(targets([0, 1], [5]), 4, 0.5)).toThrow(/training record 1: target code 5 is outside 0..3/);
  });

  test('the config key is checked', () => {
    const raw = (train: Record<string, unknown>) => ({ model: { preset: 'tiny' }, data: { kind: 'shapeworld', root: 'x' }, train });
    expect(() => parseTrainConfig(raw({ token_weight_power: 2 }), 'c.yaml')).toThrow(/token_weight_power.*must be in \[0, 1\]/);
    expect(() => parseTrainConfig(raw({ token_weight_anneal: 0 }), 'c.yaml')).toThrow(/token_weight_anneal.*must be in \(0, 1\]/);
    expect(parseTrainConfig(raw({}), 'c.yaml').train.token_weight_power).toBe(0);
  });
});

describe('weighted microStep', () => {
  const { data, tok } = fixtureData(4, 'weights');
  const samples: TokenSample[] = Array.from({ length: data.size }, (_, i) => data.sample(i)).filter((s) => s.task === 't2i');
  const tpl = promptIds(tok);
  const n = imageTokenCount(fixtureConfig());
  const opts = { textMaskProb: 0, imageMaskProb: 0, lossAlignment: 'full' as const };
  const trainable = ['gen_head.vision_head.weight', 'language_model.model.layers.0.self_attn.q_proj.weight'];

  test('weights 1 for one code, 0 for the rest: the gradient of the loss on that code\'s targets alone; lossSum unweighted', () => {
    const model = fixtureModel(5);
    const batch = collate(samples, tpl, n, opts, () => makeRng(1));
    const code = batch.lossTargets[3];
    const codebook = model.config.vq.codebookSize;
    const only = new Float32Array(codebook);
    only[code] = 1;
    const weighted = microStep(model, batch, { denominator: 10, trainable, sourcePixels: null, codeWeights: only });
    const plain = microStep(model, batch, { denominator: 10, trainable, sourcePixels: null });
    const keep = batch.lossTargets.map((t, i) => (t === code ? i : -1)).filter((i) => i >= 0);
    expect(keep.length).toBeGreaterThan(0);
    expect(keep.length).toBeLessThan(batch.lossTargets.length);
    const filtered = { ...batch, lossPositions: keep.map((i) => batch.lossPositions[i]), lossTargets: keep.map((i) => batch.lossTargets[i]), lossTasks: keep.map((i) => batch.lossTasks[i]) };
    const alone = microStep(model, filtered, { denominator: 10, trainable, sourcePixels: null });
    expect(weighted.lossSum.t2i).toBeCloseTo(plain.lossSum.t2i, 4);
    for (const name of trainable) {
      const a = weighted.grads.get(name)!.dataSync();
      const b = alone.grads.get(name)!.dataSync();
      const p = plain.grads.get(name)!.dataSync();
      let maxDiff = 0;
      let maxPlainDiff = 0;
      for (let i = 0; i < a.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
        maxPlainDiff = Math.max(maxPlainDiff, Math.abs(a[i] - p[i]));
      }
      expect(maxDiff).toBeLessThan(1e-6);
      expect(maxPlainDiff).toBeGreaterThan(1e-4);
    }
    for (const r of [weighted, plain, alone]) r.grads.forEach((g) => g.dispose());
    model.dispose();
  });

  test('the trainer weights by the training set\'s code counts, annealed to uniform when asked', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tw-'));
    const model = fixtureModel(2);
    const codebook = model.config.vq.codebookSize;
    const lines: string[] = [];
    const constant = new Trainer(model, fixtureTrainConfig(dir, { token_weight_power: 0.5, max_steps: 10 }), data, tpl, { log: (l) => lines.push(l) });
    expect(lines.join('\n')).toMatch(/image-token loss weights: count\^-0.5 .*all run/);
    for (const step of [0, 9]) expect(constant.codeWeights(step)).toEqual(codeFrequencyWeights(data, codebook, 0.5));
    const annealed = new Trainer(model, fixtureTrainConfig(dir, { token_weight_power: 0.5, token_weight_anneal: 0.5, max_steps: 10 }), data, tpl);
    expect(annealed.codeWeights(0)).toEqual(codeFrequencyWeights(data, codebook, 0.5));
    expect(annealed.codeWeights(2)).toEqual(codeFrequencyWeights(data, codebook, 0.3));
    expect(annealed.codeWeights(5)).toBeNull();
    expect(annealed.codeWeights(9)).toBeNull();
    const uniform = new Trainer(model, fixtureTrainConfig(dir, { max_steps: 10 }), data, tpl);
    expect(uniform.codeWeights(0)).toBeNull();
    expect(tokenWeightPower(3, 10, 0.5, undefined)).toBe(0.5);
    expect(tokenWeightPower(3, 10, 0.5, 0.6)).toBeCloseTo(0.25, 10);
    model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
