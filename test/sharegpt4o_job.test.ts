/**
 * The paper's job end to end through the CLI a user types, on fixtures in the official formats: a Janus-Pro model
 * folder (config.json, pytorch_model.bin in the original names, the DeepSeek BPE tokenizer and every side file;
 * test/fixtures/janus-pro-tiny) and a ShareGPT-4o-Image folder (both JSON files, PNGs of mixed sizes and colour
 * types; test/fixtures/sharegpt4o-tiny). Training learns, a SIGKILLed run resumes bit-identical, two workers
 * match one process, and the exported folder loads and samples.
 */
import { ChildProcess, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CliResult, ROOT, expectCleanExit, runCli, startCliUntil } from './cli_run';
import { openTensorFile } from '../src/io/atomic';
import { SIDE_FILES } from '../src/io/model_folder';

const MODEL = path.join(ROOT, 'test/fixtures/janus-pro-tiny');
const DATA = path.join(ROOT, 'test/fixtures/sharegpt4o-tiny');
const LR = 3e-3;
let tmp: string;

function job(name: string, microBatch = 2): string {
  const file = path.join(tmp, `${name}.yaml`);
  fs.writeFileSync(
    file,
    `model:
  pretrained: ${MODEL}
data:
  kind: sharegpt4o
  root: ${DATA}
  cache_dir: ${path.join(tmp, `shards-${name}`)}
  heldout: 4
train:
  lr: ${LR}
  max_steps: 8
  micro_batch: ${microBatch}
  grad_accum: 2
checkpoint:
  dir: ${path.join(tmp, name)}
  every_steps: 1
  keep: 20
backend: wasm
`,
  );
  return file;
}

const cli = (args: string[]): CliResult => runCli(args, tmp);
const expectOk = expectCleanExit;
const startUntil = (args: string[], pattern: RegExp): Promise<ChildProcess> => startCliUntil(args, pattern, tmp);

const exited = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.on('exit', () => r())));

async function tensors(file: string): Promise<Map<string, Float32Array>> {
  const f = await openTensorFile(file);
  const out = new Map<string, Float32Array>();
  for (const name of f.entries.keys()) out.set(name, await f.read(name));
  return out;
}

const final = (name: string) => path.join(tmp, name, 'step-000008');

let straight: { heldout_before: number; heldout_after: number; steps: number };

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-sharegpt4o-'));
  const r = cli(['train', '--config', job('straight'), '--no-progress']);
  expectOk(r);
  straight = JSON.parse(r.stdout.trim().split('\n').pop()!) as typeof straight;
}, 120_000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('npm run train on an official Janus-Pro folder and ShareGPT-4o-Image data learns (held-out loss falls)', () => {
  expect(straight.steps).toBe(8);
  expect(straight.heldout_after).toBeLessThan(straight.heldout_before);
  // Every side file of the starting folder travels with the checkpoint, and a generation_config.json with it.
  for (const f of SIDE_FILES) if (fs.existsSync(path.join(MODEL, f))) expect(fs.readFileSync(path.join(final('straight'), f))).toEqual(fs.readFileSync(path.join(MODEL, f)));
});

test('SIGKILL mid-run, then npm run resume, ends bit-identical to the uninterrupted run', async () => {
  const cfg = job('killed');
  const child = await startUntil(['train', '--config', cfg, '--no-progress'], /\(step 3\)/);
  child.kill('SIGKILL');
  await exited(child);
  const resumed = cli(['resume', '--checkpoint', path.join(tmp, 'killed'), '--no-progress']);
  expectOk(resumed);
  expect(resumed.stderr).toMatch(/resume: continuing from .*step-00000[34] at step [34] of 8/);
  for (const f of ['model.safetensors', 'optimizer/rank-00000-of-00001.safetensors']) {
    expect(Buffer.compare(fs.readFileSync(path.join(final('straight'), f)), fs.readFileSync(path.join(final('killed'), f)))).toBe(0);
  }
}, 120_000);

test('--nproc 2 (half the micro-batch each) ends with the weights of one process', async () => {
  const r = cli(['train', '--config', job('two', 1), '--nproc', '2', '--no-progress']);
  expectOk(r);
  const a = await tensors(path.join(final('straight'), 'model.safetensors'));
  const b = await tensors(path.join(final('two'), 'model.safetensors'));
  let diff = 0;
  for (const [k, v] of a) v.forEach((x, i) => (diff = Math.max(diff, Math.abs(x - b.get(k)![i]))));
  // The data-parallel tolerance of test/dp_train.test.ts: summation order differs across ranks, AdamW can amplify
  // that only on near-zero gradients.
  expect(diff).toBeLessThan(0.1 * LR);
}, 180_000);

test('janus4o export gives a complete folder that Janus4o.fromPretrained loads and generate / edit turn into PNGs', async () => {
  const out = path.join(tmp, 'exported');
  expectOk(cli(['export', '--checkpoint', path.join(tmp, 'straight'), '--out', out]));
  for (const f of SIDE_FILES) if (fs.existsSync(path.join(MODEL, f))) expect(fs.existsSync(path.join(out, f))).toBe(true);
  const { Janus4o } = await import('../src/model/janus');
  const { initBackend } = await import('../src/backend');
  await initBackend('cpu');
  const model = Janus4o.fromPretrained(out);
  const trained = await tensors(path.join(final('straight'), 'model.safetensors'));
  expect(model.params.get('gen_head.vision_head.weight').shape.reduce((a, b) => a * b, 1)).toBe(trained.get('gen_head.vision_head.weight')!.length);
  model.dispose();

  expectOk(cli(['generate', '--checkpoint', out, '--prompt', 'a red circle', '-n', '2', '--out', path.join(tmp, 't2i'), '--backend', 'wasm']));
  const image = fs.readdirSync(DATA + '/images').find((f) => f.includes('_in'))!;
  expectOk(cli(['edit', '--checkpoint', out, '--image', path.join(DATA, 'images', image), '--prompt', 'make it red', '--out', path.join(tmp, 'edit')]));
  const pngs = (dir: string) => spawnSync('find', [dir, '-name', '*.png'], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean);
  expect(pngs(path.join(tmp, 't2i')).length).toBeGreaterThanOrEqual(2);
  expect(pngs(path.join(tmp, 'edit')).length).toBeGreaterThanOrEqual(1);
  for (const p of [...pngs(path.join(tmp, 't2i')), ...pngs(path.join(tmp, 'edit'))]) expect(fs.readFileSync(p).subarray(1, 4).toString()).toBe('PNG');
}, 120_000);

describe('GPU jobs fail fast, once, with one message', () => {
  test('a 1B+ model on wasm or cpu is refused before any work unless --allow-slow-backend', () => {
    const file = path.join(tmp, 'big.yaml');
    fs.writeFileSync(file, `model:\n  preset: janus-pro-1b\n  tokenizer: ${MODEL}\ndata:\n  kind: sharegpt4o\n  root: ${DATA}\nbackend: cpu\n`);
    const r = cli(['train', '--config', file, '--no-progress']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/big\.yaml: the model has \d\.\d\dB parameters and the backend is cpu/);
    expect(r.stderr).toContain('--allow-slow-backend');
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  test('a missing model.pretrained or data.root is reported once, before the workers start', () => {
    const file = path.join(tmp, 'missing.yaml');
    fs.writeFileSync(file, `model:\n  pretrained: ${MODEL}\ndata:\n  kind: sharegpt4o\n  root: ${path.join(tmp, 'no-such-data')}\ndistributed:\n  nproc: 2\nbackend: wasm\n`);
    const r = cli(['train', '--config', file, '--no-progress']);
    expect(r.code).not.toBe(0);
    expect(r.stderr.match(/data\.root in .*missing\.yaml points at .*no-such-data, which does not exist/g)).toHaveLength(1);
    expect(r.stderr).not.toMatch(/rank \d|worker/i);
  });

  test('the paper configs ask for the tensorflow (CUDA) backend', () => {
    for (const f of ['configs/janus4o.yaml', 'configs/janus4o-1b.yaml']) expect(fs.readFileSync(path.join(ROOT, f), 'utf8')).toMatch(/^backend: tensorflow\b/m);
  });
});
