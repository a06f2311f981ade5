/**
 * Model folders are complete (design.md): a run's checkpoints and `janus4o export` carry every side file of the
 * starting folder byte for byte, plus a generation_config.json (the dataset plugin's settings, else the starting
 * folder's file, else the reference), and readGenerationConfig checks that file.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { initBackend } from '../src/backend';
import { UserError } from '../src/errors';
import { exportCheckpoint } from '../src/cli/export';
import { JsonValue, paramStoreWeights, saveCheckpoint } from '../src/io/checkpoint';
import { GenerationDefaults, REFERENCE_GENERATION, SIDE_FILES, checkpointGeneration, readGenerationConfig } from '../src/io/model_folder';
import { Janus4o } from '../src/model/janus';
import { parseTrainConfig } from '../src/train/config';
import { DatasetPlugin, shareGPT4oDataset } from '../src/train/dataset';
import { AdamW } from '../src/train/optimizer';
import { readModelConfig } from '../src/io/model_folder';
import { runTraining } from '../src/train/run';

const TINY = path.join(__dirname, 'fixtures', 'tiny-janus', 'safetensors');

let tmp: string;
beforeAll(async () => {
  await initBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-model-folder-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function writeJson(file: string, v: unknown): void {
  fs.writeFileSync(file, JSON.stringify(v));
}

/** The UserError `f` throws (fails the test when it throws nothing or something else). */
function userError(f: () => unknown): UserError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UserError);
    return e as UserError;
  }
  throw new Error('expected a UserError, nothing was thrown');
}

describe('readGenerationConfig', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(tmp, 'gen-'));
  });

  test('no file: the Janus-Pro / Janus-4o reference settings (w = w1 = w2 = 5, T = 1)', () => {
    expect(REFERENCE_GENERATION).toEqual({ cfg_weight: 5, cfg_weight2: 5, temperature: 1, edit_temperature: 1 });
    expect(readGenerationConfig(dir)).toEqual({ cfg_weight: 5, cfg_weight2: 5, temperature: 1, edit_temperature: 1 });
  });

  test("the file's four settings; other keys are ignored; 0 is allowed", () => {
    writeJson(path.join(dir, 'generation_config.json'), { cfg_weight: 1.5, cfg_weight2: 0, temperature: 0.7, edit_temperature: 0.5, max_new_tokens: 576 });
    expect(readGenerationConfig(dir)).toEqual({ cfg_weight: 1.5, cfg_weight2: 0, temperature: 0.7, edit_temperature: 0.5 });
  });

  test('a bad or missing setting is refused, naming the file and the key', () => {
    const file = path.join(dir, 'generation_config.json');
    const good: Record<string, unknown> = { cfg_weight: 1, cfg_weight2: 1, temperature: 1, edit_temperature: 0.5 };
    for (const key of Object.keys(good)) {
      for (const bad of [-1, '2', null, true, undefined]) {
        writeJson(file, { ...good, [key]: bad });
        const e = userError(() => readGenerationConfig(dir));
        expect(e.message).toContain(file);
        expect(e.message).toContain(`"${key}"`);
        expect(e.message).toMatch(/finite number >= 0/);
      }
      // JSON has no Infinity, but 1e999 parses to it.
      fs.writeFileSync(file, JSON.stringify(good).replace(`"${key}":${good[key]}`, `"${key}":1e999`));
      expect(userError(() => readGenerationConfig(dir)).message).toContain(`"${key}"`);
    }
    fs.writeFileSync(file, '{"cfg_weight": 1,');
    expect(userError(() => readGenerationConfig(dir)).message).toMatch(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot read`));
    writeJson(file, [1, 1, 1, 1]);
    expect(userError(() => readGenerationConfig(dir)).message).toContain(file);
  });

  test("checkpointGeneration: the plugin's settings, else null (the starting folder's file is copied), else the reference", () => {
    const plugin: GenerationDefaults = { cfg_weight: 2, cfg_weight2: 3, temperature: 0.9, edit_temperature: 0.4 };
    const own = path.join(dir, 'generation_config.json');
    expect(checkpointGeneration(plugin, [own])).toEqual(plugin);
    expect(checkpointGeneration(null, [path.join(dir, 'tokenizer.json')])).toEqual(REFERENCE_GENERATION);
    expect(checkpointGeneration(undefined, [])).toEqual(REFERENCE_GENERATION);
    writeJson(own, { ...plugin, temperature: 1 });
    expect(checkpointGeneration(null, [own])).toBeNull();
    writeJson(own, { ...plugin, temperature: -1 });
    expect(userError(() => checkpointGeneration(null, [own])).message).toContain('"temperature"');
  });
});

describe('a run from a complete model folder, and its export', () => {
  const START_GENERATION = '{"cfg_weight":2.5,"cfg_weight2":1.5,"temperature":0.75,"edit_temperature":0.25,"note":"kept byte for byte"}\n';
  let start: string;
  let data: string;

  /** A copy of the micro Janus folder with every side file (the processor files as Janus-Pro ships them). */
  beforeAll(async () => {
    start = path.join(tmp, 'start');
    fs.cpSync(TINY, start, { recursive: true });
    writeJson(path.join(start, 'processor_config.json'), { add_special_token: false, ignore_id: -100, image_tag: '<image_placeholder>', mask_prompt: true, num_image_tokens: 16, processor_class: 'VLChatProcessor', sft_format: 'deepseek', system_prompt: '' });
    writeJson(path.join(start, 'preprocessor_config.json'), { background_color: [127, 127, 127], do_normalize: true, image_mean: [0.5, 0.5, 0.5], image_processor_type: 'VLMImageProcessor', image_size: 8, image_std: [0.5, 0.5, 0.5], min_size: 2, processor_class: 'VLChatProcessor', rescale_factor: 1 / 255 });
    fs.writeFileSync(path.join(start, 'generation_config.json'), START_GENERATION);
    expect(SIDE_FILES.filter((f) => !fs.existsSync(path.join(start, f)))).toEqual([]);
    // Four text-to-image records at the model's 8 px.
    data = path.join(tmp, 'data');
    fs.mkdirSync(path.join(data, 'images'), { recursive: true });
    const records = [];
    for (let i = 0; i < 4; i++) {
      const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 60 * i, g: 255 - 60 * i, b: 90 } } }).png().toBuffer();
      fs.writeFileSync(path.join(data, 'images', `t2i_${i}.png`), png);
      records.push({ input_prompt: `a picture number ${i}`, output_image: `images/t2i_${i}.png` });
    }
    writeJson(path.join(data, 'text_to_image.json'), records);
  });

  async function train(name: string, from: string, dataset?: DatasetPlugin): Promise<string> {
    const cfg = parseTrainConfig(
      {
        model: { pretrained: from },
        data: { kind: 'sharegpt4o', root: data, files: [path.join(data, 'text_to_image.json')], cache_dir: path.join(tmp, `${name}-cache`) },
        train: { lr: 1e-3, max_steps: 1, micro_batch: 2, grad_accum: 1, seed: 1 },
        checkpoint: { dir: path.join(tmp, name), every_steps: 1, keep: 1 },
        backend: 'cpu',
      },
      `${name}.yaml`,
    );
    const r = await runTraining(cfg, { source: `${name}.yaml`, dataset });
    expect(r.checkpoint).not.toBeNull();
    return r.checkpoint!;
  }

  function expectSameBytes(a: string, b: string): void {
    expect(fs.existsSync(b)).toBe(true);
    expect(Buffer.compare(fs.readFileSync(a), fs.readFileSync(b))).toBe(0);
  }

  test('checkpoint and export carry every side file byte for byte, the starting generation_config.json included', async () => {
    const ck = await train('run-full', start);
    for (const f of SIDE_FILES) expectSameBytes(path.join(start, f), path.join(ck, f));
    const out = path.join(tmp, 'export-full');
    const written = await exportCheckpoint(ck, out, 'F32');
    expect(written).toEqual(expect.arrayContaining([...SIDE_FILES, 'config.json', 'model.safetensors', 'train_config.json']));
    for (const f of SIDE_FILES) expectSameBytes(path.join(start, f), path.join(out, f));
    expect(readGenerationConfig(out)).toEqual({ cfg_weight: 2.5, cfg_weight2: 1.5, temperature: 0.75, edit_temperature: 0.25 });
    // The export is a model folder a run can start from again.
    expect(readModelConfig(path.join(out, 'config.json')).llm).toEqual(readModelConfig(path.join(start, 'config.json')).llm);
  });

  test('a starting folder without generation_config.json: the checkpoint and export get the reference settings', async () => {
    const bare = path.join(tmp, 'start-bare');
    fs.cpSync(start, bare, { recursive: true });
    fs.rmSync(path.join(bare, 'generation_config.json'));
    const ck = await train('run-bare', bare);
    expect(JSON.parse(fs.readFileSync(path.join(ck, 'generation_config.json'), 'utf8'))).toEqual(REFERENCE_GENERATION);
    for (const f of SIDE_FILES.filter((s) => s !== 'generation_config.json')) expectSameBytes(path.join(bare, f), path.join(ck, f));
    const out = path.join(tmp, 'export-bare');
    await exportCheckpoint(ck, out, 'BF16');
    expect(JSON.parse(fs.readFileSync(path.join(out, 'generation_config.json'), 'utf8'))).toEqual(REFERENCE_GENERATION);
  });

  test("a dataset plugin's settings replace the starting folder's", async () => {
    const plugin: DatasetPlugin = { ...shareGPT4oDataset, generationDefaults: () => ({ cfg_weight: 1, cfg_weight2: 1, temperature: 1, edit_temperature: 0.5 }) };
    const ck = await train('run-plugin', start, plugin);
    expect(readGenerationConfig(ck)).toEqual({ cfg_weight: 1, cfg_weight2: 1, temperature: 1, edit_temperature: 0.5 });
    const out = path.join(tmp, 'export-plugin');
    await exportCheckpoint(ck, out, 'F32');
    expectSameBytes(path.join(ck, 'generation_config.json'), path.join(out, 'generation_config.json'));
  });

  test('a bad generation_config.json in the starting folder stops the run before training, naming the file and key', async () => {
    const badStart = path.join(tmp, 'start-bad');
    fs.cpSync(start, badStart, { recursive: true });
    writeJson(path.join(badStart, 'generation_config.json'), { cfg_weight: 1, cfg_weight2: 1, temperature: 'hot', edit_temperature: 1 });
    await expect(train('run-bad', badStart)).rejects.toThrow(/start-bad\/generation_config\.json: "temperature" must be a finite number >= 0/);
    expect(fs.existsSync(path.join(tmp, 'run-bad', 'latest'))).toBe(false);
  });

  test('export of a checkpoint written before checkpoints carried generation_config.json: the reference settings; stale side files in --out are removed', async () => {
    const model = Janus4o.create(readModelConfig(path.join(TINY, 'config.json')), { seed: 2 });
    const opt = new AdamW(model.params.list());
    const root = path.join(tmp, 'old-run');
    const state = { step: 1, epoch: 0, sampler: null, rng: null, schedule: null, config_hash: 'x' };
    try {
      await saveCheckpoint(root, { step: 1, weights: paramStoreWeights(model.params), modelConfig: model.config as unknown as JsonValue, trainConfig: {}, trainerState: state, tokenizerFiles: [path.join(TINY, 'tokenizer.json')] }, [await opt.exportState()], 1);
    } finally {
      opt.dispose();
      model.dispose();
    }
    // --out already holds another model's folder (the full export's side files).
    const out = path.join(tmp, 'export-old');
    fs.cpSync(path.join(tmp, 'export-full'), out, { recursive: true });
    const written = await exportCheckpoint(root, out, 'F32');
    expect(written).toEqual(expect.arrayContaining(['tokenizer.json', 'generation_config.json']));
    expectSameBytes(path.join(TINY, 'tokenizer.json'), path.join(out, 'tokenizer.json'));
    expect(readGenerationConfig(out)).toEqual(REFERENCE_GENERATION);
    for (const f of ['tokenizer_config.json', 'special_tokens_map.json', 'processor_config.json', 'preprocessor_config.json']) expect(fs.existsSync(path.join(out, f))).toBe(false);
  });
});
