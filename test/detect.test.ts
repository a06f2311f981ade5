import sharp from 'sharp';
import seedrandom from 'seedrandom';
import { RawImage, renderScene, renderSceneRaw } from '../src/shapeworld/render';
import { BACKGROUNDS, BACKGROUND_NAMES, COLORS, COLOR_NAMES, Cell, Scene, SHAPES } from '../src/shapeworld/scene';
import { DetectedScene, classifyShape, detectPng, detectScene } from '../src/shapeworld/detect';
import { EditCategory, T2IPrompt, T2I_CATEGORIES, T2ICategory, scoreEdit, scoreT2I, t2iPromptFromScene } from '../src/shapeworld/shapeeval';
import { randomScene } from './scenes';


const key = (o: { shape: string; color: string; cell: Cell }) => `${o.shape}|${o.color}|${o.cell.row},${o.cell.col}`;
function sameScene(truth: Scene, d: DetectedScene): boolean {
  return d.background === truth.background && truth.objects.map(key).sort().join(';') === d.objects.map(key).sort().join(';');
}

/** Render in small parallel batches: sharp runs off the JS thread, but two cores are shared. */
async function renderAll(scenes: Scene[], size: number, antialias = false): Promise<RawImage[]> {
  const out: RawImage[] = [];
  for (let i = 0; i < scenes.length; i += 8) out.push(...(await Promise.all(scenes.slice(i, i + 8).map((s) => renderSceneRaw(s, size, { antialias })))));
  return out;
}

function solid(size: number, rgb: readonly number[]): RawImage {
  const data = new Uint8Array(size * size * 3);
  for (let p = 0; p < size * size; p++) data.set(rgb, p * 3);
  return { data, width: size, height: size };
}

function noise(size: number, rand: () => number): RawImage {
  const data = new Uint8Array(size * size * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.floor(rand() * 256);
  return { data, width: size, height: size };
}

const detect = (img: RawImage) => detectScene(img.data, img.width, img.height);

describe('ground-truth renders', () => {
  const cases: [number, number][] = [
    [64, 500],
    [384, 100],
  ];
  test.each(cases)('at %i px, %i random scenes: >= 99%% exact, >= 99%% per T2I category', async (size, n) => {
    const rand = seedrandom(`gt-${size}`);
    const scenes = Array.from({ length: n }, () => randomScene(rand));
    const images = await renderAll(scenes, size);
    let exact = 0;
    const perCat = new Map<T2ICategory, { ok: number; total: number }>(T2I_CATEGORIES.map((c) => [c, { ok: 0, total: 0 }]));
    const misses: string[] = [];
    scenes.forEach((scene, i) => {
      const d = detect(images[i]);
      if (sameScene(scene, d)) exact++;
      else if (misses.length < 5) misses.push(`${JSON.stringify(scene)} -> ${d.background} ${d.objects.map(key).join(';')}`);
      for (const category of T2I_CATEGORIES) {
        const prompt = t2iPromptFromScene(scene, category, rand);
        if (!prompt) continue;
        const s = perCat.get(category)!;
        s.total++;
        if (scoreT2I(prompt, d)) s.ok++;
      }
    });
    if (exact / n < 0.99) throw new Error(`exact ${exact}/${n} at ${size}px; e.g.\n${misses.join('\n')}`);
    for (const [category, s] of perCat) {
      expect(s.total).toBeGreaterThan(n / 5);
      if (s.ok / s.total < 0.99) throw new Error(`${category}: ${s.ok}/${s.total} at ${size}px`);
    }
  });

  test('blank, uniform and noise images pass <= 2% of prompts in every category', () => {
    const rand = seedrandom('negatives');
    // Prompts need no images: derive them from 600 scenes, as the ground-truth test does.
    const prompts: { category: T2ICategory; prompt: T2IPrompt }[] = [];
    for (let k = 0; k < 600; k++) {
      const scene = randomScene(rand);
      for (const category of T2I_CATEGORIES) {
        const prompt = t2iPromptFromScene(scene, category, rand);
        if (prompt) prompts.push({ category, prompt });
      }
    }
    const images: RawImage[] = [];
    for (const size of [64, 384]) {
      for (const name of BACKGROUND_NAMES) images.push(solid(size, BACKGROUNDS[name]));
      for (const name of COLOR_NAMES) images.push(solid(size, COLORS[name]));
      images.push(solid(size, [0, 0, 0]), solid(size, [255, 255, 255]), solid(size, [128, 128, 128]));
    }
    for (let k = 0; k < 30; k++) images.push(noise(64, rand));
    for (let k = 0; k < 4; k++) images.push(noise(384, rand));
    const detections = images.map(detect);
    // Uniform images hold nothing: a flat field in an object colour is background, not a giant object.
    for (const d of detections.slice(0, 30)) expect(d.objects).toHaveLength(0);
    for (const category of T2I_CATEGORIES) {
      const ps = prompts.filter((p) => p.category === category);
      expect(ps.length).toBeGreaterThan(100);
      let ok = 0;
      for (const d of detections) for (const p of ps) if (scoreT2I(p.prompt, d)) ok++;
      expect(ok / (ps.length * detections.length)).toBeLessThanOrEqual(0.02);
    }
  });
});

describe('robustness beyond the aliased renders', () => {
  test.each([
    [64, 200],
    [384, 40],
  ])('anti-aliased renders at %i px (%i scenes) are still read exactly', async (size, n) => {
    const rand = seedrandom(`aa-${size}`);
    const scenes = Array.from({ length: n }, () => randomScene(rand));
    const images = await renderAll(scenes, size, true);
    const exact = scenes.filter((s, i) => sameScene(s, detect(images[i]))).length;
    expect(exact / n).toBeGreaterThanOrEqual(0.99);
  });

  test('blurred, JPEG-compressed and noisy 384 px renders are still read', async () => {
    const rand = seedrandom('degrade');
    let exact = 0;
    const n = 30;
    for (let k = 0; k < n; k++) {
      const scene = randomScene(rand);
      const png = await renderScene(scene, 384, { antialias: true });
      const mode = k % 3;
      let img: Buffer;
      if (mode === 0) img = await sharp(png).blur(2).png().toBuffer();
      else if (mode === 1) img = await sharp(png).jpeg({ quality: 70 }).toBuffer();
      else {
        const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
        for (let i = 0; i < data.length; i++) data[i] = Math.max(0, Math.min(255, data[i] + Math.round((rand() - 0.5) * 50)));
        img = await sharp(data, { raw: { width: info.width, height: info.height, channels: 3 } }).png().toBuffer();
      }
      if (sameScene(scene, await detectPng(img))) exact++;
    }
    expect(exact).toBeGreaterThanOrEqual(n - 1);
  });

  test('specks below the size floor are ignored; a field larger than a cell is not a shape', () => {
    const img = solid(64, BACKGROUNDS.white);
    const paint = (x0: number, y0: number, w: number, h: number, rgb: readonly number[]) => {
      for (let y = y0; y < y0 + h; y++) for (let x = x0; x < x0 + w; x++) img.data.set(rgb, (y * 64 + x) * 3);
    };
    paint(10, 10, 1, 1, COLORS.red);
    paint(40, 40, 3, 3, COLORS.blue);
    expect(detect(img).objects).toHaveLength(0);
    paint(4, 4, 40, 40, COLORS.green);
    const d = detect(img);
    expect(d.objects).toHaveLength(1);
    expect(d.objects[0].shape).toBe('unknown');
    expect(d.background).toBe('white');
  });

  test('inverted triangles and thin bars are unknown, not forced into a class', () => {
    const img = solid(64, BACKGROUNDS.gray);
    for (let y = 0; y < 12; y++) for (let x = 0; x < 12 - y; x++) {
      img.data.set(COLORS.cyan, ((24 + y) * 64 + 26 + Math.floor(y / 2) + x) * 3);
    }
    for (let y = 4; y < 8; y++) for (let x = 2; x < 18; x++) img.data.set(COLORS.red, (y * 64 + x) * 3);
    const d = detect(img);
    expect(d.objects.map((o) => [o.color, o.shape])).toEqual([
      ['red', 'unknown'],
      ['cyan', 'unknown'],
    ]);
  });
});

describe('detector API', () => {
  test('classifyShape prototypes', () => {
    expect(classifyShape(1, 0.5, 1)).toBe('square');
    expect(classifyShape(0.785, 0.5, 1)).toBe('circle');
    expect(classifyShape(0.5, 0.5, 1)).toBe('diamond');
    expect(classifyShape(0.5, 0.75, 1)).toBe('triangle');
    expect(classifyShape(0.5, 0.25, 1)).toBe('unknown');
    expect(classifyShape(1, 0.5, 3)).toBe('unknown');
    expect(classifyShape(0.2, 0.5, 1)).toBe('unknown');
  });

  test('detectPng matches detectScene on the raw pixels and flattens alpha', async () => {
    const scene: Scene = { background: 'pink', objects: [{ shape: 'triangle', color: 'orange', cell: { row: 2, col: 0 } }] };
    const raw = await renderSceneRaw(scene, 128);
    const fromPng = await detectPng(await renderScene(scene, 128));
    expect(fromPng).toEqual(detect(raw));
    expect(sameScene(scene, fromPng)).toBe(true);
    const rgba = await sharp(await renderScene(scene, 128)).ensureAlpha().png().toBuffer();
    expect((await sharp(rgba).metadata()).channels).toBe(4);
    expect(sameScene(scene, await detectPng(rgba))).toBe(true);
  });

  test('background outside the named set is unknown; wrong buffer length throws', () => {
    expect(detect(solid(64, [100, 200, 100])).background).toBe('unknown');
    expect(detect(solid(64, BACKGROUNDS.beige)).background).toBe('beige');
    expect(() => detectScene(new Uint8Array(10), 64, 64)).toThrow(/RGB bytes/);
  });

  test('edits read back from renders score right, and the unedited source scores wrong', async () => {
    const rand = seedrandom('edits');
    const pickFree = (s: Scene): Cell => {
      const free = [0, 1, 2, 3, 4, 5, 6, 7, 8].filter((i) => !s.objects.some((o) => o.cell.row * 3 + o.cell.col === i));
      const c = free[Math.floor(rand() * free.length)];
      return { row: Math.floor(c / 3), col: c % 3 } as Cell;
    };
    const other = <T>(xs: readonly T[], x: T): T => xs.filter((y) => y !== x)[Math.floor(rand() * (xs.length - 1))];
    const edit = (cat: EditCategory, s: Scene): Scene => {
      const objs = s.objects.map((o) => ({ ...o }));
      const o = objs[0];
      switch (cat) {
        case 'add':
          return { ...s, objects: [...objs, { shape: SHAPES[0], color: COLOR_NAMES[1], cell: pickFree(s) }] };
        case 'remove':
          return { ...s, objects: objs.slice(1) };
        case 'replace':
          o.shape = other(SHAPES, o.shape);
          return { ...s, objects: objs };
        case 'adjust':
          o.color = other(COLOR_NAMES, o.color);
          return { ...s, objects: objs };
        case 'background':
          return { ...s, background: other(BACKGROUND_NAMES, s.background) };
        case 'move':
          o.cell = pickFree(s);
          return { ...s, objects: objs };
        case 'hybrid':
          o.color = other(COLOR_NAMES, o.color);
          return { ...s, background: other(BACKGROUND_NAMES, s.background), objects: objs };
      }
    };
    const cats: EditCategory[] = ['add', 'remove', 'replace', 'adjust', 'background', 'move', 'hybrid'];
    for (let k = 0; k < 70; k++) {
      const cat = cats[k % cats.length];
      const src = randomScene(rand);
      if (cat === 'remove' && src.objects.length < 2) src.objects.push({ shape: 'square', color: 'black', cell: pickFree(src) });
      const tgt = edit(cat, src);
      const [srcImg, tgtImg] = await Promise.all([renderSceneRaw(src, 64), renderSceneRaw(tgt, 64)]);
      expect(scoreEdit(cat, src, tgt, detect(tgtImg))).toBe(true);
      expect(scoreEdit(cat, src, tgt, detect(srcImg))).toBe(false);
    }
  });
});
