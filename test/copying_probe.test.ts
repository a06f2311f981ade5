import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import { EvalArgs, runCopyingEval } from '../src/cli/eval';
import { COPY_KINDS, copyKinds, copyingProbe } from '../src/shapeworld/copying_probe';
import { GenerationRuntime, loadRuntime } from '../src/generate/runtime';

const PRETRAINED = path.join(__dirname, '..', 'checkpoints', 'pretrained');

test('token kinds: background, kept, object starts (nothing of the object above or to the left), changed', () => {
  // 4x4 grid, background code 0. Source: a 2x2 object (1 2 / 3 4) at the top left, one (5 6 / 7 8) at the bottom right.
  const source = [1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 5, 6, 0, 0, 7, 8];
  // Target: the first object kept, the second recoloured (9..12), and a new token where background was.
  const target = [1, 2, 0, 0, 3, 4, 0, 13, 0, 0, 9, 10, 0, 0, 11, 12];
  const kinds = copyKinds(source, target, 4);
  expect(kinds.slice(0, 8)).toEqual(['objectStart', 'kept', 'background', 'background', 'kept', 'kept', 'background', 'changed']);
  expect(kinds.slice(8)).toEqual(['background', 'background', 'changed', 'changed', 'background', 'background', 'changed', 'changed']);
  // An object whose left neighbour is drawn is not a start, even if the token above is background.
  expect(copyKinds([0, 0, 1, 2], [0, 0, 1, 2], 2)).toEqual(['background', 'background', 'objectStart', 'kept']);
});

describe('copying probe on the shipped models', () => {
  const runtimes: Record<string, GenerationRuntime> = {};
  beforeAll(async () => {
    await initBackend('wasm');
    for (const m of ['janus-tiny-base', 'janus4o-tiny']) runtimes[m] = await loadRuntime(path.join(PRETRAINED, m));
  });
  afterAll(() => Object.values(runtimes).forEach((r) => r.dispose()));

  test('the base (never saw an edit) starts no kept object; janus4o-tiny starts most, from SigLIP features alone too', async () => {
    const base = await copyingProbe(runtimes['janus-tiny-base'], { seed: 'test', perCategory: 3 });
    const tuned = await copyingProbe(runtimes['janus4o-tiny'], { seed: 'test', perCategory: 3 });
    expect(base.edits).toBe(21);
    const n = 64;
    for (const r of [base, tuned]) {
      for (const v of [r.full, r.part]) expect(COPY_KINDS.reduce((s, k) => s + v[k].tokens, 0)).toBe(r.edits * n);
    }
    expect(base.full.objectStart.tokens).toBeGreaterThanOrEqual(8);
    expect(base.full.objectStart.hit).toBeLessThan(0.1);
    expect(tuned.full.objectStart.hit).toBeGreaterThan(0.6);
    expect(tuned.part.objectStart.hit).toBeGreaterThan(0.6);
    expect(tuned.full.objectStart.ce).toBeLessThan(base.full.objectStart.ce - 3);
  });

  test('batched rows score as single rows do, and the probe leaks no tensor', async () => {
    const rt = runtimes['janus4o-tiny'];
    const one = await copyingProbe(rt, { seed: 'batch', perCategory: 1, batch: 1 });
    const before = tf.memory().numTensors;
    const many = await copyingProbe(rt, { seed: 'batch', perCategory: 1, batch: 7 });
    expect(tf.memory().numTensors).toBe(before);
    for (const v of ['full', 'part'] as const) {
      for (const k of COPY_KINDS) {
        expect(many[v][k].tokens).toBe(one[v][k].tokens);
        expect(many[v][k].ce).toBeCloseTo(one[v][k].ce, 3);
      }
    }
  });

  test('janus4o eval --suite copying writes copying-report.json and refuses --edits-per-category 0', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'copying-'));
    const args = (more: Partial<EvalArgs>) => ({ checkpoint: path.join(PRETRAINED, 'janus4o-tiny'), suite: 'copying', report: path.join(dir, 'c.json'), backend: 'wasm', progress: false, seed: '1', batch: 8, 'edits-per-category': 1, ...more }) as unknown as EvalArgs;
    const r = await runCopyingEval(args({}), () => undefined);
    const saved = JSON.parse(fs.readFileSync(r.report, 'utf8')) as { suite: string; edits: number; full: { objectStart: { hit: number } } };
    expect(saved).toMatchObject({ suite: 'copying', edits: 7 });
    expect(saved.full.objectStart.hit).toBeCloseTo(r.full.objectStart.hit, 6);
    await expect(runCopyingEval(args({ 'edits-per-category': 0 }), () => undefined)).rejects.toThrow(/--edits-per-category must be a positive integer for --suite copying/);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
