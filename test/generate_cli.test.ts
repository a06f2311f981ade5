import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import yargs from 'yargs';
import { initBackend } from '../src/backend';
import { renderScene } from '../src/shapeworld/render';
import { SHAPEWORLD_VOCAB, makeEditSample } from '../src/shapeworld/samples';
import { savePretrained } from '../src/io/pretrained';
import { presetConfig } from '../src/model/config';
import { Janus4o } from '../src/model/janus';
import { WordTokenizer } from '../src/tokenizer/word';
import { JsonValue, paramStoreWeights, saveCheckpoint } from '../src/io/checkpoint';
import { AdamW } from '../src/train/optimizer';
import { UserError, reportCliError } from '../src/errors';
import { EditArgs, runEdit } from '../src/cli/edit';
import { EvalArgs, runEval, trainingSceneKeys } from '../src/cli/eval';
import { synthesize } from '../src/shapeworld/synth';
import { modelGenerator } from '../src/shapeworld/shapeeval_run';
import { loadRuntime } from '../src/generate/runtime';
import { GenerateArgs, generateCommand, runGenerate } from '../src/cli/generate';

let root: string;
let ckpt: string;
let trainRoot: string;
const quiet = () => undefined;

/** A small model folder as savePretrained writes it (HF config.json + safetensors) plus the ShapeWorld tokenizer. */
beforeAll(async () => {
  await initBackend('wasm');
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'janus4o-gen-cli-'));
  ckpt = path.join(root, 'ckpt');
  const config = presetConfig('tiny', { name: 'cli-test', llm: { hiddenSize: 64, numLayers: 2, numHeads: 2, numKvHeads: 2, intermediateSize: 128, vocabSize: 256, maxPositionEmbeddings: 256 } });
  const model = Janus4o.create(config, { seed: 4 });
  savePretrained(model.params, config, ckpt);
  const tokFile = path.join(ckpt, 'tokenizer.json');
  await fs.writeFile(tokFile, WordTokenizer.build(SHAPEWORLD_VOCAB).toJSON());
  // The same weights as a training checkpoint root, the layout `janus4o train` writes.
  trainRoot = path.join(root, 'run');
  const state = { step: 1, epoch: 0, sampler: null, rng: null, schedule: null, config_hash: 'x' };
  const opt = new AdamW(model.params.list());
  await saveCheckpoint(trainRoot, { step: 1, weights: paramStoreWeights(model.params), modelConfig: config as unknown as JsonValue, trainConfig: {}, trainerState: state, tokenizerFiles: [tokFile] }, [await opt.exportState()], 1);
  opt.dispose();
  model.dispose();
});
afterAll(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

function genArgs(over: Partial<GenerateArgs>): GenerateArgs {
  return { checkpoint: ckpt, n: 2, cfg: 5, temperature: 1, 'top-k': 0, 'top-p': 1, seed: '3', cache: true, backend: 'wasm', progress: false, out: path.join(root, 'out'), batch: 2, grid: true, ...over };
}

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const e of await fs.readdir(d, { withFileTypes: true })) (e.isDirectory() ? await walk(path.join(d, e.name)) : out.push(path.relative(dir, path.join(d, e.name))));
  };
  await walk(dir);
  return out.sort();
}

describe('janus4o generate', () => {
  test('PNGs with sidecars and a grid; same seed -> byte-identical PNGs, other seed -> different', async () => {
    const a = path.join(root, 'a');
    const summary = await runGenerate(genArgs({ prompt: 'a red circle', out: a }), quiet);
    expect(summary).toMatchObject({ prompts: 1, images: 2, backend: 'wasm', checkpoint: ckpt });
    expect(summary.image_tokens_per_s).toBeGreaterThan(0);
    expect(await files(a)).toEqual(['00000/0000.json', '00000/0000.png', '00000/0001.json', '00000/0001.png', '00000/grid.png', '00000/prompt.txt']);
    const side = JSON.parse(await fs.readFile(path.join(a, '00000/0001.json'), 'utf8'));
    expect(side).toMatchObject({ prompt: 'a red circle', seed: '3', prompt_index: 0, sample_index: 1, cfg: 5, temperature: 1, checkpoint: ckpt, backend: 'wasm' });
    expect(side.seconds).toBeGreaterThan(0);
    const meta = await sharp(await fs.readFile(path.join(a, '00000/0000.png'))).metadata();
    expect([meta.width, meta.height, meta.channels]).toEqual([64, 64, 3]);

    const b = path.join(root, 'b');
    await runGenerate(genArgs({ prompt: 'a red circle', out: b }), quiet);
    const c = path.join(root, 'c');
    await runGenerate(genArgs({ prompt: 'a red circle', out: c, seed: '4' }), quiet);
    // The same weights loaded from a training checkpoint root (its `latest`) draw the same images.
    const t = path.join(root, 't');
    const ts = await runGenerate(genArgs({ prompt: 'a red circle', out: t, checkpoint: trainRoot }), quiet);
    expect(ts.checkpoint).toBe(path.join(trainRoot, 'step-000001'));
    for (const f of ['0000.png', '0001.png']) {
      const pa = await fs.readFile(path.join(a, '00000', f));
      expect(Buffer.compare(pa, await fs.readFile(path.join(b, '00000', f)))).toBe(0);
      expect(Buffer.compare(pa, await fs.readFile(path.join(t, '00000', f)))).toBe(0);
      expect(Buffer.compare(pa, await fs.readFile(path.join(c, '00000', f)))).not.toBe(0);
    }
  });

  test('--geneval writes the official layout; --dpg writes 2x2 grids by prompt id', async () => {
    const meta = path.join(root, 'meta.jsonl');
    const lines = ['{"tag": "single_object", "include": [{"class": "circle", "count": 1}], "prompt": "a photo of a circle"}', '{"tag": "colors", "include": [{"class": "square", "count": 1, "color": "red"}], "prompt": "a photo of a red square"}'];
    await fs.writeFile(meta, `${lines.join('\n')}\n`);
    const g = path.join(root, 'geneval');
    await runGenerate(genArgs({ geneval: meta, out: g, n: 1, grid: false }), quiet);
    expect(await files(g)).toEqual(['00000/metadata.jsonl', '00000/samples/0000.png', '00001/metadata.jsonl', '00001/samples/0000.png']);
    expect(await fs.readFile(path.join(g, '00001/metadata.jsonl'), 'utf8')).toBe(`${lines[1]}\n`);

    const pdir = path.join(root, 'dpg_prompts');
    await fs.mkdir(pdir);
    await fs.writeFile(path.join(pdir, 'whoops7.txt'), 'a blue diamond');
    const d = path.join(root, 'dpg');
    await expect(runGenerate(genArgs({ dpg: pdir, out: d, n: 2 }), quiet)).rejects.toThrow(/needs -n 4/);
    await runGenerate(genArgs({ dpg: pdir, out: d, n: 4 }), quiet);
    expect(await files(d)).toEqual(['whoops7.png']);
    const m = await sharp(path.join(d, 'whoops7.png')).metadata();
    expect([m.width, m.height]).toEqual([128, 128]);
  });

  test('the yargs command parses the documented flags', async () => {
    const out = path.join(root, 'yargs');
    const writes: string[] = [];
    const spy = jest.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => {
      writes.push(String(s));
      return true;
    });
    const err = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      await yargs(['generate', '--checkpoint', ckpt, '--prompt', 'two squares', '-n', '1', '--cfg', '3', '--temperature', '0.9', '--seed', '8', '--out', out, '--backend', 'wasm', '--no-grid', '--top-k', '50'])
        .command(generateCommand)
        .strict()
        .fail((msg, e) => {
          throw e ?? new UserError(msg);
        })
        .parseAsync();
    } finally {
      spy.mockRestore();
      err.mockRestore();
    }
    expect(JSON.parse(writes.join(''))).toMatchObject({ images: 1, prompts: 1 });
    expect(JSON.parse(await fs.readFile(path.join(out, '00000/0000.json'), 'utf8'))).toMatchObject({ cfg: 3, temperature: 0.9, seed: '8', top_k: 50 });
    expect(await files(out)).toEqual(['00000/0000.json', '00000/0000.png', '00000/prompt.txt']);
  });
});

describe('janus4o edit and eval', () => {
  test('edit: 3-branch CFG from a source image, sidecars record cfg2 and the image', async () => {
    const src = path.join(root, 'src.png');
    await fs.writeFile(src, await renderScene(makeEditSample(1, 0).source, 64));
    const out = path.join(root, 'edit');
    const s = await runEdit({ ...genArgs({ out, n: 1 }), image: src, prompt: 'remove the red circle', cfg2: 2 } as EditArgs, quiet);
    expect(s.images).toBe(1);
    expect(JSON.parse(await fs.readFile(path.join(out, '00000/0000.json'), 'utf8'))).toMatchObject({ prompt: 'remove the red circle', image: src, cfg: 5, cfg2: 2 });
  });

  test('eval: a ShapeEval report with every category, scenes of the training config excluded', async () => {
    const report = path.join(root, 'report.json');
    await fs.writeFile(path.join(ckpt, 'train_config.json'), JSON.stringify({ data: { kind: 'shapeworld', root: path.join(root, 'nowhere'), synth: { seed: 1, t2i: 50, edit: 50 } } }));
    const r = await runEval({ ...genArgs({ n: 1 }), suite: 'shapeeval', out: undefined, cfg2: 5, 'per-category': 1, 'edits-per-category': 1, report, batch: 8 } as EvalArgs, quiet);
    expect(r.excluded_training_scenes).toBeGreaterThan(50);
    expect(Object.keys(r.t2i.summary.categories)).toHaveLength(6);
    expect(r.t2i.items).toHaveLength(6);
    expect(r.edit!.items).toHaveLength(7);
    expect(JSON.parse(await fs.readFile(report, 'utf8'))).toMatchObject({ suite: 'shapeeval', checkpoint: ckpt });
  });

  test('eval --edit-temperature: edits sample at their own temperature (greedy edits repeat, sampled ones vary)', async () => {
    const rt = await loadRuntime(ckpt);
    try {
      const items = [{ instruction: 'remove the red circle', source: await renderScene(makeEditSample(1, 0).source, 64) }];
      const [[a, b]] = await modelGenerator(rt, { seed: 3 }, { seed: 3, temperature: 0 }).edit!(items, 2);
      expect(a.equals(b)).toBe(true);
      const [[c, d]] = await modelGenerator(rt, { seed: 3 }).edit!(items, 2);
      expect(c.equals(d)).toBe(false);
    } finally {
      rt.dispose();
    }
    await expect(runEval({ ...genArgs({ n: 1 }), suite: 'shapeeval', out: undefined, cfg2: 5, 'per-category': 1, 'edits-per-category': 1, report: path.join(root, 'r.json'), batch: 8, 'edit-temperature': -1 } as EvalArgs, quiet)).rejects.toThrow(/--edit-temperature must be a number >= 0/);
  });

  test('eval --train-data given twice keeps both datasets\' scenes out (one prompt set for two models)', async () => {
    const a = path.join(root, 'train-a');
    const b = path.join(root, 'train-b');
    await synthesize({ out: a, t2i: 6, edit: 0, size: 32, seed: 11 });
    await synthesize({ out: b, t2i: 6, edit: 0, size: 32, seed: 12 });
    const ka = await trainingSceneKeys(a, ckpt, quiet);
    const kb = await trainingSceneKeys([b], ckpt, quiet);
    const both = await trainingSceneKeys([a, b], ckpt, quiet);
    expect(ka.size).toBeGreaterThan(0);
    expect(both).toEqual(new Set([...ka, ...kb]));
    expect(both.size).toBeGreaterThan(ka.size);
    await expect(trainingSceneKeys([a, path.join(root, 'missing')], ckpt, quiet)).rejects.toThrow(/--train-data .*missing/);
  });
});

describe("sampling settings from the model folder's generation_config.json", () => {
  /** The same weights as ckpt, with recommended settings unlike the reference's. */
  let tuned: string;
  const G = { cfg_weight: 2.5, cfg_weight2: 1.5, temperature: 0.8, edit_temperature: 0.3 };
  const unset = { cfg: undefined, temperature: undefined };
  const sidecar = async (out: string) => JSON.parse(await fs.readFile(path.join(out, '00000/0000.json'), 'utf8')) as Record<string, unknown>;
  beforeAll(async () => {
    tuned = path.join(root, 'tuned');
    await fs.cp(ckpt, tuned, { recursive: true });
    await fs.rm(path.join(tuned, 'train_config.json'), { force: true });
    await fs.writeFile(path.join(tuned, 'generation_config.json'), JSON.stringify(G));
  });

  test('generate: unset --cfg / --temperature take the folder\'s settings (sampled with, and recorded); flags override', async () => {
    const a = path.join(root, 'tuned-a');
    await runGenerate(genArgs({ checkpoint: tuned, prompt: 'a red circle', out: a, n: 1, ...unset }), quiet);
    expect(await sidecar(a)).toMatchObject({ cfg: 2.5, temperature: 0.8, checkpoint: tuned });
    // The same weights without the file, the settings given as flags: the same image, so they were used.
    const b = path.join(root, 'tuned-b');
    await runGenerate(genArgs({ checkpoint: ckpt, prompt: 'a red circle', out: b, n: 1, cfg: 2.5, temperature: 0.8 }), quiet);
    expect(Buffer.compare(await fs.readFile(path.join(a, '00000/0000.png')), await fs.readFile(path.join(b, '00000/0000.png')))).toBe(0);
    // A folder without the file: the reference settings.
    const r = path.join(root, 'tuned-ref');
    await runGenerate(genArgs({ checkpoint: ckpt, prompt: 'a red circle', out: r, n: 1, ...unset }), quiet);
    expect(await sidecar(r)).toMatchObject({ cfg: 5, temperature: 1 });
    // An explicit flag wins over the file, the other setting still comes from it.
    const c = path.join(root, 'tuned-c');
    await runGenerate(genArgs({ checkpoint: tuned, prompt: 'a red circle', out: c, n: 1, cfg: 3, temperature: undefined }), quiet);
    expect(await sidecar(c)).toMatchObject({ cfg: 3, temperature: 0.8 });
  });

  test('the yargs command leaves --cfg and --temperature unset by default', async () => {
    const run = async (extra: string[], out: string) => {
      const spy = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
      const err = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
      try {
        await yargs(['generate', '--checkpoint', tuned, '--prompt', 'two squares', '-n', '1', '--out', out, '--backend', 'wasm', '--no-grid', ...extra])
          .command(generateCommand)
          .strict()
          .fail((msg, e) => {
            throw e ?? new UserError(msg);
          })
          .parseAsync();
      } finally {
        spy.mockRestore();
        err.mockRestore();
      }
      return sidecar(out);
    };
    expect(await run([], path.join(root, 'tuned-y1'))).toMatchObject({ cfg: 2.5, temperature: 0.8 });
    expect(await run(['--cfg', '4', '--temperature', '0.5'], path.join(root, 'tuned-y2'))).toMatchObject({ cfg: 4, temperature: 0.5 });
  });

  test('edit: w1, w2 and the edit temperature from the folder; flags override', async () => {
    const src = path.join(root, 'tuned-src.png');
    await fs.writeFile(src, await renderScene(makeEditSample(1, 0).source, 64));
    const e = (over: Partial<EditArgs>) => ({ ...genArgs({ checkpoint: tuned, n: 1, ...unset }), image: src, prompt: 'remove the red circle', ...over }) as EditArgs;
    const a = path.join(root, 'tuned-edit-a');
    await runEdit(e({ out: a }), quiet);
    expect(await sidecar(a)).toMatchObject({ cfg: 2.5, cfg2: 1.5, temperature: 0.3 });
    const b = path.join(root, 'tuned-edit-b');
    await runEdit(e({ out: b, cfg2: 2, temperature: 0.9 }), quiet);
    expect(await sidecar(b)).toMatchObject({ cfg: 2.5, cfg2: 2, temperature: 0.9 });
  });

  test('eval: the report records the folder\'s settings; --temperature given also sets the edits\' unless --edit-temperature is', async () => {
    const ev = async (over: Partial<EvalArgs>) => {
      const report = path.join(root, 'tuned-report.json');
      await runEval({ ...genArgs({ checkpoint: tuned, n: 1, ...unset }), suite: 'shapeeval', out: undefined, 'per-category': 1, 'edits-per-category': 1, report, batch: 8, ...over } as EvalArgs, quiet);
      return JSON.parse(await fs.readFile(report, 'utf8')) as Record<string, unknown>;
    };
    expect(await ev({})).toMatchObject({ cfg: 2.5, cfg2: 1.5, temperature: 0.8, edit_temperature: 0.3 });
    expect(await ev({ cfg2: 1, temperature: 0.6, 'edits-per-category': 0 })).toMatchObject({ cfg: 2.5, cfg2: 1, temperature: 0.6, edit_temperature: 0.6 });
  });

  test('a bad generation_config.json is refused, naming the file and the key', async () => {
    const bad = path.join(root, 'tuned-bad');
    await fs.cp(tuned, bad, { recursive: true });
    await fs.writeFile(path.join(bad, 'generation_config.json'), JSON.stringify({ ...G, cfg_weight2: -1 }));
    const before = tf.memory().numTensors;
    const e = await runGenerate(genArgs({ checkpoint: bad, prompt: 'a circle', out: path.join(root, 'tuned-bad-out'), ...unset }), quiet).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(UserError);
    expect((e as Error).message).toMatch(/tuned-bad\/generation_config\.json: "cfg_weight2" must be a finite number >= 0/);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('bad input: a clear error and a non-zero exit', () => {
  async function fails(p: Promise<unknown>, re: RegExp): Promise<void> {
    const e = await p.then(
      () => null,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(UserError);
    expect((e as Error).message).toMatch(re);
    const err = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(reportCliError(e)).not.toBe(0);
    } finally {
      err.mockRestore();
    }
  }

  test('missing checkpoint, -n 0, cfg < 0, over-long prompt, undecodable --image', async () => {
    const before = tf.memory().numTensors;
    await fails(runGenerate(genArgs({ prompt: 'a circle', checkpoint: path.join(root, 'nope') }), quiet), /Checkpoint directory .*nope does not exist/);
    await fails(runGenerate(genArgs({ prompt: 'a circle', n: 0 }), quiet), /-n must be a positive integer/);
    await fails(runGenerate(genArgs({ prompt: 'a circle', cfg: -1 }), quiet), /--cfg must be a finite number >= 0/);
    await fails(runGenerate(genArgs({ prompt: Array(300).fill('red').join(' ') }), quiet), /prompt 1 .* over the model's budget of 256/);
    await fails(runGenerate(genArgs({}), quiet), /exactly one of --prompt/);
    const bad = path.join(root, 'bad.png');
    await fs.writeFile(bad, 'this is not an image');
    const edit = (over: Partial<EditArgs>) => runEdit({ ...genArgs({}), image: bad, prompt: 'remove the circle', cfg2: 5, ...over } as EditArgs, quiet);
    await fails(edit({}), /--image .*bad.png: not a readable image/);
    await fails(edit({ image: path.join(root, 'missing.png') }), /does not exist/);
    await fails(edit({ cfg2: -2 }), /--cfg2 must be/);
    expect(tf.memory().numTensors).toBe(before);
  });
});
