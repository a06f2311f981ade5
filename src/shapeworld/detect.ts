/**
 * ShapeEval detector: reads a ShapeWorld-style image back into a structured scene. Palette segmentation
 * against the eight object colours, 8-connected components, shape from component geometry, cell from the
 * bounding-box centre. Written for the teacher's renders (src/shapeworld/render.ts) but tolerant of the blur,
 * anti-aliasing and speckle that a VQ decoder adds, since it is what scores generated images.
 *
 * It credits only what a ShapeWorld render could have drawn (issue 24, item 7: colour blobs of smooth noise and
 * scattered pieces of rendered shapes used to read as squares). A component is an object of a known shape only
 * when its size is the rendered object's (OBJECT_FRACTION of a cell, within tolerance), its centre sits on a
 * cell centre, and its pixels match that shape's outline fitted to its bounding box (intersection over union);
 * otherwise it is 'unknown', with the reason. The image as a whole is refused (`rejected`, and then no prompt
 * or edit holds on it) when its border is none of the four backgrounds, when the margin around the grid is not
 * clear, when too many of its pixels are neither background nor an object nor an object's anti-aliased rim
 * (noise, smears, colour gradients), or when unknown components outweigh the objects (a scene of fragments).
 */
import sharp from 'sharp';
import { BACKGROUNDS, BACKGROUND_NAMES, BackgroundName, COLORS, COLOR_NAMES, Cell, ColorName, Shape } from './scene';
import { OBJECT_FRACTION, gridLayout } from './render';

export type DetectedShape = Shape | 'unknown';

export interface DetectedObject {
  shape: DetectedShape;
  color: ColorName;
  cell: Cell;
  /** Pixel count of the component. */
  area: number;
  /** Inclusive-exclusive pixel bounding box. */
  bbox: { x: number; y: number; w: number; h: number };
  /** area / (w*h): square ~1, circle ~0.785, diamond and triangle ~0.5. */
  fill: number;
  /** Share of the area below the bbox's horizontal midline: ~0.75 for an apex-up triangle, ~0.5 otherwise. */
  bottomMass: number;
  /** Intersection over union with the outline of `shape` (for 'unknown': of the class the geometry suggested, 0 if none) fitted to the bbox. */
  outlineIoU: number;
  /** Why the component is not an object of a known shape ('unknown'), or null for a recognised object. */
  reject: string | null;
}

export interface DetectedScene {
  background: BackgroundName | 'unknown';
  /** The measured border colour, whatever its name. */
  backgroundRgb: [number, number, number];
  objects: DetectedObject[];
  width: number;
  height: number;
  /** Share of the pixels that are neither background, nor an object's (known or not), nor within an object's anti-aliased rim. */
  unexplained: number;
  /** Why the image is refused as a ShapeWorld scene (then no prompt and no edit holds on it), or null. */
  rejected: string | null;
}

export interface DetectOptions {
  /** Max RGB distance from a pixel to an object colour for it to count as that colour. */
  colorThreshold?: number;
  /** Max RGB distance from the border colour to a named background. */
  backgroundThreshold?: number;
  /** Components smaller than this fraction of a nominal object's bounding-box area are specks. */
  minAreaFraction?: number;
  /** An object's bbox sides may differ from the rendered object's side by this fraction of it. */
  sizeTolerance?: number;
  /** An object's bbox centre may sit this fraction of a cell away from the cell's centre. */
  positionTolerance?: number;
  /** Least intersection over union between an object's pixels and its shape's outline fitted to its bbox. */
  minOutlineIoU?: number;
  /** Max RGB distance from the measured background for a pixel to count as background. */
  backgroundNoise?: number;
  /** Most unexplained pixels (neither background, object nor rim) an image may have, as a share of its area. */
  maxUnexplained?: number;
  /** An image is refused when its unknown components' pixels exceed this multiple of (its recognised objects' pixels + one rendered object's bbox area). */
  maxUnknownMass?: number;
  /** Most non-background pixels the margin around the 3x3 grid may hold, as a share of the margin's area (renders hold none). */
  maxMarginNoise?: number;
}

const DEFAULTS: Required<DetectOptions> = {
  // Half the smallest palette gap (yellow-orange, ~86) would be 43; 60 still keeps every pixel's nearest
  // colour correct while accepting the colour drift a generator produces. Blends of an object colour with
  // a background (anti-aliased edges) sit >= ~95 from every other palette colour, so they are not captured.
  colorThreshold: 60,
  backgroundThreshold: 40,
  minAreaFraction: 0.15,
  // Rendered objects are OBJECT_FRACTION of a cell (12 px at 64 px); anti-aliasing, blur and a VQ decoder move
  // an edge by a pixel or two. A piece of a shape, or a shape stretched by a third, is outside.
  sizeTolerance: 0.2,
  // Renders and the shipped models' objects sit on the cell centre to within a pixel; half a cell off is not a cell.
  positionTolerance: 0.2,
  // Clean renders: >= 0.83 at 64 px (anti-aliased; jagged diagonals), >= 0.97 at 384 px; the shipped models' objects >= 0.78.
  minOutlineIoU: 0.72,
  // Uniform noise of +-25 per channel (detect.test.ts) is at most 43 from the background.
  backgroundNoise: 60,
  // The shipped models' images stay below 1.6% (a dark-green circle's rim); smooth noise is at 10-80%.
  maxUnexplained: 0.02,
  // A scene of fragments: unrecognised components outweigh the recognised objects plus one object's worth.
  maxUnknownMass: 1,
  // 36 px at 64 px. The shipped models' text-to-image samples hold at most 23 (3 of 1,656 any); images of a
  // model breaking down (janus4o-tiny at w = 5) 58-1,435, with shapes cut at the image's edge.
  maxMarginNoise: 0.02,
};

const PALETTE: readonly (readonly [number, number, number])[] = COLOR_NAMES.map((c) => COLORS[c]);
const NONE = 255;

function dist2(r: number, g: number, b: number, c: readonly number[]): number {
  const dr = r - c[0];
  const dg = g - c[1];
  const db = b - c[2];
  return dr * dr + dg * dg + db * db;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Background: per-channel median of a border ring, so objects or specks touching the edge cannot sway it. */
function measureBackground(rgb: Uint8Array, width: number, height: number): [number, number, number] {
  const ring = Math.max(1, Math.round(Math.min(width, height) / 64));
  const ch: number[][] = [[], [], []];
  for (let y = 0; y < height; y++) {
    const edgeRow = y < ring || y >= height - ring;
    for (let x = 0; x < width; x++) {
      if (!edgeRow && x >= ring && x < width - ring) continue;
      const i = (y * width + x) * 3;
      ch[0].push(rgb[i]);
      ch[1].push(rgb[i + 1]);
      ch[2].push(rgb[i + 2]);
    }
  }
  return [median(ch[0]), median(ch[1]), median(ch[2])];
}

function nameBackground(c: readonly number[], threshold: number): BackgroundName | 'unknown' {
  let best: BackgroundName | 'unknown' = 'unknown';
  let bestD = threshold * threshold;
  for (const name of BACKGROUND_NAMES) {
    const d = dist2(c[0], c[1], c[2], BACKGROUNDS[name]);
    if (d <= bestD) {
      bestD = d;
      best = name;
    }
  }
  return best;
}

/** Per-pixel palette index, or NONE where the pixel is nearer the background or far from every colour. */
function segment(rgb: Uint8Array, n: number, bg: readonly number[], threshold: number): Uint8Array {
  const labels = new Uint8Array(n).fill(NONE);
  const t2 = threshold * threshold;
  for (let p = 0; p < n; p++) {
    const r = rgb[p * 3];
    const g = rgb[p * 3 + 1];
    const b = rgb[p * 3 + 2];
    let best = NONE;
    let bestD = Infinity;
    for (let k = 0; k < PALETTE.length; k++) {
      const d = dist2(r, g, b, PALETTE[k]);
      if (d < bestD) {
        bestD = d;
        best = k;
      }
    }
    // Strictly nearer than the background: a uniform image in an object colour is all background.
    if (bestD <= t2 && bestD < dist2(r, g, b, bg)) labels[p] = best;
  }
  return labels;
}

interface Component {
  label: number;
  pixels: Int32Array;
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** Every 8-connected component of equal labels (no size floor: the caller splits objects from specks). */
function components(labels: Uint8Array, width: number, height: number): Component[] {
  const seen = new Uint8Array(labels.length);
  const stack = new Int32Array(labels.length);
  const out: Component[] = [];
  for (let start = 0; start < labels.length; start++) {
    const label = labels[start];
    if (label === NONE || seen[start]) continue;
    let top = 0;
    const pixels: number[] = [];
    stack[top++] = start;
    seen[start] = 1;
    let x0 = width;
    let y0 = height;
    let x1 = -1;
    let y1 = -1;
    while (top > 0) {
      const p = stack[--top];
      pixels.push(p);
      const x = p % width;
      const y = (p - x) / width;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if (xx < 0 || xx >= width) continue;
          const q = yy * width + xx;
          if (!seen[q] && labels[q] === label) {
            seen[q] = 1;
            stack[top++] = q;
          }
        }
      }
    }
    out.push({ label, pixels: Int32Array.from(pixels), x0, y0, x1: x1 + 1, y1: y1 + 1 });
  }
  return out;
}

/**
 * Shape from two scale-free features. Fill ratio separates square / circle / {diamond, triangle}; the
 * vertical mass balance separates the apex-up triangle (3/4 of its area in the lower half) from the
 * diamond (1/2). Anything outside the expected ranges (wrong aspect, inverted triangle, ragged blob) is
 * 'unknown' rather than forced into a class, so a malformed generation cannot pass by luck.
 */
export function classifyShape(fill: number, bottomMass: number, aspect: number): DetectedShape {
  if (aspect < 0.7 || aspect > 1 / 0.7) return 'unknown';
  if (bottomMass >= 0.64 && bottomMass <= 0.86) return fill >= 0.38 && fill <= 0.78 ? 'triangle' : 'unknown';
  if (bottomMass < 0.38 || bottomMass > 0.62) return 'unknown';
  if (fill >= 0.9) return 'square';
  if (fill >= 0.66) return 'circle';
  if (fill >= 0.38) return 'diamond';
  return 'unknown';
}

/** Whether the pixel centre (u, v), in units of the bbox (0..1 each way), lies inside the shape's outline. */
function insideOutline(shape: Shape, u: number, v: number): boolean {
  switch (shape) {
    case 'square':
      return true;
    case 'circle':
      return (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25;
    case 'diamond':
      return Math.abs(u - 0.5) + Math.abs(v - 0.5) <= 0.5;
    case 'triangle':
      // Apex up: the width grows linearly from the top to the full base.
      return Math.abs(u - 0.5) <= v / 2;
  }
}

/** Intersection over union of a component's pixels with `shape`'s outline fitted to the component's bbox. */
export function outlineIoU(shape: Shape, pixels: Int32Array, width: number, bbox: { x: number; y: number; w: number; h: number }): number {
  const { x, y, w, h } = bbox;
  const inside = new Uint8Array(w * h);
  for (let i = 0; i < pixels.length; i++) {
    const px = pixels[i] % width;
    const py = (pixels[i] - px) / width;
    inside[(py - y) * w + (px - x)] = 1;
  }
  let inter = 0;
  let union = 0;
  for (let j = 0; j < h; j++) {
    for (let i = 0; i < w; i++) {
      const t = insideOutline(shape, (i + 0.5) / w, (j + 0.5) / h) ? 1 : 0;
      const c = inside[j * w + i];
      inter += t & c;
      union += t | c;
    }
  }
  return union === 0 ? 0 : inter / union;
}

/** The cell whose centre is nearest to pixel coordinate v, and how far from that centre v is (in pixels). */
function nearestCell(v: number, extent: number): { index: 0 | 1 | 2; offset: number } {
  const { margin, cell } = gridLayout(extent);
  const i = Math.round((v - margin) / cell - 0.5);
  const index = (i < 0 ? 0 : i > 2 ? 2 : i) as 0 | 1 | 2;
  return { index, offset: v - (margin + (index + 0.5) * cell) };
}

type Tolerances = Pick<Required<DetectOptions>, 'sizeTolerance' | 'positionTolerance' | 'minOutlineIoU'>;

function describe(c: Component, width: number, height: number, tol: Tolerances): DetectedObject {
  const w = c.x1 - c.x0;
  const h = c.y1 - c.y0;
  const area = c.pixels.length;
  const mid = c.y0 + h / 2;
  let below = 0;
  for (let i = 0; i < area; i++) {
    const y = Math.floor(c.pixels[i] / width) + 0.5;
    // A pixel row straddling the midline (odd heights) counts half on each side.
    below += y > mid ? 1 : y === mid ? 0.5 : 0;
  }
  const fill = area / (w * h);
  const bottomMass = below / area;
  const bbox = { x: c.x0, y: c.y0, w, h };
  // The bbox centre, not the area centroid: the triangle's centroid sits a sixth of its height low.
  const col = nearestCell(c.x0 + w / 2, width);
  const row = nearestCell(c.y0 + h / 2, height);
  const cellW = gridLayout(width).cell;
  const cellH = gridLayout(height).cell;
  const sideW = OBJECT_FRACTION * cellW;
  const sideH = OBJECT_FRACTION * cellH;
  const geometric = classifyShape(fill, bottomMass, w / h);
  const iou = geometric === 'unknown' ? 0 : outlineIoU(geometric, c.pixels, width, bbox);
  let reject: string | null = null;
  if (w > cellW * 1.05 || h > cellH * 1.05) reject = `larger than a grid cell (${w}x${h} px)`;
  else if (Math.abs(w - sideW) > tol.sizeTolerance * sideW || Math.abs(h - sideH) > tol.sizeTolerance * sideH) {
    reject = `size ${w}x${h} px, a rendered object is ${Number(sideW.toFixed(1))}x${Number(sideH.toFixed(1))}`;
  } else if (Math.abs(col.offset) > tol.positionTolerance * cellW || Math.abs(row.offset) > tol.positionTolerance * cellH) {
    reject = `off the grid: centre ${col.offset.toFixed(1)}, ${row.offset.toFixed(1)} px from the nearest cell centre`;
  } else if (geometric === 'unknown') reject = `no shape has this outline (fill ${fill.toFixed(2)}, bottom mass ${bottomMass.toFixed(2)}, aspect ${(w / h).toFixed(2)})`;
  else if (iou < tol.minOutlineIoU) reject = `outline matches a ${geometric} only ${iou.toFixed(2)} (IoU)`;
  return {
    shape: reject === null ? geometric : 'unknown',
    color: COLOR_NAMES[c.label],
    cell: { row: row.index, col: col.index },
    area,
    bbox,
    fill,
    bottomMass,
    outlineIoU: iou,
    reject,
  };
}

/** Pixels of the margin around the 3x3 grid (gridLayout) that are not near the background colour. */
function countMarginNoise(rgb: Uint8Array, width: number, height: number, bg: readonly number[], noise: number): { count: number; area: number } {
  const mx = gridLayout(width).margin;
  const my = gridLayout(height).margin;
  const n2 = noise * noise;
  let count = 0;
  let area = 0;
  for (let y = 0; y < height; y++) {
    const inRows = y >= my && y < height - my;
    for (let x = 0; x < width; x++) {
      if (inRows && x >= mx && x < width - mx) continue;
      area++;
      if (dist2(rgb[(y * width + x) * 3], rgb[(y * width + x) * 3 + 1], rgb[(y * width + x) * 3 + 2], bg) > n2) count++;
    }
  }
  return { count, area };
}

/** Pixels neither near the background colour, nor in an object component, nor within `rim` pixels of one. */
function countUnexplained(rgb: Uint8Array, width: number, height: number, bg: readonly number[], noise: number, objects: readonly Component[], rim: number): number {
  const explained = new Uint8Array(width * height);
  for (const c of objects) {
    for (let i = 0; i < c.pixels.length; i++) {
      const p = c.pixels[i];
      const x = p % width;
      const y = (p - x) / width;
      for (let yy = Math.max(0, y - rim); yy <= Math.min(height - 1, y + rim); yy++) {
        explained.fill(1, yy * width + Math.max(0, x - rim), yy * width + Math.min(width - 1, x + rim) + 1);
      }
    }
  }
  const n2 = noise * noise;
  let count = 0;
  for (let p = 0; p < width * height; p++) {
    if (explained[p]) continue;
    if (dist2(rgb[p * 3], rgb[p * 3 + 1], rgb[p * 3 + 2], bg) > n2) count++;
  }
  return count;
}

/** Detect the objects and background of an interleaved RGB image. */
export function detectScene(rgb: Uint8Array, width: number, height: number, options: DetectOptions = {}): DetectedScene {
  if (rgb.length !== width * height * 3) {
    throw new Error(`detectScene: expected ${width * height * 3} RGB bytes for ${width}x${height}, got ${rgb.length}`);
  }
  const o = { ...DEFAULTS, ...options };
  const backgroundRgb = measureBackground(rgb, width, height);
  const background = nameBackground(backgroundRgb, o.backgroundThreshold);
  const labels = segment(rgb, width * height, backgroundRgb, o.colorThreshold);
  const side = OBJECT_FRACTION * gridLayout(Math.min(width, height)).cell;
  const minArea = Math.max(4, o.minAreaFraction * side * side);
  // Smaller components are specks: not objects, and unexplained pixels unless they touch an object's rim.
  const comps = components(labels, width, height).filter((c) => c.pixels.length >= minArea);
  const objects = comps.map((c) => describe(c, width, height, o));
  // Reading order (row, then column) so results are stable and easy to compare by eye.
  objects.sort((a, b) => a.cell.row - b.cell.row || a.cell.col - b.cell.col || a.bbox.y - b.bbox.y || a.bbox.x - b.bbox.x);
  // An anti-aliased or blurred edge is a band of blends, neither object nor background: ~1 px at 64 px, ~4 at 384.
  const rim = Math.max(1, Math.round(Math.min(width, height) / 96));
  const unexplained = countUnexplained(rgb, width, height, backgroundRgb, o.backgroundNoise, comps, rim) / (width * height);
  let known = 0;
  let unknown = 0;
  for (const d of objects) {
    if (d.shape === 'unknown') unknown += d.area;
    else known += d.area;
  }
  const margin = countMarginNoise(rgb, width, height, backgroundRgb, o.backgroundNoise);
  let rejected: string | null = null;
  if (background === 'unknown') rejected = `the border (rgb ${backgroundRgb.join(',')}) is none of the four backgrounds`;
  else if (margin.count > o.maxMarginNoise * margin.area) rejected = `${margin.count} px of the margin around the grid are not background (a ShapeWorld scene keeps it clear; at most ${Math.floor(o.maxMarginNoise * margin.area)})`;
  else if (unexplained > o.maxUnexplained) rejected = `${(100 * unexplained).toFixed(1)}% of the pixels are neither background nor an object (noise, smears or gradients; at most ${100 * o.maxUnexplained}%)`;
  else if (unknown > o.maxUnknownMass * (known + side * side)) rejected = `unrecognised fragments (${unknown} px) outweigh the recognised objects (${known} px)`;
  return { background, backgroundRgb, objects, width, height, unexplained, rejected };
}

/** Decode any image sharp reads (PNG, JPEG, ...; alpha flattened onto white) and detect its scene. */
export async function detectPng(image: Buffer, options: DetectOptions = {}): Promise<DetectedScene> {
  const { data, info } = await sharp(image)
    .flatten({ background: '#ffffff' })
    .toColourspace('srgb')
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`detectPng: expected 3 channels after decoding, got ${info.channels}`);
  return detectScene(new Uint8Array(data.buffer, data.byteOffset, data.length), info.width, info.height, options);
}
