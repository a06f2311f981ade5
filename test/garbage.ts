/**
 * Garbage images for the ShapeEval scorer (issue 24, item 7): what a generator whose images break down might
 * draw. A scorer that credits these credits garbage.
 *  - smoothNoise: value noise, random node colours (uniform RGB, palette and background colours, or palette
 *    blobs on a background) blended smoothly between nodes 7-64 px apart.
 *  - randomTiles: pieces of rendered ShapeWorld scenes, on one background: token-sized tiles (8x8 at 64 px) of
 *    random scenes dropped at random token slots; random rectangular crops scattered off the grid; and broken
 *    shapes (a rendered shape cut in two with its halves apart, or stretched).
 * Everything is a pure function of the seed string.
 */
import seedrandom from 'seedrandom';
import sharp from 'sharp';
import { RawImage, renderSceneRaw } from '../src/shapeworld/render';
import { BACKGROUNDS, BACKGROUND_NAMES, COLORS, COLOR_NAMES, Cell, Scene, SHAPES } from '../src/shapeworld/scene';
import { randomScene } from './scenes';

type Rand = () => number;
const int = (rand: Rand, n: number) => Math.floor(rand() * n);
const pickOf = <T>(rand: Rand, xs: readonly T[]): T => xs[int(rand, xs.length)];

function blank(size: number, rgb: readonly number[]): RawImage {
  const data = new Uint8Array(size * size * 3);
  for (let p = 0; p < size * size; p++) data.set(rgb, p * 3);
  return { data, width: size, height: size };
}

const smooth = (t: number) => t * t * (3 - 2 * t);

/** One smooth-noise image: a g x g lattice of colours, blended (smoothstep-bilinear) across the image. */
export function smoothNoiseImage(rand: Rand, size = 64): RawImage {
  const g = 2 + int(rand, 9); // 2..10 nodes a side: blobs from a whole image down to ~7 px apart at 64 px
  const mode = int(rand, 3);
  const bg = BACKGROUNDS[pickOf(rand, BACKGROUND_NAMES)];
  const palette = [...COLOR_NAMES.map((c) => COLORS[c]), ...BACKGROUND_NAMES.map((b) => BACKGROUNDS[b])];
  const nodes: number[][] = [];
  for (let k = 0; k < g * g; k++) {
    if (mode === 0) nodes.push([int(rand, 256), int(rand, 256), int(rand, 256)]);
    else if (mode === 1) nodes.push([...pickOf(rand, palette)]);
    else nodes.push(rand() < 0.65 ? [...bg] : [...COLORS[pickOf(rand, COLOR_NAMES)]]);
  }
  // Lattice offset so nodes do not always fall on the same pixels.
  const step = (size - 1) / (g - 1);
  const data = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    const fy = Math.min(g - 1 - 1e-9, y / step);
    const iy = Math.floor(fy);
    const ty = smooth(fy - iy);
    for (let x = 0; x < size; x++) {
      const fx = Math.min(g - 1 - 1e-9, x / step);
      const ix = Math.floor(fx);
      const tx = smooth(fx - ix);
      const a = nodes[iy * g + ix];
      const b = nodes[iy * g + ix + 1];
      const c = nodes[(iy + 1) * g + ix];
      const d = nodes[(iy + 1) * g + ix + 1];
      for (let ch = 0; ch < 3; ch++) {
        const v = (a[ch] * (1 - tx) + b[ch] * tx) * (1 - ty) + (c[ch] * (1 - tx) + d[ch] * tx) * ty;
        data[(y * size + x) * 3 + ch] = Math.round(v);
      }
    }
  }
  return { data, width: size, height: size };
}

function copyRect(dst: RawImage, src: RawImage, sx: number, sy: number, w: number, h: number, dx: number, dy: number, keep?: (x: number, y: number) => boolean): void {
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const X = dx + x;
      const Y = dy + y;
      const SX = sx + x;
      const SY = sy + y;
      if (X < 0 || Y < 0 || X >= dst.width || Y >= dst.height || SX < 0 || SY < 0 || SX >= src.width || SY >= src.height) continue;
      if (keep && !keep(x, y)) continue;
      const s = (SY * src.width + SX) * 3;
      dst.data.set(src.data.subarray(s, s + 3), (Y * dst.width + X) * 3);
    }
  }
}

/** Renders of random scenes on one background (the raw material of the tile images). */
async function sources(rand: Rand, background: Scene['background'], size: number, n: number): Promise<RawImage[]> {
  const scenes = Array.from({ length: n }, () => {
    const s = randomScene(rand);
    // Fuller scenes: more object pixels to cut from.
    const extra = randomScene(rand).objects.filter((o) => !s.objects.some((p) => p.cell.row === o.cell.row && p.cell.col === o.cell.col));
    return { background, objects: [...s.objects, ...extra] };
  });
  return Promise.all(scenes.map((s) => renderSceneRaw(s, size)));
}

/** One random-tile image: ShapeWorld pieces on a ShapeWorld background, none of them a whole object in a cell. */
export async function randomTileImage(rand: Rand, size = 64): Promise<RawImage> {
  const background = pickOf(rand, BACKGROUND_NAMES);
  const img = blank(size, BACKGROUNDS[background]);
  const src = await sources(rand, background, size, 3);
  const tile = size / 8;
  const mode = int(rand, 3);
  if (mode === 0) {
    // Token tiles: every slot of the inner 6x6 token grid gets, with probability p, a random tile of a random source.
    const p = 0.3 + 0.6 * rand();
    for (let ty = 1; ty < 7; ty++) {
      for (let tx = 1; tx < 7; tx++) {
        if (rand() >= p) continue;
        const s = pickOf(rand, src);
        copyRect(img, s, (1 + int(rand, 6)) * tile, (1 + int(rand, 6)) * tile, tile, tile, tx * tile, ty * tile);
      }
    }
  } else if (mode === 1) {
    // Rectangular crops, 3-24 px at 64 (scaled), from anywhere in a source, pasted anywhere.
    const n = 3 + int(rand, 10);
    const unit = size / 64;
    for (let k = 0; k < n; k++) {
      const s = pickOf(rand, src);
      const w = Math.round((3 + int(rand, 22)) * unit);
      const h = Math.round((3 + int(rand, 22)) * unit);
      copyRect(img, s, int(rand, size - w), int(rand, size - h), w, h, int(rand, size - w), int(rand, size - h));
    }
  } else {
    // Broken shapes: a source cell (one object), cut along a random line; the two parts land apart, or the
    // object is stretched. Several per image.
    const n = 2 + int(rand, 4);
    const cell = size / 4;
    for (let k = 0; k < n; k++) {
      const s = pickOf(rand, src);
      const c: Cell = { row: int(rand, 3) as Cell['row'], col: int(rand, 3) as Cell['col'] };
      const sx = Math.round(size / 8 + c.col * cell);
      const sy = Math.round(size / 8 + c.row * cell);
      const dx = int(rand, size - cell);
      const dy = int(rand, size - cell);
      const kind = int(rand, 3);
      if (kind === 0) {
        // Halves apart: split at a random row or column, the second half shifted.
        const vertical = rand() < 0.5;
        const at = 3 + int(rand, cell - 6);
        const shift = (2 + int(rand, 6)) * (size / 64);
        copyRect(img, s, sx, sy, cell, cell, dx, dy, (x, y) => (vertical ? x < at : y < at));
        copyRect(img, s, sx, sy, cell, cell, dx + (vertical ? shift : 0), dy + (vertical ? 0 : shift), (x, y) => (vertical ? x >= at : y >= at));
      } else if (kind === 1) {
        // Stretched 1.3-2x along one axis (nearest neighbour), cropped to the image.
        const fx = rand() < 0.5 ? 1.3 + 0.7 * rand() : 1;
        const fy = fx === 1 ? 1.3 + 0.7 * rand() : 1;
        for (let y = 0; y < Math.round(cell * fy); y++) {
          for (let x = 0; x < Math.round(cell * fx); x++) {
            copyRect(img, s, sx + Math.floor(x / fx), sy + Math.floor(y / fy), 1, 1, dx + x, dy + y);
          }
        }
      } else {
        // Quarters of four different cells assembled into one cell-sized tile.
        for (let q = 0; q < 4; q++) {
          const qs = pickOf(rand, src);
          const qc = { row: int(rand, 3), col: int(rand, 3) };
          const h = cell / 2;
          const ox = (q % 2) * h;
          const oy = Math.floor(q / 2) * h;
          copyRect(img, qs, Math.round(size / 8 + qc.col * cell + ox), Math.round(size / 8 + qc.row * cell + oy), h, h, dx + ox, dy + oy);
        }
      }
    }
  }
  return img;
}

export async function smoothNoiseSet(seed: string, n: number, size = 64): Promise<RawImage[]> {
  const rand = seedrandom(`smooth-noise:${seed}`);
  return Array.from({ length: n }, () => smoothNoiseImage(rand, size));
}

export async function randomTileSet(seed: string, n: number, size = 64): Promise<RawImage[]> {
  const rand = seedrandom(`random-tiles:${seed}`);
  const out: RawImage[] = [];
  for (let k = 0; k < n; k++) out.push(await randomTileImage(rand, size));
  return out;
}

/** PNG of a raw image (to look at a set, or to feed detectPng). */
export function rawToPng(img: RawImage): Promise<Buffer> {
  return sharp(Buffer.from(img.data), { raw: { width: img.width, height: img.height, channels: 3 } }).png().toBuffer();
}

export { SHAPES };
