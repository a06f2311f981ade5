import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import { collate } from '../src/data/batch';
import { renderScene } from '../src/shapeworld/render';
import { makeRng } from '../src/data/rng';
import { loadImagePixels, loadRuntime, GenerationRuntime } from '../src/generate/runtime';
import { perPositionCE } from '../src/model/loss';
import { batchInput } from '../src/train/step';
import { PROBE_COLORS, PROBE_SHAPES, readingProbe } from '../src/shapeworld/reading_probe';
import { EvalArgs, runReadingEval } from '../src/cli/eval';
import * as fs from 'fs';
import * as os from 'os';

const BASE = path.join(__dirname, '..', 'checkpoints', 'pretrained', 'janus-tiny-base');

/** log p(image of (colour, shape) | prompt) from a forward of that one row alone. */
async function singleRow(rt: GenerationRuntime, prompt: string, colour: (typeof PROBE_COLORS)[number], shape: (typeof PROBE_SHAPES)[number]): Promise<number> {
  const size = rt.model.config.imageSize;
  const pixels = await loadImagePixels(await renderScene({ background: 'white', objects: [{ shape, color: colour, cell: { row: 1, col: 1 } }] }, size), size);
  const ids = tf.tidy(() => rt.model.vq.encode(pixels));
  const target = Array.from(await ids.data());
  tf.dispose([pixels, ids]);
  const b = collate([{ task: 't2i', prompt, target }], rt.templates, target.length, { textMaskProb: 0, imageMaskProb: 0, lossAlignment: 'full' }, () => makeRng('one'));
  const v = tf.tidy(() => {
    const logits = rt.model.forward(batchInput(rt.model, b, null), { imageLogitsAt: b.lossPositions }).imageLogits!;
    return tf.neg(tf.sum(perPositionCE(logits, tf.tensor1d(b.lossTargets, 'int32'))));
  });
  const out = (await v.data())[0];
  v.dispose();
  return out;
}

describe('reading probe', () => {
  let rt: GenerationRuntime;
  beforeAll(async () => {
    await initBackend('wasm');
    rt = await loadRuntime(BASE);
  });
  afterAll(() => rt.dispose());

  test('scores every caption against every image, as single rows would, and leaks no tensor', async () => {
    // The first forward builds the model's cached RoPE tables; after that a probe holds nothing.
    await readingProbe(rt);
    const before = tf.memory().numTensors;
    const r = await readingProbe(rt);
    expect(tf.memory().numTensors).toBe(before);
    expect(r.captions).toHaveLength(16);
    expect(r.captions[0]).toBe('a red circle on a white background');
    expect(r.logp).toHaveLength(16);
    for (const row of r.logp) {
      expect(row).toHaveLength(16);
      for (const x of row) expect(x).toBeLessThan(0);
    }
    // Batched, left-padded rows give the same figures as each pair alone (index 6 = green triangle, 9 = blue square).
    expect(await singleRow(rt, r.captions[6], 'green', 'triangle')).toBeCloseTo(r.logp[6][6], 2);
    expect(await singleRow(rt, r.captions[6], 'blue', 'square')).toBeCloseTo(r.logp[6][9], 2);
    // The summary figures follow from the table.
    const i = 3;
    const others = r.logp[i].filter((_, j) => j !== i);
    expect(r.logp.every((row) => Number.isFinite(row[i] - others.reduce((a, b) => a + b, 0) / 15))).toBe(true);
    const top1 = r.logp.filter((row, k) => row.indexOf(Math.max(...row)) === k).length;
    expect(r.top1).toBe(top1);
    expect(r.colour).toBeGreaterThanOrEqual(r.top1);
    expect(r.shape).toBeGreaterThanOrEqual(r.top1);
  });

  test('janus4o eval --suite reading writes the table to --report and returns the summary', async () => {
    const report = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'reading-')), 'r.json');
    const args = { checkpoint: BASE, suite: 'reading', report, backend: 'wasm', progress: false } as unknown as EvalArgs;
    const r = await runReadingEval(args, () => undefined);
    expect(r.report).toBe(report);
    const saved = JSON.parse(fs.readFileSync(report, 'utf8')) as { suite: string; margin: number; logp: number[][] };
    expect(saved.suite).toBe('reading');
    expect(saved.margin).toBeCloseTo(r.margin, 6);
    expect(saved.logp).toHaveLength(16);
  });

  test('the shipped base reads colour words (the previous one scored chance: margin -0.004, colour 5 of 16)', async () => {
    const r = await readingProbe(rt);
    expect(r.margin).toBeGreaterThan(1);
    expect(r.colour).toBeGreaterThanOrEqual(12);
  });
});
