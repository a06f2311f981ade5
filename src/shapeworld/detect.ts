/**
 * ShapeEval detector: reads a ShapeWorld-style image back into a structured scene. Palette segmentation
 * against the eight object colours, 8-connected components, shape from component geometry, cell from the
 * bounding-box centre. Written for the teacher's renders (src/shapeworld/render.ts) but tolerant of the blur,
 * anti-aliasing and speckle that a VQ decoder adds, since it is what scores generated images.
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
}

export interface DetectedScene {
  background: BackgroundName | 'unknown';
  /** The measured border colour, whatever its name. */
  backgroundRgb: [number, number, number];
  objects: DetectedObject[];
  width: number;
  height: number;
}

export interface DetectOptions {
  /** Max RGB distance from a pixel to an object colour for it to count as that colour. */
  colorThreshold?: number;
  /** Max RGB distance from the border colour to a named background. */
  backgroundThreshold?: number;
  /** Components smaller than this fraction of a nominal object's bounding-box area are specks. */
  minAreaFraction?: number;
}

const DEFAULTS: Required<DetectOptions> = {
  // Half the smallest palette gap (yellow-orange, ~86) would be 43; 60 still keeps every pixel's nearest
  // colour correct while accepting the colour drift a generator produces. Blends of an object colour with
  // a background (anti-aliased edges) sit >= ~95 from every other palette colour, so they are not captured.
  colorThreshold: 60,
  backgroundThreshold: 40,
  minAreaFraction: 0.15,
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

function components(labels: Uint8Array, width: number, height: number, minArea: number): Component[] {
  const seen = new Uint8Array(labels.length);
  const stack = new Int32Array(labels.length);
  const out: Component[] = [];
  for (let start = 0; start < labels.length; start++) {
    const label = labels[start];
    if (label === NONE || seen[start]) continue;
    let top = 0;
    let count = 0;
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
      count++;
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
    if (count >= minArea) out.push({ label, pixels: Int32Array.from(pixels), x0, y0, x1: x1 + 1, y1: y1 + 1 });
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

function toCell(v: number, extent: number): 0 | 1 | 2 {
  const { margin, cell } = gridLayout(extent);
  const i = Math.floor((v - margin) / cell);
  return (i < 0 ? 0 : i > 2 ? 2 : i) as 0 | 1 | 2;
}

function describe(c: Component, width: number, height: number): DetectedObject {
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
  const cellW = gridLayout(width).cell;
  const cellH = gridLayout(height).cell;
  // Bigger than a grid cell cannot be one ShapeWorld object, however its outline looks.
  const tooBig = w > cellW * 1.05 || h > cellH * 1.05;
  const shape = tooBig ? 'unknown' : classifyShape(fill, bottomMass, w / h);
  return {
    shape,
    color: COLOR_NAMES[c.label],
    // The bbox centre, not the area centroid: the triangle's centroid sits a sixth of its height low.
    cell: { row: toCell(c.y0 + h / 2, height), col: toCell(c.x0 + w / 2, width) },
    area,
    bbox: { x: c.x0, y: c.y0, w, h },
    fill,
    bottomMass,
  };
}

/** Detect the objects and background of an interleaved RGB image. */
export function detectScene(rgb: Uint8Array, width: number, height: number, options: DetectOptions = {}): DetectedScene {
  if (rgb.length !== width * height * 3) {
    throw new Error(`detectScene: expected ${width * height * 3} RGB bytes for ${width}x${height}, got ${rgb.length}`);
  }
  const o = { ...DEFAULTS, ...options };
  const backgroundRgb = measureBackground(rgb, width, height);
  const labels = segment(rgb, width * height, backgroundRgb, o.colorThreshold);
  const side = OBJECT_FRACTION * gridLayout(Math.min(width, height)).cell;
  const minArea = Math.max(4, o.minAreaFraction * side * side);
  const objects = components(labels, width, height, minArea).map((c) => describe(c, width, height));
  // Reading order (row, then column) so results are stable and easy to compare by eye.
  objects.sort((a, b) => a.cell.row - b.cell.row || a.cell.col - b.cell.col || a.bbox.y - b.bbox.y || a.bbox.x - b.bbox.x);
  return { background: nameBackground(backgroundRgb, o.backgroundThreshold), backgroundRgb, objects, width, height };
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
