/** `janus4o plan`: settings that fit, step time split into compute, copies and all-reduce; the acceptance presets. */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { referenceStepFlops } from '../src/bench/flops';
import { presetConfig } from '../src/model/config';
import { JobShape, Throughput, trainingPlan } from '../src/model/plan';
import { loadTrainConfig } from '../src/train/config';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const flops = (cfg: Parameters<typeof referenceStepFlops>[0], row: { textLen: number; imageLen: number }): number => referenceStepFlops(cfg, { batch: 1, ...row }).training;
const JOB: JobShape = { nproc: 8, globalBatch: 64, seqLen: 1756, gpuMemoryGiB: 80, usableFraction: 0.9 };
const T: Throughput = { tflops: 50, halfSaturationTokens: 2048, hostGBps: 10, allreduceGBps: 1, transport: 'shm', allreduceSource: 'test', exchangeBytes: 4 };

function plan(args: string[]): { code: number | null; json: Record<string, unknown>; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'plan', ...args, '--json'], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status, json: r.status === 0 ? (JSON.parse(r.stdout) as Record<string, unknown>) : {}, stderr: r.stderr };
}

describe('acceptance: janus4o plan --nproc 8 --gpu-memory 80 --json', () => {
  test('janus-pro-7b: exits 0 and recommends a setting that fits in <= 72 GiB per rank', () => {
    const r = plan(['--preset', 'janus-pro-7b', '--nproc', '8', '--gpu-memory', '80']);
    expect(r.code).toBe(0);
    for (const k of ['perRankGiB', 'fits', 'zeroStage', 'activationCheckpointing', 'commSecondsPerStep', 'computeSecondsPerStep']) expect(r.json).toHaveProperty(k);
    expect(r.json.fits).toBe(true);
    expect(r.json.perRankGiB as number).toBeLessThanOrEqual(72);
    expect(r.json.recommended).not.toBeNull();
    expect(r.json.computeSecondsPerStep as number).toBeGreaterThan(0);
    expect(r.json.commSecondsPerStep as number).toBeGreaterThan(0);
  });

  test('janus-pro-1b: exits 0 and recommends a setting that fits with micro-batch >= 4', () => {
    const r = plan(['--preset', 'janus-pro-1b', '--nproc', '8', '--gpu-memory', '80']);
    expect(r.code).toBe(0);
    expect(r.json.fits).toBe(true);
    expect(r.json.perRankGiB as number).toBeLessThanOrEqual(72);
    expect(r.json.microBatch as number).toBeGreaterThanOrEqual(4);
  });

  test('nothing fits: still one JSON object, fits false, no recommendation; the table says what to change', () => {
    const r = plan(['--preset', 'janus-pro-7b', '--nproc', '1', '--global-batch', '8', '--gpu-memory', '40']);
    expect(r.code).toBe(0);
    expect(r.json.fits).toBe(false);
    expect(r.json.recommended).toBeNull();
    const table = spawnSync(process.execPath, [CLI, 'plan', '--preset', 'janus-pro-7b', '--nproc', '1', '--global-batch', '8', '--gpu-memory', '40'], { cwd: ROOT, encoding: 'utf8' });
    expect(table.stdout).toMatch(/nothing fits in 40 GiB/);
  });

  test('the bus bandwidth can come from an all-reduce bench report', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-plan-'));
    try {
      const file = path.join(tmp, 'bench.json');
      const row = (worldSize: number, bytes: number, kind: string, busGBps: number) => ({ worldSize, bytes, kind, exchange: 'float32', busGBps });
      fs.writeFileSync(file, JSON.stringify({ rows: [row(4, 256 << 20, 'shm', 3), row(8, 16 << 20, 'shm', 5), row(8, 256 << 20, 'shm', 7), row(8, 256 << 20, 'tcp', 0.5)] }));
      const r = plan(['--preset', 'janus-pro-1b', '--bench', file]);
      expect(r.code).toBe(0);
      expect((r.json.throughput as Throughput).allreduceGBps).toBe(7);
      expect((r.json.throughput as Throughput).allreduceSource).toMatch(/measured: .*bench.json, N=8, 256 MiB/);
      expect(spawnSync(process.execPath, [CLI, 'plan', '--bench', file, '--transport', 'hierarchical'], { cwd: ROOT, encoding: 'utf8' }).stderr).toMatch(/no hierarchical float32 all-reduce rows/);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe.each([
  ['configs/janus4o.yaml', 'janus-pro-7b'],
  ['configs/janus4o-1b.yaml', 'janus-pro-1b'],
] as const)('%s', (file, preset) => {
  test(`its ZeRO stage, checkpointing and micro-batch fit 8 x 80 GB by the plan, with the paper's 64 samples a step`, () => {
    const c = loadTrainConfig(path.join(ROOT, file));
    expect(c.distributed.nproc * c.train.micro_batch * c.train.grad_accum).toBe(64);
    const pin = { zeroStage: c.distributed.zero_stage as 0 | 1 | 2, activationCheckpointing: c.train.activation_checkpointing, microBatch: c.train.micro_batch };
    const p = trainingPlan(presetConfig(preset), { ...JOB, nproc: c.distributed.nproc }, T, flops, pin);
    expect(p.settings).toHaveLength(1);
    expect(p.settings[0].fits).toBe(true);
  });
});

describe('trainingPlan', () => {
  const cfg = presetConfig('janus-pro-7b');
  const p = trainingPlan(cfg, JOB, T, flops);
  const find = (z: number, ac: boolean, m: number) => p.settings.find((s) => s.zeroStage === z && s.activationCheckpointing === ac && s.microBatch === m)!;

  test('every setting once: 3 ZeRO stages x checkpointing off/on x each micro-batch dividing 8 rows per rank', () => {
    expect(p.settings).toHaveLength(3 * 2 * 4);
    expect(new Set(p.settings.map((s) => `${s.zeroStage}${s.activationCheckpointing}${s.microBatch}`)).size).toBe(24);
    for (const s of p.settings) expect(s.microBatch * s.gradAccum).toBe(8);
  });

  test('memory: ZeRO >= 1 shards the AdamW moments, ZeRO-2 drops the full-size accumulator, checkpointing shrinks activations', () => {
    const t = p.trainableParameters;
    expect(find(0, false, 1).bytes.adamw).toBe(8 * t);
    expect(find(1, false, 1).bytes.adamw).toBe(Math.ceil((8 * t) / 8));
    expect(find(1, false, 1).bytes.gradAccumulator).toBe(4 * t);
    expect(find(2, false, 1).bytes.gradAccumulator).toBe(0);
    expect(find(1, false, 8).bytes.gradAccumulator).toBe(0);
    expect(find(1, true, 4).bytes.activations).toBeLessThan(find(1, false, 4).bytes.activations / 5);
    for (const s of p.settings) expect(s.fits).toBe(s.perRankGiB <= 72);
  });

  test('time: compute from FLOPs at the stated TFLOP/s (+1/3 with checkpointing), all-reduce from bytes at the bus bandwidth', () => {
    const g = 4 * p.trainableParameters;
    const z0 = find(0, false, 8);
    expect(z0.commSecondsPerStep).toBeCloseTo((2 * (7 / 8) * g) / 1e9, 6);
    expect(find(1, false, 8).commSecondsPerStep).toBeCloseTo(((7 / 8) * 2 * g) / 1e9, 6);
    expect(find(2, true, 2).commSecondsPerStep).toBeCloseTo(((7 / 8) * (4 * g + g)) / 1e9, 6);
    const eff = (8 * 1756) / (8 * 1756 + 2048);
    expect(z0.computeSecondsPerStep).toBeCloseTo((8 * p.flopsPerSample) / (50e12 * eff), 6);
    expect(find(0, true, 8).computeSecondsPerStep / z0.computeSecondsPerStep).toBeCloseTo(4 / 3, 10);
    for (const s of p.settings) expect(s.stepSeconds).toBeCloseTo(s.computeSecondsPerStep + s.copySecondsPerStep + s.commSecondsPerStep, 10);
    // A 16-bit gradient exchange halves the gradient part of the traffic, not the float32 parameter all-gather.
    const half = trainingPlan(cfg, JOB, { ...T, exchangeBytes: 2 }, flops);
    const h1 = half.settings.find((s) => s.zeroStage === 1 && !s.activationCheckpointing && s.microBatch === 8)!;
    expect(h1.commSecondsPerStep).toBeCloseTo(((7 / 8) * 1.5 * g) / 1e9, 6);
  });

  test('the recommendation is the fastest setting that fits; pinned options restrict the candidates', () => {
    const fastest = Math.min(...p.settings.filter((s) => s.fits).map((s) => s.stepSeconds));
    expect(p.recommended!.stepSeconds).toBe(fastest);
    const pinned = trainingPlan(cfg, JOB, T, flops, { zeroStage: 1, activationCheckpointing: true });
    expect(pinned.settings.every((s) => s.zeroStage === 1 && s.activationCheckpointing)).toBe(true);
    expect(() => trainingPlan(cfg, JOB, T, flops, { microBatch: 3 })).toThrow(/micro-batch 3 does not divide the 8 rows/);
    expect(() => trainingPlan(cfg, { ...JOB, globalBatch: 60 }, T, flops)).toThrow(/does not split over 8 ranks/);
  });
});
