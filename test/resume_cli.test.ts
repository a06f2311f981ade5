/**
 * `janus4o resume --checkpoint DIR` through the compiled CLI, on the official-format fixtures (test/fixtures/
 * janus-pro-tiny, test/fixtures/sharegpt4o-tiny): a run trained by 2 workers (distributed.nproc: 2) continues on 2
 * workers, into the folder it was given (here: moved after the kill), bit-identical to the uninterrupted run; a
 * resume that would change its global batch is refused naming the flags; a finished run is reported complete
 * without re-measuring anything.
 */
import { ChildProcess, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CliResult, ROOT, expectCleanExit, runCli, startCliUntil } from './cli_run';
import { processAlive as alive } from './helpers';

const MODEL = path.join(ROOT, 'test/fixtures/janus-pro-tiny');
const DATA = path.join(ROOT, 'test/fixtures/sharegpt4o-tiny');
let tmp: string;

function job(name: string, nproc: number, microBatch: number): string {
  const file = path.join(tmp, `${name}.yaml`);
  fs.writeFileSync(
    file,
    `model:
  pretrained: ${MODEL}
data:
  kind: sharegpt4o
  root: ${DATA}
  cache_dir: ${path.join(tmp, 'shards')}
  heldout: 4
train:
  lr: 3.0e-3
  max_steps: 8
  micro_batch: ${microBatch}
  grad_accum: 2
checkpoint:
  dir: ${path.join(tmp, name)}
  every_steps: 1
  keep: 20
distributed:
  nproc: ${nproc}
backend: wasm
`,
  );
  return file;
}

const cli = (args: string[]): CliResult => runCli(args, tmp);
const expectOk = expectCleanExit;
const startUntil = (args: string[], pattern: RegExp): Promise<ChildProcess> => startCliUntil(args, pattern, tmp);


const final = (run: string, f: string) => fs.readFileSync(path.join(tmp, run, 'step-000008', f));
const worldOf = (run: string, step: string) => (JSON.parse(fs.readFileSync(path.join(tmp, run, step, 'trainer_state.json'), 'utf8')) as { sampler: { world_size: number } }).sampler.world_size;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-resume-'));
  // Uninterrupted: 2 workers (from the config), micro-batch 1 each.
  expectOk(cli(['train', '--config', job('straight', 2, 1), '--no-progress']));
}, 180_000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('a 2-worker run, SIGKILLed and moved, resumes on 2 workers into the folder given, bit-identical to the uninterrupted run', async () => {
  expect(worldOf('straight', 'step-000008')).toBe(2);
  const launcher = await startUntil(['train', '--config', job('killed', 2, 1), '--no-progress'], /\(step 3\)/);
  // The whole job dies at once: launcher and both workers.
  const workers = spawnSync('pgrep', ['-P', String(launcher.pid)], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean).map(Number);
  expect(workers).toHaveLength(2);
  for (const pid of [launcher.pid!, ...workers]) process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 100 && workers.some(alive); i++) await new Promise((r) => setTimeout(r, 100));
  expect(workers.some(alive)).toBe(false);
  // The run folder is moved: its stored checkpoint.dir no longer exists, the resume must go on where it is now.
  fs.renameSync(path.join(tmp, 'killed'), path.join(tmp, 'moved'));

  const r = cli(['resume', '--checkpoint', path.join(tmp, 'moved'), '--no-progress']);
  expectOk(r);
  expect(r.stderr).toContain(`resume: continuing in ${path.join(tmp, 'moved')}`);
  expect(r.stderr).toMatch(/\[rank 0\] resume: continuing from .*moved\/step-00000[345] at step [345] of 8/);
  expect(r.stderr).toMatch(/rank 1 joined .*\(2\/2\)/); // two workers
  expect(fs.existsSync(path.join(tmp, 'killed'))).toBe(false);
  expect(worldOf('moved', 'step-000008')).toBe(2);
  for (const f of ['model.safetensors', 'optimizer/rank-00000-of-00001.safetensors']) expect(Buffer.compare(final('straight', f), final('moved', f))).toBe(0);
}, 240_000);

test('resuming it on another worker count that changes the global batch is refused, naming the flags', () => {
  const before = fs.readdirSync(path.join(tmp, 'straight')).sort();
  const r = cli(['resume', '--checkpoint', path.join(tmp, 'straight', 'step-000004'), '--nproc', '1', '--no-progress']);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/was trained by 2 workers with train\.micro_batch 1 and train\.grad_accum 2, 4 samples per optimizer step; continuing on 1 worker would make it 2/);
  expect(r.stderr).toContain('--nproc 2');
  expect(r.stderr).toContain('--train.micro_batch 2');
  expect(r.stderr).not.toMatch(/\n\s+at |JANUS4O_DEBUG/);
  expect(fs.readdirSync(path.join(tmp, 'straight')).sort()).toEqual(before);
  // train --resume with a config that now says one worker: the same refusal, before any worker or step.
  const t = cli(['train', '--config', job('straight', 1, 1), '--resume', path.join(tmp, 'straight', 'step-000004'), '--no-progress']);
  expect(t.code).toBe(2);
  expect(t.stderr).toContain('--nproc 2');
  expect(fs.readdirSync(path.join(tmp, 'straight')).sort()).toEqual(before);
});

test('resume of a finished run says it is complete and where its checkpoint is, without re-measuring; exit 0', () => {
  const before = fs.readdirSync(path.join(tmp, 'straight')).sort();
  const log = fs.readFileSync(path.join(tmp, 'straight', 'train_log.jsonl'), 'utf8');
  const r = cli(['resume', '--checkpoint', path.join(tmp, 'straight'), '--no-progress']);
  expectOk(r);
  expect(r.stderr).toContain(`resume: the run in ${path.join(tmp, 'straight')} is complete: ${path.join(tmp, 'straight', 'step-000008')} is step 8 of 8`);
  expect(r.stderr).not.toMatch(/held-out|condition use|rank \d/);
  expect(JSON.parse(r.stdout)).toMatchObject({ checkpoint: path.join(tmp, 'straight', 'step-000008'), steps: 0, complete: true, step: 8, total_steps: 8 });
  expect(fs.readdirSync(path.join(tmp, 'straight')).sort()).toEqual(before);
  expect(fs.readFileSync(path.join(tmp, 'straight', 'train_log.jsonl'), 'utf8')).toBe(log);
});
