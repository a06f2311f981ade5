import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import { JanusConfig, presetConfig } from '../src/model/config';
import { ParamStore, checkpointShape } from '../src/model/params';
import { groupNorm, upsampleNearest2x } from '../src/model/vision_layers';
import { VQModel, VectorQuantizer, codebookUsage } from '../src/model/vq';
import { Downsample } from '../src/model/vq_blocks';
import { intRng, maxAbsDiff } from './helpers';
import { CodebookUsage } from '../src/model/vq';
import { AdamW } from '../src/train/optimizer';
import sharp from 'sharp';
import seedrandom from 'seedrandom';

beforeAll(async () => {
  await initBackend('wasm');
});

function randn(n: number, seed: string): Float32Array {
  const next = intRng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (next(20001) - 10000) / 5000;
  return out;
}

describe('VQ-16 parameter tree (janus-spec 5.2), declared without allocating', () => {
  const store = new ParamStore();
  new VQModel(store, presetConfig('janus-pro-7b'));
  const names = new Set(store.list().map((s) => s.name));
  const ck = (n: string) => checkpointShape(store.spec(`gen_vision_model.${n}`));

  test('codebook, quant convs, conv_in/out have the checkpoint shapes', () => {
    expect(store.isMaterialized).toBe(false);
    expect(store.list().every((s) => s.name.startsWith('gen_vision_model.'))).toBe(true);
    expect(ck('quantize.embedding.weight')).toEqual([16384, 8]);
    expect(ck('quant_conv.weight')).toEqual([8, 256, 1, 1]);
    expect(ck('post_quant_conv.weight')).toEqual([256, 8, 1, 1]);
    expect(ck('encoder.conv_in.weight')).toEqual([128, 3, 3, 3]);
    expect(ck('encoder.conv_out.weight')).toEqual([256, 512, 3, 3]);
    expect(ck('decoder.conv_in.weight')).toEqual([512, 256, 3, 3]);
    expect(ck('decoder.conv_out.weight')).toEqual([3, 128, 3, 3]);
    expect(ck('encoder.mid.1.q.weight')).toEqual([512, 512, 1, 1]);
    expect(ck('decoder.conv_blocks.0.attn.2.proj_out.weight')).toEqual([512, 512, 1, 1]);
    expect(ck('encoder.conv_blocks.3.downsample.conv.weight')).toEqual([256, 256, 3, 3]);
    expect(ck('decoder.conv_blocks.3.upsample.conv.weight')).toEqual([128, 128, 3, 3]);
    // LlamaGen reports 72M parameters for VQ-16.
    expect(store.count()).toBeGreaterThan(71.5e6);
    expect(store.count()).toBeLessThan(72.5e6);
  });

  test('nin_shortcut, attention, down/upsample blocks exist exactly where the spec lists them', () => {
    const matching = (re: RegExp) => [...names].filter((n) => re.test(n)).map((n) => n.replace(/\.(weight|bias)$/, '')).filter((n, i, a) => a.indexOf(n) === i).sort();
    expect(matching(/nin_shortcut/)).toEqual(
      ['decoder.conv_blocks.1.res.0', 'decoder.conv_blocks.3.res.0', 'encoder.conv_blocks.2.res.0', 'encoder.conv_blocks.4.res.0'].map((p) => `gen_vision_model.${p}.nin_shortcut`),
    );
    expect(matching(/\.attn\.\d+\.q\./)).toEqual(
      ['decoder.conv_blocks.0.attn.0', 'decoder.conv_blocks.0.attn.1', 'decoder.conv_blocks.0.attn.2', 'encoder.conv_blocks.4.attn.0', 'encoder.conv_blocks.4.attn.1'].map((p) => `gen_vision_model.${p}.q`),
    );
    expect(matching(/downsample/)).toEqual([0, 1, 2, 3].map((i) => `gen_vision_model.encoder.conv_blocks.${i}.downsample.conv`));
    expect(matching(/upsample/)).toEqual([0, 1, 2, 3].map((i) => `gen_vision_model.decoder.conv_blocks.${i}.upsample.conv`));
    expect(matching(/encoder\.conv_blocks\.\d+\.res\.\d+\.conv1/)).toHaveLength(10);
    expect(matching(/decoder\.conv_blocks\.\d+\.res\.\d+\.conv1/)).toHaveLength(15);
    for (const p of ['encoder.mid.0.conv1', 'encoder.mid.2.conv2', 'decoder.mid.1.proj_out', 'encoder.norm_out', 'decoder.norm_out', 'decoder.mid.1.norm']) {
      expect(names.has(`gen_vision_model.${p}.weight`)).toBe(true);
      expect(names.has(`gen_vision_model.${p}.bias`)).toBe(true);
    }
  });
});

describe('building blocks', () => {
  test('downsample pads right/bottom only: a hand-computable 4x4 input differs from symmetric padding', () => {
    const store = new ParamStore();
    const down = new Downsample(store, 'd', 1);
    // Kernel that reads only its top-left tap: output (i, j) = padded input (2i, 2j) under Janus padding.
    const w = new Float32Array(9);
    w[0] = 1;
    store.setValue(down.conv.weight, w);
    store.setValue(down.conv.bias!, new Float32Array(1));
    const x = tf.tensor4d(Array.from({ length: 16 }, (_, i) => i + 1), [1, 4, 4, 1]);
    const y = down.apply(x);
    expect(y.shape).toEqual([1, 2, 2, 1]);
    // x = 1..16 row-major: (0,0)=1, (0,2)=3, (2,0)=9, (2,2)=11.
    expect(Array.from(y.dataSync())).toEqual([1, 3, 9, 11]);
    // PyTorch-style symmetric padding 1 would read (2i-1, 2j-1): zero padding except (1,1) = 6.
    const sym = tf.conv2d(x, store.get(down.conv.weight) as tf.Tensor4D, 2, [[0, 0], [1, 1], [1, 1], [0, 0]]);
    expect(Array.from(sym.dataSync())).toEqual([0, 0, 0, 6]);
    // With an all-ones kernel the asymmetric sums are 3x3 windows cut at the bottom/right edge only.
    store.setValue(down.conv.weight, new Float32Array(9).fill(1));
    const ones = down.apply(tf.ones([1, 4, 4, 1]) as tf.Tensor4D);
    expect(Array.from(ones.dataSync())).toEqual([9, 6, 6, 4]);
    tf.dispose([x, y, sym, ones]);
    store.dispose();
  });

  test('groupNorm groups consecutive channels like torch.nn.GroupNorm; upsample is nearest x2', () => {
    const [b, h, w, c, g] = [2, 3, 2, 6, 3];
    const xv = randn(b * h * w * c, 'gn');
    const wv = randn(c, 'gn-w');
    const bv = randn(c, 'gn-b');
    const ref = new Float32Array(xv.length);
    for (let n = 0; n < b; n++) {
      for (let grp = 0; grp < g; grp++) {
        const idx: number[] = [];
        for (let p = 0; p < h * w; p++) for (let k = 0; k < c / g; k++) idx.push((n * h * w + p) * c + grp * (c / g) + k);
        const mean = idx.reduce((s, i) => s + xv[i], 0) / idx.length;
        const variance = idx.reduce((s, i) => s + (xv[i] - mean) ** 2, 0) / idx.length;
        for (const i of idx) ref[i] = ((xv[i] - mean) / Math.sqrt(variance + 1e-6)) * wv[i % c] + bv[i % c];
      }
    }
    const out = tf.tidy(() => groupNorm(tf.tensor4d(xv, [b, h, w, c]), g, tf.tensor1d(wv), tf.tensor1d(bv), 1e-6).dataSync());
    expect(maxAbsDiff(out, ref)).toBeLessThan(1e-4);

    const up = tf.tidy(() => upsampleNearest2x(tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1])).dataSync());
    expect(Array.from(up)).toEqual([1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
  });

  test('quantiser ids = argmax cosine similarity of L2-normalised latents and codebook rows (brute force)', () => {
    const [n, k, d] = [300, 97, 8];
    const store = new ParamStore();
    const q = new VectorQuantizer(store, 'quantize', k, d);
    const cb = randn(k * d, 'codebook');
    // Rows with very different norms: only their directions may matter.
    for (let i = 0; i < k; i++) for (let j = 0; j < d; j++) cb[i * d + j] *= 1 + (i % 7) * 3;
    store.setValue(q.embedding, cb);
    const z = randn(n * d, 'latents');
    const ids = tf.tidy(() => q.nearest(tf.tensor2d(z, [n, d])).dataSync());
    const norm = (v: Float32Array, i: number) => Math.hypot(...v.subarray(i * d, i * d + d));
    let mismatches = 0;
    for (let i = 0; i < n; i++) {
      let best = -1;
      let bestCos = -Infinity;
      const cosOf = (j: number) => {
        let dot = 0;
        for (let t = 0; t < d; t++) dot += z[i * d + t] * cb[j * d + t];
        return dot / (norm(z, i) * norm(cb, j));
      };
      for (let j = 0; j < k; j++) {
        const c = cosOf(j);
        if (c > bestCos) [best, bestCos] = [j, c];
      }
      // A float32 near-tie may pick the other code; anything else is a real mismatch.
      if (ids[i] !== best && bestCos - cosOf(ids[i]) > 1e-5) mismatches++;
    }
    expect(mismatches).toBe(0);
    // Lookup returns the normalised rows.
    const rows = tf.tidy(() => q.lookup(tf.tensor1d([5, 0], 'int32')).dataSync());
    for (let t = 0; t < d; t++) expect(rows[t]).toBeCloseTo(cb[5 * d + t] / norm(cb, 5), 5);
    expect(codebookUsage([1, 1, 2, 3], 8)).toEqual({ used: 3, fraction: 3 / 8, perplexity: expect.closeTo(Math.exp(-(0.5 * Math.log(0.5) + 2 * 0.25 * Math.log(0.25))), 9) });
    store.dispose();
  });
});

describe('VQModel at the tiny preset', () => {
  const cfg: JanusConfig = presetConfig('tiny');
  const store = new ParamStore();
  const vq = new VQModel(store, cfg);
  let images: tf.Tensor4D;

  beforeAll(() => {
    store.materialize(3);
    images = tf.randomUniform([2, 64, 64, 3], -1, 1, 'float32', 7) as tf.Tensor4D;
  });
  afterAll(() => {
    images.dispose();
    store.dispose();
  });

  test('64x64 -> 64 ids in raster order -> 64x64 in [-1, 1]; encode is the nearest code of the latents', () => {
    const ids = vq.encode(images);
    expect(ids.shape).toEqual([2, 64]);
    expect(ids.dtype).toBe('int32');
    const out = vq.decode(ids);
    expect(out.shape).toEqual([2, 64, 64, 3]);
    const o = out.dataSync();
    expect(Math.min(...o)).toBeGreaterThanOrEqual(-1);
    expect(Math.max(...o)).toBeLessThanOrEqual(1);
    // Raster order: id (b, y*8+x) is the code of latent position (y, x) of image b.
    const lat = tf.tidy(() => vq.latents(images));
    expect(lat.shape).toEqual([2, 8, 8, 8]);
    const expected = tf.tidy(() => vq.quantize.nearest(tf.reshape(lat, [128, 8]) as tf.Tensor2D).dataSync());
    expect(Array.from(ids.dataSync())).toEqual(Array.from(expected));
    tf.dispose([ids, out, lat]);
  });

  test('bad ids and images are refused with a clear message', () => {
    expect(() => vq.encode(tf.zeros([1, 60, 60, 3]) as tf.Tensor4D)).toThrow(/not divisible by the downsample factor 8/);
    const big = tf.tensor2d([[0, 1, 2, 1024]], [1, 4], 'int32');
    expect(() => vq.decode(big)).toThrow(/ids must be in 0\.\.1023/);
    const odd = tf.zeros([1, 5], 'int32') as tf.Tensor2D;
    expect(() => vq.decode(odd)).toThrow(/do not fill/);
    tf.dispose([big, odd]);
  });

  test('no tensor leak across 10 encode/decode calls and 3 taped loss evaluations', () => {
    const once = () => {
      const ids = vq.encode(images);
      const out = vq.decode(ids);
      tf.dispose([ids, out]);
    };
    once();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 10; i++) once();
    expect(tf.memory().numTensors).toBe(before);
    const vars = store.variables();
    const grads = () => tf.tidy(() => {
      const { value, grads: g } = tf.variableGrads(() => vq.lossAndIds(images).loss, vars);
      return [value, ...Object.values(g)];
    });
    tf.dispose(grads());
    const before2 = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) tf.dispose(grads());
    expect(tf.memory().numTensors).toBe(before2);
  });

  test('straight-through: encoder gets the decoder gradient; only selected codes get codebook gradient', () => {
    const cb = store.get(vq.quantize.embedding);
    const encW = store.get('gen_vision_model.encoder.conv_in.weight');
    const quantW = store.get('gen_vision_model.quant_conv.weight');
    const [gcb, genc, gquant, ids] = tf.tidy(() => {
      let idsOut: tf.Tensor | null = null;
      const { grads } = tf.variableGrads(() => {
        const r = vq.lossAndIds(images, { codebookWeight: 0 });
        idsOut = tf.keep(r.ids);
        return r.loss;
      }, [cb, encW, quantW]);
      return [grads[cb.name], grads[encW.name], grads[quantW.name], idsOut as unknown as tf.Tensor];
    });
    // With the codebook terms off, the reconstruction reaches the encoder only through the straight-through path.
    expect(tf.tidy(() => tf.max(tf.abs(genc)).dataSync()[0])).toBeGreaterThan(0);
    expect(tf.tidy(() => tf.max(tf.abs(gquant)).dataSync()[0])).toBeGreaterThan(0);
    // ...and never reaches the codebook (its value only passes through stop-gradient).
    expect(tf.tidy(() => tf.max(tf.abs(gcb)).dataSync()[0])).toBe(0);
    tf.dispose([gcb, genc, gquant]);

    const used = new Set(ids.dataSync());
    const g = tf.tidy(() => {
      const { grads } = tf.variableGrads(() => vq.lossAndIds(images).loss, [cb]);
      return grads[cb.name];
    });
    const rowsWithGrad = new Set<number>();
    const gv = g.dataSync();
    for (let i = 0; i < cfg.vq.codebookSize; i++) if (gv.subarray(i * 8, i * 8 + 8).some((v) => v !== 0)) rowsWithGrad.add(i);
    expect([...rowsWithGrad].sort((a, b) => a - b)).toEqual([...used].sort((a, b) => a - b));
    tf.dispose([g, ids]);
  });
});

/** Eight flat colours (bytes); palette shapes give the tokenizer a learnable, countable set of colours. */
const PALETTE = ['#e6194b', '#3cb44b', '#ffe119', '#4363d8', '#f58231', '#911eb4', '#ffffff', '#000000'];

/** n flat-colour images drawn by sharp from SVG: a background and one circle, square or triangle. [-1, 1] NHWC. */
async function shapeImages(n: number, size: number, seed: string): Promise<Float32Array> {
  const rng = seedrandom(seed);
  const pick = () => PALETTE[Math.floor(rng() * PALETTE.length)];
  const out = new Float32Array(n * size * size * 3);
  for (let i = 0; i < n; i++) {
    const bg = pick();
    let fg = pick();
    while (fg === bg) fg = pick();
    const [cx, cy, r] = [size * (0.3 + 0.4 * rng()), size * (0.3 + 0.4 * rng()), size * (0.2 + 0.15 * rng())];
    const kind = Math.floor(rng() * 3);
    const shape =
      kind === 0
        ? `<circle cx="${cx}" cy="${cy}" r="${r}" fill="${fg}"/>`
        : kind === 1
          ? `<rect x="${cx - r}" y="${cy - r}" width="${2 * r}" height="${2 * r}" fill="${fg}"/>`
          : `<polygon points="${cx},${cy - r} ${cx + r},${cy + r} ${cx - r},${cy + r}" fill="${fg}"/>`;
    // crispEdges: truly flat colours, no antialiased blends at the boundaries.
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" shape-rendering="crispEdges"><rect width="100%" height="100%" fill="${bg}"/>${shape}</svg>`;
    const px = await sharp(Buffer.from(svg)).removeAlpha().raw().toBuffer();
    for (let j = 0; j < px.length; j++) out[i * px.length + j] = px[j] / 127.5 - 1;
  }
  return out;
}

interface TrainResult {
  steps: number;
  batch: number;
  images: number;
  size: number;
  params: number;
  codebookSize: number;
  seconds: number;
  mseBefore: number;
  mseAfter: number;
  usage: CodebookUsage;
  revived: number;
  leakedTensors: number;
}

/**
 * 16x16 images, one 2x downsample (8x8 = 64 tokens), widths 8/16, z 16, 64 codes, no encoder-level attention (the
 * decoder and both mid blocks still have theirs). One GroupNorm group: flat-colour images give spatially
 * constant feature maps, and small groups normalise most of their content away. Betas (0.9, 0.95) as LlamaGen.
 */
const TRAIN = { size: 16, chMult: [1, 2], base: 8, z: 16, normGroups: 1, attn: 0, codebook: 64, codebookDim: 8, images: 256, batch: 16, steps: 250, lr: 4e-3, warmup: 10, reviveEvery: 5 };

/**
 * Trains a tokenizer smaller than the tiny preset (sized so the whole file stays under 3 minutes on a loaded
 * 2-core machine) with AdamW (no decay) on reconstruction + codebook + commitment, restarting dead codes every few steps.
 * MSE is measured on the inference path, decode(encode(x)), over all images.
 */
async function trainTinyVQ(): Promise<TrainResult> {
  const T = TRAIN;
  const cfg = presetConfig('tiny', {
    imageSize: T.size,
    vq: { baseChannels: T.base, chMult: T.chMult, numResBlocks: 1, numAttnBlocks: T.attn, zChannels: T.z, normGroups: T.normGroups, codebookSize: T.codebook },
    siglip: { patchSize: 2 ** (T.chMult.length - 1) },
  });
  const store = new ParamStore();
  const vq = new VQModel(store, cfg);
  store.materialize(1);
  const data = tf.tensor4d(await shapeImages(T.images, T.size, 'vq-shapes'), [T.images, T.size, T.size, 3]);
  const evaluate = (): { mse: number; ids: Int32Array } => {
    const ids = vq.encode(data);
    const mse = tf.tidy(() => tf.mean(tf.square(tf.sub(vq.decode(ids), data))).dataSync()[0]);
    const host = ids.dataSync() as Int32Array;
    ids.dispose();
    return { mse, ids: host };
  };
  const before = evaluate();
  const opt = new AdamW(store.list(), { weightDecay: 0, betas: [0.9, 0.95] });
  // Linear warmup, then cosine decay to a tenth: the late small steps settle the noisy small-batch optimum.
  const lrAt = (step: number) =>
    step < T.warmup ? (T.lr * (step + 1)) / T.warmup : T.lr * (0.1 + 0.45 * (1 + Math.cos((Math.PI * (step - T.warmup)) / (T.steps - T.warmup))));
  const vars = store.variables();
  const rng = seedrandom('vq-order');
  const counts = new Float64Array(T.codebook);
  let revived = 0;
  let tensorsAfterFirst = 0;
  const started = Date.now();
  for (let step = 0; step < T.steps; step++) {
    const idx = Array.from({ length: T.batch }, () => Math.floor(rng() * T.images));
    const batch = tf.tidy(() => tf.gather(data, tf.tensor1d(idx, 'int32')) as tf.Tensor4D);
    const grads = tf.tidy(() => {
      const { value, grads: g } = tf.variableGrads(() => {
        const r = vq.lossAndIds(batch);
        for (const id of r.ids.dataSync()) counts[id]++;
        return r.loss;
      }, vars);
      value.dispose();
      return g;
    });
    opt.step(store, new Map(store.list().map((p) => [p.name, grads[store.get(p.name).name]])), lrAt(step));
    tf.dispose(grads);
    if ((step + 1) % T.reviveEvery === 0 && step + 1 < T.steps) {
      const z = tf.tidy(() => tf.reshape(vq.latents(batch), [-1, T.codebookDim]) as tf.Tensor2D);
      revived += vq.quantize.reviveDeadCodes(counts, z, (m) => Math.floor(rng() * m));
      z.dispose();
      counts.fill(0);
    }
    batch.dispose();
    // Adam creates its moment slots on the first step; from then on the count must stay flat.
    if (step === 0) tensorsAfterFirst = tf.memory().numTensors;
  }
  const seconds = (Date.now() - started) / 1000;
  const leakedTensors = tf.memory().numTensors - tensorsAfterFirst;
  const after = evaluate();
  const result: TrainResult = {
    steps: T.steps,
    batch: T.batch,
    images: T.images,
    size: T.size,
    params: store.count(),
    codebookSize: T.codebook,
    seconds,
    mseBefore: before.mse,
    mseAfter: after.mse,
    usage: codebookUsage(after.ids, T.codebook),
    revived,
    leakedTensors,
  };
  opt.dispose();
  data.dispose();
  store.dispose();
  return result;
}


describe('training a small VQ on synthetic flat-colour shapes', () => {
  test('reconstruction MSE drops at least 5x from initialisation; codebook usage reported', async () => {
    const r = await trainTinyVQ();
    // eslint-disable-next-line no-console
    console.log(
      `VQ training: ${r.steps} steps x batch ${r.batch} on ${r.images} images ${r.size}x${r.size} (${r.params} params) in ${r.seconds.toFixed(1)} s; ` +
        `MSE ${r.mseBefore.toFixed(4)} -> ${r.mseAfter.toFixed(4)} (${(r.mseBefore / r.mseAfter).toFixed(1)}x); ` +
        `codebook usage ${r.usage.used}/${r.codebookSize} codes (${(100 * r.usage.fraction).toFixed(1)}%), perplexity ${r.usage.perplexity.toFixed(1)}; ` +
        `codes revived ${r.revived}`,
    );
    expect(r.mseBefore / r.mseAfter).toBeGreaterThanOrEqual(5);
    expect(r.usage.used).toBeGreaterThan(1);
    expect(r.leakedTensors).toBe(0);
  });
});
