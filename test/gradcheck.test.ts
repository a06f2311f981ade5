/**
 * Analytic gradients of the image-token cross-entropy against central finite differences, for a sample of
 * parameters in every parameter group of a 2-layer, hidden-32 model.
 *
 * Tolerance: all arithmetic is float32. With a loss of ~3.7, float32 rounding puts ~4e-7 of noise on each loss
 * evaluation; a central difference with step h = 1e-2 turns that into ~2e-5 of noise on the gradient, while its
 * truncation error is O(h^2 * f''') ~ 1e-5 for these smooth functions. So |fd - analytic| <= 2e-4 + 2% x
 * |analytic| is ~10x above the expected error and far below the gradients checked (we require them >= 1e-3,
 * so a wrong or missing gradient term fails).
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import { Janus4o } from '../src/model/janus';
import { imageTokenLoss } from '../src/model/loss';
import { SequenceInput } from '../src/model/sequence';
import { intRng, microConfig } from './helpers';

const H = 1e-2;

describe('gradient check (finite differences)', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  test('every parameter group matches central differences', async () => {
    const cfg = microConfig({ hidden: 32, layers: 2, heads: 2 });
    const model = Janus4o.create(cfg, { seed: 11 });
    // Larger weights than the 0.02 init, so attention is far from uniform and every gradient is well above the
    // finite-difference noise floor; norm weights stay near 1.
    for (const spec of model.params.list()) {
      const n = spec.shape.reduce((a, b) => a * b, 1);
      const r = intRng(`w:${spec.name}`);
      const isNorm = spec.name.endsWith('layernorm.weight') || spec.name.endsWith('norm.weight');
      model.params.setValue(spec.name, Float32Array.from({ length: n }, () => (isNorm ? 1 : 0) + (r(2001) - 1000) / 1000 * (isNorm ? 0.2 : 0.35)));
    }
    const rnd = intRng('gradcheck');
    const B = 2;
    const L = 12;
    const textLen = 4;
    const featLen = 2; // image-feature positions (SigLIP -> aligner) right after BOS
    const textIds = Array.from({ length: B }, () => Array.from({ length: L }, () => rnd(cfg.llm.vocabSize)));
    const genPositions: number[] = [];
    const genIds: number[] = [];
    const featPositions: number[] = [];
    const at: number[] = [];
    const targets: number[] = [];
    for (let r = 0; r < B; r++) {
      for (let j = 1; j <= featLen; j++) featPositions.push(r * L + j);
      for (let j = textLen; j < L; j++) {
        genPositions.push(r * L + j);
        genIds.push(rnd(cfg.vq.codebookSize));
      }
      // Next-token prediction over the image slots: position j predicts the image token at j + 1.
      for (let j = textLen - 1; j < L - 1; j++) {
        at.push(r * L + j);
        targets.push(genIds[r * (L - textLen) + (j + 1 - textLen)]);
      }
    }
    const features = tf.keep(tf.randomNormal([featPositions.length, cfg.siglip.width], 0, 1, 'float32', 7));
    const lossFn = () => {
      const input: SequenceInput = {
        textIds,
        genTokens: { positions: genPositions, ids: genIds },
        imageEmbeds: { positions: featPositions, embeds: model.aligner.apply(features) as tf.Tensor2D },
      };
      return imageTokenLoss(model.forward(input, { imageLogitsAt: at }).imageLogits!, targets);
    };
    const groups: Record<string, string[]> = {
      attention: ['q_proj', 'k_proj', 'v_proj', 'o_proj'].map((p) => `language_model.model.layers.0.self_attn.${p}.weight`),
      mlp: ['gate_proj', 'up_proj', 'down_proj'].map((p) => `language_model.model.layers.1.mlp.${p}.weight`),
      norms: ['layers.0.input_layernorm', 'layers.1.post_attention_layernorm', 'norm'].map((p) => `language_model.model.${p}.weight`),
      embed_tokens: ['language_model.model.embed_tokens.weight'],
      gen_embed: ['gen_embed.weight'],
      gen_aligner: ['gen_aligner.layers.0.weight', 'gen_aligner.layers.0.bias', 'gen_aligner.layers.2.weight'],
      gen_head: ['gen_head.output_mlp_projector.weight', 'gen_head.vision_head.weight', 'gen_head.vision_head.bias'],
      aligner: ['aligner.layers.0.weight', 'aligner.layers.2.weight', 'aligner.layers.2.bias'],
    };
    const names = Object.values(groups).flat();
    const vars = names.map((n) => model.params.get(n));
    const analytic = tf.tidy(() => {
      const { grads } = tf.variableGrads(lossFn, vars);
      return names.map((n, i) => tf.keep(grads[vars[i].name]));
    });
    const lossAt = (v: tf.Variable, flat: number, delta: number, base: Float32Array): number => {
      const copy = base.slice();
      copy[flat] += delta;
      v.assign(tf.tensor(copy, v.shape));
      return tf.tidy(() => lossFn().dataSync()[0]);
    };
    const report: string[] = [];
    for (let i = 0; i < names.length; i++) {
      const v = vars[i];
      const base = v.dataSync() as Float32Array;
      const g = analytic[i].dataSync();
      // Check the 3 entries with the largest analytic gradient (non-trivial by construction) and 2 random ones.
      const order = Array.from(g.keys()).sort((a, b) => Math.abs(g[b]) - Math.abs(g[a]));
      const picks = [...order.slice(0, 3), rnd(g.length), rnd(g.length)];
      if (Math.abs(g[order[0]]) < 1e-3) report.push(`${names[i]}: largest gradient ${g[order[0]]} is too small to check`);
      for (const k of picks) {
        const fd = (lossAt(v, k, H, base) - lossAt(v, k, -H, base)) / (2 * H);
        const tol = 2e-4 + 0.02 * Math.abs(g[k]);
        if (Math.abs(fd - g[k]) > tol) report.push(`${names[i]}[${k}]: analytic ${g[k]} vs finite difference ${fd}`);
      }
      v.assign(tf.tensor(base, v.shape));
    }
    expect(report).toEqual([]);
    tf.dispose(analytic);
    features.dispose();
    model.dispose();
  });
});
