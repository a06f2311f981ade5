/**
 * The training progress reporter of `janus4o train` / `resume` (src/cli/train.ts): it shows `step/total` of the
 * whole run and an ETA from the wall time per step, as lines on a pipe and as a bar on a terminal; and the trainer
 * hands it the run's total steps.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { initBackend } from '../src/backend';
import { formatDuration, progressReporter } from '../src/cli/train';
import { StepLog, StepProgress, Trainer } from '../src/train/trainer';
import { fixtureData, fixtureModel, fixtureTemplates, fixtureTrainConfig } from './train_fixture';

function step(n: number, seconds = 2): StepLog {
  return { step: n, epoch: 0, loss: 2.5, loss_t2i: 2.4, loss_edit: null, accuracy: 0.25, lr: 1e-3, grad_norm: 0.5, skipped: false, tokens_per_s: 1000, samples_per_s: 4, seconds };
}

/** A stream that records what is written; `tty` makes it look like a terminal. */
function fakeStream(tty: boolean) {
  const out: string[] = [];
  return { out, text: () => out.join(''), stream: { isTTY: tty, columns: 160, write: (s: string) => out.push(s) } };
}

test('formatDuration', () => {
  expect(formatDuration(0)).toBe('0s');
  expect(formatDuration(12.4)).toBe('12s');
  expect(formatDuration(245)).toBe('4m05s');
  expect(formatDuration(3 * 3600 + 7 * 60 + 20)).toBe('3h07m');
  expect(formatDuration(NaN)).toBe('?');
});

describe('not a terminal: one line per step', () => {
  test('each line shows step/total and an ETA from the wall time per step', () => {
    let clock = 100_000;
    const f = fakeStream(false);
    const p = progressReporter({ bar: true, stream: f.stream, now: () => clock });
    // Step 1 took 2 s by its own count: 99 steps left at 2 s.
    p.onStep(step(1), { totalSteps: 100 });
    // Steps 2 and 3 arrive 3 s apart (checkpoints included): from 98 s (step 1's start) the wall time per step is
    // 5 s / 2 at step 2 and 8 s / 3 at step 3.
    clock += 3000;
    p.onStep(step(2), { totalSteps: 100 });
    clock += 3000;
    p.onStep(step(3), { totalSteps: 100 });
    p.stop();
    const lines = f.text().trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^step 1 loss 2\.5000 lr 1\.00e-3 gnorm 0\.500 1000 tok\/s \| 1\/100 ETA 3m18s$/);
    expect(lines[1]).toMatch(/\| 2\/100 ETA 4m05s$/); // 98 * (5000 / 2) ms
    expect(lines[2]).toMatch(/\| 3\/100 ETA 4m19s$/); // 97 * (8000 / 3) ms
    // The old reporter's "step N loss" prefix stays (scripts and tests wait for it).
    expect(lines[2]).toMatch(/^step 3 loss /);
  });

  test('a resumed run counts from where it resumed', () => {
    let clock = 0;
    const f = fakeStream(false);
    const p = progressReporter({ bar: false, stream: f.stream, now: () => clock });
    p.onStep(step(41, 1), { totalSteps: 50 });
    clock += 1000;
    p.onStep(step(42, 1), { totalSteps: 50 });
    expect(f.text()).toContain('| 41/50 ETA 9s');
    expect(f.text()).toContain('| 42/50 ETA 8s');
  });

  test('--no-progress on a terminal prints lines too', () => {
    const f = fakeStream(true);
    const p = progressReporter({ bar: false, stream: f.stream, now: () => 0 });
    p.onStep(step(1), { totalSteps: 4 });
    expect(f.text()).toMatch(/^step 1 loss .*\| 1\/4 ETA 6s\n$/);
  });
});

describe('a terminal: the bar', () => {
  const plain = (s: string) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]/g, '');

  test('is drawn with value/total of the whole run and the ETA, from the first step', () => {
    let clock = 0;
    const f = fakeStream(true);
    const p = progressReporter({ bar: true, stream: f.stream, now: () => clock });
    try {
      p.onStep(step(1), { totalSteps: 8 });
      expect(plain(f.text())).toMatch(/train \|[=-]+\| 1\/8 steps \| loss 2\.500 \(t2i 2\.400, edit -\) \| acc 0\.250 \| lr 1\.00e-3 \| 1000 tok\/s \| ETA 14s/);
      clock += 2000;
      p.onStep(step(2), { totalSteps: 8 });
      expect(plain(f.text())).toMatch(/ 2\/8 steps .* ETA 12s/);
    } finally {
      p.stop();
    }
    // Never the old "value/0" bar, never "ETA 0s" before the end.
    expect(plain(f.text())).not.toMatch(/\/0 steps|ETA 0s/);
  });

  test('a log line ends the bar; the next step draws it again with the same total', () => {
    const f = fakeStream(true);
    const p = progressReporter({ bar: true, stream: f.stream, now: () => 0 });
    try {
      p.onStep(step(3), { totalSteps: 10 });
      p.log('checkpoint: /x/step-000003 (step 3)');
      p.onStep(step(4), { totalSteps: 10 });
    } finally {
      p.stop();
    }
    const text = plain(f.text());
    expect(text).toContain('checkpoint: /x/step-000003 (step 3)\n');
    expect(text.indexOf('4/10 steps')).toBeGreaterThan(text.indexOf('checkpoint: /x/step-000003'));
  });
});

test('the trainer passes the run\'s total steps with every step', async () => {
  await initBackend('cpu');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-progress-'));
  try {
    const { data, tok } = fixtureData(8);
    const model = fixtureModel(2);
    const seen: [number, StepProgress][] = [];
    const t = new Trainer(model, fixtureTrainConfig(dir, { max_steps: 3, micro_batch: 2, grad_accum: 1 }), data, fixtureTemplates(tok), { onStep: (s, p) => seen.push([s.step, p]) });
    t.config.checkpoint.every_steps = 0;
    await t.run();
    model.dispose();
    expect(seen).toEqual([1, 2, 3].map((n) => [n, { totalSteps: 3 }]));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
