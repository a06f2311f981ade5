/** `janus4o train --config FILE [--resume auto|DIR] [--train.lr 1e-5 ...]` and `janus4o resume --checkpoint DIR`. */
import * as fs from 'fs';
import * as path from 'path';
import { SingleBar } from 'cli-progress';
import type { CommandModule } from 'yargs';
import { LoadedCheckpoint, findLatestCheckpoint, loadCheckpoint, resolveCheckpoint } from '../io/checkpoint';
import { REPORT_FILE } from '../report/html';
import { Override, TrainConfig, applyOverrides, loadTrainConfig, parseTrainConfig } from '../train/config';
import { prepareRunConfig, runTraining } from '../train/run';
import { datasetPlugin } from './datasets';
import { StepLog, StepProgress, checkResumeWorld, checkpointWorldSize } from '../train/trainer';
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

/** Where progress goes: process.stderr, or a fake in tests. A terminal (isTTY) gets a bar, anything else lines. */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressReporter {
  onStep(s: StepLog, p: StepProgress): void;
  /** A log line: ends the bar's line first (the next step draws a new bar below it). */
  log(line: string): void;
  stop(): void;
}

/** 3h07m, 4m05s, 12s. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const pad = (n: number) => String(n).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  return `${Math.floor(s / 3600)}h${pad(Math.floor(s / 60) % 60)}m`;
}

/**
 * Training progress: a bar (`step/total`, losses, lr, tok/s, ETA) when `bar` is asked for and the stream is a
 * terminal, else one line per step. The ETA is the steps left times the wall time per step since the first step
 * reported here (checkpoints and logging included); at the first step, that step's own time.
 */
export function progressReporter(o: { bar: boolean; stream?: ProgressStream; now?: () => number }): ProgressReporter {
  const stream = o.stream ?? process.stderr;
  const now = o.now ?? Date.now;
  const useBar = o.bar && stream.isTTY === true;
  let bar: SingleBar | null = null;
  let origin: { ms: number; step: number } | null = null;
  const eta = (s: StepLog, total: number): string => {
    const t = now();
    // The first step reported started s.seconds ago: count from there.
    origin ??= { ms: t - s.seconds * 1000, step: s.step - 1 };
    const perStep = (t - origin.ms) / 1000 / Math.max(1, s.step - origin.step);
    return formatDuration(Math.max(0, total - s.step) * perStep);
  };
  const log = (line: string) => {
    bar?.stop();
    bar = null;
    stream.write(`${line}\n`);
  };
  const onStep = (s: StepLog, p: StepProgress) => {
    const total = p.totalSteps;
    const left = eta(s, total);
    if (!useBar) {
      stream.write(`step ${s.step} loss ${s.loss.toFixed(4)} lr ${s.lr.toExponential(2)} gnorm ${s.grad_norm.toFixed(3)} ${s.tokens_per_s.toFixed(0)} tok/s | ${s.step}/${total} ETA ${left}\n`);
      return;
    }
    const payload = {
      loss: s.loss.toFixed(3),
      t2i: s.loss_t2i === null ? '-' : s.loss_t2i.toFixed(3),
      edit: s.loss_edit === null ? '-' : s.loss_edit.toFixed(3),
      acc: s.accuracy.toFixed(3),
      lr: s.lr.toExponential(2),
      tps: s.tokens_per_s.toFixed(0),
      remaining: left,
    };
    if (!bar) {
      bar = new SingleBar({
        format: 'train |{bar}| {value}/{total} steps | loss {loss} (t2i {t2i}, edit {edit}) | acc {acc} | lr {lr} | {tps} tok/s | ETA {remaining}',
        stream: stream as NodeJS.WritableStream,
        hideCursor: false,
        gracefulExit: false,
      });
      bar.start(total, s.step, payload);
    } else {
      bar.setTotal(total);
      bar.update(s.step, payload);
      bar.render();
    }
  };
  return { onStep, log, stop: () => bar?.stop() };
}

async function train(cfg: TrainConfig, source: string, resume: string | null, allow: string[], progress: boolean, allowSlowBackend: boolean): Promise<void> {
  const p = progressReporter({ bar: progress });
  let res: Awaited<ReturnType<typeof runTraining>>;
  try {
    res = await runTraining(cfg, { source, resume, allowChanges: allow, dataset: datasetPlugin(cfg.data.kind), allowSlowBackend, log: p.log, onStep: p.onStep });
  } finally {
    // Also on a failure: a running bar keeps a timer that would hold the process open.
    p.stop();
  }
  process.stdout.write(
    `${JSON.stringify({ checkpoint: res.checkpoint, steps: res.steps, heldout_before: res.heldoutBefore, heldout_after: res.heldoutAfter, condition_use_before: res.conditionUseBefore, condition_use_after: res.conditionUseAfter, seconds: Math.round(res.seconds) })}\n`,
  );
}

/** --nproc as given: absent, or a positive integer. */
function nprocFlag(n: number | undefined): number | undefined {
  if (n === undefined) return undefined;
  if (!Number.isInteger(n) || n < 1) {
    throw new UserError(`--nproc must be a positive integer (the number of worker processes to start on this machine), got ${Number.isNaN(n) ? 'something that is not a number' : n}. Leave it out to use the config's distributed.nproc (for resume: the run's worker count).`);
  }
  return n;
}

/** True in a worker of a data-parallel job (our launcher, torchrun-style launchers, Slurm): it trains, never launches. */
function inWorker(): boolean {
  return process.env.WORLD_SIZE !== undefined || process.env.SLURM_PROCID !== undefined;
}

/**
 * Re-runs this very command line in `nproc` workers (the launcher sets RANK, WORLD_SIZE, MASTER_*, a job secret);
 * `replace` swaps a flag's value (e.g. --checkpoint for the folder it resolved to).
 */
async function launchWorkers(nproc: number, gpus: boolean, replace: Record<string, string> = {}): Promise<number> {
  const drop = ['nproc', ...Object.keys(replace)];
  const args = process.argv.slice(2).filter((x, i, all) => !drop.some((f) => x === `--${f}` || all[i - 1] === `--${f}` || x.startsWith(`--${f}=`)));
  for (const [flag, value] of Object.entries(replace)) args.push(`--${flag}`, value);
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
    const flag = nprocFlag(a.nproc);
    const cfg = loadTrainConfig(a.config, configOverrides());
    if (a.backend) cfg.backend = a.backend as TrainConfig['backend'];
    // Checked once here, before any worker starts: one message instead of one per rank.
    prepareRunConfig(cfg, { source: a.config, dataset: datasetPlugin(cfg.data.kind), allowSlowBackend: a['allow-slow-backend'] });
    const nproc = flag ?? cfg.distributed.nproc;
    if (!inWorker()) {
      if (a.resume) {
        const from = a.resume === 'auto' ? await findLatestCheckpoint(cfg.checkpoint.dir) : await resolveCheckpoint(a.resume, cfg.checkpoint.dir);
        if (from) checkResumeWorld(await loadCheckpoint(from), cfg, nproc, a['allow-change']);
      }
      if (nproc > 1) {
        process.exitCode = await launchWorkers(nproc, cfg.backend === 'tensorflow' || cfg.backend === 'auto');
        return;
      }
    }
    await train(cfg, a.config, a.resume ?? null, a['allow-change'], a.progress, a['allow-slow-backend']);
  },
};

interface ResumeArgs {
  checkpoint: string;
  nproc?: number;
  'allow-change': string[];
  'allow-slow-backend': boolean;
  progress: boolean;
}

/** Overrides that can change a run's length (its schedule's total steps): with any of them a finished run may go on. */
function changesLength(overrides: readonly Override[]): boolean {
  return overrides.some((o) => /^(train|data)\./.test(o.key));
}

/** The total steps of the run a checkpoint belongs to, as its schedule recorded them (null: not recorded). */
function recordedTotal(ck: LoadedCheckpoint): number | null {
  const s = ck.trainerState.schedule;
  const total = s !== null && typeof s === 'object' && !Array.isArray(s) ? s.totalSteps : undefined;
  return typeof total === 'number' && Number.isInteger(total) && total > 0 ? total : null;
}

export const resumeCommand: CommandModule<object, ResumeArgs> = {
  command: 'resume',
  describe: 'Continue a run from a checkpoint folder (or "latest" of a run folder), with the config stored in it, on as many workers as it was trained with',
  builder: (y) =>
    y
      .option('checkpoint', { type: 'string', demandOption: true, describe: 'a checkpoint folder, a run folder (its latest), or "latest" of checkpoints/tiny' })
      .option('nproc', { type: 'number', describe: 'data-parallel workers to continue on (default: as many as trained the checkpoint)' })
      .option('allow-change', { type: 'string', array: true, default: [], describe: 'config keys allowed to differ (with --train.lr etc.)' })
      .option('allow-slow-backend', { type: 'boolean', default: false, describe: 'let a model of 1B+ parameters train on wasm or cpu (hours per step)' })
      .option('progress', { type: 'boolean', default: true }),
  handler: async (a) => {
    const flag = nprocFlag(a.nproc);
    const target = a.checkpoint === 'latest' ? 'checkpoints/tiny' : a.checkpoint;
    const dir = await resolveCheckpoint(target);
    const ck = await loadCheckpoint(dir);
    const source = path.join(dir, 'train_config.json');
    if (ck.trainConfig === null || typeof ck.trainConfig !== 'object' || Array.isArray(ck.trainConfig)) throw new UserError(`${source} does not hold a training config`);
    const overrides = configOverrides();
    const cfg = parseTrainConfig(applyOverrides(ck.trainConfig as Record<string, unknown>, overrides, source), source);
    // The run goes on in the folder it was given (moved or copied runs included), unless --checkpoint.dir says otherwise.
    const runDir = path.dirname(dir);
    if (!overrides.some((o) => o.key === 'checkpoint.dir') && path.resolve(cfg.checkpoint.dir) !== runDir) {
      if (!inWorker()) process.stderr.write(`resume: continuing in ${runDir}, the folder of ${path.basename(dir)} (its config's checkpoint.dir is ${cfg.checkpoint.dir})\n`);
      cfg.checkpoint.dir = runDir;
    }
    const allow = [...a['allow-change'], ...overrides.map((o) => o.key)];
    const world = flag ?? checkpointWorldSize(ck);
    const total = recordedTotal(ck);
    if (total !== null && ck.trainerState.step >= total && !changesLength(overrides) && world === checkpointWorldSize(ck)) {
      const report = path.join(runDir, REPORT_FILE);
      const hasReport = fs.existsSync(report);
      process.stderr.write(
        `resume: the run in ${runDir} is complete: ${dir} is step ${ck.trainerState.step} of ${total}${hasReport ? `, and its report is ${report}` : ''}. ` +
          `Nothing to resume; to train further, start a new run from it (model.pretrained: ${dir}).\n`,
      );
      process.stdout.write(`${JSON.stringify({ checkpoint: dir, steps: 0, complete: true, step: ck.trainerState.step, total_steps: total, report: hasReport ? report : null })}\n`);
      return;
    }
    if (!inWorker()) {
      checkResumeWorld(ck, cfg, world, allow);
      if (world > 1) {
        // As `train` does: paths and backend checked once, then the workers, each resuming from this very checkpoint.
        prepareRunConfig(cfg, { source, dataset: datasetPlugin(cfg.data.kind), allowSlowBackend: a['allow-slow-backend'] });
        process.exitCode = await launchWorkers(world, cfg.backend === 'tensorflow' || cfg.backend === 'auto', { checkpoint: dir });
        return;
      }
    }
    await train(cfg, source, dir, allow, a.progress, a['allow-slow-backend']);
  },
};
