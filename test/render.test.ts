import sharp from 'sharp';
import seedrandom from 'seedrandom';
import { OBJECT_FRACTION, gridLayout, renderScene, renderSceneRaw, sceneSvg } from '../src/shapeworld/render';
import { BACKGROUNDS, BACKGROUND_NAMES, COLORS, COLOR_NAMES, Cell, Scene, SHAPES, Shape } from '../src/shapeworld/scene';
import { randomScene } from './scenes';


const SAMPLE: Scene = {
  background: 'beige',
  objects: [
    { shape: 'circle', color: 'red', cell: { row: 0, col: 0 } },
    { shape: 'triangle', color: 'blue', cell: { row: 1, col: 1 } },
    { shape: 'diamond', color: 'yellow', cell: { row: 2, col: 2 } },
    { shape: 'square', color: 'black', cell: { row: 0, col: 2 } },
  ],
};

/** Pixel statistics of one colour in a raw image. */
function colourStats(data: Uint8Array, width: number, rgb: readonly number[]) {
  let n = 0;
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -1;
  let y1 = -1;
  const rowWidths = new Map<number, number>();
  for (let p = 0; p < data.length / 3; p++) {
    if (data[p * 3] !== rgb[0] || data[p * 3 + 1] !== rgb[1] || data[p * 3 + 2] !== rgb[2]) continue;
    const x = p % width;
    const y = Math.floor(p / width);
    n++;
    x0 = Math.min(x0, x);
    y0 = Math.min(y0, y);
    x1 = Math.max(x1, x + 1);
    y1 = Math.max(y1, y + 1);
    rowWidths.set(y, (rowWidths.get(y) ?? 0) + 1);
  }
  return { n, x0, y0, x1, y1, rowWidths };
}

describe('renderScene', () => {
  test.each([64, 384])('is byte-deterministic and decodes to an RGB PNG of the requested size (%i px)', async (size) => {
    const a = await renderScene(SAMPLE, size);
    const b = await renderScene(JSON.parse(JSON.stringify(SAMPLE)) as Scene, size);
    expect(a.equals(b)).toBe(true);
    const meta = await sharp(a).metadata();
    expect(meta.format).toBe('png');
    expect(meta.width).toBe(size);
    expect(meta.height).toBe(size);
    expect(meta.channels).toBe(3);
  });

  test('different scenes give different bytes', async () => {
    const other: Scene = { ...SAMPLE, objects: SAMPLE.objects.map((o, i) => (i === 0 ? { ...o, color: 'green' } : o)) };
    expect((await renderScene(SAMPLE, 64)).equals(await renderScene(other, 64))).toBe(false);
    expect((await renderScene(SAMPLE, 64)).equals(await renderScene({ ...SAMPLE, background: 'gray' }, 64))).toBe(false);
  });

  test('raw output equals the decoded PNG', async () => {
    const raw = await renderSceneRaw(SAMPLE, 64);
    const { data, info } = await sharp(await renderScene(SAMPLE, 64)).raw().toBuffer({ resolveWithObject: true });
    expect([raw.width, raw.height, info.channels]).toEqual([64, 64, 3]);
    expect(Buffer.from(raw.data).equals(data)).toBe(true);
  });

  test('aliased renders use only the scene palette (64 and 384 px)', async () => {
    const rand = seedrandom('render-palette');
    for (const size of [64, 384]) {
      for (let k = 0; k < 10; k++) {
        const scene = randomScene(rand);
        const allowed = new Set([BACKGROUNDS[scene.background], ...scene.objects.map((o) => COLORS[o.color])].map((c) => c.join(',')));
        const { data } = await renderSceneRaw(scene, size);
        for (let p = 0; p < data.length; p += 3) {
          const c = `${data[p]},${data[p + 1]},${data[p + 2]}`;
          if (!allowed.has(c)) throw new Error(`pixel ${p / 3} has off-palette colour ${c} at ${size}px`);
        }
      }
    }
  });

  test('antialias option blends edges (so the detector can be tested on smooth input)', async () => {
    const { data } = await renderSceneRaw(SAMPLE, 64, { antialias: true });
    const allowed = new Set([BACKGROUNDS.beige, ...SAMPLE.objects.map((o) => COLORS[o.color])].map((c) => c.join(',')));
    let off = 0;
    for (let p = 0; p < data.length; p += 3) if (!allowed.has(`${data[p]},${data[p + 1]},${data[p + 2]}`)) off++;
    expect(off).toBeGreaterThan(20);
  });

  const expectedFill: Record<Shape, number> = { square: 1, circle: Math.PI / 4, diamond: 0.5, triangle: 0.5 };
  test.each([64, 384])('each shape sits centred in its cell at ~75%% of the cell (%i px)', async (size) => {
    const { margin, cell: cellSide } = gridLayout(size);
    const side = OBJECT_FRACTION * cellSide;
    for (const shape of SHAPES) {
      for (const cell of [{ row: 0, col: 0 }, { row: 1, col: 2 }, { row: 2, col: 1 }] as Cell[]) {
        const scene: Scene = { background: 'white', objects: [{ shape, color: 'purple', cell }] };
        const { data } = await renderSceneRaw(scene, size);
        const s = colourStats(data, size, COLORS.purple);
        const cx = margin + (cell.col + 0.5) * cellSide;
        const cy = margin + (cell.row + 0.5) * cellSide;
        expect(Math.abs((s.x0 + s.x1) / 2 - cx)).toBeLessThanOrEqual(1);
        expect(Math.abs((s.y0 + s.y1) / 2 - cy)).toBeLessThanOrEqual(1);
        expect(Math.abs(s.x1 - s.x0 - side)).toBeLessThanOrEqual(2);
        expect(Math.abs(s.y1 - s.y0 - side)).toBeLessThanOrEqual(2);
        const fill = s.n / ((s.x1 - s.x0) * (s.y1 - s.y0));
        expect(Math.abs(fill - expectedFill[shape])).toBeLessThan(size >= 384 ? 0.03 : 0.1);
        if (shape === 'triangle') {
          // Apex up: the top row is much narrower than the bottom row.
          expect(s.rowWidths.get(s.y0)!).toBeLessThan(s.rowWidths.get(s.y1 - 1)! / 3);
        }
        if (shape === 'diamond') {
          expect(s.rowWidths.get(s.y0)!).toBeLessThan(s.rowWidths.get(Math.floor((s.y0 + s.y1) / 2))! / 3);
          expect(s.rowWidths.get(s.y1 - 1)!).toBeLessThan(s.rowWidths.get(Math.floor((s.y0 + s.y1) / 2))! / 3);
        }
      }
    }
  });

  test('rejects sizes that cannot hold a 3x3 grid of objects', async () => {
    await expect(renderScene(SAMPLE, 8)).rejects.toThrow(/size/);
    await expect(renderScene(SAMPLE, 63.5)).rejects.toThrow(/size/);
    expect(() => sceneSvg(SAMPLE, 0)).toThrow(/size/);
  });

  test('SVG text does not depend on float printing', () => {
    const svg = sceneSvg(SAMPLE, 64);
    expect(svg).toContain('shape-rendering="crispEdges"');
    // 64/3 is periodic; every coordinate is printed with three decimals.
    expect(svg).not.toMatch(/\d\.\d{4,}/);
  });
});
