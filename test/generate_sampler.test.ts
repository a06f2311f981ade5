import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import { promptIds } from '../src/data/prompt_ids';
import { SHAPEWORLD_VOCAB } from '../src/shapeworld/samples';
import { imageTokenCount, presetConfig } from '../src/model/config';
import { Janus4o } from '../src/model/janus';
import { KVCache } from '../src/model/kv_cache';
import { SequenceInput } from '../src/model/sequence';
import { ImageTokenModel, generateEdits, generateT2I, kvCacheBytes, samplesPerChunk } from '../src/generate/sampler';
import { WordTokenizer } from '../src/tokenizer/word';

const tok = WordTokenizer.build(SHAPEWORLD_VOCAB);
const templates = promptIds(tok);
const PROMPTS = ['a red circle', 'two blue squares and a green triangle on a white background'];

beforeAll(async () => {
  await initBackend('wasm');
});

/**
 * A model whose logits say which row they came from: a cond row (prompt words present) peaks at an id
 * derived from its words, an uncond row at an id derived from its real length, and every step adds the id
 * last fed to that row. It records what each row was fed.
 */
class SignatureModel implements ImageTokenModel {
  readonly config = presetConfig('tiny', { llm: { numLayers: 1 }, vq: { codebookSize: 97 } });
  readonly rowsSeen: number[] = [];
  private readonly state = new Map<KVCache, { sig: number[]; fed: number[][] }>();
  lastCache: { sig: number[]; fed: number[][] } | null = null;

  signature(ids: number[], mask: number[]): number {
    const real = ids.filter((_, j) => mask[j] === 1);
    const words = real.filter((id) => id !== tok.special.pad && id !== tok.special.bos && id !== tok.special.boi);
    return words.length ? words.reduce((a, b, j) => a + b * (j + 1), 0) % 97 : (50 + real.length) % 97;
  }

  private logits(sigs: number[]): tf.Tensor2D {
    const v = this.config.vq.codebookSize;
    const data = new Float32Array(sigs.length * v);
    sigs.forEach((s, r) => (data[r * v + (s % v)] = 10));
    return tf.tensor2d(data, [sigs.length, v]);
  }

  forward(input: SequenceInput, opts: { cache?: KVCache } = {}) {
    this.rowsSeen.push(input.textIds.length);
    const mask = input.attentionMask ?? input.textIds.map((r) => r.map(() => 1));
    const sig = input.textIds.map((row, r) => this.signature(row, mask[r]));
    if (opts.cache) {
      const st = { sig, fed: sig.map(() => [] as number[]) };
      this.state.set(opts.cache, st);
      this.lastCache = st;
    }
    return { imageLogits: this.logits(sig) };
  }

  newCache(batch: number): KVCache {
    return new KVCache(batch, 1, this.config.llm.maxPositionEmbeddings);
  }

  stepImageTokens(cache: KVCache, ids: tf.Tensor1D | ArrayLike<number>): tf.Tensor2D {
    const st = this.state.get(cache)!;
    const arr = Array.from(ids as ArrayLike<number>);
    arr.forEach((id, r) => st.fed[r].push(id));
    return this.logits(st.sig.map((s, r) => s + arr[r]));
  }
}

describe('CFG rows and pairing (signature model, greedy)', () => {
  const jobs = PROMPTS.map((prompt) => ({ prompt, count: 2 }));

  test('w = 1 follows each sample\'s own cond row, w = 0 its own uncond row; ids fed to all rows of a sample', async () => {
    const m = new SignatureModel();
    const cond = await generateT2I(m, templates, jobs, { cfg: 1, temperature: 0 });
    const uncond = await generateT2I(m, templates, jobs, { cfg: 0, temperature: 0 });
    const n = 64;
    PROMPTS.forEach((p, j) => {
      const prefix = templates.t2iPrefix(p);
      const c = m.signature(prefix, prefix.map(() => 1));
      const u = (50 + prefix.length) % 97;
      for (let i = 0; i < 2; i++) {
        // Step t > 0 peaks at sig + the id fed at t - 1, which is the sample's own previous draw.
        const expectC = [c % 97];
        const expectU = [u];
        for (let t = 1; t < n; t++) {
          expectC.push((c + expectC[t - 1]) % 97);
          expectU.push((u + expectU[t - 1]) % 97);
        }
        expect(cond.ids[j][i]).toEqual(expectC);
        expect(uncond.ids[j][i]).toEqual(expectU);
      }
    });
    // Prompts differ, so their samples must differ: a mixed-up pairing would make them agree or cross.
    expect(cond.ids[0][0]).not.toEqual(cond.ids[1][0]);
    expect(uncond.ids[0][0]).not.toEqual(uncond.ids[1][0]);
    const fed = m.lastCache!.fed;
    expect(fed).toHaveLength(8);
    for (let s = 0; s < 4; s++) {
      expect(fed[2 * s]).toEqual(fed[2 * s + 1]);
      expect(fed[2 * s]).toEqual(uncond.ids[Math.floor(s / 2)][s % 2].slice(0, n - 1));
    }
  });

  test('row chunks: at most maxRows rows per forward, same ids as one chunk', async () => {
    const m = new SignatureModel();
    const whole = await generateT2I(m, templates, jobs, { cfg: 5, seed: 3 });
    m.rowsSeen.length = 0;
    const chunked = await generateT2I(m, templates, jobs, { cfg: 5, seed: 3, maxRows: 2 });
    expect(m.rowsSeen).toEqual([2, 2, 2, 2]);
    expect(chunked.stats.chunks).toBe(4);
    expect(chunked.ids).toEqual(whole.ids);
    // Large N: the default budget splits rows of a 7B model into several chunks instead of failing.
    expect(samplesPerChunk(presetConfig('janus-pro-7b'), 1200, 3, { memoryBudgetBytes: 8 * 2 ** 30 })).toBeLessThan(16);
  });

  test('bad requests are refused before any work', async () => {
    const m = new SignatureModel();
    await expect(generateT2I(m, templates, [{ prompt: 'a red circle', count: 0 }])).rejects.toThrow(/positive integer/);
    await expect(generateT2I(m, templates, jobs, { cfg: -1 })).rejects.toThrow(/--cfg/);
    const long = Array.from({ length: 600 }, () => 'red').join(' ');
    await expect(generateT2I(m, templates, [{ prompt: long, count: 1 }])).rejects.toThrow(/over the model's budget of 512/);
    expect(m.rowsSeen).toEqual([]);
  });
});

describe('tiny Janus4o', () => {
  // The tiny preset at 32 px (16 image tokens) and 2 layers: the same code paths at a quarter of the decode
  // steps, so cache-vs-recompute comparisons stay fast in CI (`npm run bench` measures the full preset).
  // Built in beforeAll: at collection time the file's initBackend has not run, so no backend is registered yet.
  const config = presetConfig('tiny', { imageSize: 32, llm: { numLayers: 2 } });
  const N = imageTokenCount(config);
  let model: Janus4o;
  beforeAll(() => {
    model = Janus4o.create(config, { seed: 11 });
  });
  const jobs = PROMPTS.map((prompt) => ({ prompt, count: 2 }));

  test('KV-cached decode and full recompute give identical ids (T2I, left-padded prompt batch)', async () => {
    const cached = await generateT2I(model, templates, jobs, { seed: 5 });
    const full = await generateT2I(model, templates, jobs, { seed: 5, useCache: false });
    expect(cached.ids).toEqual(full.ids);
    const n = N;
    expect(cached.ids.flat().every((ids) => ids.length === n && ids.every((id) => Number.isInteger(id) && id >= 0 && id < 1024))).toBe(true);
    console.log(`tiny T2I, 4 samples x 8 rows: KV cache ${cached.stats.tokensPerSecond.toFixed(1)} image tokens/s, recompute ${full.stats.tokensPerSecond.toFixed(1)} image tokens/s`);
  });

  test('KV-cached decode and full recompute give identical ids (3-branch edit)', async () => {
    const n = N;
    const pixels = tf.randomUniform([1, 32, 32, 3], -1, 1, 'float32', 1) as tf.Tensor4D;
    const features = model.imageFeatures(pixels, Array.from({ length: n }, () => 0));
    const sourceIds = Array.from({ length: n }, (_, i) => (i * 37) % 1024);
    const ejobs = [{ instruction: 'remove the red circle', sourceIds, sourceFeatures: features, count: 1 }];
    const cached = await generateEdits(model, templates, ejobs, { seed: 2 });
    const full = await generateEdits(model, templates, ejobs, { seed: 2, useCache: false });
    expect(cached.ids).toEqual(full.ids);
    // The source image conditions the result: other source ids, other images.
    const other = await generateEdits(model, templates, [{ ...ejobs[0], sourceIds: sourceIds.map((x) => (x + 1) % 1024) }], { seed: 2 });
    expect(other.ids).not.toEqual(cached.ids);
    console.log(`tiny edit, 1 sample x 3 rows: KV cache ${cached.stats.tokensPerSecond.toFixed(1)} image tokens/s, recompute ${full.stats.tokensPerSecond.toFixed(1)} image tokens/s`);
    tf.dispose([pixels, features]);
  });

  test('same seed -> same ids, different seed -> different; chunking does not change them', async () => {
    const a = await generateT2I(model, templates, jobs, { seed: 'x' });
    const b = await generateT2I(model, templates, jobs, { seed: 'x', maxRows: 2 });
    const c = await generateT2I(model, templates, jobs, { seed: 'y' });
    expect(b.ids).toEqual(a.ids);
    expect(c.ids).not.toEqual(a.ids);
    // Prompt batches: the short prompt alone (no left padding) draws what it drew left-padded beside the long one.
    const alone = await generateT2I(model, templates, [{ ...jobs[0], index: 0 }], { seed: 'x' });
    expect(alone.ids[0]).toEqual(a.ids[0]);
    // The two images of one prompt are independent draws.
    expect(a.ids[0][0]).not.toEqual(a.ids[0][1]);
  });

  test('the KV cache is sized by the config, and 5 generate calls leak no tensors', async () => {
    const prefixes = PROMPTS.map((p) => templates.t2iPrefix(p).length);
    const rows = 8;
    const res = await generateT2I(model, templates, jobs, { seed: 1 });
    // Everything but the last token is cached: the longest prefix + N - 1 positions, for every row.
    expect(res.stats.peakCacheBytes).toBe(kvCacheBytes(model.config, rows, Math.max(...prefixes) + N - 1));
    expect(res.stats.peakCacheBytes).toBeLessThan(16 * 2 ** 20);
    expect(kvCacheBytes(presetConfig('janus-pro-7b'), rows, Math.max(...prefixes) + N - 1)).toBeGreaterThan(100 * res.stats.peakCacheBytes);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) await generateT2I(model, templates, jobs.slice(0, 1), { seed: i, useCache: i % 2 === 0 });
    expect(tf.memory().numTensors).toBe(before);
  });
});
