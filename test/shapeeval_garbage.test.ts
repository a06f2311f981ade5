/**
 * Issue 24, item 7: the ShapeEval scorer must not credit garbage. Smooth noise and scattered pieces of rendered
 * ShapeWorld scenes (test/garbage.ts), scored as answers to the ShapeEval text-to-image prompts, used to be
 * judged correct for 15% and 10% of (image, prompt) pairs here (colour blobs and cut-out rectangles read as
 * squares); now <= 2% (in fact ~0%), while clean renders of the same prompts stay 100% correct.
 */
import { RawImage, renderSceneRaw } from '../src/shapeworld/render';
import { BACKGROUNDS, COLORS, Scene } from '../src/shapeworld/scene';
import { DetectedScene, detectScene, outlineIoU } from '../src/shapeworld/detect';
import { T2I_CATEGORIES, T2ICategory, checkEdit, makeT2IPrompt, scoreT2I } from '../src/shapeworld/shapeeval';
import { EvalT2IItem, shapeEvalEdits, shapeEvalT2IPrompts } from '../src/shapeworld/shapeeval_run';
import { randomTileSet, smoothNoiseSet } from './garbage';

const detect = (img: RawImage): DetectedScene => detectScene(img.data, img.width, img.height);

/** The acceptance prompt set's shape: seed 0, 34 prompts per category. */
const prompts: EvalT2IItem[] = shapeEvalT2IPrompts(0, 34);

interface Rates {
  /** Share of (image, prompt) pairs judged correct. */
  pairs: number;
  /** Share of images judged correct for the prompt they are assigned (image k: prompt k*2 mod 204, spread over the categories). */
  assigned: number;
  /** The worst category's pair rate. */
  worstCategory: number;
}

function garbageRates(images: readonly RawImage[]): Rates {
  const ok = new Map<T2ICategory, { ok: number; n: number }>(T2I_CATEGORIES.map((c) => [c, { ok: 0, n: 0 }]));
  let assigned = 0;
  images.forEach((img, k) => {
    const d = detect(img);
    for (const p of prompts) {
      const s = ok.get(p.category)!;
      s.n++;
      if (scoreT2I(p.prompt, d)) s.ok++;
    }
    if (scoreT2I(prompts[(k * 2) % prompts.length].prompt, d)) assigned++;
  });
  const all = [...ok.values()];
  return {
    pairs: all.reduce((a, s) => a + s.ok, 0) / all.reduce((a, s) => a + s.n, 0),
    assigned: assigned / images.length,
    worstCategory: Math.max(...all.map((s) => s.ok / s.n)),
  };
}

describe('garbage is not credited', () => {
  test.each([
    ['smooth noise', smoothNoiseSet],
    ['random ShapeWorld tiles', randomTileSet],
  ])('%s: 100 images at 64 px, <= 2%% judged correct (two seeds)', async (_name, make) => {
    for (const seed of ['0', '1']) {
      const r = garbageRates(await make(seed, 100));
      expect(r.pairs).toBeLessThanOrEqual(0.02);
      expect(r.assigned).toBeLessThanOrEqual(0.02);
      expect(r.worstCategory).toBeLessThanOrEqual(0.05);
    }
  });
});

describe('clean renders of ShapeEval scenes stay 100% correct', () => {
  test.each([
    [64, false, 204],
    [64, true, 204],
    [128, false, 60],
    [384, false, 30],
  ])('at %i px (anti-aliased: %s), %i prompts: every witness render passes its prompt, nothing refused', async (size, antialias, n) => {
    // Spread over the categories: every 204/n-th prompt.
    const items = prompts.filter((_, i) => i % Math.round(prompts.length / n) === 0);
    for (let i = 0; i < items.length; i += 8) {
      const batch = items.slice(i, i + 8);
      const imgs = await Promise.all(batch.map((it) => renderSceneRaw(it.scene, size, { antialias })));
      batch.forEach((it, k) => {
        const d = detect(imgs[k]);
        expect(d.rejected).toBeNull();
        expect(d.objects.every((o) => o.reject === null)).toBe(true);
        if (!scoreT2I(it.prompt, d)) throw new Error(`${size}px: "${it.prompt.text}" fails on its own scene ${JSON.stringify(it.scene)}`);
      });
    }
  });

  test('the edit targets of the acceptance edit set, rendered at 64 px, score right', async () => {
    const edits = shapeEvalEdits(0, 6);
    const imgs = await Promise.all(edits.map((e) => renderSceneRaw(e.target, 64)));
    edits.forEach((e, k) => expect(checkEdit(e.category, e.source, e.target, detect(imgs[k]))).toEqual({ category: e.category, correct: true, targetHolds: true, preserved: true }));
  });
});

describe('what the detector refuses, and why', () => {
  const SIZE = 64;
  const canvas = (bg: readonly number[] = BACKGROUNDS.white): RawImage => {
    const data = new Uint8Array(SIZE * SIZE * 3);
    for (let p = 0; p < SIZE * SIZE; p++) data.set(bg, p * 3);
    return { data, width: SIZE, height: SIZE };
  };
  const rect = (img: RawImage, x0: number, y0: number, w: number, h: number, rgb: readonly number[]) => {
    for (let y = y0; y < y0 + h; y++) for (let x = x0; x < x0 + w; x++) img.data.set(rgb, (y * SIZE + x) * 3);
  };
  const square = makeT2IPrompt('colors', [{ kind: 'exists', object: { shape: 'square', color: 'red' } }]);

  test('a square of the rendered size on a cell centre is read; smaller, larger or half a cell off is unknown', () => {
    // Cell (1,1) spans 24..40 px with its centre at 32; a rendered object is 12 px wide: 26..38.
    const ok = canvas();
    rect(ok, 26, 26, 12, 12, COLORS.red);
    expect(detect(ok).objects.map((o) => [o.shape, o.reject])).toEqual([['square', null]]);
    expect(scoreT2I(square, detect(ok))).toBe(true);

    const small = canvas();
    rect(small, 28, 28, 7, 7, COLORS.red);
    expect(detect(small).objects[0]).toMatchObject({ shape: 'unknown', reject: expect.stringMatching(/^size 7x7 px/) });

    const large = canvas();
    rect(large, 24, 24, 16, 16, COLORS.red);
    expect(detect(large).objects[0]).toMatchObject({ shape: 'unknown', reject: expect.stringMatching(/^size 16x16 px/) });

    const off = canvas();
    rect(off, 34, 26, 12, 12, COLORS.red); // centre at x 40: between two cells
    expect(detect(off).objects[0]).toMatchObject({ shape: 'unknown', reject: expect.stringMatching(/^off the grid/) });
    expect(scoreT2I(square, detect(off))).toBe(false);
  });

  test('a blob whose outline is no shape (a square with a bite out of it) is unknown', () => {
    const img = canvas();
    rect(img, 26, 26, 12, 12, COLORS.blue);
    rect(img, 26, 26, 6, 6, BACKGROUNDS.white);
    const o = detect(img).objects[0];
    expect(o.shape).toBe('unknown');
    expect(o.reject).toMatch(/outline|no shape/);
  });

  test('outlineIoU: 1 for a filled bbox as a square, ~pi/4 for it as a circle', () => {
    const pixels = Int32Array.from({ length: 144 }, (_, i) => (Math.floor(i / 12) + 10) * SIZE + (i % 12) + 10);
    const bbox = { x: 10, y: 10, w: 12, h: 12 };
    expect(outlineIoU('square', pixels, SIZE, bbox)).toBe(1);
    expect(outlineIoU('circle', pixels, SIZE, bbox)).toBeCloseTo(Math.PI / 4, 1);
  });

  test('a good object inside a gradient, or among fragments, or on a border of no background, is refused', async () => {
    const scene: Scene = { background: 'white', objects: [{ shape: 'square', color: 'red', cell: { row: 1, col: 1 } }] };
    const clean = await renderSceneRaw(scene, SIZE);
    expect(detect(clean).rejected).toBeNull();

    // A colour gradient over the grid's top row of cells: neither background nor object.
    const smear = await renderSceneRaw(scene, SIZE);
    for (let y = 9; y < 24; y++) for (let x = 9; x < 55; x++) smear.data.set([250, 250 - 6 * y, 120 + 3 * x], (y * SIZE + x) * 3);
    const s = detect(smear);
    expect(s.rejected).toMatch(/neither background nor an object/);
    expect(s.unexplained).toBeGreaterThan(0.02);
    expect(scoreT2I(square, s)).toBe(false);

    // Fragments: a dozen 6x5 pieces of colour scattered over the grid around the one square.
    const frag = await renderSceneRaw(scene, SIZE);
    for (let k = 0; k < 12; k++) rect(frag, [9, 17, 40, 48][k % 4], [9, 17, 44][Math.floor(k / 4)], 6, 5, COLORS.green);
    const f = detect(frag);
    expect(f.rejected).toMatch(/fragments/);
    expect(scoreT2I(square, f)).toBe(false);

    // Pieces of shapes in the margin around the grid, cut at the image's edge (what janus4o-tiny draws at w = 5).
    const edge = await renderSceneRaw(scene, SIZE);
    rect(edge, 12, 0, 8, 6, COLORS.cyan);
    rect(edge, 58, 20, 6, 12, COLORS.yellow);
    const e = detect(edge);
    expect(e.rejected).toMatch(/margin around the grid/);
    expect(scoreT2I(square, e)).toBe(false);
    // A speck or two there is tolerated (a decoder's stray pixels).
    const specks = await renderSceneRaw(scene, SIZE);
    rect(specks, 2, 30, 3, 3, COLORS.black);
    expect(detect(specks).rejected).toBeNull();

    // The same square on a border colour that is none of the four backgrounds.
    const odd = canvas([90, 160, 90]);
    rect(odd, 26, 26, 12, 12, COLORS.red);
    expect(detect(odd).rejected).toMatch(/none of the four backgrounds/);
  });

  test('a refused image fails every edit check, whatever was read in it', () => {
    const src: Scene = { background: 'white', objects: [{ shape: 'square', color: 'red', cell: { row: 1, col: 1 } }] };
    const tgt: Scene = { ...src, background: 'pink' };
    expect(checkEdit('background', src, tgt, { ...tgt, rejected: 'noise' })).toEqual({ category: 'background', correct: false, targetHolds: false, preserved: false });
    expect(checkEdit('background', src, tgt, { ...tgt, rejected: null }).correct).toBe(true);
  });
});
