/**
 * ShapeWorld: a deterministic synthetic teacher in the ShareGPT-4o-Image mould, small enough to train and
 * measure the whole system on a CPU.
 *
 * Text-to-image follows the paper's two pipelines:
 *  - prompt-first: sample attributes (objects, counts, colours, cells or a left/right/above/below relation,
 *    optionally a background), phrase them, then draw a scene that satisfies them. Unstated attributes are
 *    free, like a generator given an under-specified prompt.
 *  - image-first: sample a scene, then describe all of it (every object with its colour, the background).
 * Edits (shapeworld_edits.ts) take a sampled source scene to a target scene with an instruction.
 *
 * Every sample is a pure function of (seed, task, index): record i does not depend on how many records come
 * before or after it, so `--t2i 100` is a prefix of `--t2i 2000` and any record can be regenerated alone.
 */
import { BACKGROUND_NAMES, BackgroundName, COLOR_NAMES, Cell, ColorName, Scene, SceneObject, SHAPES, Shape } from './scene';
import { makeRng, Rng, shuffled } from '../data/rng';
import { ALL_CELLS, EditSample, MAX_OBJECTS, sampleEdit } from './edits';
import { Mention, PromptSpec, RELATIONS, classPhrase, describeSpec, groupMentions, relationHolds, specHolds } from './captions';

export * from './captions';
export * from './edits';

export type Pipeline = 'prompt-first' | 'image-first';

/** One caption corruption: which attribute of which mention, dropped or made wrong. */
export interface NoiseEvent {
  attribute: 'color' | 'shape' | 'count' | 'cell' | 'relation' | 'background';
  kind: 'drop' | 'wrong';
  /** Index into spec.mentions; absent for relation and background. */
  mention?: number;
}

export interface T2ISample {
  pipeline: Pipeline;
  prompt: string;
  /** What the prompt asserts (after caption noise). */
  spec: PromptSpec;
  /** The image's exact content. specHolds(spec, scene) unless a noise event made the caption wrong. */
  scene: Scene;
  noise: NoiseEvent[];
}

/** `objects` in random distinct cells. */
function placeObjects(objects: { shape: Shape; color: ColorName }[], rng: Rng): SceneObject[] {
  const cells = shuffled(ALL_CELLS, rng);
  return objects.map((o, i) => ({ shape: o.shape, color: o.color, cell: cells[i] }));
}

function randomObject(rng: Rng): { shape: Shape; color: ColorName } {
  return { shape: rng.pick(SHAPES), color: rng.pick(COLOR_NAMES) };
}

/** A scene of 1..4 random objects in distinct cells on a random background. */
export function sampleScene(rng: Rng, count?: number): Scene {
  const n = count ?? 1 + rng.int(MAX_OBJECTS);
  const objects = placeObjects(Array.from({ length: n }, () => randomObject(rng)), rng);
  return { background: rng.pick(BACKGROUND_NAMES), objects };
}

/** Two cells, distinct, with `relation` holding from the first to the second. */
function relatedCells(relation: (typeof RELATIONS)[number], rng: Rng): [Cell, Cell] {
  for (;;) {
    const a = rng.pick(ALL_CELLS);
    const b = rng.pick(ALL_CELLS);
    if (relationHolds(relation, a, b)) return [a, b];
  }
}

/** Prompt-first: attributes first, then a scene that satisfies them, with at most `maxObjects` objects. */
export function samplePromptFirst(rng: Rng, maxObjects = MAX_OBJECTS): { spec: PromptSpec; scene: Scene } {
  // A relation needs two objects; with one allowed, the other styles keep their relative odds.
  const style = rng.pick(maxObjects >= 2 ? (['enumerate', 'enumerate', 'position', 'relation'] as const) : (['enumerate', 'enumerate', 'position'] as const));
  const background = rng.pick(BACKGROUND_NAMES);
  const statedBackground = rng.chance(0.7) ? background : undefined;
  let spec: PromptSpec;
  let objects: SceneObject[];
  if (style === 'enumerate') {
    const drawn = Array.from({ length: 1 + rng.int(maxObjects) }, () => randomObject(rng));
    const withColor = rng.chance(0.75);
    const mentions = groupMentions(drawn, withColor);
    // Draw the scene in mention order so object order follows the prompt.
    const ordered = mentions.flatMap((m) =>
      drawn.filter((o) => o.shape === m.shape && (!withColor || o.color === m.color)),
    );
    objects = placeObjects(ordered, rng);
    spec = { mentions };
  } else if (style === 'position') {
    objects = placeObjects(Array.from({ length: 1 + rng.int(Math.min(3, maxObjects)) }, () => randomObject(rng)), rng);
    const withColor = rng.chance(0.85);
    spec = { mentions: objects.map((o) => ({ count: 1, shape: o.shape, ...(withColor ? { color: o.color } : {}), cell: o.cell })) };
  } else {
    const relation = rng.pick(RELATIONS);
    const a = randomObject(rng);
    let b = randomObject(rng);
    while (b.shape === a.shape && b.color === a.color) b = randomObject(rng);
    const [ca, cb] = relatedCells(relation, rng);
    objects = [
      { ...a, cell: ca },
      { ...b, cell: cb },
    ];
    const mentions: Mention[] = objects.map((o) => ({ count: 1, shape: o.shape, color: o.color }));
    if (rng.chance(0.3) && maxObjects >= 3) {
      const extra = randomObject(rng);
      const free = ALL_CELLS.filter((c) => !objects.some((o) => o.cell.row === c.row && o.cell.col === c.col));
      objects.push({ ...extra, cell: rng.pick(free) });
      mentions.push({ count: 1, shape: extra.shape, color: extra.color });
    }
    spec = { mentions, relation: { a: 0, b: 1, relation } };
  }
  if (statedBackground) spec.background = statedBackground;
  return { spec, scene: { background, objects } };
}

/** Image-first: a scene of at most `maxObjects` objects first, then a complete description of it. */
export function sampleImageFirst(rng: Rng, maxObjects = MAX_OBJECTS): { spec: PromptSpec; scene: Scene } {
  const scene = sampleScene(rng, 1 + rng.int(maxObjects));
  const objs = scene.objects;
  const style = rng.pick(objs.length >= 2 ? (['enumerate', 'position', 'relation'] as const) : (['enumerate', 'position'] as const));
  let spec: PromptSpec;
  if (style === 'enumerate') {
    spec = { mentions: groupMentions(objs, true) };
  } else if (style === 'position') {
    // Reading order, as a describer scanning the picture would list them.
    const sorted = objs.slice().sort((p, q) => p.cell.row - q.cell.row || p.cell.col - q.cell.col);
    spec = { mentions: sorted.map((o) => ({ count: 1, shape: o.shape, color: o.color, cell: o.cell })) };
  } else {
    const [ia, ib] = shuffled(objs.map((_, i) => i), rng);
    const a = objs[ia];
    const b = objs[ib];
    const relation = rng.pick(RELATIONS.filter((r) => relationHolds(r, a.cell, b.cell)));
    const rest = objs.filter((_, i) => i !== ia && i !== ib);
    const mentions: Mention[] = [a, b].map((o) => ({ count: 1, shape: o.shape, color: o.color }));
    spec = { mentions: [...mentions, ...groupMentions(rest, true)], relation: { a: 0, b: 1, relation } };
  }
  spec.background = scene.background;
  return { spec, scene };
}

function cloneSpec(s: PromptSpec): PromptSpec {
  return {
    mentions: s.mentions.map((m) => ({ ...m, ...(m.cell ? { cell: { ...m.cell } } : {}) })),
    ...(s.relation ? { relation: { ...s.relation } } : {}),
    ...(s.background ? { background: s.background } : {}),
  };
}

const FLIP = { left: 'right', right: 'left', above: 'below', below: 'above' } as const;

/**
 * Caption noise, to emulate pre-distillation captions: every stated attribute is, with probability p,
 * dropped (half the time) or replaced by a wrong value. A "wrong" value is checked to really make the
 * caption false for `scene`; when no value can, the attribute is dropped instead. Counts and shapes cannot
 * be dropped, only made wrong.
 */
export function addCaptionNoise(spec: PromptSpec, scene: Scene, p: number, rng: Rng): { spec: PromptSpec; events: NoiseEvent[] } {
  const out = cloneSpec(spec);
  const events: NoiseEvent[] = [];
  if (p <= 0) return { spec: out, events };
  // Try candidate wrong values in random order; keep the first that makes the caption false.
  const tryWrong = <T>(values: T[], set: (v: T) => void, restore: () => void): boolean => {
    for (const v of shuffled(values, rng)) {
      set(v);
      if (!specHolds(out, scene)) return true;
    }
    restore();
    return false;
  };
  out.mentions.forEach((m, i) => {
    const inRelation = out.relation !== undefined && (out.relation.a === i || out.relation.b === i);
    if (m.color !== undefined && rng.chance(p)) {
      const orig = m.color;
      const wrong = rng.chance(0.5) && tryWrong(COLOR_NAMES.filter((c) => c !== orig), (c) => (m.color = c), () => (m.color = orig));
      if (!wrong) delete m.color;
      events.push({ attribute: 'color', kind: wrong ? 'wrong' : 'drop', mention: i });
    }
    if (rng.chance(p)) {
      const orig = m.shape;
      if (tryWrong(SHAPES.filter((s) => s !== orig), (s) => (m.shape = s), () => (m.shape = orig))) events.push({ attribute: 'shape', kind: 'wrong', mention: i });
    }
    // Relation members are single objects by construction; a count there would not parse as a relation.
    if (!inRelation && !m.cell && rng.chance(p)) {
      const orig = m.count;
      const counts = [1, 2, 3, 4].filter((c) => c !== orig);
      if (tryWrong(counts, (c) => (m.count = c), () => (m.count = orig))) events.push({ attribute: 'count', kind: 'wrong', mention: i });
    }
    if (m.cell !== undefined && rng.chance(p)) {
      const orig = m.cell;
      const wrong = rng.chance(0.5) && tryWrong(ALL_CELLS.filter((c) => c.row !== orig.row || c.col !== orig.col), (c) => (m.cell = { ...c }), () => (m.cell = orig));
      if (!wrong) delete m.cell;
      events.push({ attribute: 'cell', kind: wrong ? 'wrong' : 'drop', mention: i });
    }
  });
  if (out.relation && rng.chance(p)) {
    const rel = out.relation;
    const orig = rel.relation;
    const wrong = rng.chance(0.5) && tryWrong([FLIP[orig]], (r) => (rel.relation = r), () => (rel.relation = orig));
    if (!wrong) delete out.relation;
    events.push({ attribute: 'relation', kind: wrong ? 'wrong' : 'drop' });
  }
  if (out.background !== undefined && rng.chance(p)) {
    const orig: BackgroundName = out.background;
    const wrong = rng.chance(0.5) && tryWrong(BACKGROUND_NAMES.filter((b) => b !== orig), (b) => (out.background = b), () => (out.background = orig));
    if (!wrong) delete out.background;
    events.push({ attribute: 'background', kind: wrong ? 'wrong' : 'drop' });
  }
  return { spec: out, events };
}

/** T2I record `index` of the dataset seeded by `seed`, with at most `maxObjects` objects (simpler sets). */
export function makeT2ISample(seed: string | number, index: number, captionNoise = 0, maxObjects = MAX_OBJECTS): T2ISample {
  if (!Number.isInteger(maxObjects) || maxObjects < 1 || maxObjects > MAX_OBJECTS) throw new Error(`maxObjects must be an integer in 1..${MAX_OBJECTS}, got ${maxObjects}`);
  const rng = makeRng(`shapeworld:${seed}:t2i:${index}`);
  const pipeline: Pipeline = rng.chance(0.5) ? 'prompt-first' : 'image-first';
  const { spec, scene } = pipeline === 'prompt-first' ? samplePromptFirst(rng, maxObjects) : sampleImageFirst(rng, maxObjects);
  // Noise draws come from their own stream so a dataset and its noisy twin (same seed) share every scene.
  const noisy = addCaptionNoise(spec, scene, captionNoise, makeRng(`shapeworld:${seed}:noise:${index}`));
  const prompt = describeSpec(noisy.spec, rng);
  return { pipeline, prompt, spec: noisy.spec, scene, noise: noisy.events };
}

/**
 * Class-caption T2I record `index`: one object in a random cell, captioned only by its class,
 * `a {colour} {shape} on a {background} background` (noise may drop or change any of the three). The analogue of
 * Janus-Pro's stage I, which trains generation on ImageNet with category-name prompts before the rich captions
 * of stage II: with one template the image slots learn to find the colour and shape words by content within a
 * few hundred steps, which on varied captions they do not (docs/base-curriculum.md).
 */
export function makeClassSample(seed: string | number, index: number, captionNoise = 0): T2ISample {
  const rng = makeRng(`shapeworld:${seed}:class:${index}`);
  const scene = sampleScene(rng, 1);
  const o = scene.objects[0];
  const spec: PromptSpec = { mentions: [{ count: 1, shape: o.shape, color: o.color }], background: scene.background };
  const noisy = addCaptionNoise(spec, scene, captionNoise, makeRng(`shapeworld:${seed}:class-noise:${index}`));
  const bg = noisy.spec.background;
  const prompt = `${classPhrase(noisy.spec.mentions[0])}${bg ? ` on a ${bg} background` : ''}`;
  return { pipeline: 'image-first', prompt, spec: noisy.spec, scene, noise: noisy.events };
}

/** Edit record `index` of the dataset seeded by `seed`. */
export function makeEditSample(seed: string | number, index: number): EditSample {
  const rng = makeRng(`shapeworld:${seed}:edit:${index}`);
  return sampleEdit(sampleScene(rng), rng);
}

/** Throws unless `scene` meets the Scene contract (1-4 known objects in distinct cells, known background). */
export function checkScene(scene: Scene): void {
  const bad = (why: string): never => {
    throw new Error(`invalid scene: ${why}`);
  };
  if (!BACKGROUND_NAMES.includes(scene.background)) bad(`unknown background ${String(scene.background)}`);
  if (!Array.isArray(scene.objects) || scene.objects.length < 1 || scene.objects.length > MAX_OBJECTS) bad('needs 1-4 objects');
  const seen = new Set<string>();
  for (const o of scene.objects) {
    if (!SHAPES.includes(o.shape)) bad(`unknown shape ${String(o.shape)}`);
    if (!COLOR_NAMES.includes(o.color)) bad(`unknown colour ${String(o.color)}`);
    const { row, col } = o.cell ?? {};
    if (![0, 1, 2].includes(row) || ![0, 1, 2].includes(col)) bad('cell outside the 3x3 grid');
    const key = `${row},${col}`;
    if (seen.has(key)) bad(`two objects in cell ${key}`);
    seen.add(key);
  }
}
