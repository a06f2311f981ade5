/** Seeded random ShapeWorld scenes for the renderer, detector and scorer tests (1-4 objects in distinct cells). */
import { BACKGROUND_NAMES, COLOR_NAMES, Cell, SHAPES, Scene } from '../src/shapeworld/scene';

export function randomScene(rand: () => number): Scene {
  const cells = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  for (let i = cells.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [cells[i], cells[j]] = [cells[j], cells[i]];
  }
  const n = 1 + Math.floor(rand() * 4);
  return {
    background: BACKGROUND_NAMES[Math.floor(rand() * BACKGROUND_NAMES.length)],
    objects: cells.slice(0, n).map((c) => ({
      shape: SHAPES[Math.floor(rand() * SHAPES.length)],
      color: COLOR_NAMES[Math.floor(rand() * COLOR_NAMES.length)],
      cell: { row: Math.floor(c / 3), col: c % 3 } as Cell,
    })),
  };
}
