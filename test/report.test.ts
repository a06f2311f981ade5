import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { EDIT_CATEGORIES, T2I_CATEGORIES, summariseEdits, summariseT2I } from '../src/shapeworld/shapeeval';
import { shapeEvalComparison } from '../src/shapeworld/run_report';
import {
  ReportData, StepLog, downsample, formatTick, latestPerStep, lineChart, niceTicks, parseStepLog, readStepLog, writeReport,
} from '../src/report';

import { El, all, byId, byName, parseXhtml, text } from './xhtml';

const pointCount = (p: El) => p.attrs.points.trim().split(/\s+/).length;

// ---------------------------------------------------------------- fixtures

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-report-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

function png(width: number, height: number, r: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r, g: 40, b: 90 } } }).png().toBuffer();
}

/** 12 steps: step 3 skipped (NaN loss), steps 5 and 9 edit-only (no T2I loss), steps 1 and 2 T2I-only. */
function stepLog(opts: { edits?: boolean; n?: number } = {}): StepLog[] {
  const n = opts.n ?? 12;
  return Array.from({ length: n }, (_, k) => {
    const step = k + 1;
    const editOnly = opts.edits !== false && (step === 5 || step === 9);
    const t2iOnly = opts.edits === false || step <= 2;
    const loss = step === 3 ? NaN : 6 - step * 0.3;
    return {
      step, epoch: 0, loss, loss_t2i: editOnly ? null : loss + 0.1, loss_edit: t2iOnly ? null : loss - 0.2, accuracy: 0.1 + step * 0.01,
      lr: 1e-4 * Math.min(1, step / 4), grad_norm: step === 3 ? Infinity : 1.5, skipped: step === 3, tokens_per_s: 900, samples_per_s: 4, seconds: 0.5,
    };
  });
}

const EVIL = '<script>alert("x")</script> & \'q\'';

async function fullData(): Promise<ReportData> {
  const a = await png(64, 64, 200);
  const b = await png(64, 64, 20);
  const grid = await png(256, 64, 120);
  const gridFile = path.join(tmp, 'grid-src.png');
  fs.writeFileSync(gridFile, grid);
  const base = summariseT2I(T2I_CATEGORIES.filter((c) => c !== 'color_attr').map((c, i) => ({ category: c, correct: i % 2 === 0 })));
  const tuned = summariseT2I(T2I_CATEGORIES.filter((c) => c !== 'color_attr').map((c) => ({ category: c, correct: true })));
  return {
    facts: {
      backend: 'wasm', preset: 'tiny', steps: 12, wallSeconds: 754, tokensPerSecond: null, command: `npm run train -- --config "configs/${EVIL}.yaml"`,
      date: '2025-01-02T03:04:05Z', config: { lr: 1e-4, batch: 8, textMaskProb: 0.1, imageMaskProb: 0.5, extra: { [EVIL]: true } },
    },
    steps: stepLog(),
    heldOut: { before: 4.2, after: 3.1, conditionUse: [{ label: 'Prompt use, T2I (nats/image)', before: 0.5, after: 7.25 }] },
    evaluation: shapeEvalComparison(
      { t2i: base, edit: summariseEdits(EDIT_CATEGORIES.map((c) => ({ category: c, correct: false }))) },
      { t2i: tuned, edit: summariseEdits(EDIT_CATEGORIES.map((c) => ({ category: c, correct: c !== 'move' }))) },
    ),
    samples: [
      { prompt: EVIL, base: a, finetuned: gridFile },
      { prompt: 'two red circles', base: b, finetuned: null },
    ],
    edits: [{ instruction: `remove the ${EVIL}`, category: 'remove', input: a, base: b, finetuned: grid }],
    reproduce: ['npm run eval -- --suite shapeeval'],
  };
}

async function render(data: ReportData): Promise<{ src: string; doc: El; files: string[] }> {
  const out = await writeReport(tmp, data);
  expect(out.html).toBe(path.join(tmp, 'report.html'));
  const src = fs.readFileSync(out.html, 'utf8');
  return { src, doc: parseXhtml(src), files: out.files };
}

function polylines(doc: El, sectionId: string, chartIndex = 0): El[] {
  const svg = byName(byId(doc, sectionId), 'svg')[chartIndex];
  return byName(svg, 'polyline');
}

// ---------------------------------------------------------------- tests

describe('the XHTML checker', () => {
  it.each([
    ['<!DOCTYPE html><html><p><b></p></b></html>', /closes/],
    ['<!DOCTYPE html><html><td /></html>', /not a void element/],
    ['<!DOCTYPE html><html><img src="a"></html>', /not self-closed/],
    ['<!DOCTYPE html><html><p>a & b</p></html>', /bare &/],
    ['<!DOCTYPE html><html><p>a < b</p></html>', /stray </],
    ['<!DOCTYPE html><html><p class=x>a</p></html>', /malformed/],
    ['<!DOCTYPE html><html><p>', /unclosed/],
  ])('rejects %s', (bad, why) => {
    expect(() => parseXhtml(bad)).toThrow(why);
  });
  it('accepts self-closed SVG children and decodes entities', () => {
    const doc = parseXhtml('<!DOCTYPE html><html><svg><polyline points="1,2" /></svg><p title="&quot;">&lt;x&gt; &amp;</p></html>');
    expect(byName(doc, 'polyline')).toHaveLength(1);
    expect(text(byName(doc, 'p')[0])).toBe('<x> &');
  });
});

describe('writeReport', () => {
  it('writes well-formed HTML whose every image exists beside it and nothing external', async () => {
    const { src, doc, files } = await render(await fullData());
    const imgs = byName(doc, 'img');
    // 3 sample images (one of four missing) + 3 edit images; the edit reuses buffers a and b: 6 tags, 4 distinct sources.
    expect(imgs).toHaveLength(6);
    for (const im of imgs) {
      expect(im.attrs.src).toMatch(/^report-assets\/[\w.-]+\.png$/);
      expect(fs.existsSync(path.join(tmp, im.attrs.src))).toBe(true);
    }
    expect(new Set(imgs.map((im) => path.join(tmp, im.attrs.src)))).toEqual(new Set(files));
    expect(files).toHaveLength(4);
    for (const id of ['facts', 'curves', 'lr', 'heldout', 'evaluation', 'samples', 'edits', 'reproduce']) expect(() => byId(doc, id)).not.toThrow();
    expect(byName(doc, 'script')).toHaveLength(0);
    expect(byName(doc, 'link')).toHaveLength(0);
    expect(src).not.toMatch(/https?:\/\/(?!www\.w3\.org\/)/);
    for (const a of byName(doc, 'a')) expect(a.attrs.href).toMatch(/^#/);
    expect(text(byId(doc, 'samples'))).toContain('not generated');
    // 64 px images are scaled by an integer factor; a 256-wide grid stays within 768.
    const sizes = imgs.map((im) => [Number(im.attrs.width), Number(im.attrs.height)]);
    expect(sizes).toContainEqual([192, 192]);
    expect(sizes).toContainEqual([768, 192]);
  });

  it('escapes caller text everywhere it appears', async () => {
    const { src, doc } = await render(await fullData());
    expect(src).not.toContain('<script');
    expect(src).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;');
    expect(text(byId(doc, 'samples'))).toContain(EVIL);
    expect(text(byId(doc, 'edits'))).toContain(`remove the ${EVIL}`);
    expect(text(byId(doc, 'reproduce'))).toContain(`--config "configs/${EVIL}.yaml"`);
    expect(text(byId(doc, 'facts'))).toContain(EVIL);
    expect(byName(doc, 'img').map((im) => im.attrs.alt)).toContain(`base: ${EVIL}`);
  });

  it('draws one polyline per series with one point per finite value', async () => {
    const { doc } = await render(await fullData());
    const loss = polylines(doc, 'curves');
    expect(loss.map((p) => p.attrs['data-series'])).toEqual(['total', 'T2I', 'edit']);
    // total: 12 steps less the skipped NaN; T2I: less also the two edit-only steps; edit: less the NaN and the two T2I-only steps.
    expect(loss.map(pointCount)).toEqual([11, 9, 9]);
    const lr = polylines(doc, 'lr');
    expect(lr).toHaveLength(1);
    expect(pointCount(lr[0])).toBe(12);
    // Accuracy and grad norm: the Infinity norm of the skipped step is dropped.
    expect(pointCount(polylines(doc, 'diagnostics', 0)[0])).toBe(12);
    expect(pointCount(polylines(doc, 'diagnostics', 1)[0])).toBe(11);
  });

  it('says so when there are no edit steps yet, and when nothing was logged', async () => {
    const data = await fullData();
    const { doc } = await render({ ...data, steps: stepLog({ edits: false }), samples: [], edits: [], heldOut: null, evaluation: null });
    const loss = polylines(doc, 'curves');
    expect(loss.map((p) => p.attrs['data-series'])).toEqual(['total', 'T2I']);
    const curves = text(byId(doc, 'curves'));
    expect(curves).toContain('edit: no edit steps yet');
    expect(curves).toContain('no edit loss curve');
    expect(text(byId(doc, 'samples'))).toContain('No samples');
    expect(text(byId(doc, 'edits'))).toContain('No edit examples');
    expect(text(byId(doc, 'heldout'))).toContain('not measured');
    expect(text(byId(doc, 'evaluation'))).toContain('No evaluation was run');
    expect(byName(doc, 'img')).toHaveLength(0);

    const empty = await render({ ...data, steps: [] });
    expect(byName(empty.doc, 'polyline')).toHaveLength(0);
    expect(text(byId(empty.doc, 'curves'))).toContain('no steps logged yet');
    expect(text(byId(empty.doc, 'lr'))).toContain('no steps logged yet');
  });

  it('tabulates ShapeEval base vs fine-tuned per category with signed deltas', async () => {
    const { doc } = await render(await fullData());
    const [t2i, edit] = byName(byId(doc, 'evaluation'), 'table');
    const rowsOf = (t: El) => byName(t, 'tr').slice(1).map((tr) => byName(tr, 'td').length ? [text(byName(tr, 'th')[0]), ...byName(tr, 'td').map(text)] : []);
    const t2iRows = rowsOf(t2i);
    expect(t2iRows.map((r) => r[0])).toEqual([...T2I_CATEGORIES, 'overall']);
    expect(t2iRows[0]).toEqual(['single_object', '1.000 (1/1)', '1.000 (1/1)', '±0.000']);
    expect(t2iRows[1]).toEqual(['two_object', '0.000 (0/1)', '1.000 (1/1)', '+1.000']);
    // color_attr had no prompts: no accuracy, no delta.
    expect(t2iRows[5]).toEqual(['color_attr', '—', '—', '—']);
    expect(t2iRows[6]).toEqual(['overall', '0.600', '1.000', '+0.400']);
    const editRows = rowsOf(edit);
    expect(editRows.map((r) => r[0])).toEqual([...EDIT_CATEGORIES, 'overall']);
    expect(editRows[5]).toEqual(['move', '0.000 (0/1)', '0.000 (0/1)', '±0.000']);
    expect(editRows[7][3]).toBe('+0.857');
    const better = all(t2i, (e) => e.name === 'td' && (e.attrs.class ?? '').split(' ').includes('better'));
    expect(better.map(text)).toEqual(['+1.000', '+1.000', '+0.400']);
    // Held-out loss going down is an improvement, shown with a minus sign.
    const held = byName(byId(doc, 'heldout'), 'td');
    expect(held.map(text)).toEqual(['Image-token loss (nats/token)', '4.200', '3.100', '−1.100', 'Prompt use, T2I (nats/image)', '0.500', '7.250', '+6.750']);
    expect(held[3].attrs.class).toContain('better');
    // More nats taken from the prompt is an improvement.
    expect(held[7].attrs.class).toContain('better');
  });

  it('copies path sources, removes stale assets of an earlier report, and rejects missing or non-PNG images', async () => {
    const data = await fullData();
    await writeReport(tmp, data);
    const stale = path.join(tmp, 'report-assets', 'sample-09-base.png');
    fs.writeFileSync(stale, await png(8, 8, 1));
    const { files } = await render({ ...data, edits: [] });
    expect(fs.existsSync(stale)).toBe(false);
    expect(fs.readdirSync(path.join(tmp, 'report-assets')).sort()).toEqual(files.map((f) => path.basename(f)).sort());
    expect(fs.readFileSync(path.join(tmp, 'report-assets', 'sample-01-finetuned.png'))).toEqual(fs.readFileSync(path.join(tmp, 'grid-src.png')));

    const missing = path.join(tmp, 'nope.png');
    await expect(writeReport(tmp, { ...data, samples: [{ prompt: 'p', base: missing, finetuned: null }] })).rejects.toThrow(missing);
    await expect(writeReport(tmp, { ...data, samples: [{ prompt: 'p', base: Buffer.from('GIF89a not a png at all...'), finetuned: null }] })).rejects.toThrow(/not a PNG/);
  });
});

describe('step log', () => {
  const line = (s: Partial<Record<keyof StepLog, unknown>>) => JSON.stringify({ ...stepLog()[0], ...s });

  it('reads JSONL written by JSON.stringify, non-finite values coming back as NaN', async () => {
    const file = path.join(tmp, 'train_log.jsonl');
    const steps = stepLog();
    fs.writeFileSync(file, steps.map((s) => JSON.stringify(s)).join('\n') + '\n\n');
    const read = await readStepLog(file);
    expect(read).toHaveLength(12);
    expect(read[2].loss).toBeNaN();
    expect(read[2].grad_norm).toBeNaN();
    expect(read[4].loss_t2i).toBeNull();
    expect(read[4].loss_edit).toBeCloseTo(steps[4].loss_edit ?? NaN);
    expect(read[3]).toEqual(steps[3]);
  });

  it.each([
    ['{"step": 1,', /train_log\.jsonl:3: not valid JSON/],
    ['[1, 2]', /train_log\.jsonl:3: expected a JSON object/],
    [line({ step: 1.5 }), /train_log\.jsonl:3: field "step"/],
    [line({ loss: '2.0' }), /train_log\.jsonl:3: field "loss" must be a number or null, got "2.0"/],
    [line({ lr: undefined }), /train_log\.jsonl:3: field "lr" must be a number or null, got nothing/],
    [line({ skipped: 0 }), /train_log\.jsonl:3: field "skipped"/],
  ])('rejects a bad line naming file:line (%s)', async (bad, why) => {
    const file = path.join(tmp, 'train_log.jsonl');
    fs.writeFileSync(file, `${line({ step: 1 })}\n${line({ step: 2 })}\n${bad}\n${line({ step: 4 })}\n`);
    await expect(readStepLog(file)).rejects.toThrow(why);
  });

  it('keeps the last entry per step after a resume re-logged steps', () => {
    const s = stepLog({ n: 4 });
    const redo = { ...s[2], loss: 0.123 };
    const merged = latestPerStep([...s, redo, s[3]]);
    expect(merged.map((x) => x.step)).toEqual([1, 2, 3, 4]);
    expect(merged[2].loss).toBe(0.123);
    expect(parseStepLog('', 'x')).toEqual([]);
  });
});

describe('charts', () => {
  it('bucket-averages long series to maxPoints', () => {
    const pts = Array.from({ length: 5000 }, (_, i) => [i, 2 * i] as const);
    const d = downsample(pts, 800);
    expect(d).toHaveLength(800);
    // Buckets of 6 or 7 consecutive points, averaged in both coordinates: a line stays on the line.
    expect(d[0]).toEqual([2.5, 5]);
    for (const [x, y] of d) expect(y).toBeCloseTo(2 * x, 9);
    expect(d[799][0]).toBeCloseTo(4996, 9); // the last bucket holds 4993..4999
    const svg = lineChart([{ name: 'loss', points: pts }], { title: 't', xLabel: 'x', yLabel: 'y', maxPoints: 300 });
    const doc = parseXhtml(`<!DOCTYPE html><html>${svg}</html>`);
    expect(pointCount(byName(doc, 'polyline')[0])).toBe(300);
    expect(downsample(pts.slice(0, 10), 800)).toHaveLength(10);
  });

  it('draws a dot for a single point and keeps coordinates inside the plot', () => {
    const svg = lineChart([{ name: 'a', points: [[5, 2]] }, { name: 'b', points: [[1, 0], [9, 4]] }], { title: 't', xLabel: 'x', yLabel: 'y', width: 400, height: 200 });
    const doc = parseXhtml(`<!DOCTYPE html><html>${svg}</html>`);
    expect(byName(doc, 'circle')).toHaveLength(1);
    for (const p of byName(doc, 'polyline')) {
      for (const xy of p.attrs.points.split(' ')) {
        const [x, y] = xy.split(',').map(Number);
        expect(x).toBeGreaterThanOrEqual(64);
        expect(x).toBeLessThanOrEqual(400 - 16);
        expect(y).toBeGreaterThanOrEqual(46);
        expect(y).toBeLessThanOrEqual(200 - 44);
      }
    }
  });

  it('picks round ticks and short labels', () => {
    expect(niceTicks(0, 10, 5)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(niceTicks(2.3, 6.1, 4)).toEqual([3, 4, 5, 6]);
    expect(niceTicks(0, 1e-4, 4).map(formatTick)).toEqual(['0', '2e-5', '4e-5', '6e-5', '8e-5', '1e-4']);
    expect(formatTick(0.30000000000000004)).toBe('0.3');
    expect(niceTicks(3, 3)).toEqual([3]);
  });
});
