import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import { presetConfig } from '../src/model/config';
import { Janus4o } from '../src/model/janus';
import { SequenceInput } from '../src/model/sequence';
import { intRng, maxAbsDiff, microConfig } from './helpers';

/** A row of `textLen` text ids followed by `imgLen` image tokens, for B rows. */
function mixedInput(model: Janus4o, batch: number, textLen: number, imgLen: number, seed: string): { input: SequenceInput; imageIds: number[][] } {
  const rnd = intRng(seed);
  const L = textLen + imgLen;
  const textIds: number[][] = [];
  const imageIds: number[][] = [];
  const positions: number[] = [];
  const ids: number[] = [];
  for (let r = 0; r < batch; r++) {
    const row = Array.from({ length: L }, () => rnd(model.config.llm.vocabSize));
    textIds.push(row);
    const img = Array.from({ length: imgLen }, () => rnd(model.config.vq.codebookSize));
    imageIds.push(img);
    img.forEach((id, j) => {
      positions.push(r * L + textLen + j);
      ids.push(id);
    });
  }
  return { input: { textIds, genTokens: { positions, ids } }, imageIds };
}

describe('Janus4o forward', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  test('causality: changing tokens after t never changes logits at positions <= t', async () => {
    const model = Janus4o.create(microConfig(), { seed: 3 });
    const { input } = mixedInput(model, 2, 6, 6, 'causal');
    const L = 12;
    const at = Array.from({ length: 2 * L }, (_, i) => i);
    const base = tf.tidy(() => model.forward(input, { imageLogitsAt: at }).imageLogits!);
    const baseV = await base.data();
    const V = model.config.vq.codebookSize;
    for (const t of [3, 5, 8]) {
      // Perturb every text id and image id after position t in both rows.
      const textIds = input.textIds.map((row) => row.map((v, j) => (j > t ? (v + 7) % model.config.llm.vocabSize : v)));
      const g = input.genTokens!;
      const ids = Array.from(g.ids as number[]).map((v, i) => ((g.positions[i] % L) > t ? (v + 5) % V : v));
      const changed = tf.tidy(() => model.forward({ textIds, genTokens: { positions: g.positions, ids } }, { imageLogitsAt: at }).imageLogits!);
      const cv = await changed.data();
      let before = 0;
      let after = 0;
      for (let r = 0; r < 2; r++) {
        for (let j = 0; j < L; j++) {
          const d = maxAbsDiff(baseV.subarray((r * L + j) * V, (r * L + j + 1) * V), cv.subarray((r * L + j) * V, (r * L + j + 1) * V));
          if (j <= t) before = Math.max(before, d);
          else after = Math.max(after, d);
        }
      }
      expect(before).toBeLessThan(1e-6);
      expect(after).toBeGreaterThan(1e-4); // the perturbation is visible, so the test can fail
      changed.dispose();
    }
    base.dispose();
    model.dispose();
  });

  test('init schemes: unit-input puts text and image-token inputs at unit scale above one block\'s output; reference keeps 0.02', () => {
    // docs/init-scale.md: with HF's 0.02 embeddings and 0.02 aligner layers both inputs sit at RMS ~0.01-0.02 under
    // the ~0.1 a block adds, and a fresh tiny model took longer to start reading the prompt.
    const rms = (t: tf.Tensor) => tf.tidy(() => tf.sqrt(tf.mean(tf.square(t))).dataSync()[0]);
    const inputs = (model: Janus4o) => {
      const text = rms(model.params.get('language_model.model.embed_tokens.weight'));
      const image = rms(tf.tidy(() => model.gen.imageTokenEmbeds(tf.range(0, model.config.vq.codebookSize, 1, 'int32') as tf.Tensor1D)));
      const added = rms(
        tf.tidy(() => {
          const { embeds, decoderInputs } = model.embedInputs({ textIds: [[0, 6, 9, 12, 60, 28, 49, 3]] });
          const ctx = model.llm.context({ embeds, positions: decoderInputs.positions, mask: decoderInputs.mask });
          return tf.sub(model.llm.block(0, embeds, ctx), embeds);
        }),
      );
      return { text, image, added };
    };
    const unit = Janus4o.create(presetConfig('tiny'), { seed: 5, init: 'unit-input' });
    const u = inputs(unit);
    expect(u.text).toBeGreaterThan(0.8); // std 1 truncated at 2 std: RMS 0.88
    expect(u.text).toBeLessThan(1.1);
    expect(u.image).toBeGreaterThan(0.5);
    expect(u.image).toBeLessThan(4);
    expect(u.added).toBeLessThan(0.5 * u.text);
    // The same weights elsewhere: only the embeddings and the projectors differ from the reference init.
    const ref = Janus4o.create(presetConfig('tiny'), { seed: 5 });
    const r = inputs(ref);
    expect(r.text).toBeLessThan(0.03);
    expect(r.image).toBeLessThan(0.05);
    const q = 'language_model.model.layers.0.self_attn.q_proj.weight';
    expect(maxAbsDiff(unit.params.get(q).dataSync(), ref.params.get(q).dataSync())).toBe(0);
    unit.dispose();
    ref.dispose();
  });

  test('wrong inputs are rejected with what was expected and what was given', () => {
    const model = Janus4o.create(microConfig(), { seed: 1 });
    const V = model.config.llm.vocabSize;
    const run = (input: SequenceInput) => () => tf.tidy(() => model.forward(input, { imageLogitsAt: [0] }).imageLogits!);
    expect(run({ textIds: [[1, V]] })).toThrow(`text id ${V} at row 0, position 1 is outside the text vocabulary 0..${V - 1}`);
    expect(run({ textIds: [[1, 2], [3]] })).toThrow('textIds row 1 has length 1, expected 2');
    const IV = model.config.vq.codebookSize;
    expect(run({ textIds: [[1, 2]], genTokens: { positions: [1], ids: [IV] } })).toThrow(`image-token id ${IV} (entry 0) is outside the image vocabulary 0..${IV - 1}`);
    const emb = tf.zeros([2, model.config.llm.hiddenSize]) as tf.Tensor2D;
    expect(run({ textIds: [[1, 2, 3]], imageEmbeds: { positions: [0, 1, 2], embeds: emb } })).toThrow('2 image embeddings given for 3 marked image positions');
    expect(run({ textIds: [[1, 2, 3]], imageEmbeds: { positions: [0, 1], embeds: tf.zeros([2, 5]) as tf.Tensor2D } })).toThrow(
      `image embeddings must be [K, ${model.config.llm.hiddenSize}], got [2, 5]`,
    );
    emb.dispose();
    const max = model.config.llm.maxPositionEmbeddings;
    expect(run({ textIds: [new Array(max + 1).fill(1)] })).toThrow(`sequence of ${max + 1} positions (0 cached + ${max + 1} new) exceeds max_position_embeddings ${max}`);
    expect(run({ textIds: [[1, 2]], genTokens: { positions: [2], ids: [0] } })).toThrow('image-token position 2 (entry 0) is outside 0..1');
    model.dispose();
  });

  test('no tensor leak across 20 forward+backward steps (tiny preset, wasm)', async () => {
    await initBackend('wasm');
    const model = Janus4o.create('tiny', { seed: 2 });
    const { input, imageIds } = mixedInput(model, 2, 8, 16, 'leak');
    const L = 24;
    const at: number[] = [];
    const targets: number[] = [];
    for (let r = 0; r < 2; r++) for (let j = 0; j < 16; j++) {
      at.push(r * L + 7 + j);
      targets.push(imageIds[r][j]);
    }
    // lm_head, the image encoders and the understanding aligner take no part in an image-token loss without
    // image features.
    const offPath = (n: string) => n.startsWith('aligner.') || n.startsWith('vision_model.') || n.startsWith('gen_vision_model.') || n === 'language_model.lm_head.weight';
    const vars = model.params.variables((n) => !offPath(n));
    const counts: number[] = [];
    for (let step = 0; step < 20; step++) {
      const loss = tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => {
          const logits = model.forward(input, { imageLogitsAt: at }).imageLogits!;
          return imageTokenLossLocal(logits, targets);
        }, vars);
        // A plain SGD step so that weights change between steps, as in training.
        for (const v of vars) v.assign(tf.sub(v, tf.mul(grads[v.name], 1e-3)));
        return value;
      });
      await loss.data();
      loss.dispose();
      counts.push(tf.memory().numTensors);
    }
    expect(new Set(counts.slice(1)).size).toBe(1);
    expect(counts[counts.length - 1]).toBe(counts[0]);
    model.dispose();
    await initBackend('cpu');
  });
});

function imageTokenLossLocal(logits: tf.Tensor2D, targets: number[]): tf.Scalar {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('../src/model/loss') as typeof import('../src/model/loss')).imageTokenLoss(logits, targets);
}

describe('KV cache', () => {
  for (const backend of ['wasm', 'cpu'] as const) {
    test(`prefill + single steps equals one full forward (batch 3, ${backend})`, async () => {
      await initBackend(backend);
      const model = Janus4o.create(presetConfig('tiny'), { seed: 5 });
      const B = 3;
      const L0 = 10;
      const k = 6;
      const { input, imageIds } = mixedInput(model, B, L0 - 2, 2 + k, `kv-${backend}`);
      const L = L0 + k;
      // Full forward: image logits at positions L0-1 .. L-1 of every row.
      const at: number[] = [];
      for (let r = 0; r < B; r++) for (let j = L0 - 1; j < L; j++) at.push(r * L + j);
      const full = tf.tidy(() => model.forward(input, { imageLogitsAt: at }).imageLogits!);
      const fullV = await full.data();
      // Prefill the first L0 positions, then feed the remaining image tokens one per step.
      const cache = model.newCache(B);
      const prefixGen = { positions: [] as number[], ids: [] as number[] };
      for (let r = 0; r < B; r++) for (let j = L0 - 2; j < L0; j++) {
        prefixGen.positions.push(r * L0 + j);
        prefixGen.ids.push(imageIds[r][j - (L0 - 2)]);
      }
      const V = model.config.vq.codebookSize;
      const got: number[][] = Array.from({ length: B }, () => []);
      const first = tf.tidy(() =>
        model.forward(
          { textIds: input.textIds.map((row) => row.slice(0, L0)), genTokens: prefixGen },
          { cache, imageLogitsAt: Array.from({ length: B }, (_, r) => r * L0 + L0 - 1) },
        ).imageLogits!,
      );
      const fv = await first.data();
      for (let r = 0; r < B; r++) got[r].push(...fv.subarray(r * V, (r + 1) * V));
      first.dispose();
      for (let s = 0; s < k; s++) {
        const ids = Array.from({ length: B }, (_, r) => imageIds[r][2 + s]);
        const step = model.stepImageTokens(cache, ids);
        const sv = await step.data();
        for (let r = 0; r < B; r++) got[r].push(...sv.subarray(r * V, (r + 1) * V));
        step.dispose();
      }
      expect(cache.length).toBe(L);
      const expected = Array.from(fullV);
      const actual = got.flat();
      expect(maxAbsDiff(actual, expected)).toBeLessThan(1e-4);
      const before = tf.memory().numTensors;
      cache.dispose();
      expect(tf.memory().numTensors).toBe(before - 2 * model.config.llm.numLayers);
      full.dispose();
      model.dispose();
    });
  }

  test('left-padded rows with an attention mask match the unpadded row', async () => {
    await initBackend('cpu');
    const model = Janus4o.create(microConfig(), { seed: 9 });
    const row = [3, 4, 5, 6, 7];
    const alone = tf.tidy(() => model.forward({ textIds: [row] }, { imageLogitsAt: [4] }).imageLogits!);
    const padded = tf.tidy(() =>
      model.forward({ textIds: [[0, 0, ...row], [1, 2, 3, 4, 5, 6, 7]], attentionMask: [[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]] }, { imageLogitsAt: [6] })
        .imageLogits!,
    );
    expect(maxAbsDiff(await alone.data(), await padded.data())).toBeLessThan(1e-5);
    tf.dispose([alone, padded]);
    model.dispose();
  });
});
