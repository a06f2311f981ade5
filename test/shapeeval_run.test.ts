import sharp from 'sharp';
import { renderScene } from '../src/shapeworld/render';
import { makeT2ISample } from '../src/shapeworld/samples';
import { runShapeEval, sceneKey, shapeEvalEdits, shapeEvalT2IPrompts, shapeworldTrainingScenes } from '../src/shapeworld/shapeeval_run';
import { EDIT_CATEGORIES, T2I_CATEGORIES, scoreT2I } from '../src/shapeworld/shapeeval';

const SIZE = 64;

describe('ShapeEval prompt sets', () => {
  test('seeded, and disjoint from the training scenes by construction', () => {
    const train = shapeworldTrainingScenes({ seed: 1, t2i: 300, edit: 300 });
    expect(train.size).toBeGreaterThan(500);
    const a = shapeEvalT2IPrompts(7, 5, train);
    expect(a).toHaveLength(5 * T2I_CATEGORIES.length);
    expect(shapeEvalT2IPrompts(7, 5, train)).toEqual(a);
    expect(shapeEvalT2IPrompts(8, 5, train).map((p) => p.scene)).not.toEqual(a.map((p) => p.scene));
    for (const p of a) {
      expect(train.has(sceneKey(p.scene))).toBe(false);
      // The scene the prompt was read from satisfies it.
      expect(scoreT2I(p.prompt, p.scene)).toBe(true);
    }
    const edits = shapeEvalEdits(7, 3, train);
    expect(edits.map((e) => e.category)).toEqual(EDIT_CATEGORIES.flatMap((c) => [c, c, c]));
    for (const e of edits) expect(train.has(sceneKey(e.source)) || train.has(sceneKey(e.target))).toBe(false);
  });

  test('a scene in the exclusion set is skipped, and sceneKey ignores object order', () => {
    const first = shapeEvalT2IPrompts(3, 1);
    const without = shapeEvalT2IPrompts(3, 1, new Set([sceneKey(first[0].scene)]));
    expect(without[0].scene).not.toEqual(first[0].scene);
    const s = makeT2ISample(1, 0).scene;
    expect(sceneKey({ ...s, objects: [...s.objects].reverse() })).toBe(sceneKey(s));
    expect(sceneKey({ ...s, background: s.background === 'white' ? 'gray' : 'white' })).not.toBe(sceneKey(s));
  });
});

describe('runShapeEval', () => {
  const seed = 11;

  test('an oracle that draws the right scenes scores 1 everywhere; a blank generator scores 0', async () => {
    const items = shapeEvalT2IPrompts(seed, 2);
    const witness = new Map(items.map((p) => [p.prompt.text, p.scene]));
    const edits = shapeEvalEdits(seed, 1);
    const target = new Map(edits.map((e) => [e.instruction, e.target]));
    const oracle = {
      t2i: async (prompts: readonly string[], n: number) => Promise.all(prompts.map(async (p) => Array(n).fill(await renderScene(witness.get(p)!, SIZE)) as Buffer[])),
      edit: async (its: readonly { instruction: string; source: Buffer }[], n: number) =>
        Promise.all(its.map(async (it) => Array(n).fill(await renderScene(target.get(it.instruction)!, SIZE)) as Buffer[])),
    };
    const progress: number[] = [];
    const r = await runShapeEval(oracle, { seed, perCategory: 2, editsPerCategory: 1, imagesPerPrompt: 2, batch: 5, renderSource: (s) => renderScene(s, SIZE), onProgress: (d) => progress.push(d) });
    expect(r.t2i.summary.overall).toBe(1);
    for (const c of T2I_CATEGORIES) expect(r.t2i.summary.categories[c]).toEqual({ correct: 4, total: 4, accuracy: 1 });
    expect(r.edit!.summary.overall).toBe(1);
    expect(progress[progress.length - 1]).toBe(12 + 7);

    const blank = await sharp({ create: { width: SIZE, height: SIZE, channels: 3, background: { r: 250, g: 250, b: 250 } } }).png().toBuffer();
    const none = {
      t2i: async (prompts: readonly string[], n: number) => prompts.map(() => Array(n).fill(blank) as Buffer[]),
      // Returning the source unchanged fails every edit: the requested change is missing.
      edit: async (its: readonly { instruction: string; source: Buffer }[], n: number) => its.map((it) => Array(n).fill(it.source) as Buffer[]),
    };
    const z = await runShapeEval(none, { seed, perCategory: 2, editsPerCategory: 1, imagesPerPrompt: 1, renderSource: (s) => renderScene(s, SIZE) });
    expect(z.t2i.summary.overall).toBe(0);
    expect(z.edit!.summary.overall).toBe(0);
    expect(z.edit!.items.every((it) => it.preserved.every(Boolean))).toBe(true);
  });

  test('a generator returning the wrong number of results is an error', async () => {
    const bad = { t2i: async () => [] as Buffer[][] };
    await expect(runShapeEval(bad, { seed, perCategory: 1, editsPerCategory: 0 })).rejects.toThrow(/returned 0 results for/);
  });
});
