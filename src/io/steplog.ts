/** The trainer's per-step JSONL log (train_log.jsonl): its record type, read back with errors that name file:line. */
import * as fs from 'fs';
import { UserError } from '../errors';

/** One optimizer step as the trainer logs it (one line of train_log.jsonl). */
export interface StepLog {
  step: number;
  epoch: number;
  loss: number;
  loss_t2i: number | null;
  loss_edit: number | null;
  accuracy: number;
  lr: number;
  grad_norm: number;
  skipped: boolean;
  tokens_per_s: number;
  samples_per_s: number;
  seconds: number;
}

const NUMBER_FIELDS = ['epoch', 'loss', 'accuracy', 'lr', 'grad_norm', 'tokens_per_s', 'samples_per_s', 'seconds'] as const;

/**
 * Parses train_log.jsonl text; `file` only names the source in errors. JSON has no NaN or Infinity, so the
 * trainer's JSON.stringify writes a non-finite loss or gradient norm as null: null reads back as NaN there.
 */
export function parseStepLog(text: string, file: string): StepLog[] {
  const out: StepLog[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    const where = `${file}:${i + 1}`;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new UserError(`${where}: not valid JSON (${(e as Error).message})`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UserError(`${where}: expected a JSON object per line`);
    const r = v as Record<string, unknown>;
    const numberOrNull = (k: string): number | null => {
      const x = r[k];
      if (x === null || typeof x === 'number') return x;
      throw new UserError(`${where}: field "${k}" must be a number or null, got ${x === undefined ? 'nothing' : JSON.stringify(x)}`);
    };
    const step = r.step;
    if (typeof step !== 'number' || !Number.isInteger(step) || step < 0) {
      throw new UserError(`${where}: field "step" must be a non-negative integer, got ${JSON.stringify(step) ?? 'nothing'}`);
    }
    if (typeof r.skipped !== 'boolean') throw new UserError(`${where}: field "skipped" must be true or false`);
    const nums = {} as Record<(typeof NUMBER_FIELDS)[number], number>;
    for (const k of NUMBER_FIELDS) nums[k] = numberOrNull(k) ?? NaN;
    out.push({ step, ...nums, loss_t2i: numberOrNull('loss_t2i'), loss_edit: numberOrNull('loss_edit'), skipped: r.skipped });
  }
  return out;
}

/** Reads a train_log.jsonl; a malformed line is an error naming file:line. */
export async function readStepLog(file: string): Promise<StepLog[]> {
  return parseStepLog(await fs.promises.readFile(file, 'utf8'), file);
}

/**
 * One entry per step, ascending. A resume from an earlier checkpoint appends steps the log already has; the
 * later entry is the one that the final weights descend from.
 */
export function latestPerStep(steps: readonly StepLog[]): StepLog[] {
  const byStep = new Map<number, StepLog>();
  for (const s of steps) byStep.set(s.step, s);
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

// ---------------------------------------------------------------- images

