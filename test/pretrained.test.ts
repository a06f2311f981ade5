import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import { convertCheckpoint } from '../src/cli/convert';
import { roundToBf16, roundToF16 } from '../src/io/dtypes';
import { janusConfigFromHf, janusConfigToHf, readHfConfig } from '../src/io/hf_config';
import { loadIntoStore, loadPretrained, savePretrained } from '../src/io/pretrained';
import { SafetensorsFile, writeSafetensors } from '../src/io/safetensors';
import { JanusConfig, PRESETS, presetConfig } from '../src/model/config';
import { Janus4o } from '../src/model/janus';
import { ParamStore } from '../src/model/params';

const FIX = path.join(__dirname, 'fixtures', 'tiny-janus');
const ST = path.join(FIX, 'safetensors');

// Every temporary file of this suite lives under one folder, removed at the end.
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-pre-'));
afterAll(() => fs.rmSync(TMP, { recursive: true, force: true }));
const EXPECTED = JSON.parse(fs.readFileSync(path.join(FIX, 'expected.json'), 'utf8')) as {
  textIds: number[][];
  genTokens: { positions: number[]; ids: number[] };
  imageLogitsAt: number[];
  imageLogits: number[][];
  textLogitsAt: number[];
  textLogits: number[][];
};

function tmpDir(): string {
  return fs.mkdtempSync(path.join(TMP, 'd-'));
}

function bits(x: Float32Array): number[] {
  return Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));
}

function loadModel(dir: string): Janus4o {
  const { config, tensors } = loadPretrained(dir);
  const model = Janus4o.create(config, { allocate: false });
  try {
    // Strict: every declared parameter (LLM, heads, SigLIP, VQ) must be in the checkpoint and nothing else but
    // the known-unused tensors may be.
    const report = loadIntoStore(model.params, tensors);
    expect(report.loaded).toHaveLength(model.params.list().length);
  } finally {
    tensors.close();
  }
  return model;
}

async function snapshotBits(store: ParamStore): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>();
  for (const [k, v] of await store.snapshot()) out.set(k, bits(v));
  return out;
}

beforeAll(async () => {
  await initBackend('cpu');
});

describe('config.json', () => {
  test('the fixture config reads to the micro JanusConfig (extension keys for the tiny VQ and SigLIP)', () => {
    const cfg = readHfConfig(path.join(ST, 'config.json'));
    expect(cfg).toEqual<JanusConfig>({
      name: 'custom',
      imageSize: 8,
      llm: { vocabSize: 320, hiddenSize: 16, numLayers: 2, numHeads: 2, numKvHeads: 2, intermediateSize: 32, ropeTheta: 1000, rmsNormEps: 1e-5, maxPositionEmbeddings: 64 },
      vq: { codebookSize: 64, codebookDim: 4, baseChannels: 2, chMult: [1, 2], numResBlocks: 1, zChannels: 2, normGroups: 2, numAttnBlocks: 1 },
      siglip: { patchSize: 2, width: 8, depth: 1, numHeads: 2, mlpDim: 16, layerNormEps: 1e-6 },
      genEmbedDim: 8,
    });
  });

  test('a Janus-Pro-7B style language_config (five keys) gets the LLaMA defaults and is the 7B preset', () => {
    const hf = janusConfigToHf(PRESETS['janus-pro-7b']);
    hf.language_config = { max_position_embeddings: 16384, model_type: 'llama', num_hidden_layers: 30, torch_dtype: 'bfloat16', vocab_size: 102400 };
    hf.vision_config = { cls: 'CLIPVisionTower', model_type: 'vision', params: { image_size: 384, model_name: 'siglip_large_patch16_384', select_feature: 'same', select_layer: -1 } };
    hf.gen_vision_config = { cls: 'VQ-16', model_type: 'gen_vision', params: { image_token_size: 16384, n_embed: 8 } };
    expect(janusConfigFromHf(hf)).toEqual(PRESETS['janus-pro-7b']);
  });

  test.each(['tiny', 'janus-pro-1b', 'janus-pro-7b'])('write -> read round trip of the %s preset', (name) => {
    const cfg = presetConfig(name);
    expect(janusConfigFromHf(JSON.parse(JSON.stringify(janusConfigToHf(cfg))))).toEqual(cfg);
  });

  test('every inconsistency is reported in one error', () => {
    const hf = janusConfigToHf(PRESETS.tiny);
    (hf.aligner_config as { params: { n_embed: number } }).params.n_embed = 7;
    hf.vision_config = { params: { image_size: 64, model_name: 'my_vit' } };
    (hf.language_config as Record<string, unknown>).tie_word_embeddings = true;
    expect(() => janusConfigFromHf(hf)).toThrow(
      /tie_word_embeddings=true is not supported[\s\S]*vision_config.params.layers is required for the unknown model_name "my_vit"[\s\S]*aligner_config.params.n_embed is 7, expected 256/,
    );
  });
});

describe('loading the fixture into Janus4o', () => {
  test('forward logits match the PyTorch reference within 1e-4, from safetensors and from .bin', () => {
    for (const dir of [ST, path.join(FIX, 'bin')]) {
      const model = loadModel(dir);
      const [img, txt] = tf.tidy(() => {
        const out = model.forward(
          { textIds: EXPECTED.textIds, genTokens: EXPECTED.genTokens },
          { imageLogitsAt: EXPECTED.imageLogitsAt, textLogitsAt: EXPECTED.textLogitsAt },
        );
        return [out.imageLogits!.arraySync(), out.textLogits!.arraySync()];
      });
      let worst = 0;
      img.forEach((row, i) => row.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - EXPECTED.imageLogits[i][j])))));
      txt.forEach((row, i) => row.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - EXPECTED.textLogits[i][j])))));
      expect(img).toHaveLength(EXPECTED.imageLogits.length);
      expect(img[0]).toHaveLength(64);
      expect(worst).toBeLessThan(1e-4);
      model.dispose();
    }
  });

  test('the .bin and the safetensors fixture load identical float32 weights', async () => {
    const a = loadModel(ST);
    const b = loadModel(path.join(FIX, 'bin'));
    expect(a.params.list()).toHaveLength(206);
    expect(await snapshotBits(b.params)).toEqual(await snapshotBits(a.params));
    a.dispose();
    b.dispose();
  });

  test('layouts: Linear [out, in] and Conv2d OIHW arrive as tfjs [in, out] and HWIO', async () => {
    const model = loadModel(ST);
    const src = SafetensorsFile.open(path.join(ST, 'model.safetensors'));
    const seen = { linear: 0, conv2d: 0 };
    for (const spec of model.params.list()) {
      if (spec.layout === 'plain') continue;
      seen[spec.layout]++;
      const stored = tf.tensor(src.read(spec.name), src.info(spec.name).shape);
      const want = spec.layout === 'linear' ? tf.transpose(stored) : tf.transpose(stored, [2, 3, 1, 0]);
      expect(bits((await want.data()) as Float32Array)).toEqual(bits((await model.params.get(spec.name).data()) as Float32Array));
      tf.dispose([stored, want]);
    }
    src.close();
    // The fixture exercises both: LLaMA/heads/SigLIP linears, VQ and patch-embedding convolutions.
    expect(seen.linear).toBeGreaterThan(20);
    expect(seen.conv2d).toBeGreaterThan(20);
    model.dispose();
  });

  test('a transformers-native folder (split qkv, squeezed pos_embed, F16) loads into the same model', async () => {
    const a = loadModel(ST);
    const b = loadModel(path.join(FIX, 'native-f16'));
    const want = await a.params.snapshot();
    for (const [k, v] of await b.params.snapshot()) expect(bits(v)).toEqual(bits(roundToF16(want.get(k)!)));
    a.dispose();
    b.dispose();
  });

  test('mismatch report: one missing, one extra and one wrong-shaped tensor are named in one error, and nothing is assigned', () => {
    const src = SafetensorsFile.open(path.join(ST, 'model.safetensors'));
    const dir = tmpDir();
    const names = src.names().filter((n) => n !== 'gen_head.vision_head.bias');
    const tensors = names.map((name) => {
      const shape = src.info(name).shape;
      if (name === 'language_model.model.norm.weight') return { name, shape: [2, 8], values: () => src.read(name) };
      return { name, shape, values: () => src.read(name) };
    });
    tensors.push({ name: 'gen_head.extra.weight', shape: [2], values: () => new Float32Array(2) });
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
    src.close();
    const model = Janus4o.create(readHfConfig(path.join(ST, 'config.json')), { allocate: false });
    expect(() => loadIntoStore(model.params, dir)).toThrow(
      /1 missing, 1 unexpected, 1 with the wrong shape[\s\S]*gen_head\.vision_head\.bias[\s\S]*gen_head\.extra\.weight[\s\S]*language_model\.model\.norm\.weight: checkpoint \[2, 8\], model expects \[16\]/,
    );
    expect(model.params.isMaterialized).toBe(false);
    expect(() => model.params.get('gen_embed.weight')).toThrow(/has no value/);
  });
});

describe('saving', () => {
  test('save -> load round trip is bit-exact; config and tokenizer files come along', async () => {
    const model = loadModel(ST);
    const dir = path.join(tmpDir(), 'out');
    const files = savePretrained(model.params, model.config, dir, { tokenizerFrom: ST });
    expect(files).toEqual(['model.safetensors', 'config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']);
    expect(readHfConfig(path.join(dir, 'config.json'))).toEqual(model.config);
    const again = Janus4o.create(readHfConfig(path.join(dir, 'config.json')), { allocate: false });
    const report = loadIntoStore(again.params, dir);
    expect(report.loaded).toHaveLength(again.params.list().length);
    expect(await snapshotBits(again.params)).toEqual(await snapshotBits(model.params));
    model.dispose();
    again.dispose();
  });

  test('a saved file parses with a plain header-JSON + typed-array reader and matches the checkpoint bit for bit', () => {
    const model = loadModel(ST);
    const dir = tmpDir();
    savePretrained(model.params, model.config, dir);
    model.dispose();
    // The same minimal reader the Python generator has (scripts/make_fixtures.py --verify): no library code.
    const buf = fs.readFileSync(path.join(dir, 'model.safetensors'));
    const n = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    const ref = SafetensorsFile.open(path.join(ST, 'model.safetensors'));
    let checked = 0;
    for (const [name, h] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      expect(h.dtype).toBe('F32');
      const raw = buf.subarray(8 + n + h.data_offsets[0], 8 + n + h.data_offsets[1]);
      const vals = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
      expect(h.shape).toEqual(ref.info(name).shape);
      expect(bits(vals)).toEqual(bits(ref.read(name)));
      checked++;
    }
    ref.close();
    expect(checked).toBe(model.params.list().length);
  });

  test('BF16 save stores the bf16-rounded weights in half the bytes; sharded saves load back', async () => {
    const model = loadModel(ST);
    const dir = tmpDir();
    savePretrained(model.params, model.config, dir, { dtype: 'BF16', maxShardBytes: 8000 });
    const files = fs.readdirSync(dir).sort();
    expect(files).toContain('model.safetensors.index.json');
    expect(files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)).length).toBeGreaterThan(2);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
    const again = Janus4o.create(model.config, { allocate: false });
    loadIntoStore(again.params, dir);
    const want = await model.params.snapshot();
    for (const [k, v] of await again.params.snapshot()) expect(bits(v)).toEqual(bits(roundToBf16(want.get(k)!)));
    // Saving again into the same folder, unsharded, removes the old shards and index.
    savePretrained(model.params, model.config, dir);
    expect(fs.readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']);
    model.dispose();
    again.dispose();
  });

  test('a store with unloaded parameters refuses to save before writing anything', () => {
    const model = Janus4o.create(readHfConfig(path.join(ST, 'config.json')), { allocate: false });
    const dir = path.join(tmpDir(), 'never');
    expect(() => savePretrained(model.params, model.config, dir)).toThrow(/has no value/);
    expect(fs.existsSync(dir)).toBe(false);
  });
});

describe('janus4o convert', () => {
  test('bin -> safetensors keeps every name and value; config and tokenizer files are copied', () => {
    // An official-style folder: .bin weights, config.json and the tokenizer files side by side.
    const input = tmpDir();
    for (const f of ['pytorch_model.bin', 'config.json']) fs.copyFileSync(path.join(FIX, 'bin', f), path.join(input, f));
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) fs.copyFileSync(path.join(ST, f), path.join(input, f));
    const out = tmpDir();
    const r = convertCheckpoint(input, out);
    expect(r.tensors).toBe(222);
    expect(r.files).toEqual(['model.safetensors', 'config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']);
    expect(fs.readFileSync(path.join(out, 'tokenizer.json'))).toEqual(fs.readFileSync(path.join(ST, 'tokenizer.json')));
    const a = SafetensorsFile.open(path.join(out, 'model.safetensors'));
    const b = SafetensorsFile.open(path.join(ST, 'model.safetensors'));
    expect(a.names()).toEqual(b.names());
    for (const n of b.names()) expect(bits(a.read(n))).toEqual(bits(b.read(n)));
    a.close();
    b.close();
  });

  test('--dtype bf16 from the sharded bf16 .bin is lossless and half the data bytes', () => {
    const out = tmpDir();
    convertCheckpoint(path.join(FIX, 'bf16-sharded'), out, { dtype: 'BF16' });
    const a = SafetensorsFile.open(path.join(out, 'model.safetensors'));
    const b = SafetensorsFile.open(path.join(ST, 'model.safetensors'));
    for (const n of b.names()) {
      expect(a.info(n).dtype).toBe('BF16');
      expect(bits(a.read(n))).toEqual(bits(roundToBf16(b.read(n))));
    }
    a.close();
    b.close();
    const dataBytes = (f: string) => {
      const b = fs.readFileSync(f);
      return b.length - 8 - Number(b.readBigUInt64LE(0));
    };
    expect(dataBytes(path.join(out, 'model.safetensors')) * 2).toBe(dataBytes(path.join(ST, 'model.safetensors')));
  });
});
