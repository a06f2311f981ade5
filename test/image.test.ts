import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import {
  DEFAULT_MAX_PIXELS,
  ImageInputError,
  imageGrid,
  imageToPng,
  loadImage,
  resizedSize,
  saveImage,
  unitToByte,
} from '../src/tokenizer/image';
import { presetConfig } from '../src/model/config';
import { ParamStore, numel } from '../src/model/params';
import { VQModel } from '../src/model/vq';
import { intRng } from './helpers';

let dir: string;

beforeAll(async () => {
  await initBackend('wasm');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-image-'));
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function file(name: string, data: Buffer | string): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, data);
  return p;
}

function solid(width: number, height: number, rgb: [number, number, number]): Buffer {
  const buf = Buffer.alloc(width * height * 3);
  for (let i = 0; i < width * height; i++) buf.set(rgb, i * 3);
  return buf;
}

const raw = (width: number, height: number, channels: 3 | 4 = 3) => ({ raw: { width, height, channels } });

/** Pixels of a [1, S, S, 3] tensor as bytes (the Janus output conversion); disposes the tensor. */
async function bytesOf(t: tf.Tensor): Promise<{ data: Buffer; size: number }> {
  const png = await imageToPng(t);
  t.dispose();
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  return { data, size: info.width };
}

function pixel(img: { data: Buffer; size: number }, x: number, y: number): number[] {
  const o = (y * img.size + x) * 3;
  return [img.data[o], img.data[o + 1], img.data[o + 2]];
}

/** True when every pixel of rows [y0, y1) is exactly Janus gray. */
function rowsAreGray(img: { data: Buffer; size: number }, y0: number, y1: number): boolean {
  for (let i = y0 * img.size * 3; i < y1 * img.size * 3; i++) if (img.data[i] !== 127) return false;
  return true;
}

function colsAreGray(img: { data: Buffer; size: number }, x0: number, x1: number): boolean {
  for (let y = 0; y < img.size; y++) for (let x = x0; x < x1; x++) if (pixel(img, x, y).some((v) => v !== 127)) return false;
  return true;
}

describe('image preprocessing (janus-spec 3.3)', () => {
  let tensorsBefore = 0;
  beforeEach(() => {
    tensorsBefore = tf.memory().numTensors;
  });
  afterEach(() => {
    // loadImage returns exactly one tensor and keeps nothing else.
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });

  test('8-bit PNG -> tensor -> PNG is pixel-exact at 384x384, and values are (v/255-0.5)/0.5', async () => {
    const next = intRng('png-roundtrip');
    const pixels = Buffer.alloc(384 * 384 * 3);
    for (let i = 0; i < pixels.length; i++) pixels[i] = next(256);
    // Every byte value appears, so the conversion is checked over the whole range.
    for (let v = 0; v < 256; v++) pixels[v] = v;
    const p = file('noise.png', await sharp(pixels, raw(384, 384)).png().toBuffer());
    const t = await loadImage(p, { size: 384 });
    expect(t.shape).toEqual([1, 384, 384, 3]);
    const values = t.dataSync();
    let maxErr = 0;
    for (let i = 0; i < values.length; i++) maxErr = Math.max(maxErr, Math.abs(values[i] - (pixels[i] / 255 - 0.5) / 0.5));
    expect(maxErr).toBeLessThan(2e-7);
    const back = await bytesOf(t);
    expect(Buffer.compare(back.data, pixels)).toBe(0);
  });

  test('a 640x480 JPEG becomes 384x288 centred between 48-row gray bands', async () => {
    expect(resizedSize(640, 480, 384)).toEqual([384, 288]);
    const p = file('landscape.jpg', await sharp(solid(640, 480, [200, 30, 60]), raw(640, 480)).jpeg({ quality: 95 }).toBuffer());
    const t = await loadImage(p, { size: 384 });
    const img = await bytesOf(t);
    expect(rowsAreGray(img, 0, 48)).toBe(true);
    expect(rowsAreGray(img, 336, 384)).toBe(true);
    for (const y of [48, 200, 335]) {
      for (const x of [0, 191, 383]) {
        const [r, g, b] = pixel(img, x, y);
        expect(Math.abs(r - 200) + Math.abs(g - 30) + Math.abs(b - 60)).toBeLessThan(12);
      }
    }
  });

  test('odd margins: 301x500 PNG pads left 76 / right 77 columns; a 1000x20 strip keeps the 14 px minimum', async () => {
    expect(resizedSize(301, 500, 384)).toEqual([231, 384]);
    const p = file('portrait.png', await sharp(solid(301, 500, [10, 240, 10]), raw(301, 500)).png().toBuffer());
    const img = await bytesOf(await loadImage(p, { size: 384 }));
    expect(colsAreGray(img, 0, 76)).toBe(true);
    expect(colsAreGray(img, 307, 384)).toBe(true);
    expect(pixel(img, 76, 100)).toEqual([10, 240, 10]);
    expect(pixel(img, 306, 300)).toEqual([10, 240, 10]);

    expect(resizedSize(1000, 20, 384)).toEqual([384, 14]);
    const strip = file('strip.png', await sharp(solid(1000, 20, [0, 0, 255]), raw(1000, 20)).png().toBuffer());
    const s = await bytesOf(await loadImage(strip, { size: 384 }));
    expect(rowsAreGray(s, 0, 185)).toBe(true);
    expect(rowsAreGray(s, 199, 384)).toBe(true);
    expect(pixel(s, 10, 192)).toEqual([0, 0, 255]);
  });

  test('an EXIF-rotated JPEG comes out upright', async () => {
    // Upright picture: 64 wide, 48 tall, red left half, blue right half.
    const upright = Buffer.alloc(64 * 48 * 3);
    for (let y = 0; y < 48; y++) for (let x = 0; x < 64; x++) upright.set(x < 32 ? [255, 0, 0] : [0, 0, 255], (y * 64 + x) * 3);
    // Stored sideways (rotated 90 degrees counter-clockwise) with orientation 6 = "rotate 90 CW to display".
    const stored = await sharp(upright, raw(64, 48)).rotate(270).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
    const meta = await sharp(stored).metadata();
    expect([meta.width, meta.height, meta.orientation]).toEqual([48, 64, 6]);
    const img = await bytesOf(await loadImage(file('rotated.jpg', stored), { size: 64 }));
    // Upright is landscape: gray bands top and bottom (8 rows each), red on the left, blue on the right.
    expect(rowsAreGray(img, 0, 8)).toBe(true);
    expect(rowsAreGray(img, 56, 64)).toBe(true);
    const [lr, , lb] = pixel(img, 8, 32);
    const [rr, , rb] = pixel(img, 56, 32);
    expect(lr).toBeGreaterThan(200);
    expect(lb).toBeLessThan(50);
    expect(rb).toBeGreaterThan(200);
    expect(rr).toBeLessThan(50);
  });

  test('alpha is flattened onto (127,127,127); WebP and grayscale inputs load as RGB', async () => {
    const rgba = Buffer.alloc(16 * 16 * 4);
    for (let i = 0; i < 256; i++) rgba.set([255, 0, 0, i < 128 ? 0 : 255], i * 4);
    const img = await bytesOf(await loadImage(file('alpha.png', await sharp(rgba, raw(16, 16, 4)).png().toBuffer()), { size: 16 }));
    expect(pixel(img, 3, 2)).toEqual([127, 127, 127]);
    expect(pixel(img, 3, 12)).toEqual([255, 0, 0]);

    const webp = await sharp(solid(20, 20, [30, 60, 90]), raw(20, 20)).webp({ lossless: true }).toBuffer();
    expect(pixel(await bytesOf(await loadImage(webp, { size: 20, name: 'buffer.webp' })), 5, 5)).toEqual([30, 60, 90]);

    const grey = await sharp(Buffer.alloc(20 * 20, 200), { raw: { width: 20, height: 20, channels: 1 } }).png().toBuffer();
    expect(pixel(await bytesOf(await loadImage(grey, { size: 20 })), 7, 7)).toEqual([200, 200, 200]);
  });
});

describe('bad input gives a clear error naming the file', () => {
  /** A PNG whose header claims width x height, with almost no pixel data behind it. */
  function pngHeader(width: number, height: number): Buffer {
    const chunk = (type: string, data: Buffer) => {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(data.length);
      const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
      const crc = Buffer.alloc(4);
      crc.writeUInt32BE(zlib.crc32(body) >>> 0);
      return Buffer.concat([len, body, crc]);
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(width, 0);
    ihdr.writeUInt32BE(height, 4);
    ihdr[8] = 8; // bit depth
    ihdr[9] = 2; // RGB
    const sig = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);
    return Buffer.concat([sig, chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(Buffer.alloc(1024))), chunk('IEND', Buffer.alloc(0))]);
  }

  async function failure(p: string, opts: { maxPixels?: number } = {}): Promise<ImageInputError> {
    const started = Date.now();
    const before = tf.memory().numTensors;
    let caught: unknown = null;
    try {
      await loadImage(p, { size: 64, ...opts });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(ImageInputError);
    expect((caught as Error).message).toContain(p);
    expect(Date.now() - started).toBeLessThan(10000);
    expect(tf.memory().numTensors).toBe(before);
    return caught as ImageInputError;
  }

  test('truncated PNG, zero-byte file, text named .png, missing file', async () => {
    const good = await sharp(solid(96, 96, [1, 2, 3]).map((_, i) => (i * 37) % 256), raw(96, 96)).png().toBuffer();
    expect((await failure(file('truncated.png', good.subarray(0, good.length >> 1)))).message).toMatch(/truncated|corrupt/);
    expect((await failure(file('empty.png', Buffer.alloc(0)))).message).toMatch(/empty \(0 bytes\)/);
    expect((await failure(file('notes.png', 'these are notes, not pixels\n'))).message).toMatch(/not a readable image/);
    expect((await failure(path.join(dir, 'missing.png'))).message).toMatch(/no such file/);
  });

  test('decompression-bomb guard: a 20000x20000 header is refused before decoding; the limit is configurable', async () => {
    const bomb = file('bomb.png', pngHeader(20000, 20000));
    expect(fs.statSync(bomb).size).toBeLessThan(2000);
    const e = await failure(bomb);
    expect(e.message).toContain('20000x20000');
    expect(e.message).toContain(String(DEFAULT_MAX_PIXELS));
    const small = file('small.png', await sharp(solid(100, 100, [9, 9, 9]), raw(100, 100)).png().toBuffer());
    expect((await failure(small, { maxPixels: 5000 })).message).toMatch(/exceeds the limit of 5000/);
    const ok = await loadImage(small, { size: 64, maxPixels: 10000 });
    expect(ok.shape).toEqual([1, 64, 64, 3]);
    ok.dispose();
  });
});

describe('tensor -> PNG', () => {
  test('clip((x+1)/2*255) with the fraction truncated, as numpy uint8 assignment does', async () => {
    // 12.9 -> 12 (not rounded to 13); out-of-range values clip; NaN becomes 0.
    const x = (v: number) => (v / 255) * 2 - 1;
    expect(unitToByte(x(12.9))).toBe(12);
    expect(unitToByte(-1.5)).toBe(0);
    expect(unitToByte(1.5)).toBe(255);
    expect(unitToByte(Number.NaN)).toBe(0);
    const t = tf.tensor4d([x(12.9), x(200.99), -3, 1, 0, NaN], [1, 1, 2, 3]);
    const { data } = await sharp(await imageToPng(t)).raw().toBuffer({ resolveWithObject: true });
    expect(Array.from(data)).toEqual([12, 200, 0, 255, 127, 0]);
    t.dispose();
  });

  test('saveImage writes a decodable PNG; imageGrid lays images out row-major with gaps', async () => {
    const imgs = tf.tidy(() => tf.stack([-1, 0, 1].map((v) => tf.fill([4, 4, 3], v))) as tf.Tensor4D);
    const out = path.join(dir, 'nested', 'dir', 'one.png');
    const one = tf.slice(imgs, [2, 0, 0, 0], [1, 4, 4, 3]);
    await saveImage(one, out);
    expect(pixel({ data: (await sharp(out).raw().toBuffer()) as Buffer, size: 4 }, 1, 1)).toEqual([255, 255, 255]);
    const before = tf.memory().numTensors;
    const grid = await imageGrid(imgs, 2, { gap: 1, background: 50 });
    expect(tf.memory().numTensors).toBe(before);
    const { data, info } = await sharp(grid).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([2 * 4 + 3, 2 * 4 + 3]);
    const g = { data, size: info.width };
    expect(pixel(g, 0, 0)).toEqual([50, 50, 50]);
    expect(pixel(g, 1, 1)).toEqual([0, 0, 0]); // image 0 at (1,1)
    expect(pixel(g, 6, 1)).toEqual([127, 127, 127]); // image 1 at (6,1)
    expect(pixel(g, 1, 6)).toEqual([255, 255, 255]); // image 2 starts the second row
    expect(pixel(g, 6, 6)).toEqual([50, 50, 50]); // empty cell
    tf.dispose([imgs, one]);
  });
});

describe('end to end at Janus-Pro size', () => {
  /** Fast deterministic weights (the seeded materialize() takes ~10 s for 72M values): +-1/sqrt(fan_in), GN at identity. */
  function quickInit(store: ParamStore): void {
    let state = 12345;
    for (const spec of store.list()) {
      const data = new Float32Array(numel(spec.shape));
      if (spec.name.endsWith('.weight') && spec.shape.length === 1) data.fill(1);
      else if (spec.shape.length > 1) {
        const fanIn = spec.layout === 'conv2d' ? spec.shape[0] * spec.shape[1] * spec.shape[2] : spec.shape[spec.shape.length - 1];
        const limit = 1 / Math.sqrt(fanIn);
        for (let i = 0; i < data.length; i++) {
          state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
          data[i] = (state / 2 ** 32 - 0.5) * 2 * limit;
        }
      }
      store.setValue(spec.name, data);
    }
  }

  // The real Janus-Pro VQ-16 (72M parameters, ~75 s of CPU on this machine): the slowest test of the suite,
  // kept because it is the only one that runs the preset's full widths end to end.
  test('640x480 JPEG -> loadImage -> Janus-Pro VQ-16 -> 576 ids -> 1x384x384x3 -> 384x384 PNG', async () => {
    const store = new ParamStore();
    const vq = new VQModel(store, presetConfig('janus-pro-1b'));
    quickInit(store);
    const src = file('e2e.jpg', await sharp(solid(640, 480, [40, 160, 220]), raw(640, 480)).jpeg().toBuffer());
    const before = tf.memory().numTensors;
    const x = await loadImage(src, { size: 384 });
    const ids = vq.encode(x);
    expect(ids.shape).toEqual([1, 576]);
    const idv = ids.dataSync();
    expect(Math.min(...idv)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...idv)).toBeLessThan(16384);
    const y = vq.decode(ids);
    expect(y.shape).toEqual([1, 384, 384, 3]);
    const png = await imageToPng(y);
    const meta = await sharp(png).metadata();
    expect([meta.width, meta.height, meta.channels]).toEqual([384, 384, 3]);
    tf.dispose([x, ids, y]);
    expect(tf.memory().numTensors).toBe(before);
    store.dispose();
  }, 600000);
});
