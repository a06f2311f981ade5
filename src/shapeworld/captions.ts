/**
 * ShapeWorld language: the structured meaning of a caption (PromptSpec), how it is phrased, what a scene must
 * look like to satisfy it, and the closed word list a tiny word-level tokenizer is built from.
 *
 * Grammar, kept small and regular for a model with a ~64-token text budget:
 *   caption   = [prefix] item {", " item} [" and " item] [background]
 *   item      = det [colour] shape[s] [position] | item relation item
 *   position  = ("in" | "at") " the " cellName [" corner"]       cellName = row col, e.g. "top left", "middle right";
 *                                                                 the middle cell is "center" / "middle"
 *   relation  = "to the left of" | "left of" | "on the left of" | ... | "above" | "over" | "below" | "under" | "beneath"
 * Words are lower-case ASCII separated by single spaces; the only punctuation is "," (its own token, see
 * shapeworldWords). Every word the generator can emit is in SHAPEWORLD_VOCAB.
 */
import { BACKGROUND_NAMES, BackgroundName, COLOR_NAMES, Cell, ColorName, Scene, SceneObject, SHAPES, Shape } from './scene';
import type { Rng } from '../data/rng';

export type Relation = 'left' | 'right' | 'above' | 'below';
export const RELATIONS: readonly Relation[] = ['left', 'right', 'above', 'below'];

/** "count objects of this shape (and colour) (in this cell)". A cell is only given with count 1. */
export interface Mention {
  count: number;
  shape: Shape;
  color?: ColorName;
  cell?: Cell;
}

/** mentions[a] is <relation> mentions[b]; both have count 1. */
export interface RelationSpec {
  a: number;
  b: number;
  relation: Relation;
}

/** What a caption asserts. The objects it mentions are all the objects in the image (counts are exact). */
export interface PromptSpec {
  mentions: Mention[];
  relation?: RelationSpec;
  background?: BackgroundName;
}

const NUMBER_WORDS = ['', 'one', 'two', 'three', 'four'] as const;
const ROW_WORDS = ['top', 'middle', 'bottom'] as const;
const COL_WORDS = ['left', 'center', 'right'] as const;

const PREFIXES = ['', '', '', 'a picture of ', 'an image of ', 'draw ', 'show '];
const BACKGROUND_PHRASES = ['on a # background', 'with a # background', 'over a # background'];
const RELATION_PHRASES: Record<Relation, readonly string[]> = {
  left: ['to the left of', 'left of', 'on the left of'],
  right: ['to the right of', 'right of', 'on the right of'],
  above: ['above', 'over'],
  below: ['below', 'under', 'beneath'],
};

/** Words only edit instructions use (see shapeworld_edits.ts); listed here so the vocabulary lives in one place. */
export const EDIT_WORDS = [
  'add', 'put', 'place', 'remove', 'delete', 'erase', 'take', 'out', 'replace', 'turn', 'into', 'change',
  'make', 'paint', 'color', 'set', 'use', 'move', 'shift', 'then', 'also', 'shape',
] as const;

/** Every word the ShapeWorld generator can emit, including ",", sorted; at most ~100 entries. */
export const SHAPEWORLD_VOCAB: readonly string[] = Array.from(
  new Set<string>([
    ...SHAPES,
    ...SHAPES.map((s) => `${s}s`),
    ...COLOR_NAMES,
    ...BACKGROUND_NAMES,
    ...NUMBER_WORDS.filter((w) => w !== ''),
    ...ROW_WORDS,
    ...COL_WORDS,
    ...[...PREFIXES, ...BACKGROUND_PHRASES, ...Object.values(RELATION_PHRASES).flat()].flatMap((p) => p.split(/[\s#]+/)),
    ...EDIT_WORDS,
    'a', 'an', 'the', 'in', 'at', 'corner', 'and', 'with', 'to', ',',
  ]),
)
  .filter((w) => w !== '')
  .sort();

/** The word-level tokenisation the vocabulary is defined for: lower-case words and "," as separate tokens. */
export function shapeworldWords(text: string): string[] {
  return text.toLowerCase().match(/[a-z]+|,/g) ?? [];
}

export function cellName(cell: Cell): string {
  if (cell.row === 1 && cell.col === 1) return 'center';
  return `${ROW_WORDS[cell.row]} ${COL_WORDS[cell.col]}`;
}

export function positionPhrase(cell: Cell, rng: Rng): string {
  if (cell.row === 1 && cell.col === 1) return rng.pick(['in the center', 'in the middle', 'at the center']);
  const name = cellName(cell);
  const corner = cell.row !== 1 && cell.col !== 1;
  return rng.pick(corner ? [`in the ${name}`, `at the ${name}`, `in the ${name} corner`] : [`in the ${name}`, `at the ${name}`]);
}

export function relationPhrase(relation: Relation, rng: Rng): string {
  return rng.pick(RELATION_PHRASES[relation]);
}

/** Whether object a stands in `relation` to object b on the grid (strict, one axis only). */
export function relationHolds(relation: Relation, a: Cell, b: Cell): boolean {
  switch (relation) {
    case 'left':
      return a.col < b.col;
    case 'right':
      return a.col > b.col;
    case 'above':
      return a.row < b.row;
    case 'below':
      return a.row > b.row;
  }
}

export function article(color: ColorName | undefined): string {
  return color === 'orange' ? 'an' : 'a';
}

/** "a red circle", "two squares", "one blue diamond in the top left corner". */
export function mentionPhrase(m: Mention, rng: Rng): string {
  const det = m.count === 1 ? (rng.chance(0.8) ? article(m.color) : 'one') : NUMBER_WORDS[m.count];
  const noun = m.count === 1 ? m.shape : `${m.shape}s`;
  const words = [det, ...(m.color ? [m.color] : []), noun];
  if (m.cell) words.push(positionPhrase(m.cell, rng));
  return words.join(' ');
}

/** "a red circle", "two red circles": a mention in one fixed wording, without its cell (class captions). */
export function classPhrase(m: Mention): string {
  const det = m.count === 1 ? article(m.color) : NUMBER_WORDS[m.count];
  return [det, ...(m.color ? [m.color] : []), m.count === 1 ? m.shape : `${m.shape}s`].join(' ');
}

export function joinList(items: readonly string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

/** Phrase a spec as a caption, choosing among equivalent wordings with `rng`. */
export function describeSpec(spec: PromptSpec, rng: Rng): string {
  const items: string[] = [];
  const rel = spec.relation;
  if (rel) {
    const a = mentionPhrase(spec.mentions[rel.a], rng);
    const b = mentionPhrase(spec.mentions[rel.b], rng);
    items.push(`${a} ${relationPhrase(rel.relation, rng)} ${b}`);
  }
  spec.mentions.forEach((m, i) => {
    if (!rel || (i !== rel.a && i !== rel.b)) items.push(mentionPhrase(m, rng));
  });
  let text = rng.pick(PREFIXES) + joinList(items);
  if (spec.background) text += ' ' + rng.pick(BACKGROUND_PHRASES).replace('#', spec.background);
  return text;
}

function mentionMatches(m: Mention, o: SceneObject): boolean {
  return (
    m.shape === o.shape &&
    (m.color === undefined || m.color === o.color) &&
    (m.cell === undefined || (m.cell.row === o.cell.row && m.cell.col === o.cell.col))
  );
}

/**
 * Whether `scene` satisfies `spec`: the scene's objects can be matched one-to-one to the mentioned objects
 * (counts exact, nothing unmentioned), with every stated colour, cell and relation true, and the background
 * right if stated. The evaluator's notion of a correct generation.
 */
export function specHolds(spec: PromptSpec, scene: Scene): boolean {
  if (spec.background !== undefined && spec.background !== scene.background) return false;
  // One slot per mentioned object; slot s belongs to mention owner[s].
  const owner: number[] = [];
  spec.mentions.forEach((m, i) => {
    for (let k = 0; k < m.count; k++) owner.push(i);
  });
  const objs = scene.objects;
  if (owner.length !== objs.length) return false;
  const used = new Array<boolean>(objs.length).fill(false);
  const assigned: number[] = [];
  const relOk = (): boolean => {
    const r = spec.relation;
    if (!r) return true;
    const ia = owner.indexOf(r.a);
    const ib = owner.indexOf(r.b);
    return relationHolds(r.relation, objs[assigned[ia]].cell, objs[assigned[ib]].cell);
  };
  // At most 4 objects, so exhaustive backtracking is cheap and exact.
  const search = (slot: number): boolean => {
    if (slot === owner.length) return relOk();
    for (let j = 0; j < objs.length; j++) {
      if (used[j] || !mentionMatches(spec.mentions[owner[slot]], objs[j])) continue;
      used[j] = true;
      assigned[slot] = j;
      if (search(slot + 1)) return true;
      used[j] = false;
    }
    return false;
  };
  return search(0);
}

/** Group objects into count mentions by (shape, colour) — or by shape alone when colours are not named. */
export function groupMentions(objects: readonly { shape: Shape; color: ColorName }[], withColor: boolean): Mention[] {
  const out: Mention[] = [];
  for (const o of objects) {
    const m = out.find((x) => x.shape === o.shape && (!withColor || x.color === o.color));
    if (m) m.count++;
    else out.push(withColor ? { count: 1, shape: o.shape, color: o.color } : { count: 1, shape: o.shape });
  }
  return out;
}

/**
 * Noun phrases that pick out scene.objects[index] uniquely in every scene of `scenes` (the source and, for
 * a hybrid edit, the intermediate scene), shortest kinds first. Always non-empty: colour + shape + cell is
 * unique because cells are.
 */
export function referringPhrases(target: SceneObject, scenes: readonly Scene[], rng: Rng): string[] {
  const unique = (pred: (o: SceneObject) => boolean): boolean => scenes.every((s) => s.objects.filter(pred).length === 1);
  const out: string[] = [];
  if (unique((o) => o.shape === target.shape)) out.push(`the ${target.shape}`);
  if (unique((o) => o.color === target.color)) out.push(`the ${target.color} shape`);
  if (unique((o) => o.shape === target.shape && o.color === target.color)) out.push(`the ${target.color} ${target.shape}`);
  out.push(`the ${target.color} ${target.shape} ${positionPhrase(target.cell, rng)}`);
  return out;
}
