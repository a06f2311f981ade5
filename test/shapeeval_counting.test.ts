/**
 * Issue 24, item 8: ShapeEval's counting category asks for 2, 3 and 4 objects in similar numbers, as GenEval's
 * counting does (2-4), instead of mostly "one" (a 150-prompt set had one 60, two 36, three 4, four none).
 */
import { makeRng } from '../src/data/rng';
import { T2I_CATEGORIES, scoreT2I, t2iPromptFromScene } from '../src/shapeworld/shapeeval';
import { COUNTING_COUNTS, countingItem, sceneKey, shapeEvalT2IPrompts, shapeworldTrainingScenes } from '../src/shapeworld/shapeeval_run';
import { checkScene, sampleScene } from '../src/shapeworld/samples';

const countOf = (it: { prompt: { clauses: { kind: string; count?: number }[] } }): number => {
  const c = it.prompt.clauses[0];
  if (c.kind !== 'count' || c.count === undefined) throw new Error('not a count clause');
  return c.count;
};

describe('counting prompts', () => {
  test.each([
    [0, 34],
    [1, 25],
    [7, 8],
  ])('seed %i, %i per category: counts 2, 3 and 4 in equal shares (+-1), none of 1', (seed, per) => {
    const items = shapeEvalT2IPrompts(seed, per).filter((p) => p.category === 'counting');
    expect(items).toHaveLength(per);
    const tally = new Map<number, number>();
    for (const it of items) tally.set(countOf(it), (tally.get(countOf(it)) ?? 0) + 1);
    expect([...tally.keys()].sort()).toEqual([...COUNTING_COUNTS].filter((n) => n - 2 < per));
    for (const n of tally.values()) {
      expect(n).toBeGreaterThanOrEqual(Math.floor(per / 3));
      expect(n).toBeLessThanOrEqual(Math.ceil(per / 3));
    }
  });

  test('wording and witness: "three squares" holds on its scene, which has exactly that many of the shape and up to 4 objects', () => {
    for (const it of shapeEvalT2IPrompts(0, 34).filter((p) => p.category === 'counting')) {
      const n = countOf(it);
      const c = it.prompt.clauses[0];
      if (c.kind !== 'count') throw new Error('count clause expected');
      expect(it.prompt.text).toBe(`${['two', 'three', 'four'][n - 2]} ${c.object.shape}s`);
      expect(() => checkScene(it.scene)).not.toThrow();
      expect(it.scene.objects.filter((o) => o.shape === c.object.shape)).toHaveLength(n);
      expect(it.scene.objects.length).toBeLessThanOrEqual(4);
      expect(scoreT2I(it.prompt, it.scene)).toBe(true);
      // One more or one fewer of the shape fails.
      const fewer = { ...it.scene, objects: it.scene.objects.filter((o, i) => !(o.shape === c.object.shape && i === it.scene.objects.findIndex((p) => p.shape === c.object.shape))) };
      expect(scoreT2I(it.prompt, fewer)).toBe(false);
    }
  });

  test('some counting witnesses hold other shapes too, so a count is not just "how many objects"', () => {
    const items = shapeEvalT2IPrompts(0, 34).filter((p) => p.category === 'counting');
    expect(items.filter((it) => it.scene.objects.length > countOf(it)).length).toBeGreaterThan(5);
  });

  test('still disjoint from the training scenes, and the other categories are unchanged by it', () => {
    const train = shapeworldTrainingScenes({ seed: 1, t2i: 300, edit: 300 });
    for (const it of shapeEvalT2IPrompts(3, 12, train)) expect(train.has(sceneKey(it.scene))).toBe(false);
    // Each category draws from its own stream: the other categories are read off sampled scenes as before.
    for (const category of T2I_CATEGORIES.filter((c) => c !== 'counting')) {
      const expected: string[] = [];
      for (let i = 0; expected.length < 5; i++) {
        const rng = makeRng(`shapeeval:0:t2i:${category}:${i}`);
        const p = t2iPromptFromScene(sampleScene(rng), category, () => rng.next());
        if (p) expected.push(p.text);
      }
      expect(shapeEvalT2IPrompts(0, 5).filter((p) => p.category === category).map((p) => p.prompt.text)).toEqual(expected);
    }
    expect(() => countingItem(makeRng('x'), 5)).toThrow(/count must be an integer from 1 to 4/);
  });
});
