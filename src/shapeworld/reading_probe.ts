/**
 * Reading probe: does a ShapeWorld model's image depend on the colour and shape words of its prompt?
 *
 * Sampling hides a weak dependence under CFG and temperature, and a held-out loss mixes it with the image's own
 * structure. This probe scores, teacher-forced, every pairing of 16 captions `a {colour} {shape} on a white
 * background` (4 colours x 4 shapes) with the 16 matching images (one object, all in the same cell): log p(image j |
 * caption i), summed over the image's tokens. A model that ignores the words gives every image the same
 * log-probability under every caption (margin 0, right image top-ranked by chance: 1 of 16); one that reads them
 * ranks image i first under caption i.
 */
import * as tf from '@tensorflow/tfjs-core';
import { collate } from '../data/batch';
import { makeRng } from '../data/rng';
import type { Cell, ColorName, Shape } from './scene';
import { classPhrase } from './captions';
import { GenerationRuntime } from '../generate/runtime';
import { encodeScene } from './encode';
import { imageTokenScores } from '../model/loss';
import { batchInput } from '../train/step';

export const PROBE_COLORS: readonly ColorName[] = ['red', 'green', 'blue', 'yellow'];
export const PROBE_SHAPES: readonly Shape[] = ['circle', 'square', 'triangle', 'diamond'];

export interface ReadingProbeResult {
  /** Mean over captions of log p(right image) minus the mean log p of the 15 others, nats per image. */
  margin: number;
  /** Captions whose own image ranks first (of 16), and whose top image has the right colour / shape. */
  top1: number;
  colour: number;
  shape: number;
  /** logp[i][j] = log p(image j | caption i), summed over the image tokens. */
  logp: number[][];
  captions: string[];
}

export async function readingProbe(rt: GenerationRuntime, cell: Cell = { row: 1, col: 1 }): Promise<ReadingProbeResult> {
  const model = rt.model;
  const combos = PROBE_COLORS.flatMap((color) => PROBE_SHAPES.map((shape) => ({ color, shape })));
  const images: number[][] = [];
  for (const { color, shape } of combos) {
    const { ids, pixels } = await encodeScene(model, { background: 'white', objects: [{ shape, color, cell }] });
    images.push(ids);
    pixels.dispose();
  }
  const n = images[0].length;
  const captions = combos.map(({ color, shape }) => `${classPhrase({ count: 1, color, shape })} on a white background`);
  const logp: number[][] = [];
  for (const prompt of captions) {
    const batch = collate(
      images.map((target) => ({ task: 't2i' as const, prompt, target })),
      rt.templates,
      n,
      { textMaskProb: 0, imageMaskProb: 0, lossAlignment: 'full' },
      (k) => makeRng(`reading-probe:${k}`),
    );
    // The training step's own input mapping and per-position cross-entropy: log p = -CE.
    const perImage = tf.tidy(() => {
      const { ce } = imageTokenScores(model, batchInput(model, batch, null), batch.lossPositions, batch.lossTargets);
      return tf.neg(tf.sum(tf.reshape(ce, [images.length, n]), 1));
    });
    logp.push(Array.from(await perImage.data()));
    perImage.dispose();
  }
  let margin = 0;
  let top1 = 0;
  let colour = 0;
  let shape = 0;
  logp.forEach((row, i) => {
    const others = row.filter((_, j) => j !== i);
    margin += row[i] - others.reduce((a, b) => a + b, 0) / others.length;
    const best = row.indexOf(Math.max(...row));
    if (best === i) top1++;
    if (combos[best].color === combos[i].color) colour++;
    if (combos[best].shape === combos[i].shape) shape++;
  });
  return { margin: margin / combos.length, top1, colour, shape, logp, captions };
}
