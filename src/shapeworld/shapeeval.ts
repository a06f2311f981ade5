/**
 * ShapeEval scoring, GenEval-style. A T2I prompt is a list of clauses over the detected objects; an image
 * is right only if every clause holds; overall accuracy is the mean of the per-category accuracies (so a
 * category with many prompts cannot dominate). Edits are right when the detected image equals the expected
 * target scene: the requested change happened and nothing else moved.
 */
import { BackgroundName, Cell, ColorName, Scene, Shape } from './scene';
import type { DetectedShape } from './detect';

export const T2I_CATEGORIES = ['single_object', 'two_object', 'counting', 'colors', 'position', 'color_attr'] as const;
export type T2ICategory = (typeof T2I_CATEGORIES)[number];

export const EDIT_CATEGORIES = ['add', 'remove', 'replace', 'adjust', 'background', 'move', 'hybrid'] as const;
export type EditCategory = (typeof EDIT_CATEGORIES)[number];

export const RELATIONS = ['left of', 'right of', 'above', 'below'] as const;
export type Relation = (typeof RELATIONS)[number];

/** Which objects a clause talks about: a shape, optionally narrowed to a colour. */
export interface ObjectRef {
  shape: Shape;
  color?: ColorName;
}

export type Clause =
  /** At least one matching object. */
  | { kind: 'exists'; object: ObjectRef }
  /** Exactly `count` matching objects: one too many fails as surely as one too few. */
  | { kind: 'count'; object: ObjectRef; count: number }
  /** Two distinct objects, one matching `a` and one `b`, with `a` in a grid column/row strictly on that side of `b`. */
  | { kind: 'relation'; a: ObjectRef; relation: Relation; b: ObjectRef };

export interface T2IPrompt {
  category: T2ICategory;
  text: string;
  clauses: Clause[];
}

/** What the scorer reads: a detector result, or a ground-truth Scene (whose shapes are never 'unknown'). */
export interface ObservedObject {
  shape: DetectedShape;
  color: ColorName;
  cell: Cell;
}
export interface ObservedScene {
  background: BackgroundName | 'unknown';
  objects: readonly ObservedObject[];
  /** Set by the detector when the image is no ShapeWorld scene (noise, fragments): nothing holds on it. */
  rejected?: string | null;
}

function matches(o: ObservedObject, ref: ObjectRef): boolean {
  return o.shape === ref.shape && (ref.color === undefined || o.color === ref.color);
}

/** Whether object at cell a stands in `relation` to object at cell b. */
export function relationHolds(a: Cell, relation: Relation, b: Cell): boolean {
  switch (relation) {
    case 'left of':
      return a.col < b.col;
    case 'right of':
      return a.col > b.col;
    case 'above':
      return a.row < b.row;
    case 'below':
      return a.row > b.row;
  }
}

export function clauseHolds(clause: Clause, scene: ObservedScene): boolean {
  const objs = scene.objects;
  switch (clause.kind) {
    case 'exists':
      return objs.some((o) => matches(o, clause.object));
    case 'count':
      return objs.filter((o) => matches(o, clause.object)).length === clause.count;
    case 'relation':
      return objs.some(
        (a, i) => matches(a, clause.a) && objs.some((b, j) => j !== i && matches(b, clause.b) && relationHolds(a.cell, clause.relation, b.cell)),
      );
  }
}

/**
 * GenEval's rule: correct only when every clause holds. A prompt with no clauses is a bug, not a pass; an image
 * the detector refused (`rejected`) is wrong whatever objects were read in it.
 */
export function scoreT2I(prompt: T2IPrompt, scene: ObservedScene): boolean {
  if (prompt.clauses.length === 0) throw new Error(`T2I prompt "${prompt.text}" has no clauses`);
  if (scene.rejected) return false;
  return prompt.clauses.every((c) => clauseHolds(c, scene));
}

export interface CategoryScore {
  correct: number;
  total: number;
  /** null when the category had no prompts. */
  accuracy: number | null;
}

export interface Summary<C extends string> {
  categories: Record<C, CategoryScore>;
  /** Mean of the accuracies of the categories that had prompts; null when none had. */
  overall: number | null;
}

function summarise<C extends string>(names: readonly C[], results: readonly { category: C; correct: boolean }[]): Summary<C> {
  const categories = {} as Record<C, CategoryScore>;
  for (const n of names) categories[n] = { correct: 0, total: 0, accuracy: null };
  for (const r of results) {
    const s = categories[r.category];
    if (!s) throw new Error(`unknown category "${r.category}"`);
    s.total++;
    if (r.correct) s.correct++;
  }
  const accs: number[] = [];
  for (const n of names) {
    const s = categories[n];
    if (s.total > 0) {
      s.accuracy = s.correct / s.total;
      accs.push(s.accuracy);
    }
  }
  return { categories, overall: accs.length ? accs.reduce((a, b) => a + b, 0) / accs.length : null };
}

export function summariseT2I(results: readonly { category: T2ICategory; correct: boolean }[]): Summary<T2ICategory> {
  return summarise(T2I_CATEGORIES, results);
}

// ---------------------------------------------------------------- edits

export interface EditCheck {
  category: EditCategory;
  /** Detected scene equals the expected target exactly (objects as a multiset, and background). */
  correct: boolean;
  /** The requested change is visible: new objects present, removed ones gone, background changed if asked. */
  targetHolds: boolean;
  /** Objects (and the background) the edit should not touch are still there. */
  preserved: boolean;
}

function key(o: ObservedObject): string {
  return `${o.shape}|${o.color}|${o.cell.row},${o.cell.col}`;
}

function multiset(objs: readonly ObservedObject[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const o of objs) m.set(key(o), (m.get(key(o)) ?? 0) + 1);
  return m;
}

/** a minus b, as multisets. */
function minus(a: Map<string, number>, b: Map<string, number>): Map<string, number> {
  const m = new Map<string, number>();
  for (const [k, n] of a) {
    const left = n - (b.get(k) ?? 0);
    if (left > 0) m.set(k, left);
  }
  return m;
}

function contains(a: Map<string, number>, b: Map<string, number>): boolean {
  for (const [k, n] of b) if ((a.get(k) ?? 0) < n) return false;
  return true;
}

function size(m: Map<string, number>): number {
  let s = 0;
  for (const n of m.values()) s += n;
  return s;
}

/**
 * Full edit check with a breakdown; `category` only labels the result (the expected target says what changed).
 * An image the detector refused (`rejected`) shows neither the change nor what should have been kept.
 */
export function checkEdit(category: EditCategory, source: Scene, expected: Scene, detected: ObservedScene): EditCheck {
  if (detected.rejected) return { category, correct: false, targetHolds: false, preserved: false };
  const S = multiset(source.objects);
  const E = multiset(expected.objects);
  const D = multiset(detected.objects);
  const untouched = minus(S, minus(S, E)); // S ∩ E
  const added = minus(E, S);
  const removed = minus(S, E);
  const bgChanged = source.background !== expected.background;
  const bgOk = detected.background === expected.background;
  const rest = minus(D, untouched);
  const targetHolds = contains(rest, added) && size(minus(rest, minus(rest, removed))) === 0 && (!bgChanged || bgOk);
  const preserved = contains(D, untouched) && (bgChanged || bgOk);
  const correct = bgOk && size(minus(D, E)) === 0 && size(minus(E, D)) === 0;
  return { category, correct, targetHolds, preserved };
}

export function scoreEdit(category: EditCategory, source: Scene, expected: Scene, detected: ObservedScene): boolean {
  return checkEdit(category, source, expected, detected).correct;
}

export function summariseEdits(results: readonly { category: EditCategory; correct: boolean }[]): Summary<EditCategory> {
  return summarise(EDIT_CATEGORIES, results);
}

// ---------------------------------------------------------------- prompts from scenes

const NUMBER_WORDS = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];

function article(word: string): string {
  return /^[aeiou]/.test(word) ? 'an' : 'a';
}

function nounPhrase(ref: ObjectRef): string {
  const words = ref.color ? `${ref.color} ${ref.shape}` : ref.shape;
  return `${article(words)} ${words}`;
}

/** The canonical wording of a prompt spec (the teacher may phrase the same spec many other ways). */
export function canonicalText(category: T2ICategory, clauses: readonly Clause[]): string {
  const c0 = clauses[0];
  switch (category) {
    case 'single_object':
    case 'colors':
    case 'two_object':
    case 'color_attr': {
      const refs = clauses.map((c) => {
        if (c.kind !== 'exists') throw new Error(`${category} prompts take 'exists' clauses, got '${c.kind}'`);
        return nounPhrase(c.object);
      });
      return refs.join(' and ');
    }
    case 'counting': {
      if (clauses.length !== 1 || c0.kind !== 'count') throw new Error(`counting prompts take one 'count' clause`);
      const n = c0.count;
      const what = c0.object.color ? `${c0.object.color} ${c0.object.shape}` : c0.object.shape;
      return `${NUMBER_WORDS[n] ?? String(n)} ${what}${n === 1 ? '' : 's'}`;
    }
    case 'position':
      if (clauses.length !== 1 || c0.kind !== 'relation') throw new Error(`position prompts take one 'relation' clause`);
      return `${nounPhrase(c0.a)} ${c0.relation} ${nounPhrase(c0.b)}`;
  }
}

export function makeT2IPrompt(category: T2ICategory, clauses: Clause[]): T2IPrompt {
  return { category, text: canonicalText(category, clauses), clauses };
}

function pick<T>(items: readonly T[], rand: () => number): T | null {
  return items.length === 0 ? null : items[Math.min(items.length - 1, Math.floor(rand() * items.length))];
}

/**
 * A prompt of the given category that the scene satisfies, or null when the scene cannot support that
 * category (e.g. two_object needs two different shapes). Which objects the prompt names is drawn with
 * `rand` so a seeded generator gives reproducible prompt sets.
 */
export function t2iPromptFromScene(scene: Scene, category: T2ICategory, rand: () => number = () => 0): T2IPrompt | null {
  const objs = scene.objects;
  const pairs: [number, number][] = [];
  for (let i = 0; i < objs.length; i++) for (let j = 0; j < objs.length; j++) if (i !== j && objs[i].shape !== objs[j].shape) pairs.push([i, j]);
  switch (category) {
    case 'single_object': {
      const o = pick(objs, rand);
      return o && makeT2IPrompt(category, [{ kind: 'exists', object: { shape: o.shape } }]);
    }
    case 'colors': {
      const o = pick(objs, rand);
      return o && makeT2IPrompt(category, [{ kind: 'exists', object: { shape: o.shape, color: o.color } }]);
    }
    case 'counting': {
      const o = pick(objs, rand);
      if (!o) return null;
      const count = objs.filter((x) => x.shape === o.shape).length;
      return makeT2IPrompt(category, [{ kind: 'count', object: { shape: o.shape }, count }]);
    }
    case 'two_object':
    case 'color_attr': {
      const p = pick(pairs, rand);
      if (!p) return null;
      const ref = (o: Scene['objects'][number]): ObjectRef => (category === 'color_attr' ? { shape: o.shape, color: o.color } : { shape: o.shape });
      return makeT2IPrompt(category, [
        { kind: 'exists', object: ref(objs[p[0]]) },
        { kind: 'exists', object: ref(objs[p[1]]) },
      ]);
    }
    case 'position': {
      const p = pick(pairs, rand);
      if (!p) return null;
      const [a, b] = [objs[p[0]], objs[p[1]]];
      const rel = pick(
        RELATIONS.filter((r) => relationHolds(a.cell, r, b.cell)),
        rand,
      );
      // Distinct cells always differ in a row or a column, so some relation holds.
      if (!rel) throw new Error('objects in distinct cells must stand in some relation');
      return makeT2IPrompt(category, [{ kind: 'relation', a: { shape: a.shape }, relation: rel, b: { shape: b.shape } }]);
    }
  }
}

/** One satisfied prompt per category the scene supports. */
export function t2iPromptsFromScene(scene: Scene, rand: () => number = () => 0): T2IPrompt[] {
  const out: T2IPrompt[] = [];
  for (const c of T2I_CATEGORIES) {
    const p = t2iPromptFromScene(scene, c, rand);
    if (p) out.push(p);
  }
  return out;
}

// ---------------------------------------------------------------- GenEval metadata

/** One `include` / `exclude` requirement of GenEval's evaluation_metadata.jsonl, with ShapeWorld shapes as classes. */
export interface GenEvalRequirement {
  class: Shape;
  count: number;
  color?: ColorName;
  /** [relation, index of the include entry it is relative to]. */
  position?: [Relation, number];
}

/** A prompt's line of GenEval's evaluation_metadata.jsonl, plus ShapeEval's own clauses (what the scorer reads back). */
export interface GenEvalMetadata {
  tag: T2ICategory;
  include: GenEvalRequirement[];
  exclude?: GenEvalRequirement[];
  prompt: string;
  clauses: Clause[];
}

/**
 * GenEval's metadata for a ShapeEval prompt (djghosh13/geneval prompts/evaluation_metadata.jsonl): `exists` is
 * `{class, count: 1[, color]}`, an exact count n is include n and exclude n + 1, and "A <relation> B" is
 * `[{class: B, count: 1}, {class: A, count: 1, position: [relation, 0]}]`, as GenEval writes positions.
 */
export function genEvalMetadata(prompt: T2IPrompt): GenEvalMetadata {
  const include: GenEvalRequirement[] = [];
  const exclude: GenEvalRequirement[] = [];
  const req = (ref: ObjectRef, count: number): GenEvalRequirement => ({ class: ref.shape, count, ...(ref.color ? { color: ref.color } : {}) });
  for (const c of prompt.clauses) {
    switch (c.kind) {
      case 'exists':
        include.push(req(c.object, 1));
        break;
      case 'count':
        include.push(req(c.object, c.count));
        exclude.push(req(c.object, c.count + 1));
        break;
      case 'relation': {
        const target = include.length;
        include.push(req(c.b, 1), { ...req(c.a, 1), position: [c.relation, target] });
        break;
      }
    }
  }
  return { tag: prompt.category, include, ...(exclude.length ? { exclude } : {}), prompt: prompt.text, clauses: prompt.clauses };
}
