/**
 * The shipped-model pipeline end to end through the compiled CLI, at toy sizes: train a VQ tokenizer, train a
 * base model with it (model.vq_pretrained), export the base as a model folder, fine-tune it (model.pretrained)
 * with report.enabled, and check the report: well-formed, every referenced image present, base and fine-tuned
 * columns filled.
 */
import { shapeWorldSettings } from '../src/shapeworld/config';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { SafetensorsFile } from '../src/io/safetensors';
import { sphericalKMeans } from '../src/shapeworld/vq_train';
import { Showcase, loadShowcase, saveShowcase, showcaseKey } from '../src/shapeworld/run_report';
import { parseTrainConfig } from '../src/train/config';
import { byId, byName, parseXhtml, text } from './xhtml';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
let tmp: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-runreport-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function cli(args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status, out: `${r.stdout}\n${r.stderr}` };
}

function expectOk(r: { code: number | null; out: string }): void {
  if (r.code !== 0) throw new Error(`exit ${r.code}:\n${r.out}`);
}

const LLM = `llm: { hiddenSize: 32, numLayers: 2, numHeads: 2, numKvHeads: 2, intermediateSize: 64, maxPositionEmbeddings: 512 }
    siglip: { width: 16, depth: 1, numHeads: 2, mlpDim: 32 }`;

function config(name: string, model: string, data: string, extra = ''): string {
  const file = path.join(tmp, `${name}.yaml`);
  fs.writeFileSync(file, `model:
${model}
data:
  kind: shapeworld
  root: ${data}
  heldout: 4
train:
  lr: 1.0e-2
  max_steps: 3
  micro_batch: 2
  grad_accum: 1
  seed: 3
checkpoint:
  dir: ${path.join(tmp, name)}
  every_steps: 0
backend: wasm
${extra}`);
  return file;
}

test('train-vq -> base with vq_pretrained -> export -> fine-tune with report.enabled -> a complete report', () => {
  const data = path.join(tmp, 'data');
  expectOk(cli(['synth', '--t2i', '24', '--edit', '12', '--size', '32', '--seed', '1', '--out', data, '--no-progress']));

  const vqDir = path.join(tmp, 'vq');
  const vq = cli(['train-vq', '--data', data, '--out', vqDir, '--image-size', '32', '--codebook', '64', '--base-channels', '8', '--ch-mult', '1,1,1,2',
    '--z-channels', '8', '--norm-groups', '4', '--attn-blocks', '0', '--ae-steps', '2', '--steps', '3', '--batch', '4', '--crop', '16', '--images', '30', '--heldout', '4', '--no-progress']);
  expectOk(vq);
  expect(vq.out).toMatch(/codebook from k-means over 480 latents/);
  expect(vq.out).toMatch(/train-vq: after 3 steps: mse [\d.]+, \d+\/64 codes/);
  const vqWeights = SafetensorsFile.open(path.join(vqDir, 'model.safetensors'));
  try {
    expect(vqWeights.names().length).toBeGreaterThan(10);
    expect(vqWeights.names().every((n) => n.startsWith('gen_vision_model.'))).toBe(true);
  } finally {
    vqWeights.close();
  }

  const base = cli(['train', '--config', config('base', `  preset: tiny\n  vq_pretrained: ${vqDir}\n  overrides:\n    ${LLM}`, data)]);
  expectOk(base);
  expect(base.out).toContain(`with the VQ tokenizer of ${vqDir} (codebook 64)`);
  expect(base.out).toMatch(/data: 36 records; VQ-encoding into \S+ \(kept for later runs\)/);

  const exported = path.join(tmp, 'base-model');
  expectOk(cli(['export', '--checkpoint', path.join(tmp, 'base'), '--out', exported, '--dtype', 'bf16']));
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'train_config.json']) expect(fs.existsSync(path.join(exported, f))).toBe(true);

  const report = `report:
  enabled: true
  shapeeval: { per_category: 1, edits_per_category: 1, images_per_prompt: 1, cfg: 1.5, cfg2: 1, temperature: 0.7, edit_temperature: 0.4 }
  samples: ["a red circle"]
  edit_examples: 2`;
  // New image positions are the one architecture override a pretrained model takes (they are not weights).
  const positions = `  overrides:\n    imagePositions: { stride: 2, editTargetOffset: 2 }`;
  const tuned = cli(['train', '--config', config('tuned', `  pretrained: ${exported}\n${positions}`, data, report)]);
  expectOk(tuned);
  expect(tuned.out).toContain('image positions from model.overrides: 2 ids apart, edit targets 2 ids after their input');
  const last = fs.readdirSync(path.join(tmp, 'tuned')).filter((d) => d.startsWith('step-')).sort().pop()!;
  expect(JSON.parse(fs.readFileSync(path.join(tmp, 'tuned', last, 'config.json'), 'utf8')).imagePositions).toEqual({ stride: 2, editTargetOffset: 2 });
  expect(tuned.out).toMatch(/report: starting model ShapeEval T2I overall [\d.]+%, edit overall [\d.]+%/);
  const where = /report: (\/\S+report\.html)/.exec(tuned.out);
  expect(where).not.toBeNull();
  const html = where![1];
  expect(path.dirname(html)).toBe(path.join(tmp, 'tuned'));

  const doc = parseXhtml(fs.readFileSync(html, 'utf8'));
  const imgs = byName(doc, 'img');
  // 1 sample x (base, fine-tuned) + 2 edits x (input, base, fine-tuned).
  expect(imgs).toHaveLength(8);
  for (const im of imgs) expect(fs.existsSync(path.join(path.dirname(html), im.attrs.src))).toBe(true);
  for (const id of ['facts', 'curves', 'lr', 'heldout', 'evaluation', 'samples', 'edits']) expect(() => byId(doc, id)).not.toThrow();
  expect(text(byId(doc, 'samples'))).not.toContain('not generated');
  // The ShapeEval note and the command that reproduces it carry the report's sampling settings.
  expect(text(byId(doc, 'evaluation'))).toContain('CFG 1.5/1, temperature 0.7 (edits 0.4)');
  expect(text(byId(doc, 'reproduce'))).toMatch(/--cfg 1\.5 --cfg2 1 --temperature 0\.7 --edit-temperature 0\.4/);
  // Held-out condition use, measured before and after: a number in both columns of each row.
  const heldRows = byName(byId(doc, 'heldout'), 'tr').map((r) => byName(r, 'td').map(text)).filter((r) => r.length);
  // The held-out records are the tail of each task, so both conditions get a row.
  expect(heldRows.map((r) => r[0])).toEqual([
    'Image-token loss (nats/token)',
    'Prompt use, T2I (nats/image)',
    'Input-image VQ block use, edits (nats/image)',
    'Kept objects started from the input image, edits (share; VQ block present)',
    'Kept objects started from the input image, edits (share; SigLIP features only)',
  ]);
  for (const r of heldRows) expect(r.slice(1, 3).every((v) => /^-?\d+\.\d{3}$/.test(v))).toBe(true);
  for (const r of heldRows.slice(3)) expect(r.slice(1, 3).every((v) => Number(v) >= 0 && Number(v) <= 1)).toBe(true);
  expect(text(byId(doc, 'heldout'))).toContain('Kept objects started: teacher-forced on ShapeEval-style edits');
  expect(byName(byId(doc, 'curves'), 'polyline').length).toBeGreaterThan(0);
  // The base measurement is kept beside the checkpoints for resumed runs, which reuse it only under the same settings.
  expect(fs.existsSync(path.join(tmp, 'tuned', 'report-base', 'base.json'))).toBe(true);
  const tunedConfig = path.join(tmp, 'tuned.yaml');
    // Without naming the changed key, resuming is refused with the flag that allows it.
  const refused = cli(['train', '--config', tunedConfig, '--resume', 'auto', '--train.max_steps', '4']);
  expect(refused.code).not.toBe(0);
  expect(refused.out).toContain('train.max_steps (checkpoint: 3, now: 4)');
  expect(refused.out).toContain('(--allow-change train.max_steps)');
  const resumed = cli(['train', '--config', tunedConfig, '--resume', 'auto', '--train.max_steps', '4', '--allow-change', 'train.max_steps']);
  expectOk(resumed);
  expect(resumed.out).not.toContain('measuring the starting model');
  expect(resumed.out).toMatch(/data: 36 records; VQ codes cached in /);
  // The Base column of the ShapeEval tables' overall rows (T2I, edits): figures, or a dash when the base is unknown.
  const baseOverall = () => byName(byId(parseXhtml(fs.readFileSync(html, 'utf8')), 'evaluation'), 'tr').filter((r) => r.attrs.class === 'overall').map((r) => text(byName(r, 'td')[0]));
  expect(baseOverall()).toHaveLength(2);
  for (const cell of baseOverall()) expect(cell).toMatch(/\d/);
  const changed = cli(['train', '--config', tunedConfig, '--resume', 'auto', '--train.max_steps', '5', '--report.shapeeval.temperature', '0.9', '--allow-change', 'train.max_steps', 'report.shapeeval.temperature']);
  expectOk(changed);
  expect(changed.out).toMatch(/report-base was measured with another starting model or other report settings than this config's; the report will have no base column/);
  for (const cell of baseOverall()) expect(cell).toBe('—');
});

test('a resumed run reuses the stored base measurement only if it was made with the same model and report settings', async () => {
  const raw = (temperature: number, pretrained = 'checkpoints/pretrained/janus-tiny-base') => parseTrainConfig({ model: { pretrained }, data: { kind: 'shapeworld', root: 'x' }, checkpoint: { dir: 'y' }, report: { enabled: true, shapeeval: { temperature } } }, 't.yaml');
  const keyOf = (c: ReturnType<typeof raw>) => showcaseKey(c, shapeWorldSettings(c, 't.yaml').report);
  const key = keyOf(raw(1));
  expect(keyOf(raw(1))).toBe(key);
  expect(keyOf(raw(0.5))).not.toBe(key);
  expect(keyOf(raw(1, 'elsewhere'))).not.toBe(key);
  const dir = path.join(tmp, 'showcase');
  expect(loadShowcase(dir, key)).toBe('missing');
  const png = Buffer.from('not decoded here');
  const s = { shapeEval: { t2i: {}, edit: null }, summary: { t2i: {}, edit: null, seconds: 1 }, samples: [png], edits: [{ instruction: 'remove it', category: 'remove', input: png, output: png }] } as unknown as Showcase;
  await saveShowcase(dir, s, key);
  const back = loadShowcase(dir, key);
  expect(back).not.toBe('stale');
  expect((back as Showcase).edits[0]).toMatchObject({ instruction: 'remove it', category: 'remove' });
  expect((back as Showcase).samples[0].equals(png)).toBe(true);
  expect(loadShowcase(dir, keyOf(raw(0.5)))).toBe('stale');
});

test('sphericalKMeans finds well-separated clusters exactly, weighting repeated rows', () => {
  const dirs = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0]];
  const rows: number[] = [];
  let s = 7;
  const rand = () => ((s = (s * 16807) % 2147483647) / 2147483647);
  for (let i = 0; i < 400; i++) {
    const d = dirs[i % 4];
    const v = d.map((x) => x + (rand() - 0.5) * 0.1);
    const n = Math.hypot(...v);
    rows.push(...v.map((x) => x / n));
  }
  const cent = sphericalKMeans(Float32Array.from(rows), 3, 4, rand);
  const found = [0, 1, 2, 3].map((c) => Array.from(cent.slice(c * 3, c * 3 + 3)));
  for (const d of dirs) expect(found.some((c) => c[0] * d[0] + c[1] * d[1] + c[2] * d[2] > 0.99)).toBe(true);
});

test('bad vq_pretrained and train-vq inputs are one-paragraph errors', () => {
  const data = path.join(tmp, 'data');
  const missing = cli(['train', '--config', config('bad', `  preset: tiny\n  vq_pretrained: ${path.join(tmp, 'nope')}`, data)]);
  expect(missing.code).not.toBe(0);
  expect(missing.out).toMatch(/model\.vq_pretrained in .*bad\.yaml points at .*nope, which has no config\.json/);
  expect(missing.out).not.toMatch(/\n\s+at /);
  const both = cli(['train', '--config', config('bad2', `  pretrained: ${path.join(tmp, 'x')}\n  vq_pretrained: ${path.join(tmp, 'y')}`, data)]);
  expect(both.code).not.toBe(0);
  expect(both.out).toMatch(/model\.vq_pretrained.*applies to a preset model only/);
  const resized = cli(['train', '--config', config('bad3', `  pretrained: ${path.join(tmp, 'base-model')}\n  overrides:\n    llm: { hiddenSize: 64 }`, data)]);
  expect(resized.code).not.toBe(0);
  expect(resized.out).toMatch(/model\.overrides\.llm cannot change model\.pretrained's architecture/);
  expect(resized.out).not.toMatch(/\n\s+at /);
  const noData = cli(['train-vq', '--data', path.join(tmp, 'nothing'), '--out', path.join(tmp, 'v2')]);
  expect(noData.code).not.toBe(0);
  expect(noData.out).toMatch(/scenes\.jsonl not found; --data must be a ShapeWorld dataset/);
  const badCrop = cli(['train-vq', '--data', data, '--out', path.join(tmp, 'v3'), '--image-size', '32', '--ch-mult', '1,1,1,2', '--crop', '12']);
  expect(badCrop.code).not.toBe(0);
  expect(badCrop.out).toMatch(/--crop 12 must be a multiple of the tokenizer's downsample factor 8/);
});

test('train-vq --codes patches: one code per distinct patch, learned by the encoder; a continued run keeps that codebook', () => {
  const data = path.join(tmp, 'patch-data');
  expectOk(cli(['synth', '--t2i', '16', '--edit', '0', '--size', '32', '--seed', '2', '--out', data, '--no-progress']));
  const sizes = ['--image-size', '32', '--base-channels', '8', '--ch-mult', '1,1,1,2', '--z-channels', '8', '--norm-groups', '4', '--attn-blocks', '0'];
  const common = ['--data', data, '--codes', 'patches', '--steps', '3', '--batch', '4', '--crop', '16', '--images', '12', '--heldout', '4', '--no-progress'];
  const first = path.join(tmp, 'vq-patches');
  const r = cli(['train-vq', '--out', first, '--codebook', '512', ...sizes, ...common]);
  expectOk(r);
  const distinct = /train-vq: (\d+) distinct 8x8 patches in the training images, one code each \(codebook 512\)/.exec(r.out);
  expect(distinct).not.toBeNull();
  expect(Number(distinct![1])).toBeGreaterThan(4);
  expect(r.out).not.toMatch(/autoencoder step|k-means/);
  expect(r.out).toMatch(/after 3 steps: .*code accuracy [\d.]+%/);
  const facts = JSON.parse(fs.readFileSync(path.join(first, 'vq_train.json'), 'utf8'));
  expect(facts).toMatchObject({ codes: 'patches', dictionarySize: Number(distinct![1]) });
  expect(facts.dictionaryHash).toMatch(/^[0-9a-f]{16}$/);
  expect(facts.after.codeAccuracy).toBeGreaterThanOrEqual(0);

  // Same data: the dictionary (and so the meaning of every code) is the same, so the codebook is kept.
  const again = cli(['train-vq', '--out', path.join(tmp, 'vq-patches-2'), '--init', first, ...common]);
  expectOk(again);
  expect(again.out).toContain(`keeping the codebook of ${first} (same patch dictionary)`);
  // A learned-codes tokenizer with another codebook size: everything but the codebook carries over.
  const resized = cli(['train-vq', '--out', path.join(tmp, 'vq-patches-3'), '--init', first, '--codebook', '600', ...common]);
  expectOk(resized);
  expect(resized.out).toContain(`with a new codebook of 600 (was 512)`);
  expect(resized.out).not.toContain('keeping the codebook');

  const small = cli(['train-vq', '--out', path.join(tmp, 'vq-patches-4'), '--codebook', '4', ...sizes, ...common]);
  expect(small.code).not.toBe(0);
  expect(small.out).toMatch(/--codes patches: .*patch-data: the images hold more than 4 distinct 8x8 patches \(image \d+\); raise the codebook size or use --codes learned/);
  expect(small.out).not.toMatch(/\n\s+at /);
});
