/**
 * Data-parallel training through the CLI: N workers (the local launcher) end with the weights of one process
 * with the same global batch, with and without ZeRO-1; and a run resumes on another world size.
 */
import { ChildProcess, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CLI, MICRO_MODEL_YAML, ROOT, checkpointWeights, startCliUntil } from './cli_run';
import { maxWeightDiff } from './helpers';

const LR = 1e-2;
/**
 * AdamW turned into plain SGD through its ordinary hyper-parameters (no test-only optimizer): with betas 0 the
 * moments are this step's g and g^2, so the update is lr * g / (|g| + eps); with eps 1e3 >> |g| (clipped to norm
 * 1) that is SGD with step lr / eps = LR, and it scales summation-order noise in g by at most lr / eps instead of
 * Adam's g / |g| amplification. Weight decay is scaled so the decoupled decay is SGD's (1 - LR * 0.1).
 */
const SGD_LIKE = `  lr: ${LR * 1e3}\n  eps: 1000\n  betas: [0, 0]\n  weight_decay: ${0.1 / 1e3}\n`;
let tmp: string;

function config(name: string, microBatch: number, zero: 0 | 1 | 2, nproc: number, sgdLike = false, gradAccum = 1): string {
  const file = path.join(tmp, `${name}.yaml`);
  fs.writeFileSync(
    file,
    `model:
${MICRO_MODEL_YAML}data:
  kind: shapeworld
  root: ${path.join(tmp, 'data')}
  synth: { t2i: 40, edit: 24, size: 32, seed: 2 }
train:
${sgdLike ? SGD_LIKE : `  lr: ${LR}\n`}  max_steps: 6
  micro_batch: ${microBatch}
  grad_accum: ${gradAccum}
  warmup_ratio: 0
  seed: 5
checkpoint:
  dir: ${path.join(tmp, name)}
  every_steps: 1
  keep: 10
distributed:
  nproc: ${nproc}
  zero_stage: ${zero}
backend: cpu
`,
  );
  return file;
}

function train(args: string[]): { code: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'train', '--no-progress', ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status, stderr: r.stderr };
}

const weights = (run: string, step = 6): Promise<Map<string, Float32Array>> => checkpointWeights(path.join(tmp, run, `step-${String(step).padStart(6, '0')}`));

function losses(run: string): number[] {
  return fs.readFileSync(path.join(tmp, run, 'train_log.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { loss: number }).loss);
}

const maxDiff = maxWeightDiff;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-dp-'));
  for (const [name, sgdLike] of [['single', false], ['single-sgd', true]] as const) {
    const single = train(['--config', config(name, 8, 0, 1, sgdLike)]);
    if (single.code !== 0) throw new Error(single.stderr);
  }
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe.each([
  [2, 0, 1],
  [4, 1, 1],
  [2, 2, 2],
] as const)('AdamW as plain SGD (betas 0, eps >> |g|: no amplification of summation order), N=%i workers, ZeRO stage %i, grad_accum %i', (n, zero, accum) => {
  test('weights within 1e-6 of one process', async () => {
    const name = `sgd-n${n}-z${zero}-a${accum}`;
    const r = train(['--config', config(name, 8 / n / accum, zero, n, true, accum)]);
    expect(r.code).toBe(0);
    expect(maxDiff(await weights('single-sgd'), await weights(name))).toBeLessThan(1e-6);
  });
});

describe.each([
  [2, 0, 1],
  [4, 0, 1],
  [2, 1, 1],
  [4, 1, 1],
  [2, 2, 2],
] as const)('N=%i workers, ZeRO stage %i, grad_accum %i', (n, zero, accum) => {

  test('same weights and per-step losses as one process with the same global batch', async () => {
    const name = `n${n}-z${zero}-a${accum}`;
    const r = train(['--config', config(name, 8 / n / accum, zero, n, false, accum)]);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    // Summation order differs across ranks; AdamW can amplify that only on near-zero gradients.
    expect(maxDiff(await weights('single'), await weights(name))).toBeLessThan(0.1 * LR);
    const a = losses('single');
    const b = losses(name);
    expect(b).toHaveLength(6);
    b.forEach((l, i) => expect(Number(l.toPrecision(5))).toBe(Number(a[i].toPrecision(5))));
    // Every rank wrote its optimizer shard.
    const shards = fs.readdirSync(path.join(tmp, name, 'step-000006', 'optimizer')).sort();
    expect(shards).toEqual(zero >= 1 ? Array.from({ length: n }, (_, k) => `rank-${String(k).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`) : ['rank-00000-of-00001.safetensors']);
  });
});

test('one worker under the torchrun variables (RANK=0, WORLD_SIZE=1) is bit-identical to a plain run', async () => {
  const r = spawnSync(process.execPath, [CLI, 'train', '--no-progress', '--config', config('world1', 8, 0, 1)], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, RANK: '0', WORLD_SIZE: '1', LOCAL_RANK: '0', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '29999' },
  });
  expect(r.status).toBe(0);
  expect(maxDiff(await weights('single'), await weights('world1'))).toBe(0);
});

test('a worker killed mid-run stops the job: launcher exits non-zero naming the rank, last checkpoint resumable', async () => {
  const cfg = config('killed', 2, 1, 4);
  fs.writeFileSync(cfg, fs.readFileSync(cfg, 'utf8').replace('max_steps: 6', 'max_steps: 400'));
  const launcher = await startUntil(['--config', cfg], /checkpoint: .*\(step 2\)/);
  const children = spawnSync('pgrep', ['-P', String(launcher.pid)], { encoding: 'utf8' }).stdout.trim().split('\n').map(Number);
  expect(children).toHaveLength(4);
  let stderr = '';
  launcher.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const t0 = Date.now();
  process.kill(children[2], 'SIGKILL');
  const code = await new Promise<number | null>((r) => launcher.on('exit', (c) => r(c)));
  expect(Date.now() - t0).toBeLessThan(30_000);
  expect(code).not.toBe(0);
  expect(stderr).toMatch(/rank 2/);
  for (const pid of children) expect(() => process.kill(pid, 0)).toThrow(); // none left behind
  // The last complete checkpoint resumes (here on one process with the same global batch).
  const resumed = await startUntil(
    ['--config', cfg, '--resume', 'auto', '--nproc', '1', '--train.micro_batch', '8', '--allow-change', 'train.micro_batch'],
    /resume: continuing from .*step-\d+ at step \d+ of 400/,
  );
  resumed.kill('SIGTERM');
  await new Promise((r) => resumed.on('exit', r));
}, 120_000);

const startUntil = (args: string[], pattern: RegExp): Promise<ChildProcess> => startCliUntil(['train', '--no-progress', ...args], pattern, ROOT);

test('resume across world sizes: 4 ranks with ZeRO-1, stopped, resumed on 2 ranks, equals 6 single-process steps', async () => {
  const cfg4 = config('resize', 2, 1, 4);
  const child = await startUntil(['--config', cfg4], /checkpoint: .*\(step 3\)/);
  child.kill('SIGTERM');
  await new Promise((r) => child.on('exit', r));
  const cfg2 = config('resize', 4, 1, 2);
  const r = train(['--config', cfg2, '--resume', 'auto', '--allow-change', 'train.micro_batch', 'distributed.nproc']);
  expect(r.code).toBe(0);
  expect(r.stderr).toMatch(/resume: continuing from .* at step [345] of 6/);
  expect(maxDiff(await weights('single'), await weights('resize'))).toBeLessThan(0.1 * LR);
});
