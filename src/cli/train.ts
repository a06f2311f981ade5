/** `janus4o train --config FILE [--resume auto|DIR] [--train.lr 1e-5 ...]` and `janus4o resume --checkpoint DIR`. */
import * as path from 'path';
import { SingleBar } from 'cli-progress';
import type { CommandModule } from 'yargs';
import { loadCheckpoint, resolveCheckpoint } from '../io/checkpoint';
import { TrainConfig, applyOverrides, loadTrainConfig, parseTrainConfig } from '../train/config';
import { prepareRunConfig, runTraining } from '../train/run';
import { datasetPlugin } from './datasets';
import { StepLog } from '../train/trainer';
import { UserError } from '../errors';
import { launch } from '../distributed/launcher';
import { configOverrides } from './overrides';

interface TrainArgs {
  config: string;
  backend?: string;
  nproc?: number;
  resume?: string;
  'allow-change': string[];
  'allow-slow-backend': boolean;
  progress: boolean;
}

function progressReporter(enabled: boolean): { onStep: (s: StepLog) => void; stop: () => void; log: (l: string) => void } {
  let bar: SingleBar | null = null;
  const log = (line: string) => {
    if (bar) bar.stop();
    process.stderr.write(`${line}\n`);
    bar = null;
  };
  const onStep = (s: StepLog) => {
    if (!enabled) {
      process.stderr.write(`step ${s.step} loss ${s.loss.toFixed(4)} lr ${s.lr.toExponential(2)} gnorm ${s.grad_norm.toFixed(3)} ${s.tokens_per_s.toFixed(0)} tok/s\n`);
      return;
    }
    if (!bar) {
      bar = new SingleBar({ format: 'train |{bar}| {value}/{total} steps | loss {loss} (t2i {t2i}, edit {edit}) | acc {acc} | lr {lr} | {tps} tok/s | ETA {eta_formatted}', stream: process.stderr, hideCursor: false });
      bar.start(s.step, 0);
    }
    bar.update(s.step, {
      loss: s.loss.toFixed(3),
      t2i: s.loss_t2i === null ? '-' : s.loss_t2i.toFixed(3),
      edit: s.loss_edit === null ? '-' : s.loss_edit.toFixed(3),
      acc: s.accuracy.toFixed(3),
      lr: s.lr.toExponential(2),
      tps: s.tokens_per_s.toFixed(0),
    });
  };
  return { onStep, stop: () => bar?.stop(), log };
}

async function train(cfg: TrainConfig, source: string, resume: string | null, allow: string[], progress: boolean, allowSlowBackend: boolean): Promise<void> {
  const p = progressReporter(progress && Boolean(process.stderr.isTTY));
  let total = 0;
  const res = await runTraining(cfg, {
    source,
    resume,
    allowChanges: allow,
    dataset: datasetPlugin(cfg.data.kind),
    allowSlowBackend,
    log: p.log,
    onStep: (s) => {
      total = Math.max(total, s.step);
      p.onStep(s);
    },
  });
  p.stop();
  process.stdout.write(
    `${JSON.stringify({ checkpoint: res.checkpoint, steps: res.steps, heldout_before: res.heldoutBefore, heldout_after: res.heldoutAfter, condition_use_before: res.conditionUseBefore, condition_use_after: res.conditionUseAfter, seconds: Math.round(res.seconds) })}\n`,
  );
}

/** Re-runs this very command line in `nproc` workers (the launcher sets RANK, WORLD_SIZE, MASTER_*, a job secret). */
async function launchWorkers(nproc: number, gpus: boolean): Promise<number> {
  if (!Number.isInteger(nproc) || nproc < 1) throw new UserError(`--nproc must be a positive integer, got ${nproc}`);
  const args = process.argv.slice(2).filter((x, i, all) => x !== '--nproc' && all[i - 1] !== '--nproc' && !x.startsWith('--nproc='));
  const res = await launch({ script: process.argv[1], args: [...args, '--nproc', '1'], nproc, gpus });
  if (res.message) process.stderr.write(`${res.message}\n`);
  return res.exitCode;
}

export const trainCommand: CommandModule<object, TrainArgs> = {
  command: 'train',
  describe: 'Fine-tune with the Janus-4o recipe from a YAML config (dotted overrides: --train.lr 1e-5)',
  builder: (y) =>
    y
      .option('config', { type: 'string', demandOption: true, describe: 'training config (e.g. configs/tiny.yaml)' })
      .option('resume', { type: 'string', describe: '"auto" (newest checkpoint in checkpoint.dir, if any) or a checkpoint folder' })
      .option('nproc', { type: 'number', describe: 'start this many data-parallel workers on this machine (default: distributed.nproc)' })
      .option('backend', { type: 'string', choices: ['auto', 'tensorflow', 'wasm', 'cpu'], describe: 'overrides the config\'s backend' })
      .option('allow-change', { type: 'string', array: true, default: [], describe: 'config keys allowed to differ from the checkpoint on resume' })
      .option('allow-slow-backend', { type: 'boolean', default: false, describe: 'let a model of 1B+ parameters train on wasm or cpu (hours per step)' })
      .option('progress', { type: 'boolean', default: true, describe: 'progress bar on a terminal' }),
  handler: async (a) => {
    const cfg = loadTrainConfig(a.config, configOverrides());
    if (a.backend) cfg.backend = a.backend as TrainConfig['backend'];
    // Checked once here, before any worker starts: one message instead of one per rank.
    prepareRunConfig(cfg, { source: a.config, dataset: datasetPlugin(cfg.data.kind), allowSlowBackend: a['allow-slow-backend'] });
    const nproc = a.nproc ?? cfg.distributed.nproc;
    if (nproc > 1 && process.env.WORLD_SIZE === undefined && process.env.SLURM_PROCID === undefined) {
      process.exitCode = await launchWorkers(nproc, cfg.backend === 'tensorflow' || cfg.backend === 'auto');
      return;
    }
    await train(cfg, a.config, a.resume ?? null, a['allow-change'], a.progress, a['allow-slow-backend']);
  },
};

interface ResumeArgs {
  checkpoint: string;
  'allow-change': string[];
  'allow-slow-backend': boolean;
  progress: boolean;
}

export const resumeCommand: CommandModule<object, ResumeArgs> = {
  command: 'resume',
  describe: 'Continue a run from a checkpoint folder (or "latest" of a run folder), with the config stored in it',
  builder: (y) =>
    y
      .option('checkpoint', { type: 'string', demandOption: true, describe: 'a checkpoint folder, a run folder (its latest), or "latest" of checkpoints/tiny' })
      .option('allow-change', { type: 'string', array: true, default: [], describe: 'config keys allowed to differ (with --train.lr etc.)' })
      .option('allow-slow-backend', { type: 'boolean', default: false, describe: 'let a model of 1B+ parameters train on wasm or cpu (hours per step)' })
      .option('progress', { type: 'boolean', default: true }),
  handler: async (a) => {
    const target = a.checkpoint === 'latest' ? 'checkpoints/tiny' : a.checkpoint;
    const dir = await resolveCheckpoint(target);
    const ck = await loadCheckpoint(dir);
    const source = path.join(dir, 'train_config.json');
    if (ck.trainConfig === null || typeof ck.trainConfig !== 'object' || Array.isArray(ck.trainConfig)) throw new UserError(`${source} does not hold a training config`);
    const overrides = configOverrides();
    const cfg = parseTrainConfig(applyOverrides(ck.trainConfig as Record<string, unknown>, overrides, source), source);
    await train(cfg, source, dir, [...a['allow-change'], ...overrides.map((o) => o.key)], a.progress, a['allow-slow-backend']);
  },
};
