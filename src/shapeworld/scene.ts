/**
 * The structured description of a ShapeWorld image: what the synthetic teacher draws, what scenes.jsonl
 * stores, and what the ShapeEval detector reads back. Shared contract between src/shapeworld/samples.ts and
 * src/shapeworld/detect.ts and src/shapeworld/shapeeval.ts.
 */

export const SHAPES = ['circle', 'square', 'triangle', 'diamond'] as const;
export type Shape = (typeof SHAPES)[number];

/** Eight named object colours, far apart in RGB so a palette detector separates them. */
export const COLORS = {
  red: [220, 30, 30],
  green: [30, 170, 50],
  blue: [30, 60, 220],
  yellow: [235, 215, 30],
  purple: [140, 40, 180],
  orange: [245, 130, 20],
  cyan: [30, 200, 210],
  black: [20, 20, 20],
} as const satisfies Record<string, readonly [number, number, number]>;
export type ColorName = keyof typeof COLORS;
export const COLOR_NAMES = Object.keys(COLORS) as ColorName[];

/** Background colours: light, so they never collide with object colours. */
export const BACKGROUNDS = {
  white: [250, 250, 250],
  gray: [190, 190, 190],
  beige: [240, 225, 190],
  pink: [250, 200, 210],
} as const satisfies Record<string, readonly [number, number, number]>;
export type BackgroundName = keyof typeof BACKGROUNDS;
export const BACKGROUND_NAMES = Object.keys(BACKGROUNDS) as BackgroundName[];

/** A cell of the 3x3 grid: row 0 is the top, col 0 the left. */
export interface Cell {
  row: 0 | 1 | 2;
  col: 0 | 1 | 2;
}

export interface SceneObject {
  shape: Shape;
  color: ColorName;
  cell: Cell;
}

export interface Scene {
  background: BackgroundName;
  /** 1-4 objects, each in a distinct cell. */
  objects: SceneObject[];
}
