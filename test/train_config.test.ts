import { shapeWorldSettings } from '../src/shapeworld/config';
import { shareGPT4oDataset } from '../src/train/dataset';
import { shapeWorldDataset } from '../src/shapeworld/plugin';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import YAML from 'yaml';
import { UserError } from '../src/errors';
import { checkResumeConfig, diffConfigs } from '../src/train/resume';
import { canonicalJson, checkConfigPaths, configHash, loadTrainConfig, nearestKey, parseTrainConfig, splitOverrideArgs, TrainConfig, trainableFilter } from '../src/train/config';

const REPO = path.resolve(__dirname, '..');
let tmp: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-cfg-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function writeYaml(name: string, text: string): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, text);
  return file;
}

const MINIMAL = `model:\n  preset: tiny\ndata:\n  kind: shapeworld\n  root: data/shapeworld-64\n`;

/** The UserError message of `fn`, asserting it is one paragraph. */
function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(UserError);
    const msg = (e as Error).message;
    expect(msg).not.toMatch(/\n/);
    return msg;
  }
  throw new Error('expected an error');
}

describe('shipped configs', () => {
  test('janus4o.yaml is the paper recipe on Janus-Pro-7B', () => {
    const c = loadTrainConfig(path.join(REPO, 'configs/janus4o.yaml'));
    expect(c.model.pretrained).toBe('checkpoints/Janus-Pro-7B');
    expect(c.data).toMatchObject({ kind: 'sharegpt4o', root: 'data/ShareGPT-4o-Image' });
    expect(c.train).toMatchObject({
      lr: 5e-6, weight_decay: 0.1, betas: [0.9, 0.999], eps: 1e-8, no_decay: ['bias', 'LayerNorm.weight'], warmup_ratio: 0.05,
      min_lr_ratio: 0.15, epochs: 3, micro_batch: 4, grad_accum: 2, clip: 1, text_mask_prob: 0.1, image_mask_prob: 0.5, seed: 42,
      loss_alignment: 'reference',
    });
    expect(c.train.micro_batch * c.train.grad_accum * c.distributed.nproc).toBe(64);
    expect(c.distributed.zero_stage).toBe(2); // what `janus4o plan` recommends on 8 x 80 GB (test/plan.test.ts)
    expect(c.checkpoint.dir.startsWith('checkpoints/')).toBe(true);
  });

  test("every ShapeWorld config's own sections (data.synth, report) pass the ShapeWorld plugin's schema, and its typos are named", () => {
    for (const f of fs.readdirSync(path.join(REPO, 'configs')).filter((n) => n.startsWith('tiny'))) {
      const c = loadTrainConfig(path.join(REPO, 'configs', f));
      expect(() => shapeWorldSettings(c, f)).not.toThrow();
    }
    const tiny = loadTrainConfig(path.join(REPO, 'configs/tiny.yaml'), [{ key: 'report.shapeeval.temperature', raw: '0.5' }]);
    expect(shapeWorldSettings(tiny, 'tiny.yaml').report.shapeeval.temperature).toBe(0.5);
    const typo = { ...tiny, report: { ...tiny.report, shapeval: {} } };
    expect(errorOf(() => shapeWorldSettings(typo, 'tiny.yaml'))).toContain('report.shapeval: unknown key (did you mean "shapeeval"?)');
    const bad = { ...tiny, data: { ...tiny.data, synth: { t2i: -1 } } };
    expect(errorOf(() => shapeWorldSettings(bad, 'tiny.yaml'))).toMatch(/Invalid training config tiny\.yaml: data\.synth\.t2i: must be a non-negative integer/);
    // A ShareGPT-4o-Image run refuses ShapeWorld's sections instead of ignoring them.
    const real = loadTrainConfig(path.join(REPO, 'configs/janus4o.yaml'));
    expect(errorOf(() => shareGPT4oDataset.resolveConfig({ ...real, report: { enabled: true } }, 'janus4o.yaml'))).toContain('report.enabled belongs to the ShapeWorld report');
  });

  test('janus4o-1b.yaml and tiny.yaml are valid', () => {
    const one = loadTrainConfig(path.join(REPO, 'configs/janus4o-1b.yaml'));
    expect(one.model.pretrained).toBe('checkpoints/Janus-Pro-1B');
    const tiny = loadTrainConfig(path.join(REPO, 'configs/tiny.yaml'));
    // The README's main command fine-tunes the shipped base model, which the repository carries.
    expect(tiny.model.pretrained).toBe('checkpoints/pretrained/janus-tiny-base');
    expect(tiny.data).toMatchObject({ kind: 'shapeworld', root: 'data/shapeworld-64' });
    expect(tiny.report.enabled).toBe(true);
    const full = loadTrainConfig(path.join(REPO, 'configs/tiny-full.yaml'));
    expect(full.model.pretrained).toBe('checkpoints/pretrained/janus-tiny-base');
    const base = loadTrainConfig(path.join(REPO, 'configs/tiny-base.yaml'));
    // The base is trained in two stages; stage 2 starts from stage 1's shipped export. Neither sees an edit.
    expect(base.model.pretrained).toBe('checkpoints/pretrained/janus-tiny-base-stage1');
    expect(base.data.synth).toMatchObject({ edit: 0, caption_noise: 0.2 });
    const stage1 = loadTrainConfig(path.join(REPO, 'configs/tiny-base-stage1.yaml'));
    expect(stage1.model).toMatchObject({ preset: 'tiny', vq_pretrained: 'checkpoints/pretrained/shapeworld-vq', init: 'unit-input' });
    expect(stage1.data.synth).toMatchObject({ edit: 0, captions: 'class' });
    for (const c of [stage1, base]) expect(c.train.betas).toEqual([0.9, 0.95]);
    // The fine-tunes keep the Janus-4o recipe's optimizer.
    expect(full.train.betas).toEqual([0.9, 0.999]);
    // janus4o-tiny's cycles 2-4 repeat cycle 1's data and schedule from the previous cycle's weights (a folder the user
    // trains first, so only parsed here, not checked on disk).
    const cycleRaw = YAML.parse(fs.readFileSync(path.join(REPO, 'configs/tiny-full-cycle.yaml'), 'utf8')) as unknown;
    const cycle = parseTrainConfig(cycleRaw, 'configs/tiny-full-cycle.yaml');
    expect(cycle.model.pretrained).toBe(`${full.checkpoint.dir}/step-${String(full.train.max_steps).padStart(6, '0')}`);
    expect(cycle.data).toEqual(full.data);
    expect(cycle.train).toEqual(full.train);
    expect(cycle.distributed).toEqual(full.distributed);
    for (const c of [tiny, full, base, stage1]) {
      const folder = c.model.pretrained ?? c.model.vq_pretrained;
      expect(fs.existsSync(path.join(REPO, folder!, 'config.json'))).toBe(true);
    }
  });

  test('defaults are the recipe, so a minimal file resolves to it', () => {
    const c = loadTrainConfig(writeYaml('min.yaml', MINIMAL));
    expect(c.train).toMatchObject({ lr: 5e-6, weight_decay: 0.1, warmup_ratio: 0.05, min_lr_ratio: 0.15, clip: 1, seed: 42, loss_alignment: 'reference' });
    expect(c.backend).toBe('auto');
    expect(c.distributed).toEqual({ nproc: 1, zero_stage: 0 });
  });

  test("the ShapeWorld configs keep the loss their models were trained with, 'full', explicitly", () => {
    for (const name of ['tiny', 'tiny-full', 'tiny-full-cycle', 'tiny-base', 'tiny-base-stage1']) {
      const raw = YAML.parse(fs.readFileSync(path.join(REPO, `configs/${name}.yaml`), 'utf8')) as { data: { kind: string }; train: Record<string, unknown> };
      expect(raw.data.kind).toBe('shapeworld');
      expect([name, raw.train.loss_alignment]).toEqual([name, 'full']);
    }
  });
});

describe('config errors name the key path and the file, in one paragraph', () => {
  test('unknown key with the nearest valid key suggested', () => {
    const file = writeYaml('typo.yaml', `${MINIMAL}train:\n  weight_decy: 0.1\n`);
    const msg = errorOf(() => loadTrainConfig(file));
    expect(msg).toContain(file);
    expect(msg).toContain('train.weight_decy: unknown key (did you mean "weight_decay"?)');
  });

  test('unknown section and a key too far from any valid one', () => {
    const msg = errorOf(() => loadTrainConfig(writeYaml('typo2.yaml', `${MINIMAL}chekpoint:\n  keep: 2\ntrain:\n  zzzzzz: 1\n`)));
    expect(msg).toContain('chekpoint: unknown key (did you mean "checkpoint"?)');
    expect(msg).toMatch(/train\.zzzzzz: unknown key \(valid keys here: lr, weight_decay, /);
  });

  test('wrong type', () => {
    const file = writeYaml('type.yaml', `${MINIMAL}train:\n  micro_batch: two\n`);
    const msg = errorOf(() => loadTrainConfig(file));
    expect(msg).toContain(file);
    expect(msg).toContain('train.micro_batch: expected number, got string "two"');
  });

  test('negative lr and other ranges', () => {
    const file = writeYaml('neg.yaml', `${MINIMAL}train:\n  lr: -1.0e-3\n  text_mask_prob: 1.5\ndistributed:\n  zero_stage: 3\nbackend: gpu\n`);
    const msg = errorOf(() => loadTrainConfig(file));
    expect(msg).toContain(`Invalid training config ${file}`);
    expect(msg).toContain('train.lr: must be a positive number, got -0.001');
    expect(msg).toContain('train.text_mask_prob: must be between 0 and 1, got 1.5');
    expect(msg).toContain('distributed.zero_stage: must be 0, 1 or 2, got 3');
    expect(msg).toContain('backend: expected one of auto, tensorflow, wasm, cpu, got "gpu"');
  });

  test('missing section, conflicting model source, YAML syntax, missing file', () => {
    expect(errorOf(() => loadTrainConfig(writeYaml('nodata.yaml', 'model:\n  preset: tiny\n')))).toContain('data: missing');
    const both = writeYaml('both.yaml', MINIMAL.replace('preset: tiny', 'preset: tiny\n  pretrained: x'));
    expect(errorOf(() => loadTrainConfig(both))).toContain('model: needs exactly one of preset');
    expect(errorOf(() => loadTrainConfig(writeYaml('bad.yaml', 'model: [1, 2\n')))).toMatch(/Cannot parse training config .*bad\.yaml/);
    expect(errorOf(() => loadTrainConfig(path.join(tmp, 'nope.yaml')))).toMatch(/Cannot read training config .*nope\.yaml: no such file/);
  });

  test('missing data folder and missing weights say what to download and where', () => {
    const file = path.join(REPO, 'configs/janus4o.yaml');
    const c = loadTrainConfig(file);
    const noWeights = errorOf(() => checkConfigPaths(c, file, tmp));
    expect(noWeights).toContain(`model.pretrained in ${file}`);
    expect(noWeights).toContain('huggingface-cli download deepseek-ai/Janus-Pro-7B --local-dir checkpoints/Janus-Pro-7B');
    fs.mkdirSync(path.join(tmp, 'checkpoints/Janus-Pro-7B'), { recursive: true });
    fs.writeFileSync(path.join(tmp, 'checkpoints/Janus-Pro-7B/config.json'), '{}');
    const noData = errorOf(() => checkConfigPaths(c, file, tmp));
    expect(noData).toContain(`data.root in ${file}`);
    expect(noData).toContain('--repo-type dataset FreedomIntelligence/ShareGPT-4o-Image --local-dir data/ShareGPT-4o-Image');
    fs.mkdirSync(path.join(tmp, 'data/ShareGPT-4o-Image'), { recursive: true });
    expect(() => checkConfigPaths(c, file, tmp)).not.toThrow();
    // ShapeWorld is synthesised when missing, unless told not to.
    const shipped = loadTrainConfig(path.join(REPO, 'configs/tiny.yaml'));
    expect(errorOf(() => checkConfigPaths(shipped, 'tiny.yaml', tmp))).toContain('model.pretrained in tiny.yaml');
    const tiny = { ...shipped, model: { ...shipped.model, pretrained: undefined, preset: 'tiny' as const } };
    expect(() => checkConfigPaths(tiny, 'tiny.yaml', tmp)).not.toThrow();
    // The ShapeWorld plugin checks its own folder: missing and not to be synthesised, it says how to make it.
    const missing = path.join(tmp, 'data/shapeworld-64');
    const strict = { ...tiny, data: { ...tiny.data, root: missing, synthesize_if_missing: false } };
    expect(errorOf(() => shapeWorldDataset().checkPaths!(strict, 'tiny.yaml'))).toContain(`janus4o synth --t2i 1500 --edit 1500 --size 64 --seed 1 --out ${missing}`);
    expect(() => shapeWorldDataset().checkPaths!({ ...strict, data: { ...strict.data, synthesize_if_missing: true } }, 'tiny.yaml')).not.toThrow();
    const stage1 = loadTrainConfig(path.join(REPO, 'configs/tiny-base-stage1.yaml'));
    const strictStage1 = { ...stage1, model: { ...stage1.model, vq_pretrained: undefined }, data: { ...stage1.data, root: `${missing}-class`, synthesize_if_missing: false } };
    expect(errorOf(() => shapeWorldDataset().checkPaths!(strictStage1, 'stage1.yaml'))).toContain(`--seed 4 --captions class --out ${missing}-class`);
  });
});

describe('dotted command-line overrides', () => {
  test('are split off argv and coerced by the schema', () => {
    const argv = ['--config', 'x.yaml', '--train.lr', '1e-5', '--train.betas=0.9,0.95', '--train.activation_checkpointing', 'false', '--data.root', '123', '--checkpoint.keep=5', '--train.max_steps', '10'];
    const { overrides, rest } = splitOverrideArgs(argv);
    expect(rest).toEqual(['--config', 'x.yaml']);
    const c = loadTrainConfig(writeYaml('ov.yaml', `${MINIMAL}train:\n  activation_checkpointing: true\n`), overrides);
    expect(c.train.lr).toBe(1e-5);
    expect(c.train.betas).toEqual([0.9, 0.95]);
    expect(c.train.activation_checkpointing).toBe(false);
    expect(c.data.root).toBe('123');
    expect(c.checkpoint.keep).toBe(5);
    expect(c.train.max_steps).toBe(10);
    const unset = loadTrainConfig(writeYaml('ov2.yaml', `${MINIMAL}train:\n  max_steps: 7\n`), splitOverrideArgs(['--train.max_steps', 'null']).overrides);
    expect(unset.train.max_steps).toBeUndefined();
  });

  test('bad overrides name the flag', () => {
    const file = writeYaml('ov3.yaml', MINIMAL);
    expect(errorOf(() => loadTrainConfig(file, [{ key: 'train.lrr', raw: '1' }]))).toContain('train.lrr: unknown key (did you mean "lr"?)');
    expect(errorOf(() => loadTrainConfig(file, [{ key: 'trian.lr', raw: '1' }]))).toContain('trian: unknown key (did you mean "train"?)');
    expect(errorOf(() => loadTrainConfig(file, [{ key: 'train.lr', raw: 'abc' }]))).toContain('train.lr: expected number, got string "abc" (set by --train.lr)');
    expect(() => splitOverrideArgs(['--train.lr'])).toThrow(/needs a value/);
  });
});

describe('hash, diff and resume compatibility', () => {
  test('the hash is stable under key order and changes with any value', () => {
    const a = loadTrainConfig(writeYaml('h1.yaml', `${MINIMAL}train:\n  lr: 0.001\n  seed: 3\n`));
    const b = loadTrainConfig(writeYaml('h2.yaml', `train:\n  seed: 3\n  lr: 0.001\ndata:\n  root: data/shapeworld-64\n  kind: shapeworld\nmodel:\n  preset: tiny\n`));
    expect(configHash(a)).toBe(configHash(b));
    expect(configHash(a)).toMatch(/^[0-9a-f]{64}$/);
    expect(configHash({ ...a, train: { ...a.train, lr: 0.002 } })).not.toBe(configHash(a));
    expect(canonicalJson({ b: 1, a: [2, { d: 1, c: undefined }] })).toBe('{"a":[2,{"d":1}],"b":1}');
  });

  test('a changed lr is refused with the differing keys listed, unless allowed', () => {
    const saved = loadTrainConfig(writeYaml('r1.yaml', MINIMAL)) as TrainConfig;
    const now: TrainConfig = { ...saved, train: { ...saved.train, lr: 1e-5, seed: 7 }, checkpoint: { ...saved.checkpoint, keep: 9 } };
    expect(diffConfigs(saved, now).map((d) => d.key)).toEqual(['checkpoint.keep', 'train.lr', 'train.seed']);
    const msg = errorOf(() => checkResumeConfig(JSON.parse(JSON.stringify(saved)), now, [], 'ckpt/step-000010'));
    expect(msg).toContain('train.lr (checkpoint: 0.000005, now: 0.00001)');
    expect(msg).toContain('train.seed (checkpoint: 42, now: 7)');
    expect(msg).not.toContain('checkpoint.keep');
    expect(checkResumeConfig(saved, now, ['train.lr', 'train.seed'], 'x').map((d) => d.key)).toEqual(['checkpoint.keep', 'train.lr', 'train.seed']);
  });

  test('model.init: reference by default, unit-input with a preset, refused with pretrained weights; a checkpoint written before the key resumes', () => {
    const c = loadTrainConfig(writeYaml('i1.yaml', MINIMAL));
    expect(c.model.init).toBe('reference');
    expect(loadTrainConfig(writeYaml('i2.yaml', MINIMAL.replace('preset: tiny', 'preset: tiny\n  init: unit-input'))).model.init).toBe('unit-input');
    expect(errorOf(() => loadTrainConfig(writeYaml('i3.yaml', MINIMAL.replace('preset: tiny', 'preset: tiny\n  init: xavier'))))).toContain('model.init');
    const pre = `model:\n  pretrained: checkpoints/pretrained/janus-tiny-base\n  init: unit-input\ndata:\n  kind: shapeworld\n  root: data/shapeworld-64\n`;
    expect(errorOf(() => loadTrainConfig(writeYaml('i4.yaml', pre)))).toContain('applies to a preset model only');
    // The saved config of an older run has no model.init: its default is what that run used, so no difference.
    const old = JSON.parse(JSON.stringify(c));
    delete old.model.init;
    expect(checkResumeConfig(old, c, [], 'x')).toEqual([]);
    expect(errorOf(() => checkResumeConfig(old, { ...c, model: { ...c.model, init: 'unit-input' } }, [], 'x'))).toContain('model.init');
  });

  test('retired keys: the removed token-weight loss and optimizer choice; an older checkpoint holding their kept values still parses and resumes', () => {
    const c = loadTrainConfig(writeYaml('rk1.yaml', MINIMAL));
    const old = JSON.parse(JSON.stringify(c));
    Object.assign(old.train, { token_weight_power: 0, optimizer: 'adamw' });
    expect(checkResumeConfig(old, c, [], 'x')).toEqual([]);
    expect(parseTrainConfig(old, 'old/train_config.json')).toEqual(c);
    const weighted = errorOf(() => loadTrainConfig(writeYaml('rk2.yaml', `${MINIMAL}train:\n  token_weight_power: 0.5\n  token_weight_anneal: 0.5\n`)));
    expect(weighted).toContain('train.token_weight_power: no longer exists (the frequency-balanced image-token loss was removed after measurement (docs/token-weights.md)); only 0, what now always runs, is still accepted, got 0.5');
    expect(weighted).toContain('train.token_weight_anneal: no longer exists');
    expect(weighted).not.toContain('unknown key');
    expect(errorOf(() => loadTrainConfig(writeYaml('rk3.yaml', `${MINIMAL}train:\n  optimizer: sgd\n`)))).toContain('train.optimizer: no longer exists');
    const weightedRun = { ...old, train: { ...old.train, token_weight_power: 0.5 } };
    expect(errorOf(() => checkResumeConfig(weightedRun, c, [], 'x'))).toContain('train.token_weight_power (checkpoint: 0.5, now: nothing)');
  });

  test('trainable selection: everything but the VQ tokenizer and lm_head by default', () => {
    const c = loadTrainConfig(writeYaml('t.yaml', MINIMAL));
    const ok = trainableFilter(c.train);
    expect(ok('language_model.model.layers.0.self_attn.q_proj.weight')).toBe(true);
    expect(ok('gen_head.vision_head.weight')).toBe(true);
    expect(ok('gen_vision_model.encoder.conv_in.weight')).toBe(false);
    expect(ok('language_model.lm_head.weight')).toBe(false);
    expect(nearestKey('zero_stag', ['nproc', 'zero_stage'])).toBe('zero_stage');
  });
});
