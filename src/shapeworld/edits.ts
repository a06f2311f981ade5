/**
 * ShapeWorld edits, in categories modelled on ImgEdit: add, remove, replace (shape), adjust (colour),
 * background, move, and hybrid (two edits of different kinds in one instruction). Each edit is a structured
 * op applied to a Scene, plus an instruction phrased against the source image.
 *
 * An op's `target` indexes the objects of the scene that op is applied to (for a hybrid's second op that is
 * the intermediate scene, after the first op). A referring phrase is unique in the source scene, and for a
 * hybrid's second op also in the intermediate scene, and the second op never touches what the first one
 * changed, so the instruction means one thing whichever scene the reader resolves it against.
 */
import { BACKGROUND_NAMES, BackgroundName, COLOR_NAMES, Cell, ColorName, Scene, SceneObject, SHAPES, Shape } from './scene';
import type { Rng } from '../data/rng';
import { article, cellName, positionPhrase, referringPhrases } from './captions';

export const EDIT_CATEGORIES = ['add', 'remove', 'replace', 'adjust', 'background', 'move', 'hybrid'] as const;
export type EditCategory = (typeof EDIT_CATEGORIES)[number];
export type SingleEditCategory = Exclude<EditCategory, 'hybrid'>;
const SINGLE: readonly SingleEditCategory[] = ['add', 'remove', 'replace', 'adjust', 'background', 'move'];

export type EditOp =
  | { op: 'add'; object: SceneObject }
  | { op: 'remove'; target: number }
  | { op: 'replace'; target: number; shape: Shape }
  | { op: 'adjust'; target: number; color: ColorName }
  | { op: 'background'; background: BackgroundName }
  | { op: 'move'; target: number; cell: Cell };

export interface EditSample {
  category: EditCategory;
  /** One op, or two for a hybrid, applied in order. */
  ops: EditOp[];
  instruction: string;
  source: Scene;
  target: Scene;
}

export const MAX_OBJECTS = 4;

export const ALL_CELLS: readonly Cell[] = ([0, 1, 2] as const).flatMap((row) => ([0, 1, 2] as const).map((col) => ({ row, col })));

export function cloneScene(s: Scene): Scene {
  return { background: s.background, objects: s.objects.map((o) => ({ shape: o.shape, color: o.color, cell: { row: o.cell.row, col: o.cell.col } })) };
}

export function freeCells(scene: Scene): Cell[] {
  return ALL_CELLS.filter((c) => !scene.objects.some((o) => o.cell.row === c.row && o.cell.col === c.col));
}

function checkTarget(scene: Scene, i: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= scene.objects.length) throw new Error(`edit target ${i} is not an object of the scene`);
}

/** The scene after `op`; the input is not modified. Throws on an op that would break the Scene contract. */
export function applyEdit(scene: Scene, op: EditOp): Scene {
  const s = cloneScene(scene);
  switch (op.op) {
    case 'add':
      if (s.objects.length >= MAX_OBJECTS) throw new Error('add: the scene already has 4 objects');
      if (!freeCells(s).some((c) => c.row === op.object.cell.row && c.col === op.object.cell.col)) throw new Error('add: cell is taken');
      s.objects.push(cloneScene({ background: s.background, objects: [op.object] }).objects[0]);
      break;
    case 'remove':
      checkTarget(s, op.target);
      if (s.objects.length <= 1) throw new Error('remove: a scene keeps at least one object');
      s.objects.splice(op.target, 1);
      break;
    case 'replace':
      checkTarget(s, op.target);
      s.objects[op.target].shape = op.shape;
      break;
    case 'adjust':
      checkTarget(s, op.target);
      s.objects[op.target].color = op.color;
      break;
    case 'background':
      s.background = op.background;
      break;
    case 'move':
      checkTarget(s, op.target);
      if (!freeCells(s).some((c) => c.row === op.cell.row && c.col === op.cell.col)) throw new Error('move: cell is taken');
      s.objects[op.target].cell = { row: op.cell.row, col: op.cell.col };
      break;
  }
  return s;
}

export function applyEdits(scene: Scene, ops: readonly EditOp[]): Scene {
  return ops.reduce(applyEdit, scene);
}

function movePhrase(cell: Cell, rng: Rng): string {
  if (cell.row === 1 && cell.col === 1) return rng.pick(['to the center', 'to the middle']);
  const corner = cell.row !== 1 && cell.col !== 1;
  return rng.pick(corner ? [`to the ${cellName(cell)}`, `to the ${cellName(cell)} corner`] : [`to the ${cellName(cell)}`]);
}

interface Drafted {
  op: EditOp;
  text: string;
  /** Index in the resulting scene of the object the op changed or created; -1 for none. */
  touched: number;
}

/**
 * Draft one op of `kind` on `scene`, or null if it cannot apply. Targets come from `candidates` (indices into
 * `scene`); referring phrases must be unique in every scene of `refScenes`.
 */
function draft(kind: SingleEditCategory, scene: Scene, candidates: number[], refScenes: Scene[], rng: Rng): Drafted | null {
  const n = scene.objects.length;
  if (kind === 'add') {
    if (n >= MAX_OBJECTS) return null;
    const object: SceneObject = { shape: rng.pick(SHAPES), color: rng.pick(COLOR_NAMES), cell: rng.pick(freeCells(scene)) };
    const what = `${article(object.color)} ${object.color} ${object.shape}`;
    return { op: { op: 'add', object }, text: `${rng.pick(['add', 'put', 'place'])} ${what} ${positionPhrase(object.cell, rng)}`, touched: n };
  }
  if (kind === 'background') {
    const background = rng.pick(BACKGROUND_NAMES.filter((b) => b !== scene.background));
    const text = rng.pick([
      `change the background to ${background}`,
      `make the background ${background}`,
      `set the background to ${background}`,
      `use a ${background} background`,
    ]);
    return { op: { op: 'background', background }, text, touched: -1 };
  }
  if (candidates.length === 0 || (kind === 'remove' && n <= 1)) return null;
  const target = rng.pick(candidates);
  const obj = scene.objects[target];
  const ref = rng.pick(referringPhrases(obj, refScenes, rng));
  switch (kind) {
    case 'remove': {
      const text = rng.pick([`remove ${ref}`, `delete ${ref}`, `erase ${ref}`, `take out ${ref}`]);
      return { op: { op: 'remove', target }, text, touched: -1 };
    }
    case 'replace': {
      const shape = rng.pick(SHAPES.filter((s) => s !== obj.shape));
      const text = rng.pick([
        `replace ${ref} with ${article(obj.color)} ${obj.color} ${shape}`,
        `turn ${ref} into a ${shape}`,
        `change ${ref} into a ${shape}`,
        `make ${ref} a ${shape}`,
      ]);
      return { op: { op: 'replace', target, shape }, text, touched: target };
    }
    case 'adjust': {
      const color = rng.pick(COLOR_NAMES.filter((c) => c !== obj.color));
      const text = rng.pick([`make ${ref} ${color}`, `change ${ref} to ${color}`, `paint ${ref} ${color}`, `color ${ref} ${color}`, `turn ${ref} ${color}`]);
      return { op: { op: 'adjust', target, color }, text, touched: target };
    }
    case 'move': {
      const cell = rng.pick(freeCells(scene));
      const text = rng.pick([`move ${ref} ${movePhrase(cell, rng)}`, `shift ${ref} ${movePhrase(cell, rng)}`, `put ${ref} ${positionPhrase(cell, rng)}`]);
      return { op: { op: 'move', target, cell }, text, touched: target };
    }
  }
}

const all = (scene: Scene): number[] => scene.objects.map((_, i) => i);

/** Draw an edit of `source`: a category uniformly among those that apply, then its op(s) and wording. */
export function sampleEdit(source: Scene, rng: Rng, category?: EditCategory): EditSample {
  for (;;) {
    const kind = category ?? rng.pick(EDIT_CATEGORIES);
    if (kind !== 'hybrid') {
      const d = draft(kind, source, all(source), [source], rng);
      if (!d) {
        if (category) throw new Error(`edit category ${category} does not apply to this scene`);
        continue;
      }
      return { category: kind, ops: [d.op], instruction: d.text, source: cloneScene(source), target: applyEdit(source, d.op) };
    }
    const k1 = rng.pick(SINGLE);
    const first = draft(k1, source, all(source), [source], rng);
    if (!first) continue;
    const mid = applyEdit(source, first.op);
    // The second op only sees objects the first left as they were, so its referring phrase means the same
    // object in the source image the instruction is read against.
    const untouched = all(mid).filter((i) => i !== first.touched);
    const options = SINGLE.filter((k) => k !== k1);
    const k2 = rng.pick(options);
    const second = draft(k2, mid, untouched, [source, mid], rng);
    if (!second) continue;
    const instruction = rng.pick([`${first.text} and ${second.text}`, `${first.text}, then ${second.text}`, `${first.text} and also ${second.text}`]);
    return { category: 'hybrid', ops: [first.op, second.op], instruction, source: cloneScene(source), target: applyEdit(mid, second.op) };
  }
}
