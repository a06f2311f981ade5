/**
 * The training command end to end through the compiled CLI: exact resume after SIGKILL, SIGTERM producing a
 * checkpoint and a clean exit, and config errors as one paragraph with a non-zero exit.
 */
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { MICRO_MODEL_YAML } from './cli_run';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
let tmp: string;

function writeConfig(name: string, backend: string, extra = ''): string {
  const file = path.join(tmp, `${name}.yaml`);
  fs.writeFileSync(
    file,
    `model:
${MICRO_MODEL_YAML}data:
  kind: shapeworld
  root: ${path.join(tmp, 'data')}
  heldout: 4
  synth: { t2i: 24, edit: 12, size: 32, seed: 1 }
train:
  lr: 1.0e-2
  max_steps: 8
  micro_batch: 2
  grad_accum: 2
  warmup_ratio: 0.25
  seed: 3
  log_every: 1
checkpoint:
  dir: ${path.join(tmp, name)}
  every_steps: 1
  keep: 20
backend: ${backend}
${extra}`,
  );
  return file;
}

function runCli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Starts a training run and resolves when its stderr shows `pattern`. */
function startUntil(args: string[], pattern: RegExp): Promise<{ child: ChildProcess; stderr: () => string }> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (pattern.test(err)) resolve({ child, stderr: () => err });
    });
    child.on('exit', (code) => reject(new Error(`training exited (${code}) before ${pattern}: ${err}`)));
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((r) => (child.exitCode !== null ? r(child.exitCode) : child.on('exit', (code) => r(code))));
}

function checkpointFiles(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string) => {
    for (const f of fs.readdirSync(d).sort()) {
      const p = path.join(d, f);
      if (fs.statSync(p).isDirectory()) walk(p);
      else if (f.endsWith('.safetensors')) out.set(path.relative(dir, p), fs.readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-train-cli-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe.each(['cpu', 'wasm'])('exact resume on %s', (backend) => {
  test('8 steps straight equal 3 steps, SIGKILL, resume for the rest: weights and AdamW moments bit-identical', async () => {
    const straight = runCli(['train', '--config', writeConfig(`straight-${backend}`, backend), '--no-progress']);
    expect(straight.stderr).toContain('checkpoint:');
    expect(straight.code).toBe(0);
    const cfg = writeConfig(`killed-${backend}`, backend);
    const { child } = await startUntil(['train', '--config', cfg, '--no-progress'], /\(step 3\)/);
    child.kill('SIGKILL');
    await exited(child);
    const resumed = runCli(['train', '--config', cfg, '--resume', 'auto', '--no-progress']);
    expect(resumed.code).toBe(0);
    expect(resumed.stderr).toMatch(/resume: continuing from .*step-00000[34] at step [34] of 8/);
    const a = checkpointFiles(path.join(tmp, `straight-${backend}`, 'step-000008'));
    const b = checkpointFiles(path.join(tmp, `killed-${backend}`, 'step-000008'));
    expect([...a.keys()]).toEqual(['model.safetensors', 'optimizer/rank-00000-of-00001.safetensors']);
    expect([...b.keys()]).toEqual([...a.keys()]);
    for (const [k, v] of a) expect(Buffer.compare(v, b.get(k)!)).toBe(0);
  });
});

test('SIGTERM finishes the step, writes a checkpoint and exits cleanly; resuming continues the loss curve', async () => {
  const cfg = writeConfig('sigterm', 'wasm');
  const overrides = ['--train.max_steps', '400', '--checkpoint.every_steps', '0'];
  const { child, stderr } = await startUntil(['train', '--config', cfg, '--no-progress', ...overrides], /step 2 loss/);
  child.kill('SIGTERM');
  expect(await exited(child)).toBe(0);
  expect(stderr()).toMatch(/SIGTERM: finishing the current step, then writing a checkpoint/);
  const log = fs.readFileSync(path.join(tmp, 'sigterm', 'train_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number });
  const last = log[log.length - 1].step;
  expect(fs.readFileSync(path.join(tmp, 'sigterm', 'latest'), 'utf8').trim()).toBe(`step-${String(last).padStart(6, '0')}`);
  const { child: again } = await startUntil(['train', '--config', cfg, '--resume', 'auto', '--no-progress', ...overrides], new RegExp(`step ${last + 1} loss`));
  again.kill('SIGTERM');
  expect(await exited(again)).toBe(0);
  const steps = fs.readFileSync(path.join(tmp, 'sigterm', 'train_log.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { step: number }).step);
  expect(steps.slice(0, last + 1)).toEqual(Array.from({ length: last + 1 }, (_, i) => i + 1));
  expect(steps[last]).toBe(last + 1);
});

describe('config errors', () => {
  const expectOneParagraph = (r: { code: number | null; stderr: string }, ...parts: (string | RegExp)[]) => {
    expect(r.code).not.toBe(0);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    for (const p of parts) expect(r.stderr).toMatch(p);
  };
  test('unknown key, with the nearest valid key', () => {
    const file = writeConfig('bad1', 'cpu', 'trian:\n  lr: 1\n');
    expectOneParagraph(runCli(['train', '--config', file]), /trian/, /train/, /bad1\.yaml/);
  });
  test('wrong type', () => {
    expectOneParagraph(runCli(['train', '--config', writeConfig('bad2', 'cpu'), '--train.micro_batch', 'two']), /train\.micro_batch/, /bad2\.yaml/);
  });
  test('negative lr', () => {
    expectOneParagraph(runCli(['train', '--config', writeConfig('bad3', 'cpu'), '--train.lr', '-1']), /train\.lr/, /positive/);
  });
  test('missing data folder', () => {
    const file = writeConfig('bad4', 'cpu');
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('kind: shapeworld', 'kind: sharegpt4o').replace(/  synth: .*\n/, '').replace(`root: ${path.join(tmp, 'data')}`, `root: ${path.join(tmp, 'nowhere')}`));
    expectOneParagraph(runCli(['train', '--config', file]), /data\.root/, /nowhere/, /ShareGPT-4o-Image/);
  });
});
