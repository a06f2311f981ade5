/**
 * Float keys of the training config refuse what no setting means: YAML `.inf` / `-.inf` / `.nan` (zod's z.number()
 * accepts Infinity), `Infinity` from a command-line override, and for train.lr also 0 and negative values. Each is
 * refused at validation, one paragraph naming the key.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { UserError } from '../src/errors';
import { loadTrainConfig } from '../src/train/config';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-floats-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function load(section: string, key: string, value: string, overrides: { key: string; raw: string }[] = []): string {
  const file = path.join(tmp, 'c.yaml');
  const model = section === 'model.overrides.llm' ? `  overrides:\n    llm:\n      ${key}: ${value}\n` : '';
  const data = section === 'data' ? `  ${key}: ${value}\n` : '';
  const other = section === 'train' ? `train:\n  ${key}: ${value}\n` : '';
  const body = `model:\n  preset: tiny\n${model}data:\n  kind: shapeworld\n  root: data\n${data}${other}`;
  fs.writeFileSync(file, body);
  try {
    loadTrainConfig(file, overrides);
  } catch (e) {
    expect(e).toBeInstanceOf(UserError);
    expect((e as Error).message).not.toMatch(/\n/);
    return (e as Error).message;
  }
  throw new Error(`${section}.${key}: ${value} was accepted`);
}

describe('train.lr', () => {
  test.each(['.inf', '-.inf', '.nan', '.NaN', '0', '-1', '-1.0e-5'])('lr: %s is refused naming train.lr', (v) => {
    expect(load('train', 'lr', v)).toMatch(/c\.yaml: train\.lr: must be a (finite|positive) number/);
  });
  test('.inf says what it got', () => {
    expect(load('train', 'lr', '.inf')).toContain('train.lr: must be a finite number, got Infinity');
    expect(load('train', 'lr', '.nan')).toContain('train.lr: must be a finite number, got NaN');
  });
  test('--train.lr Infinity on the command line is refused too', () => {
    expect(load('train', 'lr', '1e-5', [{ key: 'train.lr', raw: 'Infinity' }])).toContain('train.lr: must be a finite number, got Infinity');
  });
  test('a finite positive lr still loads, from YAML and from an override', () => {
    const file = path.join(tmp, 'ok.yaml');
    fs.writeFileSync(file, 'model:\n  preset: tiny\ndata:\n  kind: shapeworld\n  root: data\ntrain:\n  lr: 2.0e-4\n');
    expect(loadTrainConfig(file).train.lr).toBe(2e-4);
    expect(loadTrainConfig(file, [{ key: 'train.lr', raw: '1e-5' }]).train.lr).toBe(1e-5);
  });
});

describe('the other float keys have no Infinity / NaN hole either', () => {
  const keys: [string, string][] = [
    ['train', 'weight_decay'],
    ['train', 'eps'],
    ['train', 'clip'],
    ['train', 'warmup_ratio'],
    ['train', 'min_lr_ratio'],
    ['train', 'text_mask_prob'],
    ['train', 'image_mask_prob'],
    ['data', 'max_bad_fraction'],
    ['train', 'max_steps'],
    ['model.overrides.llm', 'ropeTheta'],
    ['model.overrides.llm', 'rmsNormEps'],
  ];
  test.each(keys)('%s.%s: .inf and .nan refused naming the key', (section, key) => {
    const name = `${section}.${key}`;
    for (const v of ['.inf', '.nan']) expect(load(section, key, v)).toContain(`${name}: must be a finite number`);
  });
  test('train.betas: [.inf, 0.9] refused naming train.betas.0', () => {
    expect(load('train', 'betas', '[.inf, 0.9]')).toContain('train.betas.0: must be a finite number');
  });
});
