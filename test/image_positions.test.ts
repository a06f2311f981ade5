/**
 * Non-reference image-token positions (src/model/positions.ts): the ids every builder gives (training rows, CFG
 * rows, the sampler with and without the KV cache), that they reach the decoder in training, and that a config
 * carries them through config.json. Official (reference) configs must come out exactly as before.
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import { TokenSample, collate, editRowVariant } from '../src/data/batch';
import { makeRng } from '../src/data/rng';
import { promptIds } from '../src/data/prompt_ids';
import { checkPositionBudget, generateEdits, generateT2I } from '../src/generate/sampler';
import { janusConfigFromHf, janusConfigToHf } from '../src/io/hf_config';
import { JanusConfig, PRESETS, imageTokenCount, presetConfig } from '../src/model/config';
import { Janus4o } from '../src/model/janus';
import { editPrefixPositions } from '../src/model/positions';
import { perPositionCE } from '../src/model/loss';
import { microStep } from '../src/train/step';
import { parseTrainConfig } from '../src/train/config';
import { fixtureConfig, fixtureData } from './train_fixture';

const STRIDED = { stride: 4, editTargetOffset: 90 };

function stridedConfig(): JanusConfig {
  const base = fixtureConfig();
  return presetConfig('tiny', { ...base, llm: { ...base.llm, maxPositionEmbeddings: 256 }, imagePositions: STRIDED });
}

const { data, tok } = fixtureData(6, 'positions');
// Edit rows name their source image (the E block) by index, as the trainer's batches do.
const samples: TokenSample[] = Array.from({ length: data.size }, (_, i) => ({ ...data.sample(i), ...(data.sample(i).task === 'edit' ? { sourceImage: i } : {}) }));
const n = imageTokenCount(fixtureConfig());
const plain = promptIds(tok);
const strided = promptIds(tok, STRIDED);
const noMask = { textMaskProb: 0, imageMaskProb: 0, lossAlignment: 'full' as const };

beforeAll(async () => {
  await initBackend('cpu');
});

describe('position ids of rows', () => {
  test('edit prefixes: X block strided, target token k a fixed distance after X token k whatever the instruction', () => {
    for (const instruction of ['a', 'make the circle red', 'make the red circle left of the blue square green']) {
      const prefix = strided.editPrefix(instruction, n);
      const pos = prefix.positions!;
      expect(pos).toHaveLength(prefix.ids.length);
      const [x0, x1] = prefix.xBlock;
      for (let i = 0; i < x0; i++) expect(pos[i]).toBe(i);
      for (let k = 0; k < n; k++) expect(pos[x0 + k]).toBe(x0 + 4 * k);
      expect(x1 - x0).toBe(n);
      for (let i = x1; i < pos.length - 1; i++) expect(pos[i]).toBe(pos[i - 1] + 1);
      // Target token k follows BOI by 4 * (k + 1): at X token k + 90.
      expect(pos[pos.length - 1] + 4).toBe(x0 + STRIDED.editTargetOffset);
    }
  });

  test('an instruction too long for the offset is refused, naming the config key', () => {
    const long = Array.from({ length: 40 }, () => 'red').join(' ');
    expect(() => strided.editPrefix(long, n)).toThrow(/too long.*edit_target_offset/);
  });

  test('an offset below the X block overlays it: the position predicting target token k shares X token k\'s id, whatever the instruction', () => {
    const overlaid = promptIds(tok, { stride: 4, editTargetOffset: 4 });
    for (const instruction of ['a', Array.from({ length: 40 }, () => 'red').join(' ')]) {
      const prefix = overlaid.editPrefix(instruction, n);
      const pos = prefix.positions!;
      const [x0] = prefix.xBlock;
      // The final BOI predicts target token 0 and sits on X token 0; target token k - 1 (4k ids after it) on X token k.
      expect(pos[pos.length - 1]).toBe(pos[x0]);
      const row = collate([{ task: 'edit', prompt: instruction, target: Array.from({ length: n }, (_, k) => k), source: Array.from({ length: n }, (_, k) => k), sourceImage: 0 }], overlaid, n, noMask, (k) => makeRng(`o${k}`));
      const ids = row.positionIds![0];
      const boi = prefix.ids.length - 1;
      for (let k = 0; k < n; k++) expect(ids[boi + k]).toBe(ids[x0 + k]);
    }
  });

  test('a stride without an offset keeps the tokens after X consecutive', () => {
    const e = plain.editPrefix('make the circle red', n);
    const pos = editPrefixPositions(e.ids.length, e.xBlock, { stride: 2, editTargetOffset: null });
    expect(pos[pos.length - 1]).toBe(pos[pos.length - 2] + 1);
    expect(pos[e.xBlock[0] + 1] - pos[e.xBlock[0]]).toBe(2);
  });

  test('collate: targets strided after BOI, edit targets aligned to X, left padding at 0, every CFG variant the same ids', () => {
    const b = collate(samples, strided, n, noMask, () => makeRng(1));
    expect(b.positionIds).toBeDefined();
    b.rows.forEach((row, r) => {
      const L = b.textIds[r].length;
      const shift = L - row.ids.length;
      const pos = b.positionIds![r];
      for (let j = 0; j < shift; j++) expect(pos[j]).toBe(0);
      const boi = pos[shift + row.targetStart - 1];
      for (let k = 0; k < n; k++) expect(pos[shift + row.targetStart + k]).toBe(boi + 4 * (k + 1));
      if (samples[r].task === 'edit') {
        for (let k = 0; k < n; k++) expect(pos[shift + row.targetStart + k] - pos[shift + row.xBlock![0] + k]).toBe(STRIDED.editTargetOffset);
      } else {
        expect(pos.slice(shift, shift + row.targetStart)).toEqual(row.ids.slice(0, row.targetStart).map((_, i) => i));
      }
    });
    const prefix = strided.editPrefix('make the circle red', n);
    const variants = (['full', 'part', 'uncond'] as const).map((v) => editRowVariant(prefix, v, tok.special.pad).positions);
    expect(variants[1]).toEqual(variants[0]);
    expect(variants[2]).toEqual(variants[0]);
  });

  test('reference templates leave position ids to the model (batches unchanged)', () => {
    const b = collate(samples, plain, n, noMask, () => makeRng(1));
    expect(b.positionIds).toBeUndefined();
    expect(plain.editPrefix('make the circle red', n).positions).toBeUndefined();
  });
});

describe('a strided model', () => {
  test('training uses the rows\' position ids: microStep loss equals a forward with them, not one without', () => {
    const model = Janus4o.create(stridedConfig(), { seed: 3 });
    // Sharp attention (large q/k weights), so that where a key sits changes the output visibly.
    for (const spec of model.params.list()) {
      if (/(q_proj|k_proj)\.weight$/.test(spec.name)) model.params.get(spec.name).assign(tf.mul(model.params.get(spec.name), 40));
    }
    const t2i = samples.filter((s) => s.task === 't2i');
    const b = collate(t2i, strided, n, noMask, () => makeRng(2));
    const res = microStep(model, b, { denominator: b.lossTargets.length, trainable: ['gen_head.vision_head.weight'], sourcePixels: null });
    res.grads.forEach((g) => g.dispose());
    const lossWith = (positionIds: number[][] | undefined) =>
      tf.tidy(() => {
        const logits = model.forward({ textIds: b.textIds, attentionMask: b.attentionMask, positionIds, genTokens: { positions: b.genPositions, ids: b.genIds } }, { imageLogitsAt: b.lossPositions }).imageLogits!;
        return tf.sum(perPositionCE(logits, tf.tensor1d(b.lossTargets, 'int32'))).dataSync()[0];
      });
    expect(res.lossSum.t2i).toBeCloseTo(lossWith(b.positionIds), 3);
    expect(Math.abs(res.lossSum.t2i - lossWith(undefined))).toBeGreaterThan(1e-3);
    model.dispose();
  });

  test.each([
    ['after X', STRIDED],
    ['overlaying X', { stride: 4, editTargetOffset: 4 }],
  ])('KV-cache sampling equals recomputing the whole sequence (T2I and edits, edit targets %s), tensor count flat', async (_, positions) => {
    const model = Janus4o.create({ ...stridedConfig(), imagePositions: positions }, { seed: 4 });
    const ids = promptIds(tok, positions);
    const features = tf.randomNormal([n, model.config.llm.hiddenSize], 0, 1, 'float32', 5) as tf.Tensor2D;
    const source = Array.from({ length: n }, (_, i) => (i * 7) % model.config.vq.codebookSize);
    const run = async (useCache: boolean) => {
      const t = await generateT2I(model, ids, [{ prompt: 'a red circle', count: 2 }], { seed: 1, useCache });
      const e = await generateEdits(model, ids, [{ instruction: 'make the circle red', sourceIds: source, sourceFeatures: features, count: 1 }], { seed: 1, useCache });
      return [t.ids, e.ids];
    };
    const cached = await run(true);
    const before = tf.memory().numTensors;
    expect(await run(false)).toEqual(cached);
    expect(await run(true)).toEqual(cached);
    expect(tf.memory().numTensors).toBe(before);
    features.dispose();
    model.dispose();
  });

  test('templates that number positions differently from the model are refused', async () => {
    const model = Janus4o.create(stridedConfig(), { seed: 4 });
    await expect(generateT2I(model, plain, [{ prompt: 'a red circle', count: 1 }])).rejects.toThrow(/promptIds\(tokenizer, model.config.imagePositions\)/);
    model.dispose();
  });

  test('the position budget counts strided ids', () => {
    const cfg = stridedConfig();
    // 16 image tokens 4 ids apart after a prompt of 200 (ids 0..199): the last is 263, so 264 positions.
    expect(() => checkPositionBudget(cfg, 200, 'the prompt')).toThrow(/max_position_embeddings/);
    expect(() => checkPositionBudget(cfg, 200, 'the prompt')).toThrow(/200 tokens.* 264 positions/);
    expect(() => checkPositionBudget(cfg, 150, 'the prompt')).not.toThrow();
  });
});

describe('config', () => {
  test('config.json carries janus4o_image_positions both ways; official presets write no such key', () => {
    const cfg = stridedConfig();
    const hf = janusConfigToHf(cfg);
    expect(hf.janus4o_image_positions).toEqual({ stride: 4, edit_target_offset: 90 });
    expect(janusConfigFromHf(hf).imagePositions).toEqual(STRIDED);
    expect('janus4o_image_positions' in janusConfigToHf(PRESETS['janus-pro-7b'])).toBe(false);
    expect(() => janusConfigFromHf({ ...hf, janus4o_image_positions: { stride: 'four' } })).toThrow(/janus4o_image_positions must be/);
  });

  test('bad values are named: stride, and an offset that is not a non-negative integer', () => {
    expect(() => presetConfig('tiny', { imagePositions: { stride: 0, editTargetOffset: null } })).toThrow(/imagePositions.stride must be a positive integer/);
    expect(() => presetConfig('tiny', { imagePositions: { stride: 4, editTargetOffset: -4 } })).toThrow(/editTargetOffset must be a non-negative integer/);
    expect(() => presetConfig('tiny', { imagePositions: { stride: 4, editTargetOffset: 2.5 } })).toThrow(/editTargetOffset must be a non-negative integer/);
    expect(presetConfig('tiny', { imagePositions: { stride: 4, editTargetOffset: 0 } }).imagePositions).toEqual({ stride: 4, editTargetOffset: 0 });
  });

  test('a training config takes model.overrides.imagePositions and checks its keys', () => {
    const raw = (ip: unknown) => ({ model: { preset: 'tiny', overrides: { imagePositions: ip } }, data: { kind: 'shapeworld', root: 'x' }, checkpoint: { dir: 'y' } });
    expect(parseTrainConfig(raw({ stride: 4, editTargetOffset: 320 }), 't.yaml').model.overrides.imagePositions).toEqual({ stride: 4, editTargetOffset: 320 });
    expect(() => parseTrainConfig(raw({ stride: 4 }), 't.yaml')).toThrow(/imagePositions/);
  });
});
