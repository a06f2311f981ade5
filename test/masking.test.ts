/**
 * The Janus-4o condition dropout (janus-spec 8.2): rates over 20,000 draws, and masked training rows equal the
 * CFG rows generation builds (t2iRows / editRows share uncondIds / editRowVariant with training).
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import { collate, layoutSample, TokenSample } from '../src/data/batch';
import { promptIds } from '../src/data/prompt_ids';
import { makeRng } from '../src/data/rng';
import { editRows, t2iRows } from '../src/generate/sampler';
import { WordTokenizer } from '../src/tokenizer/word';

const tok = WordTokenizer.build(['a', 'red', 'circle', 'left', 'of', 'blue', 'square', 'make', 'it', 'green']);
const tpl = promptIds(tok);
const N = 16;
const target = Array.from({ length: N }, (_, i) => i);
const source = Array.from({ length: N }, (_, i) => 100 + i);
const opts = { textMaskProb: 0.1, imageMaskProb: 0.5, lossAlignment: 'full' as const };
const t2i: TokenSample = { task: 't2i', prompt: 'a red circle left of a blue square', target };
const edit: TokenSample = { task: 'edit', prompt: 'make it green', target, source, sourceImage: 0 };

beforeAll(async () => {
  await initBackend('cpu');
});

test('T2I prompt masking 10% +/- 1% and X-block masking 50% +/- 1.5% over 20,000 draws', () => {
  let text = 0;
  let image = 0;
  const draws = 20000;
  for (let i = 0; i < draws; i++) {
    if (layoutSample(t2i, tpl, N, opts, makeRng(`mask:42:0:${i}`)).textMasked) text++;
    if (layoutSample(edit, tpl, N, opts, makeRng(`mask:42:0:${i}`)).imageMasked) image++;
  }
  expect(Math.abs(text / draws - 0.1)).toBeLessThan(0.01);
  expect(Math.abs(image / draws - 0.5)).toBeLessThan(0.015);
  // Edits never drop their text, T2I rows never have image blocks.
  expect(layoutSample(edit, tpl, N, { ...opts, textMaskProb: 1 }, makeRng(1)).textMasked).toBe(false);
});

test('a masked T2I row is the CFG unconditional row; a masked edit row is the CFG "part" row', () => {
  const always = { textMaskProb: 1, imageMaskProb: 1, lossAlignment: 'full' as const };
  const never = { textMaskProb: 0, imageMaskProb: 0, lossAlignment: 'full' as const };
  const prefix = tpl.t2iPrefix(t2i.prompt);
  const [cond, uncond] = t2iRows(prefix, tpl.pad);
  const pad = new Array<number>(N).fill(tpl.pad);
  expect(layoutSample(t2i, tpl, N, always, makeRng(1)).ids).toEqual([...uncond.ids, ...pad]);
  expect(layoutSample(t2i, tpl, N, never, makeRng(1)).ids).toEqual([...cond.ids, ...pad]);
  // Uncond keeps BOS and the final BOI only.
  expect(uncond.ids[0]).toBe(tok.special.bos);
  expect(uncond.ids[uncond.ids.length - 1]).toBe(tok.special.boi);
  expect(new Set(uncond.ids.slice(1, -1))).toEqual(new Set([tok.special.pad]));

  const features = tf.zeros([N, 4]) as tf.Tensor2D;
  const ep = tpl.editPrefix(edit.prompt, N);
  const [full, part] = editRows(ep, source, features, tpl.pad);
  const masked = collate([edit], tpl, N, always, () => makeRng(1));
  const kept = collate([edit], tpl, N, never, () => makeRng(1));
  // Same ids; what differs is whether the X block receives the source tokens (part: pad embeddings stay).
  expect(masked.textIds[0].slice(0, ep.ids.length)).toEqual(part.ids);
  expect(kept.textIds[0].slice(0, ep.ids.length)).toEqual(full.ids);
  const xPositions = (b: typeof masked) => b.genPositions.filter((p) => p >= ep.xBlock[0] && p < ep.xBlock[1]);
  expect(part.gen).toBeUndefined();
  expect(xPositions(masked)).toEqual([]);
  expect(full.gen?.start).toBe(ep.xBlock[0]);
  expect(xPositions(kept)).toEqual(Array.from({ length: N }, (_, k) => ep.xBlock[0] + k));
  // The E block (SigLIP features) is never dropped.
  expect(masked.featurePositions).toEqual(kept.featurePositions);
  expect(part.features?.start).toBe(ep.eBlock[0]);
  features.dispose();
});
