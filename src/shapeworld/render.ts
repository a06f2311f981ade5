/**
 * ShapeWorld renderer: Scene -> SVG -> sharp -> PNG / raw RGB. The teacher (src/shapeworld/samples.ts) draws
 * training images with it and the ShapeEval detector (src/shapeworld/detect.ts) is tested against it, so the
 * geometry here is the ground truth the detector's thresholds are tuned to.
 */
import sharp from 'sharp';
import { BACKGROUNDS, COLORS, Cell, Scene, SceneObject } from './scene';

/** Object side as a fraction of the grid cell: large enough to survive 64 px, small enough to leave gaps. */
export const OBJECT_FRACTION = 0.75;

/**
 * Where the 3x3 grid sits in a size x size image: a margin of size/8 on every side and cells of size/4. At 64 px
 * that is an 8 px margin and 16 px cells, so every cell is exactly 2x2 image tokens of the 8x8 tokenizer and
 * the same object always lands on the same token pixels whichever cell it is in. The first layout (cells of
 * size/3, edges at 21.33 px) cut objects at nine different token offsets; the tokenizer then had to spend codes
 * on each, and the generator had to learn each, which kept shapes soft at this scale.
 */
export function gridLayout(size: number): { margin: number; cell: number } {
  return { margin: size / 8, cell: size / 4 };
}

export interface RenderOptions {
  /**
   * Default false: aliased edges keep every pixel an exact palette colour, so palette segmentation of a
   * ground-truth render is exact. True draws smooth edges, used to check the detector tolerates blending.
   */
  antialias?: boolean;
}

export interface RawImage {
  /** Interleaved RGB, row-major, length width*height*3. */
  data: Uint8Array;
  width: number;
  height: number;
}

function rgb(c: readonly [number, number, number]): string {
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

/** Numbers are printed with fixed precision so the SVG text (and hence the pixels) never depends on float printing quirks. */
function f(x: number): string {
  return x.toFixed(3);
}

/** Centre of a grid cell in pixel coordinates of a size x size image. */
export function cellCentre(cell: Cell, size: number): { x: number; y: number } {
  const { margin, cell: c } = gridLayout(size);
  return { x: margin + (cell.col + 0.5) * c, y: margin + (cell.row + 0.5) * c };
}

function objectSvg(o: SceneObject, size: number): string {
  const { x, y } = cellCentre(o.cell, size);
  const h = (OBJECT_FRACTION * gridLayout(size).cell) / 2;
  const fill = rgb(COLORS[o.color]);
  switch (o.shape) {
    case 'circle':
      return `<circle cx="${f(x)}" cy="${f(y)}" r="${f(h)}" fill="${fill}"/>`;
    case 'square':
      return `<rect x="${f(x - h)}" y="${f(y - h)}" width="${f(2 * h)}" height="${f(2 * h)}" fill="${fill}"/>`;
    case 'triangle':
      // Apex up, base down; the bounding box (not the area centroid) is centred on the cell centre.
      return `<polygon points="${f(x)},${f(y - h)} ${f(x + h)},${f(y + h)} ${f(x - h)},${f(y + h)}" fill="${fill}"/>`;
    case 'diamond':
      return `<polygon points="${f(x)},${f(y - h)} ${f(x + h)},${f(y)} ${f(x)},${f(y + h)} ${f(x - h)},${f(y)}" fill="${fill}"/>`;
  }
}

/** The SVG source of a scene; exposed so callers can inspect or reuse it. */
export function sceneSvg(scene: Scene, size: number, options: RenderOptions = {}): string {
  if (!Number.isInteger(size) || size < 16) throw new Error(`render size must be an integer >= 16, got ${size}`);
  const mode = options.antialias ? 'geometricPrecision' : 'crispEdges';
  const body = scene.objects.map((o) => objectSvg(o, size)).join('');
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" viewBox="0 0 ${size} ${size}" shape-rendering="${mode}">` +
    `<rect x="0" y="0" width="${size}" height="${size}" fill="${rgb(BACKGROUNDS[scene.background])}"/>` +
    body +
    `</svg>`
  );
}

function pipeline(scene: Scene, size: number, options: RenderOptions): sharp.Sharp {
  // density 72 maps one SVG unit to one pixel, so the output is exactly size x size.
  return sharp(Buffer.from(sceneSvg(scene, size, options)), { density: 72 }).removeAlpha();
}

/** Render a scene to PNG bytes (RGB, 8 bit). Same scene, size and sharp version -> same bytes. */
export async function renderScene(scene: Scene, size: number, options: RenderOptions = {}): Promise<Buffer> {
  // Fixed encoder settings: sharp's defaults could change between versions and alter the bytes.
  return pipeline(scene, size, options)
    .png({ compressionLevel: 9, adaptiveFiltering: false, palette: false })
    .toBuffer();
}

/** Render a scene to raw interleaved RGB, skipping PNG encoding (what the detector tests feed on). */
export async function renderSceneRaw(scene: Scene, size: number, options: RenderOptions = {}): Promise<RawImage> {
  const { data, info } = await pipeline(scene, size, options).raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`expected 3 channels from the renderer, got ${info.channels}`);
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}
