/**
 * Pixel plumbing around the image encoders (sharp): any common image file -> the Janus input tensor
 * (janus-spec.md 3.3: RGB, long side to the model size with aspect kept and a 14 px minimum, bicubic, centred
 * pad to a gray square, [-1, 1] NHWC), and the reverse: a tensor in [-1, 1] -> uint8 exactly as Janus does it
 * (clip((x+1)/2*255) in float32, fraction truncated) -> PNG, plus image grids for reports.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs-core';
import { UserError } from '../errors';

/** Janus' `background_color`, used for padding and for flattening transparency. */
export const JANUS_GRAY = 127;
/** Janus' `min_size`: the short side never shrinks below this. */
export const JANUS_MIN_SIZE = 14;
/** Default decompression-bomb limit: PIL's DecompressionBombError threshold (2 x 89,478,485 pixels). */
export const DEFAULT_MAX_PIXELS = 178_956_970;

/** A bad image input (missing, empty, truncated, not an image, too many pixels); the message names the file. */
export class ImageInputError extends UserError {
  constructor(readonly file: string, reason: string) {
    super(`${file}: ${reason}`);
    this.name = 'ImageInputError';
  }
}

export interface DecodeOptions {
  /** Refuse images with more pixels than this before decoding them (default DEFAULT_MAX_PIXELS). */
  maxPixels?: number;
  /** Label used in error messages when the source is a Buffer (default 'image'). */
  name?: string;
}

export interface LoadImageOptions extends DecodeOptions {
  /** Side of the square model input (384 for Janus-Pro). */
  size: number;
  /** Minimum resized short side (default JANUS_MIN_SIZE, or `size` when that is smaller). */
  minSize?: number;
}

/** 8-bit RGB pixels, row-major, 3 bytes per pixel. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/**
 * Float32 value of each byte v, within one float32 step of (v/255 - 0.5)/0.5, chosen so that the Janus output
 * conversion trunc(((x+1)/2)*255) in float32 gives v back. The plain formula lands just below v for about a
 * third of the bytes (e.g. 1 -> 0.99999994 -> 0), which would make a PNG -> tensor -> PNG round trip lossy.
 */
const BYTE_TO_UNIT: Float32Array = (() => {
  const table = new Float32Array(256);
  const bits = new Int32Array(table.buffer);
  for (let v = 0; v < 256; v++) {
    table[v] = (v / 255 - 0.5) / 0.5;
    // One ulp towards +inf: float32 bit patterns are ordered by magnitude within a sign.
    while (unitToByte(table[v]) < v) bits[v] += table[v] >= 0 ? 1 : -1;
  }
  return table;
})();

/** Janus/numpy: clip((x + 1) / 2 * 255, 0, 255) in float32, then the uint8 assignment truncates. */
export function unitToByte(x: number): number {
  const y = Math.fround(Math.fround(Math.fround(x + 1) / 2) * 255);
  if (!(y > 0)) return 0; // also NaN
  return y >= 255 ? 255 : Math.trunc(y);
}

/** Janus resize target (width, height): long side to `size`, int-truncated short side, at least `minSize`. */
export function resizedSize(width: number, height: number, size: number, minSize = JANUS_MIN_SIZE): [number, number] {
  const long = Math.max(width, height);
  // Same float expression and truncation as Python's int(h / max_size * image_size).
  return [Math.max(Math.trunc((width / long) * size), minSize), Math.max(Math.trunc((height / long) * size), minSize)];
}

async function readSource(source: string | Buffer, label: string): Promise<Buffer> {
  if (typeof source !== 'string') return source;
  try {
    return await fs.readFile(source);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'is a directory, not an image file' : err.message;
    throw new ImageInputError(label, `cannot read the image (${why}).`);
  }
}

/**
 * Decodes an image (PNG, JPEG, WebP, GIF, TIFF, AVIF ... whatever sharp reads) to upright 8-bit RGB: EXIF
 * orientation applied, transparency flattened onto Janus gray. The pixel count is checked from the header
 * before any pixel is decoded, so a small file claiming a huge canvas costs nothing.
 */
export async function decodeImage(source: string | Buffer, opts: DecodeOptions = {}): Promise<RgbImage> {
  const label = typeof source === 'string' ? source : (opts.name ?? 'image');
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!Number.isInteger(maxPixels) || maxPixels <= 0) throw new Error(`maxPixels must be a positive integer, got ${maxPixels}.`);
  const buf = await readSource(source, label);
  if (buf.length === 0) throw new ImageInputError(label, 'the file is empty (0 bytes), not an image.');
  let meta: sharp.Metadata;
  try {
    // Header only; sharp's own pixel limit is off here so that our check below reports the real dimensions.
    meta = await sharp(buf, { limitInputPixels: false }).metadata();
  } catch (e) {
    throw new ImageInputError(label, `not a readable image (${firstLine(e)}).`);
  }
  const { width, height } = meta;
  if (!width || !height) throw new ImageInputError(label, `not a readable image (no dimensions in the ${meta.format ?? 'unknown'} header).`);
  if (width * height > maxPixels) {
    throw new ImageInputError(
      label,
      `${width}x${height} = ${width * height} pixels exceeds the limit of ${maxPixels} (decompression-bomb guard; raise maxPixels to allow it).`,
    );
  }
  try {
    const gray = { r: JANUS_GRAY, g: JANUS_GRAY, b: JANUS_GRAY };
    const { data, info } = await sharp(buf, { limitInputPixels: maxPixels, failOn: 'truncated' })
      .rotate()
      .flatten({ background: gray })
      .toColourspace('srgb')
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels instead of 3`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
  } catch (e) {
    throw new ImageInputError(label, `cannot decode the image; it may be truncated or corrupt (${firstLine(e)}).`);
  }
}

/** Bicubic (Catmull-Rom, antialiased when shrinking, like PIL's BICUBIC) resize of RGB pixels. */
export async function resizeRgb(img: RgbImage, width: number, height: number): Promise<RgbImage> {
  if (img.width === width && img.height === height) return img;
  const data = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize(width, height, { kernel: 'cubic', fit: 'fill' })
    .raw()
    .toBuffer();
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width, height };
}

/** Resized RGB pixels -> [1, size, size, 3] in [-1, 1], centred on a gray square at offset (long - short) // 2. */
export function padToSquareTensor(img: RgbImage, size: number): tf.Tensor4D {
  if (img.width > size || img.height > size) throw new Error(`padToSquareTensor: ${img.width}x${img.height} does not fit in ${size}x${size}.`);
  const out = new Float32Array(size * size * 3).fill(BYTE_TO_UNIT[JANUS_GRAY]);
  const top = Math.floor((size - img.height) / 2);
  const left = Math.floor((size - img.width) / 2);
  for (let y = 0; y < img.height; y++) {
    let o = ((top + y) * size + left) * 3;
    let i = y * img.width * 3;
    for (let x = 0; x < img.width * 3; x++) out[o++] = BYTE_TO_UNIT[img.data[i++]];
  }
  return tf.tensor4d(out, [1, size, size, 3]);
}

/** An image file or encoded buffer -> the Janus model input [1, size, size, 3] in [-1, 1]. */
export async function loadImage(source: string | Buffer, opts: LoadImageOptions): Promise<tf.Tensor4D> {
  const { size } = opts;
  // A model smaller than Janus' 14 px minimum (the micro test models) keeps its own side as the minimum.
  const minSize = opts.minSize ?? Math.min(JANUS_MIN_SIZE, size);
  if (!Number.isInteger(size) || size < 1 || size < minSize) throw new Error(`loadImage: size must be an integer >= ${minSize}, got ${size}.`);
  const img = await decodeImage(source, opts);
  const [w, h] = resizedSize(img.width, img.height, size, minSize);
  return padToSquareTensor(await resizeRgb(img, w, h), size);
}

/** One image tensor ([H, W, 3] or [1, H, W, 3], values in [-1, 1]) -> 8-bit RGB, converted as Janus does. */
export function tensorToRgb(image: tf.Tensor): RgbImage {
  const s = image.shape;
  const hw = s.length === 4 && s[0] === 1 ? s.slice(1) : s;
  if (hw.length !== 3 || hw[2] !== 3) throw new Error(`Expected one RGB image [H, W, 3] or [1, H, W, 3], got [${s.join(', ')}].`);
  const values = image.dataSync();
  const data = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) data[i] = unitToByte(values[i]);
  return { data, width: hw[1], height: hw[0] };
}

/** RGB pixels -> PNG bytes. */
export async function rgbToPng(img: RgbImage): Promise<Buffer> {
  return sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).png().toBuffer();
}

/** One image tensor in [-1, 1] -> PNG bytes. */
export async function imageToPng(image: tf.Tensor): Promise<Buffer> {
  return rgbToPng(tensorToRgb(image));
}

/** Writes one image tensor in [-1, 1] as a PNG file (parent directories created). */
export async function saveImage(image: tf.Tensor, file: string): Promise<void> {
  const png = await imageToPng(image);
  await fs.mkdir(path.dirname(path.resolve(file)), { recursive: true });
  await fs.writeFile(file, png);
}

export interface GridOptions {
  /** Pixels between cells and around the grid (default 2). */
  gap?: number;
  /** Gray level of the gaps (default 255, white). */
  background?: number;
}

/** N same-sized images ([N, H, W, 3] or a list of single images) in [-1, 1] -> one PNG, row-major, `cols` per row. */
export async function imageGrid(images: tf.Tensor4D | tf.Tensor[], cols: number, opts: GridOptions = {}): Promise<Buffer> {
  const list = Array.isArray(images) ? images.map(tensorToRgb) : unstackRgb(images);
  if (list.length === 0) throw new Error('imageGrid: no images.');
  if (!Number.isInteger(cols) || cols <= 0) throw new Error(`imageGrid: cols must be a positive integer, got ${cols}.`);
  const { width: w, height: h } = list[0];
  if (list.some((im) => im.width !== w || im.height !== h)) throw new Error('imageGrid: all images must have the same size.');
  const gap = opts.gap ?? 2;
  const c = Math.min(cols, list.length);
  const rows = Math.ceil(list.length / c);
  const W = c * w + (c + 1) * gap;
  const H = rows * h + (rows + 1) * gap;
  const canvas = new Uint8Array(W * H * 3).fill(opts.background ?? 255);
  list.forEach((im, k) => {
    const x0 = gap + (k % c) * (w + gap);
    const y0 = gap + Math.floor(k / c) * (h + gap);
    for (let y = 0; y < h; y++) canvas.set(im.data.subarray(y * w * 3, (y + 1) * w * 3), ((y0 + y) * W + x0) * 3);
  });
  return rgbToPng({ data: canvas, width: W, height: H });
}

function unstackRgb(images: tf.Tensor4D): RgbImage[] {
  const parts = tf.unstack(images);
  try {
    return parts.map(tensorToRgb);
  } finally {
    tf.dispose(parts);
  }
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0];
}
