import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import { JanusConfig, presetConfig } from '../src/model/config';
import { ParamSpec, ParamStore, checkpointShape, numel } from '../src/model/params';
import { SiglipEncoder, UnderstandingEncoder } from '../src/model/siglip';
import { intRng, maxAbsDiff } from './helpers';

beforeAll(async () => {
  await initBackend('wasm');
});

describe('SigLIP parameter tree (janus-spec 5.2), declared without allocating', () => {
  test('Janus-Pro-7B names and checkpoint shapes; aligner to 4096', () => {
    const store = new ParamStore();
    const enc = new UnderstandingEncoder(store, presetConfig('janus-pro-7b'));
    expect(store.isMaterialized).toBe(false);
    expect(enc.siglip.numTokens).toBe(576);
    const ck = (n: string) => checkpointShape(store.spec(n));
    const t = 'vision_model.vision_tower';
    expect(ck(`${t}.patch_embed.proj.weight`)).toEqual([1024, 3, 16, 16]);
    expect(ck(`${t}.patch_embed.proj.bias`)).toEqual([1024]);
    expect(ck(`${t}.pos_embed`)).toEqual([1, 576, 1024]);
    expect(ck(`${t}.blocks.23.attn.qkv.weight`)).toEqual([3072, 1024]);
    expect(ck(`${t}.blocks.23.attn.qkv.bias`)).toEqual([3072]);
    expect(ck(`${t}.blocks.0.attn.proj.weight`)).toEqual([1024, 1024]);
    expect(ck(`${t}.blocks.7.mlp.fc1.weight`)).toEqual([4096, 1024]);
    expect(ck(`${t}.blocks.7.mlp.fc2.weight`)).toEqual([1024, 4096]);
    expect(ck(`${t}.norm.weight`)).toEqual([1024]);
    expect(ck('aligner.layers.0.weight')).toEqual([4096, 1024]);
    expect(ck('aligner.layers.2.weight')).toEqual([4096, 4096]);
    expect(store.has(`${t}.blocks.24.norm1.weight`)).toBe(false);
    expect(store.list().filter((s) => s.name.endsWith('.norm1.weight'))).toHaveLength(24);
    // No class token, no attn_pool (present in the checkpoint, unused), no layer scale.
    expect(store.list().some((s) => /cls_token|attn_pool|\.ls\d|gamma/.test(s.name))).toBe(false);
    // ViT-L/16 at 384 without the pooling head: 303.5M + aligner 4.2M + 16.8M.
    const vit = store.count((n) => n.startsWith(t));
    expect(vit).toBe(3 * 16 * 16 * 1024 + 1024 + 576 * 1024 + 24 * (4 * 1024 + 1024 * 3072 + 3072 + 1024 * 1024 + 1024 + 2 * 1024 * 4096 + 4096 + 1024) + 2 * 1024);
  });
});

/** Checkpoint layout (Linear [out, in], Conv OIHW) -> tfjs layout (Linear [in, out], Conv HWIO). */
function toTfjsLayout(spec: ParamSpec, ck: Float32Array): Float32Array {
  const out = new Float32Array(ck.length);
  if (spec.layout === 'linear') {
    const [inDim, outDim] = spec.shape;
    for (let o = 0; o < outDim; o++) for (let i = 0; i < inDim; i++) out[i * outDim + o] = ck[o * inDim + i];
  } else if (spec.layout === 'conv2d') {
    const [kh, kw, c, o] = spec.shape;
    for (let a = 0; a < o; a++) for (let b = 0; b < c; b++) for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) out[((y * kw + x) * c + b) * o + a] = ck[((a * c + b) * kh + y) * kw + x];
  } else out.set(ck);
  return out;
}

/**
 * Plain-JS reference in PyTorch semantics (checkpoint layout: Linear [out, in], Conv OIHW, timm's
 * qkv.reshape(B, N, 3, heads, hd)), fed the same checkpoint-layout weights the store was loaded from.
 */
function referenceSiglip(cfg: JanusConfig, w: Map<string, Float32Array>, img: Float32Array): Float32Array {
  const s = cfg.siglip;
  const S = cfg.imageSize;
  const P = s.patchSize;
  const G = S / P;
  const N = G * G;
  const D = s.width;
  const H = s.numHeads;
  const hd = D / H;
  const t = 'vision_model.vision_tower';
  const get = (n: string) => w.get(`${t}.${n}`)!;
  const linear = (x: Float32Array[], name: string, out: number): Float32Array[] => {
    const W = get(`${name}.weight`);
    const b = get(`${name}.bias`);
    return x.map((row) => {
      const y = new Float32Array(out);
      for (let o = 0; o < out; o++) {
        let acc = b[o];
        for (let i = 0; i < row.length; i++) acc += W[o * row.length + i] * row[i];
        y[o] = acc;
      }
      return y;
    });
  };
  const ln = (x: Float32Array[], name: string) =>
    x.map((row) => {
      const m = row.reduce((a, v) => a + v, 0) / row.length;
      const v = row.reduce((a, q) => a + (q - m) ** 2, 0) / row.length;
      const g = get(`${name}.weight`);
      const b = get(`${name}.bias`);
      return row.map((q, i) => ((q - m) / Math.sqrt(v + s.layerNormEps)) * g[i] + b[i]);
    });
  const gelu = (v: number) => 0.5 * v * (1 + erf(v / Math.SQRT2));
  // Patch conv (OIHW weight over an NHWC image), then flatten in raster order and add pos_embed.
  const pw = get('patch_embed.proj.weight');
  const pb = get('patch_embed.proj.bias');
  const pos = get('pos_embed');
  let x: Float32Array[] = [];
  for (let gy = 0; gy < G; gy++) {
    for (let gx = 0; gx < G; gx++) {
      const row = new Float32Array(D);
      for (let o = 0; o < D; o++) {
        let acc = pb[o];
        for (let c = 0; c < 3; c++) for (let ky = 0; ky < P; ky++) for (let kx = 0; kx < P; kx++) acc += pw[((o * 3 + c) * P + ky) * P + kx] * img[((gy * P + ky) * S + gx * P + kx) * 3 + c];
        row[o] = acc + pos[(gy * G + gx) * D + o];
      }
      x.push(row);
    }
  }
  for (let l = 0; l < s.depth; l++) {
    const b = `blocks.${l}`;
    const qkv = linear(ln(x, `${b}.norm1`), `${b}.attn.qkv`, 3 * D);
    const at = (n: number, which: number, h: number, d: number) => qkv[n][which * D + h * hd + d];
    const merged = x.map(() => new Float32Array(D));
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < N; i++) {
        const sc = new Float64Array(N);
        for (let j = 0; j < N; j++) {
          let dot = 0;
          for (let d = 0; d < hd; d++) dot += at(i, 0, h, d) * at(j, 1, h, d);
          sc[j] = dot / Math.sqrt(hd);
        }
        const mx = Math.max(...sc);
        const e = sc.map((v) => Math.exp(v - mx));
        const z = e.reduce((a, v) => a + v, 0);
        for (let d = 0; d < hd; d++) {
          let acc = 0;
          for (let j = 0; j < N; j++) acc += (e[j] / z) * at(j, 2, h, d);
          merged[i][h * hd + d] = acc;
        }
      }
    }
    const attn = linear(merged, `${b}.attn.proj`, D);
    x = x.map((row, i) => row.map((v, k) => v + attn[i][k]));
    const hidden = linear(ln(x, `${b}.norm2`), `${b}.mlp.fc1`, s.mlpDim).map((r) => r.map(gelu));
    const mlp = linear(hidden, `${b}.mlp.fc2`, D);
    x = x.map((row, i) => row.map((v, k) => v + mlp[i][k]));
  }
  const out = ln(x, 'norm');
  const flat = new Float32Array(N * D);
  out.forEach((row, i) => flat.set(row, i * D));
  return flat;

  function erf(v: number): number {
    // Abramowitz-Stegun 7.1.26: |error| < 1.5e-7, plenty for a comparison at 1e-4.
    const sign = v < 0 ? -1 : 1;
    const a = Math.abs(v);
    const k = 1 / (1 + 0.3275911 * a);
    const y = 1 - ((((1.061405429 * k - 1.453152027) * k + 1.421413741) * k - 0.284496736) * k + 0.254829592) * k * Math.exp(-a * a);
    return sign * y;
  }
}

describe('SigLIP forward', () => {
  // 16x16 images, 4x4 patches -> 16 tokens; width 12, 3 heads, 2 blocks.
  const cfg = presetConfig('tiny', {
    imageSize: 16,
    vq: { chMult: [1, 2, 2], baseChannels: 8, zChannels: 8, normGroups: 4 },
    siglip: { patchSize: 4, width: 12, depth: 2, numHeads: 3, mlpDim: 20, layerNormEps: 1e-6 },
  });

  test('matches a PyTorch-semantics reference (patch order, head-major qkv split, exact GELU, final norm)', () => {
    const store = new ParamStore();
    const enc = new SiglipEncoder(store, cfg);
    const next = intRng('siglip-weights');
    const ckWeights = new Map<string, Float32Array>();
    for (const spec of store.list()) {
      const data = new Float32Array(numel(spec.shape));
      const scale = spec.name.endsWith('norm1.weight') || spec.name.endsWith('norm2.weight') || spec.name.endsWith('norm.weight') ? 1 : 0.3;
      for (let i = 0; i < data.length; i++) data[i] = (spec.name.endsWith('.weight') && scale === 1 ? 1 : 0) + ((next(2001) - 1000) / 1000) * scale;
      ckWeights.set(spec.name, data);
      store.setValue(spec.name, toTfjsLayout(spec, data));
    }
    const img = new Float32Array(16 * 16 * 3).map(() => (next(2001) - 1000) / 1000);
    const out = tf.tidy(() => enc.apply(tf.tensor4d(img, [1, 16, 16, 3])).dataSync());
    const ref = referenceSiglip(cfg, ckWeights, img);
    expect(out.length).toBe(16 * 12);
    expect(maxAbsDiff(out, ref)).toBeLessThan(1e-4);
    store.dispose();
  });

  test('tiny preset: [2,64,64,3] -> [2,64,128] -> aligner [2,64,256]; wrong sizes refused; no leak over 10 calls', () => {
    const tiny = presetConfig('tiny');
    const store = new ParamStore();
    const enc = new UnderstandingEncoder(store, tiny);
    store.materialize(5);
    const images = tf.randomUniform([2, 64, 64, 3], -1, 1, 'float32', 3) as tf.Tensor4D;
    const feats = enc.siglip.apply(images);
    expect(feats.shape).toEqual([2, 64, 128]);
    const aligned = enc.apply(images);
    expect(aligned.shape).toEqual([2, 64, 256]);
    expect(Array.from(aligned.dataSync()).every(Number.isFinite)).toBe(true);
    // Images differ, so their features must too (the batch rows are not mixed up or broadcast).
    const rows = tf.tidy(() => tf.sum(tf.abs(tf.sub(tf.slice(feats, [0, 0, 0], [1, 64, 128]), tf.slice(feats, [1, 0, 0], [1, 64, 128])))).dataSync()[0]);
    expect(rows).toBeGreaterThan(1);
    const wrong = tf.zeros([1, 32, 32, 3]) as tf.Tensor4D;
    expect(() => enc.apply(wrong)).toThrow(/expected images \[B, 64, 64, 3\]/);
    tf.dispose([feats, aligned, wrong]);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 10; i++) tf.dispose(enc.apply(images));
    expect(tf.memory().numTensors).toBe(before);
    images.dispose();
    store.dispose();
  });
});
