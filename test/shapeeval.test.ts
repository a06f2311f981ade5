import seedrandom from 'seedrandom';
import { BACKGROUND_NAMES, COLOR_NAMES, Cell, ColorName, Scene, SceneObject, SHAPES, Shape } from '../src/shapeworld/scene';
import {
  Clause,
  ObservedScene,
  T2IPrompt,
  T2I_CATEGORIES,
  canonicalText,
  checkEdit,
  makeT2IPrompt,
  scoreEdit,
  scoreT2I,
  summariseEdits,
  summariseT2I,
  t2iPromptFromScene,
  t2iPromptsFromScene,
} from '../src/shapeworld/shapeeval';
import { randomScene } from './scenes';


const obj = (shape: Shape, color: ColorName, row: 0 | 1 | 2, col: 0 | 1 | 2): SceneObject => ({ shape, color, cell: { row, col } });
const scene = (...objects: SceneObject[]): Scene => ({ background: 'white', objects });

describe('T2I clauses', () => {
  const s = scene(obj('circle', 'red', 1, 0), obj('square', 'blue', 1, 2), obj('square', 'green', 0, 1));

  test('position: left of / right of / above / below by grid cells', () => {
    const pos = (a: Shape, relation: 'left of' | 'right of' | 'above' | 'below', b: Shape) =>
      makeT2IPrompt('position', [{ kind: 'relation', a: { shape: a }, relation, b: { shape: b } }]);
    expect(scoreT2I(pos('circle', 'left of', 'square'), s)).toBe(true);
    expect(scoreT2I(pos('circle', 'right of', 'square'), s)).toBe(false);
    expect(scoreT2I(pos('square', 'right of', 'circle'), s)).toBe(true);
    expect(scoreT2I(pos('square', 'above', 'circle'), s)).toBe(true); // the green square, row 0
    expect(scoreT2I(pos('circle', 'above', 'square'), s)).toBe(false);
    expect(scoreT2I(pos('circle', 'below', 'square'), s)).toBe(true);
    // Same column or row is not "left of" / "above".
    const stacked = scene(obj('circle', 'red', 0, 1), obj('square', 'blue', 2, 1));
    expect(scoreT2I(pos('circle', 'left of', 'square'), stacked)).toBe(false);
    expect(scoreT2I(pos('circle', 'above', 'square'), stacked)).toBe(true);
    // One object cannot stand in a relation to itself.
    const lone = scene(obj('circle', 'red', 0, 0));
    expect(scoreT2I(pos('circle', 'left of', 'circle'), lone)).toBe(false);
    expect(scoreT2I(pos('circle', 'left of', 'circle'), scene(obj('circle', 'red', 0, 0), obj('circle', 'red', 0, 2)))).toBe(true);
    // A missing object fails the relation.
    expect(scoreT2I(pos('circle', 'left of', 'triangle'), s)).toBe(false);
  });

  test('counting is exact: one too many or one too few fails', () => {
    const count = (n: number) => makeT2IPrompt('counting', [{ kind: 'count', object: { shape: 'square' }, count: n }]);
    expect(scoreT2I(count(2), s)).toBe(true);
    expect(scoreT2I(count(1), s)).toBe(false);
    expect(scoreT2I(count(3), s)).toBe(false);
    expect(scoreT2I(makeT2IPrompt('counting', [{ kind: 'count', object: { shape: 'triangle' }, count: 1 }]), s)).toBe(false);
  });

  test('colours, two objects and colour attribution', () => {
    const has = (shape: Shape, color?: ColorName): Clause => ({ kind: 'exists', object: color ? { shape, color } : { shape } });
    expect(scoreT2I(makeT2IPrompt('single_object', [has('circle')]), s)).toBe(true);
    expect(scoreT2I(makeT2IPrompt('single_object', [has('diamond')]), s)).toBe(false);
    expect(scoreT2I(makeT2IPrompt('colors', [has('square', 'green')]), s)).toBe(true);
    expect(scoreT2I(makeT2IPrompt('colors', [has('circle', 'blue')]), s)).toBe(false);
    expect(scoreT2I(makeT2IPrompt('two_object', [has('circle'), has('square')]), s)).toBe(true);
    expect(scoreT2I(makeT2IPrompt('two_object', [has('circle'), has('triangle')]), s)).toBe(false);
    expect(scoreT2I(makeT2IPrompt('color_attr', [has('circle', 'red'), has('square', 'blue')]), s)).toBe(true);
    // Swapped attribution: both shapes and both colours are present, but bound the wrong way.
    expect(scoreT2I(makeT2IPrompt('color_attr', [has('circle', 'blue'), has('square', 'red')]), s)).toBe(false);
  });

  test("an 'unknown' detected shape satisfies nothing", () => {
    const d: ObservedScene = { background: 'white', objects: [{ shape: 'unknown', color: 'red', cell: { row: 0, col: 0 } }] };
    for (const shape of SHAPES) expect(scoreT2I(makeT2IPrompt('single_object', [{ kind: 'exists', object: { shape } }]), d)).toBe(false);
  });

  test('a prompt without clauses is an error, not a pass', () => {
    expect(() => scoreT2I({ category: 'single_object', text: 'x', clauses: [] }, s)).toThrow(/no clauses/);
  });

  test('canonical texts', () => {
    const text = (p: T2IPrompt) => p.text;
    expect(text(makeT2IPrompt('single_object', [{ kind: 'exists', object: { shape: 'circle' } }]))).toBe('a circle');
    expect(text(makeT2IPrompt('colors', [{ kind: 'exists', object: { shape: 'diamond', color: 'orange' } }]))).toBe('an orange diamond');
    expect(text(makeT2IPrompt('counting', [{ kind: 'count', object: { shape: 'triangle' }, count: 3 }]))).toBe('three triangles');
    expect(text(makeT2IPrompt('counting', [{ kind: 'count', object: { shape: 'square' }, count: 1 }]))).toBe('one square');
    expect(
      text(makeT2IPrompt('color_attr', [
        { kind: 'exists', object: { shape: 'circle', color: 'red' } },
        { kind: 'exists', object: { shape: 'square', color: 'blue' } },
      ])),
    ).toBe('a red circle and a blue square');
    expect(text(makeT2IPrompt('position', [{ kind: 'relation', a: { shape: 'circle' }, relation: 'left of', b: { shape: 'square' } }]))).toBe(
      'a circle left of a square',
    );
    expect(() => canonicalText('counting', [{ kind: 'exists', object: { shape: 'circle' } }])).toThrow(/count/);
    expect(() => canonicalText('position', [{ kind: 'exists', object: { shape: 'circle' } }])).toThrow(/relation/);
  });
});

describe('prompts derived from scenes', () => {
  test('every derived prompt holds on its own scene, and targeted mutations break it', () => {
    const rand = seedrandom('derive');
    const seen = new Set<string>();
    for (let k = 0; k < 400; k++) {
      const s = randomScene(rand);
      for (const p of t2iPromptsFromScene(s, rand)) {
        seen.add(p.category);
        expect(scoreT2I(p, s)).toBe(true);
        const c = p.clauses[0];
        const free = ([0, 1, 2, 3, 4, 5, 6, 7, 8] as const).find((i) => !s.objects.some((o) => o.cell.row * 3 + o.cell.col === i))!;
        const freeCell = { row: Math.floor(free / 3), col: free % 3 } as Cell;
        if (c.kind === 'count') {
          const plus = { ...s, objects: [...s.objects, { shape: c.object.shape, color: 'red' as const, cell: freeCell }] };
          expect(scoreT2I(p, plus)).toBe(false);
          const i = s.objects.findIndex((o) => o.shape === c.object.shape);
          expect(scoreT2I(p, { ...s, objects: s.objects.filter((_, j) => j !== i) })).toBe(false);
        }
        if (c.kind === 'exists') {
          // Dropping every object the last clause names must fail the prompt.
          const last = p.clauses[p.clauses.length - 1];
          if (last.kind !== 'exists') throw new Error('mixed clause kinds');
          const without = { ...s, objects: s.objects.filter((o) => !(o.shape === last.object.shape && (!last.object.color || o.color === last.object.color))) };
          expect(scoreT2I(p, without)).toBe(false);
        }
        if (c.kind === 'relation') {
          // Mirror the scene left-right and top-bottom: every pair's relation flips, so the prompt must fail.
          const mirrored = { ...s, objects: s.objects.map((o) => ({ ...o, cell: { row: (2 - o.cell.row) as 0 | 1 | 2, col: (2 - o.cell.col) as 0 | 1 | 2 } })) };
          const onlyPair = s.objects.filter((o) => o.shape === c.a.shape || o.shape === c.b.shape).length === 2;
          if (onlyPair) expect(scoreT2I(p, mirrored)).toBe(false);
        }
      }
    }
    expect([...seen].sort()).toEqual([...T2I_CATEGORIES].sort());
  });

  test('categories that the scene cannot support give null', () => {
    const one = scene(obj('circle', 'red', 0, 0));
    expect(t2iPromptFromScene(one, 'two_object')).toBeNull();
    expect(t2iPromptFromScene(one, 'position')).toBeNull();
    expect(t2iPromptFromScene(one, 'color_attr')).toBeNull();
    expect(t2iPromptFromScene(scene(obj('circle', 'red', 0, 0), obj('circle', 'blue', 0, 1)), 'two_object')).toBeNull();
    expect(t2iPromptFromScene(one, 'counting')?.text).toBe('one circle');
    expect(t2iPromptsFromScene(one).map((p) => p.category)).toEqual(['single_object', 'counting', 'colors']);
  });
});

describe('summaries', () => {
  test('overall is the mean of category accuracies, not the pooled accuracy', () => {
    const s = summariseT2I([
      { category: 'single_object', correct: true },
      { category: 'counting', correct: false },
      { category: 'counting', correct: false },
      { category: 'counting', correct: true },
      { category: 'counting', correct: false },
    ]);
    expect(s.categories.single_object).toEqual({ correct: 1, total: 1, accuracy: 1 });
    expect(s.categories.counting).toEqual({ correct: 1, total: 4, accuracy: 0.25 });
    expect(s.categories.position).toEqual({ correct: 0, total: 0, accuracy: null });
    expect(s.overall).toBeCloseTo(0.625, 10);
    expect(summariseT2I([]).overall).toBeNull();
    expect(() => summariseT2I([{ category: 'nope' as 'counting', correct: true }])).toThrow(/unknown category/);
  });

  test('edit summary', () => {
    const s = summariseEdits([
      { category: 'add', correct: true },
      { category: 'move', correct: false },
    ]);
    expect(s.categories.add.accuracy).toBe(1);
    expect(s.categories.move.accuracy).toBe(0);
    expect(s.categories.hybrid.accuracy).toBeNull();
    expect(s.overall).toBe(0.5);
  });
});

describe('edit scoring', () => {
  const src = scene(obj('circle', 'red', 0, 0), obj('square', 'blue', 1, 1));

  test('adjust: target holds and the rest is preserved', () => {
    const tgt = scene(obj('circle', 'green', 0, 0), obj('square', 'blue', 1, 1));
    expect(checkEdit('adjust', src, tgt, tgt)).toEqual({ category: 'adjust', correct: true, targetHolds: true, preserved: true });
    // Unchanged image: nothing lost, but the edit did not happen.
    expect(checkEdit('adjust', src, tgt, src)).toEqual({ category: 'adjust', correct: false, targetHolds: false, preserved: true });
    // Edit done but another object vanished.
    expect(checkEdit('adjust', src, tgt, scene(obj('circle', 'green', 0, 0)))).toEqual({ category: 'adjust', correct: false, targetHolds: true, preserved: false });
    // An extra object makes it wrong even though target and preservation both hold.
    const extra = scene(...tgt.objects, obj('triangle', 'black', 2, 2));
    expect(checkEdit('adjust', src, tgt, extra)).toEqual({ category: 'adjust', correct: false, targetHolds: true, preserved: true });
  });

  test('remove, add, move, replace, background', () => {
    const removed = scene(obj('square', 'blue', 1, 1));
    expect(scoreEdit('remove', src, removed, removed)).toBe(true);
    expect(scoreEdit('remove', src, removed, src)).toBe(false);
    const added = scene(...src.objects, obj('diamond', 'cyan', 2, 0));
    expect(scoreEdit('add', src, added, added)).toBe(true);
    expect(scoreEdit('add', src, added, scene(...src.objects, obj('diamond', 'cyan', 2, 1)))).toBe(false);
    const moved = scene(obj('circle', 'red', 2, 2), obj('square', 'blue', 1, 1));
    expect(scoreEdit('move', src, moved, moved)).toBe(true);
    // Copying instead of moving leaves the source object behind.
    expect(checkEdit('move', src, moved, scene(...src.objects, obj('circle', 'red', 2, 2))).targetHolds).toBe(false);
    const replaced = scene(obj('triangle', 'red', 0, 0), obj('square', 'blue', 1, 1));
    expect(scoreEdit('replace', src, replaced, replaced)).toBe(true);
    expect(scoreEdit('replace', src, replaced, { ...replaced, objects: [{ shape: 'unknown', color: 'red', cell: { row: 0, col: 0 } }, src.objects[1]] })).toBe(false);
    const bg: Scene = { ...src, background: 'pink' };
    expect(checkEdit('background', src, bg, bg)).toEqual({ category: 'background', correct: true, targetHolds: true, preserved: true });
    expect(checkEdit('background', src, bg, src)).toEqual({ category: 'background', correct: false, targetHolds: false, preserved: true });
    // Background repainted when it should not have been breaks preservation.
    expect(checkEdit('move', src, moved, { ...moved, background: 'gray' }).preserved).toBe(false);
    expect(scoreEdit('background', src, bg, { ...bg, background: 'unknown' })).toBe(false);
  });

  test('hybrid: both parts must hold', () => {
    const tgt: Scene = { background: 'gray', objects: [obj('circle', 'yellow', 0, 0), obj('square', 'blue', 1, 1)] };
    expect(scoreEdit('hybrid', src, tgt, tgt)).toBe(true);
    expect(scoreEdit('hybrid', src, tgt, { ...tgt, background: 'white' })).toBe(false);
    expect(scoreEdit('hybrid', src, tgt, { ...src, background: 'gray' })).toBe(false);
  });
});
