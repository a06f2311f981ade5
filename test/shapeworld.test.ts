import {
  EDIT_CATEGORIES,
  SHAPEWORLD_VOCAB,
  addCaptionNoise,
  applyEdit,
  applyEdits,
  checkScene,
  describeSpec,
  makeClassSample,
  makeEditSample,
  makeT2ISample,
  sampleEdit,
  sampleScene,
  shapeworldWords,
  specHolds,
  PromptSpec,
} from '../src/shapeworld/samples';
import { makeRng } from '../src/data/rng';
import type { Scene } from '../src/shapeworld/scene';
import { renderScene } from '../src/shapeworld/render';

const N = 1500;
const t2i = Array.from({ length: N }, (_, i) => makeT2ISample(1, i));
const edits = Array.from({ length: N }, (_, i) => makeEditSample(1, i));

describe('ShapeWorld text-to-image', () => {
  test('deterministic per (seed, index), and a record does not depend on its neighbours', () => {
    expect(makeT2ISample(1, 17)).toEqual(t2i[17]);
    expect(makeEditSample(1, 17)).toEqual(edits[17]);
    expect(makeT2ISample(2, 17)).not.toEqual(t2i[17]);
    expect(new Set(t2i.map((s) => s.prompt)).size).toBeGreaterThan(N * 0.95);
  });

  test('every scene is valid and every clean caption is true of its scene', () => {
    for (const s of t2i) {
      checkScene(s.scene);
      expect(s.noise).toEqual([]);
      if (!specHolds(s.spec, s.scene)) throw new Error(`caption false for its scene: ${s.prompt} ${JSON.stringify(s.scene)}`);
    }
  });

  test('both pipelines and every phrasing feature occur', () => {
    const prompts = t2i.map((s) => s.prompt);
    const has = (re: RegExp): number => prompts.filter((p) => re.test(p)).length;
    expect(t2i.filter((s) => s.pipeline === 'prompt-first').length).toBeGreaterThan(N * 0.4);
    expect(t2i.filter((s) => s.pipeline === 'image-first').length).toBeGreaterThan(N * 0.4);
    for (const re of [/\b(two|three|four) \w+s\b/, /\bleft of\b/, /\bright of\b/, /\babove\b/, /\bbelow\b/, /\bin the top left\b/, /\bbackground\b/]) {
      expect(has(re)).toBeGreaterThan(10);
    }
    // Prompt-first leaves some attributes open (no background, no colour); image-first states the background.
    expect(t2i.filter((s) => s.pipeline === 'prompt-first' && s.spec.background === undefined).length).toBeGreaterThan(50);
    expect(t2i.filter((s) => s.pipeline === 'image-first').every((s) => s.spec.background === s.scene.background)).toBe(true);
  });

  test('prompts are short and use only SHAPEWORLD_VOCAB, which is small and has no dead words', () => {
    expect(SHAPEWORLD_VOCAB.length).toBeLessThanOrEqual(200);
    expect(new Set(SHAPEWORLD_VOCAB).size).toBe(SHAPEWORLD_VOCAB.length);
    const vocab = new Set(SHAPEWORLD_VOCAB);
    const used = new Set<string>();
    const noisy = Array.from({ length: 300 }, (_, i) => makeT2ISample(5, i, 0.5).prompt);
    for (const text of [...t2i.map((s) => s.prompt), ...edits.map((e) => e.instruction), ...noisy]) {
      const words = shapeworldWords(text);
      expect(words.join(' ').replace(/ ,/g, ',')).toBe(text);
      expect(words.length).toBeLessThanOrEqual(48);
      for (const w of words) {
        if (!vocab.has(w)) throw new Error(`"${w}" in "${text}" is not in SHAPEWORLD_VOCAB`);
        used.add(w);
      }
    }
    expect(SHAPEWORLD_VOCAB.filter((w) => !used.has(w))).toEqual([]);
  });

  test('specHolds rejects scenes that contradict the caption', () => {
    const scene: Scene = {
      background: 'white',
      objects: [
        { shape: 'circle', color: 'red', cell: { row: 0, col: 0 } },
        { shape: 'square', color: 'blue', cell: { row: 0, col: 2 } },
      ],
    };
    const ok: PromptSpec = { mentions: [{ count: 1, shape: 'circle', color: 'red' }, { count: 1, shape: 'square' }], relation: { a: 0, b: 1, relation: 'left' } };
    expect(specHolds(ok, scene)).toBe(true);
    expect(specHolds({ ...ok, relation: { a: 0, b: 1, relation: 'right' } }, scene)).toBe(false);
    expect(specHolds({ ...ok, relation: { a: 0, b: 1, relation: 'above' } }, scene)).toBe(false);
    expect(specHolds({ ...ok, background: 'pink' }, scene)).toBe(false);
    expect(specHolds({ mentions: [{ count: 2, shape: 'circle' }] }, scene)).toBe(false);
    expect(specHolds({ mentions: [{ count: 1, shape: 'circle' }] }, scene)).toBe(false); // the square is unmentioned
    expect(specHolds({ mentions: [{ count: 1, shape: 'circle', cell: { row: 1, col: 1 } }, { count: 1, shape: 'square' }] }, scene)).toBe(false);
    expect(describeSpec(ok, makeRng(0))).toMatch(/^(a picture of |an image of |draw |show )?(a|one) red circle (to the |on the )?left of (a|one) square$/);
  });
});

describe('max objects (curriculum sets)', () => {
  test('caps every T2I scene, keeps captions true, and leaves the default stream unchanged', () => {
    // The default must be the same draw sequence as before the option existed: these are the 4-object records.
    for (let i = 0; i < 200; i++) expect(makeT2ISample(1, i, 0, 4)).toEqual(t2i[i]);
    for (const m of [1, 2, 3]) {
      const set = Array.from({ length: 400 }, (_, i) => makeT2ISample(1, i, 0, m));
      for (const s of set) {
        checkScene(s.scene);
        expect(s.scene.objects.length).toBeLessThanOrEqual(m);
        if (!specHolds(s.spec, s.scene)) throw new Error(`caption false for its scene: ${s.prompt}`);
      }
      expect(set.filter((s) => s.scene.objects.length === m).length).toBeGreaterThan(50);
      if (m === 1) expect(set.some((s) => s.spec.relation)).toBe(false);
    }
    expect(() => makeT2ISample(1, 0, 0, 0)).toThrow(/maxObjects/);
    expect(() => makeT2ISample(1, 0, 0, 5)).toThrow(/maxObjects/);
  });
});

describe('class captions (stage I sets)', () => {
  test('one object, "a {colour} {shape} on a {background} background", true unless noise hit it', () => {
    const clean = Array.from({ length: 300 }, (_, i) => makeClassSample(4, i));
    for (const s of clean) {
      checkScene(s.scene);
      expect(s.scene.objects).toHaveLength(1);
      const [o] = s.scene.objects;
      expect(s.prompt).toBe(`${o.color === 'orange' ? 'an' : 'a'} ${o.color} ${o.shape} on a ${s.scene.background} background`);
      expect(specHolds(s.spec, s.scene)).toBe(true);
    }
    expect(new Set(clean.map((s) => `${s.scene.objects[0].cell.row},${s.scene.objects[0].cell.col}`)).size).toBe(9);
    expect(makeClassSample(4, 7)).toEqual(clean[7]);
    const noisy = Array.from({ length: 300 }, (_, i) => makeClassSample(4, i, 0.3));
    noisy.forEach((s, i) => expect(s.scene).toEqual(clean[i].scene));
    const hit = noisy.filter((s) => s.noise.length > 0);
    expect(hit.length).toBeGreaterThan(100);
    for (const s of hit) expect(s.prompt).not.toBe(clean[noisy.indexOf(s)].prompt);
    expect(noisy.some((s) => !/background/.test(s.prompt))).toBe(true);
  });
});

describe('caption noise', () => {
  test('p=0 changes nothing; noisy twins share scenes; about p of attributes are hit', () => {
    let slots = 0;
    let hit = 0;
    let wrongStillTrue = 0;
    for (let i = 0; i < 600; i++) {
      const clean = makeT2ISample(3, i, 0);
      const noisy = makeT2ISample(3, i, 0.2);
      expect(noisy.scene).toEqual(clean.scene);
      const s = clean.spec;
      slots += s.mentions.reduce((n, m) => n + 2 + (m.color ? 1 : 0) + (m.cell ? 1 : 0), 0) + (s.relation ? 1 : 0) + (s.background ? 1 : 0);
      hit += noisy.noise.length;
      if (noisy.noise.some((e) => e.kind === 'wrong') && specHolds(noisy.spec, noisy.scene)) wrongStillTrue++;
      if (noisy.noise.length === 0) expect(noisy.spec).toEqual(clean.spec);
    }
    // Count slots are skipped for cell-bearing and relation mentions, and a shape or count with no wrong value
    // left is not counted, so the rate is a little under p.
    expect(hit / slots).toBeGreaterThan(0.14);
    expect(hit / slots).toBeLessThan(0.21);
    // "wrong" is checked to make the caption false; only two wrong edits cancelling can leave it true.
    expect(wrongStillTrue).toBeLessThan(6);
  });

  test('a single wrong attribute makes the caption false; dropping keeps it true', () => {
    const scene: Scene = { background: 'gray', objects: [{ shape: 'diamond', color: 'cyan', cell: { row: 2, col: 1 } }] };
    const spec: PromptSpec = { mentions: [{ count: 1, shape: 'diamond', color: 'cyan', cell: { row: 2, col: 1 } }], background: 'gray' };
    for (let seed = 0; seed < 40; seed++) {
      const { spec: out, events } = addCaptionNoise(spec, scene, 0.5, makeRng(seed));
      const wrong = events.filter((e) => e.kind === 'wrong').length;
      expect(specHolds(out, scene)).toBe(wrong === 0);
    }
    expect(spec.mentions[0].color).toBe('cyan'); // input untouched
  });
});

describe('ShapeWorld edits', () => {
  test('every category occurs, each in roughly equal share', () => {
    const counts = new Map<string, number>();
    for (const e of edits) counts.set(e.category, (counts.get(e.category) ?? 0) + 1);
    for (const c of EDIT_CATEGORIES) expect(counts.get(c) ?? 0).toBeGreaterThan(N / 7 / 2);
  });

  test('target = ops applied to source; scenes valid; each op changes what its category says', () => {
    for (const e of edits) {
      checkScene(e.source);
      checkScene(e.target);
      expect(applyEdits(e.source, e.ops)).toEqual(e.target);
      expect(e.target).not.toEqual(e.source);
      expect(e.ops).toHaveLength(e.category === 'hybrid' ? 2 : 1);
      if (e.category !== 'hybrid') expect(e.ops[0].op).toBe(e.category);
      else expect(e.ops[0].op).not.toBe(e.ops[1].op);
      const d = e.target.objects.length - e.source.objects.length;
      if (e.category === 'add') expect(d).toBe(1);
      if (e.category === 'remove') expect(d).toBe(-1);
      if (e.category === 'background') expect(e.target.objects).toEqual(e.source.objects);
      if (e.category === 'adjust' || e.category === 'replace' || e.category === 'move') expect(e.target.background).toBe(e.source.background);
    }
  });

  test('instructions name the edit and refer to objects unambiguously', () => {
    const verbs: Record<string, RegExp> = {
      add: /^(add|put|place) an? /,
      remove: /^(remove|delete|erase|take out) the /,
      replace: /^(replace|turn|change|make) the .* (with|into|a) /,
      adjust: /^(make|change|paint|color|turn) the /,
      background: /background/,
      move: /^(move|shift|put) the /,
    };
    for (const e of edits) if (e.category !== 'hybrid') expect(e.instruction).toMatch(verbs[e.category]);
    // A bare "the <shape>" reference is only used when that shape is unique in the source.
    for (const e of edits.filter((x) => x.category === 'remove')) {
      const m = /^(?:remove|delete|erase|take out) the (circle|square|triangle|diamond)$/.exec(e.instruction);
      if (m) expect(e.source.objects.filter((o) => o.shape === m[1])).toHaveLength(1);
    }
  });

  test('applyEdit guards the Scene contract', () => {
    const one: Scene = { background: 'white', objects: [{ shape: 'circle', color: 'red', cell: { row: 0, col: 0 } }] };
    expect(() => applyEdit(one, { op: 'remove', target: 0 })).toThrow(/at least one/);
    expect(() => applyEdit(one, { op: 'move', target: 0, cell: { row: 0, col: 0 } })).toThrow(/taken/);
    expect(() => applyEdit(one, { op: 'adjust', target: 3, color: 'blue' })).toThrow(/target 3/);
    const full = sampleScene(makeRng(1), 4);
    expect(() => applyEdit(full, { op: 'add', object: { shape: 'circle', color: 'red', cell: { row: 1, col: 1 } } })).toThrow(/4 objects/);
    expect(() => sampleEdit(one, makeRng(2), 'remove')).toThrow(/does not apply/);
    expect(sampleEdit(one, makeRng(2), 'hybrid').ops).toHaveLength(2);
  });
});

test('scenes render deterministically and differ when the scene does', async () => {
  const a = await renderScene(t2i[0].scene, 64);
  expect(await renderScene(t2i[0].scene, 64)).toEqual(a);
  expect(await renderScene(edits[0].target, 64)).not.toEqual(await renderScene(edits[0].source, 64));
});
