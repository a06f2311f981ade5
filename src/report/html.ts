/**
 * The before/after training report: one report.html (inline CSS and SVG, no script, no network) plus PNGs in
 * report-assets/ beside it, so the folder can be zipped, opened from disk or served as-is. The markup is
 * XHTML-compatible (every non-void element closed, void elements self-closed, attributes quoted) so a strict
 * XML tokenizer can check it, and every piece of caller text goes through escapeXml.
 */
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { atomicWriteFile } from '../io/atomic';
import type { StepLog } from '../io/steplog';
import { ChartSeries, escapeXml, finitePoints, lineChart } from './charts';
import { latestPerStep } from '../io/steplog';

export type { StepLog };

/** PNG bytes, or the path of a PNG file to copy. */
export type ImageSource = Uint8Array | string;

export interface ConfigSummary {
  /** Peak learning rate. */
  lr: number;
  /** Samples per optimizer step, across accumulation and ranks. */
  batch: number;
  textMaskProb: number;
  imageMaskProb: number;
  /** Anything else worth a row in the facts table, e.g. { t2i_ratio: 0.5 }. */
  extra?: Readonly<Record<string, string | number | boolean>>;
}

export interface RunFacts {
  backend: string;
  preset: string;
  /** Optimizer steps the run performed. */
  steps: number;
  wallSeconds: number;
  /** Mean training throughput; null derives it from the step log. */
  tokensPerSecond: number | null;
  config: ConfigSummary;
  /** The command line that reproduces the run. */
  command: string;
  /** ISO 8601. */
  date: string;
  checkpoint?: string;
}

export interface HeldOutLoss {
  before: number | null;
  after: number | null;
  /** What was measured, e.g. "256 held-out samples, seed 7". */
  note?: string;
  /** Further held-out rows, e.g. how many nats per image the model takes from its prompt (higher is better). */
  conditionUse?: readonly { label: string; before: number | null; after: number | null }[];
  /** Paragraphs explaining rows of conditionUse beyond condition use itself. */
  notes?: readonly string[];
}

/** One category's score: an accuracy, with the counts behind it when known. */
export interface CategoryScore {
  accuracy: number | null;
  correct?: number;
  total?: number;
}

/** One model's scores on one suite: per category and overall (null: nothing scored). */
export interface ScoreSummary {
  categories: Readonly<Record<string, CategoryScore | undefined>>;
  overall: number | null;
}

/** A base vs fine-tuned table of one suite; a null side was not evaluated. */
export interface ScoreTable {
  caption: string;
  categories: readonly string[];
  base: ScoreSummary | null;
  finetuned: ScoreSummary | null;
}

/** The benchmark section: a dataset's evaluation hook (e.g. ShapeWorld's ShapeEval) fills it. */
export interface EvaluationComparison {
  title: string;
  /** How it was measured, e.g. "4 images per prompt, seed 0". */
  note?: string;
  tables: readonly ScoreTable[];
}

/** Outputs for one fixed prompt; a null image was not generated. */
export interface SampleComparison {
  prompt: string;
  base: ImageSource | null;
  finetuned: ImageSource | null;
}

export interface EditExample {
  instruction: string;
  category?: string;
  input: ImageSource | null;
  base: ImageSource | null;
  finetuned: ImageSource | null;
}

export interface ReportData {
  title?: string;
  facts: RunFacts;
  steps: readonly StepLog[];
  heldOut?: HeldOutLoss | null;
  evaluation?: EvaluationComparison | null;
  samples?: readonly SampleComparison[];
  edits?: readonly EditExample[];
  /** Further commands for the reproduce section, e.g. the eval command. */
  reproduce?: readonly string[];
}

export interface WrittenReport {
  /** Path of report.html. */
  html: string;
  /** Paths of the image files written beside it. */
  files: string[];
}

export const REPORT_FILE = 'report.html';
export const ASSET_DIR = 'report-assets';

// ---------------------------------------------------------------- step log

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

interface Asset {
  rel: string;
  bytes: Uint8Array;
  /** Display size: small ShapeWorld images are scaled up by an integer factor so pixels stay crisp. */
  width: number;
  height: number;
}

/** Width and height from the IHDR chunk, which the PNG format requires to come first. */
export function pngSize(bytes: Uint8Array): { width: number; height: number } | null {
  if (bytes.length < 24 || PNG_SIGNATURE.some((b, i) => bytes[i] !== b)) return null;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { width: dv.getUint32(16), height: dv.getUint32(20) };
}

async function loadAsset(src: ImageSource, name: string): Promise<Asset> {
  let bytes: Uint8Array;
  if (typeof src === 'string') {
    try {
      bytes = await fs.promises.readFile(src);
    } catch (e) {
      throw new Error(`report image ${src} could not be read: ${(e as Error).message}`);
    }
  } else {
    bytes = src;
  }
  const size = pngSize(bytes);
  if (!size) throw new Error(`report image for ${name} is not a PNG${typeof src === 'string' ? ` (${src})` : ''}`);
  const scale = Math.max(1, Math.min(4, Math.floor(192 / size.height), Math.floor(768 / size.width)));
  return { rel: `${ASSET_DIR}/${name}`, bytes, width: size.width * scale, height: size.height * scale };
}

type AssetMap = Map<ImageSource, Asset>;

function img(assets: AssetMap, src: ImageSource | null, alt: string): string {
  if (src === null) return '<span class="missing">not generated</span>';
  const a = assets.get(src);
  if (!a) throw new Error(`internal: image for "${alt}" was not loaded`);
  return `<img src="${escapeXml(a.rel)}" width="${a.width}" height="${a.height}" alt="${escapeXml(alt)}" />`;
}

// ---------------------------------------------------------------- formatting

function fmt(v: number | null | undefined, digits = 3): string {
  return isNum(v) ? v.toFixed(digits) : '—';
}

function fmtLr(v: number): string {
  return Number.isFinite(v) ? v.toExponential(2).replace(/\.?0+e/, 'e') : '—';
}

function fmtDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '—';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}h ${m}m ${s % 60}s` : m ? `${m}m ${s % 60}s` : `${s}s`;
}

function isNum(v: number | null | undefined): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

function delta(before: number | null | undefined, after: number | null | undefined, lowerIsBetter = false): string {
  if (!isNum(before) || !isNum(after)) return '<td class="num">—</td>';
  const d = after - before;
  const good = lowerIsBetter ? d < 0 : d > 0;
  const cls = d === 0 ? 'same' : good ? 'better' : 'worse';
  return `<td class="num ${cls}">${d > 0 ? '+' : d < 0 ? '−' : '±'}${Math.abs(d).toFixed(3)}</td>`;
}

function mean(xs: number[]): number | null {
  const f = xs.filter(Number.isFinite);
  return f.length ? f.reduce((a, b) => a + b, 0) / f.length : null;
}

function rows(pairs: ReadonlyArray<readonly [string, string]>): string {
  return pairs.map(([k, v]) => `<tr><th scope="row">${escapeXml(k)}</th><td>${escapeXml(v)}</td></tr>`).join('\n');
}

// ---------------------------------------------------------------- sections

function factsSection(f: RunFacts, steps: StepLog[]): string {
  const tail = steps.slice(-Math.max(1, Math.ceil(steps.length / 10)));
  const tokens = f.tokensPerSecond ?? mean(steps.map((s) => s.tokens_per_s));
  const pairs: Array<[string, string]> = [
    ['Date', f.date],
    ['Backend', f.backend],
    ['Preset', f.preset],
    ['Optimizer steps', `${f.steps} (${steps.length} logged)`],
    ['Wall time', fmtDuration(f.wallSeconds)],
    ['Tokens / s', fmt(tokens, 1)],
    ['Samples / s', fmt(mean(steps.map((s) => s.samples_per_s)), 2)],
    ['Peak learning rate', fmtLr(f.config.lr)],
    ['Batch (samples / step)', String(f.config.batch)],
    ['Masking', `text ${Math.round(f.config.textMaskProb * 100)}%, image ${Math.round(f.config.imageMaskProb * 100)}%`],
  ];
  for (const [k, v] of Object.entries(f.config.extra ?? {})) pairs.push([k, String(v)]);
  pairs.push(
    ['Skipped updates (non-finite gradients)', String(steps.filter((s) => s.skipped).length)],
    [`Final loss (mean of last ${tail.length} steps)`, fmt(mean(tail.map((s) => s.loss)))],
  );
  if (f.checkpoint) pairs.push(['Checkpoint', f.checkpoint]);
  return `<section id="facts"><h2>Run</h2>\n<table class="facts">\n${rows(pairs)}\n</table></section>`;
}

/** Finite values only, so an empty `points` means the chart has nothing to draw for this series. */
function series(steps: StepLog[], name: string, pick: (s: StepLog) => number | null, emptyNote?: string): ChartSeries {
  return { name, emptyNote, points: finitePoints(steps.map((s) => [s.step, pick(s) ?? NaN] as const)) };
}

function curvesSection(steps: StepLog[]): string {
  const empty = 'no steps logged yet';
  const t2i = series(steps, 'T2I', (s) => s.loss_t2i, 'no T2I steps');
  const edit = series(steps, 'edit', (s) => s.loss_edit, 'no edit steps yet');
  const loss = lineChart([series(steps, 'total', (s) => s.loss), t2i, edit], {
    title: 'Training loss (cross-entropy on image tokens)', xLabel: 'optimizer step', yLabel: 'loss', emptyMessage: empty,
  });
  const notes: string[] = [];
  if (steps.length && !edit.points.length) notes.push('No logged step contained an edit sample, so there is no edit loss curve.');
  if (steps.length && !t2i.points.length) notes.push('No logged step contained a text-to-image sample, so there is no T2I loss curve.');
  const lr = lineChart([series(steps, 'lr', (s) => s.lr)], { title: 'Learning-rate schedule', xLabel: 'optimizer step', yLabel: 'learning rate', emptyMessage: empty });
  const acc = lineChart([series(steps, 'accuracy', (s) => s.accuracy)], { title: 'Next-token accuracy', xLabel: 'optimizer step', yLabel: 'accuracy', emptyMessage: empty });
  const gn = lineChart([series(steps, 'grad norm', (s) => s.grad_norm)], { title: 'Gradient norm (before clipping)', xLabel: 'optimizer step', yLabel: 'L2 norm', emptyMessage: empty });
  return [
    `<section id="curves"><h2>Loss curves</h2>\n<figure>${loss}</figure>`,
    ...notes.map((n) => `<p class="note">${escapeXml(n)}</p>`),
    `</section>\n<section id="lr"><h2>Learning-rate schedule</h2>\n<figure>${lr}</figure></section>`,
    `<section id="diagnostics"><h2>Accuracy and gradient norm</h2>\n<figure>${acc}</figure>\n<figure>${gn}</figure></section>`,
  ].join('\n');
}

function heldOutSection(h: HeldOutLoss | null | undefined): string {
  const head = '<section id="heldout"><h2>Held-out loss</h2>';
  if (!h || (h.before === null && h.after === null)) return `${head}<p class="missing">Held-out loss was not measured.</p></section>`;
  const note = h.note ? `<p class="note">${escapeXml(h.note)}</p>` : '';
  const use = h.conditionUse ?? [];
  const rows = [
    `<tr><td>Image-token loss (nats/token)</td><td class="num">${fmt(h.before)}</td><td class="num">${fmt(h.after)}</td>${delta(h.before, h.after, true)}</tr>`,
    ...use.map((r) => `<tr><td>${escapeXml(r.label)}</td><td class="num">${fmt(r.before)}</td><td class="num">${fmt(r.after)}</td>${delta(r.before, r.after, false)}</tr>`),
  ].join('');
  const useNote = use.length
    ? '<p class="note">Condition use: the held-out loss with the condition dropped (prompt replaced by pads, as in the CFG unconditional row; an edit\'s input-image VQ block replaced by pads) minus the loss with it, summed over an image. Near zero means the model ignores that condition; below zero, it does worse with it than without (a base that never saw an edit).</p>'
    : '';
  const notes = (h.notes ?? []).map((n) => `<p class="note">${escapeXml(n)}</p>`).join('');
  return `${head}\n<table><thead><tr><th></th><th>Before</th><th>After</th><th>Change</th></tr></thead><tbody>${rows}</tbody></table>${note}${useNote}${notes}</section>`;
}

/** A category's score; `cat` null is the overall row. */
function scoreOf(s: ScoreSummary | null, cat: string | null): CategoryScore | undefined {
  if (!s) return undefined;
  return cat === null ? { accuracy: s.overall } : s.categories[cat];
}

function scoreCell(score: CategoryScore | undefined): string {
  if (!score || score.accuracy === null) return '<td class="num">—</td>';
  const count = score.total !== undefined ? ` <span class="count">(${score.correct ?? 0}/${score.total})</span>` : '';
  return `<td class="num">${fmt(score.accuracy)}${count}</td>`;
}

function evalTable(t: ScoreTable): string {
  if (!t.base && !t.finetuned) return `<h3>${escapeXml(t.caption)}</h3><p class="missing">Not evaluated.</p>`;
  const body = [...t.categories, null].map((c) => {
    const label = c === null ? '<th scope="row" class="overall">overall</th>' : `<th scope="row">${escapeXml(c)}</th>`;
    return `<tr${c === null ? ' class="overall"' : ''}>${label}${scoreCell(scoreOf(t.base, c))}${scoreCell(scoreOf(t.finetuned, c))}${delta(scoreOf(t.base, c)?.accuracy, scoreOf(t.finetuned, c)?.accuracy)}</tr>`;
  });
  return `<h3>${escapeXml(t.caption)}</h3>\n<table class="eval"><thead><tr><th>Category</th><th>Base</th><th>Fine-tuned</th><th>Δ</th></tr></thead><tbody>\n${body.join('\n')}\n</tbody></table>`;
}

function evaluationSection(e: EvaluationComparison | null | undefined): string {
  const head = `<section id="evaluation"><h2>${escapeXml(e?.title ?? 'Evaluation')}: base vs fine-tuned</h2>`;
  if (!e || e.tables.every((t) => !t.base && !t.finetuned)) return `${head}<p class="missing">No evaluation was run.</p></section>`;
  const note = e.note ? `<p class="note">${escapeXml(e.note)}</p>` : '';
  return `${head}\n${note}\n${e.tables.map(evalTable).join('\n')}</section>`;
}

/** A table of text plus before/after images, or a line saying there is nothing to show. */
function imageTable(id: string, title: string, none: string, headers: string[], rows: string[][]): string {
  const head = `<section id="${id}"><h2>${title}</h2>`;
  if (!rows.length) return `${head}<p class="missing">${none}</p></section>`;
  const ths = headers.map((h) => `<th>${h}</th>`).join('');
  const body = rows.map(([label, ...imgs]) => `<tr><td class="prompt">${label}</td>${imgs.map((i) => `<td>${i}</td>`).join('')}</tr>`);
  return `${head}\n<table class="grid"><thead><tr>${ths}</tr></thead><tbody>\n${body.join('\n')}\n</tbody></table></section>`;
}

function samplesSection(samples: readonly SampleComparison[], assets: AssetMap): string {
  const rows = samples.map((s) => [escapeXml(s.prompt), img(assets, s.base, `base: ${s.prompt}`), img(assets, s.finetuned, `fine-tuned: ${s.prompt}`)]);
  return imageTable('samples', 'Samples for fixed prompts', 'No samples were generated.', ['Prompt', 'Base', 'Fine-tuned'], rows);
}

function editsSection(edits: readonly EditExample[], assets: AssetMap): string {
  const rows = edits.map((e) => [
    `${escapeXml(e.instruction)}${e.category ? ` <span class="count">(${escapeXml(e.category)})</span>` : ''}`,
    img(assets, e.input, `input: ${e.instruction}`), img(assets, e.base, `base: ${e.instruction}`), img(assets, e.finetuned, `fine-tuned: ${e.instruction}`),
  ]);
  return imageTable('edits', 'Edit examples', 'No edit examples were generated.', ['Instruction', 'Input', 'Base', 'Fine-tuned'], rows);
}

function reproduceSection(f: RunFacts, extra: readonly string[]): string {
  const cmds = [f.command, ...extra].map((c) => `<pre><code>${escapeXml(c)}</code></pre>`).join('\n');
  return `<section id="reproduce"><h2>How to reproduce</h2>\n<p>From a clone of the repository, after <code>npm ci</code>:</p>\n${cmds}</section>`;
}

const CSS = `
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; background: #f5f5f2; color: #222; }
main { max-width: 1040px; margin: 0 auto; padding: 20px; }
nav a { margin-right: 12px; }
section { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 14px 20px; margin: 16px 0; }
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid #eee; padding: 4px 10px; text-align: left; vertical-align: middle; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.overall { font-weight: bold; }
.better { color: #137333; } .worse { color: #b3261e; } .same { color: #666; }
.count, .note, .missing { color: #666; } .missing { font-style: italic; }
td.prompt { max-width: 280px; }
figure { margin: 8px 0; }
img { image-rendering: crisp-edges; image-rendering: pixelated; max-width: 100%; height: auto; border: 1px solid #ccc; }
svg.chart { max-width: 100%; height: auto; }
pre { background: #f2f2f2; padding: 10px; overflow-x: auto; }
`;

function renderHtml(data: ReportData, steps: StepLog[], assets: AssetMap): string {
  const title = data.title ?? `janus4o-tf fine-tune report (${data.facts.preset})`;
  const nav = [
    ['facts', 'Run'], ['curves', 'Loss'], ['lr', 'LR'], ['heldout', 'Held-out'], ['evaluation', data.evaluation?.title ?? 'Evaluation'],
    ['samples', 'Samples'], ['edits', 'Edits'], ['reproduce', 'Reproduce'],
  ].map(([id, label]) => `<a href="#${id}">${label}</a>`);
  return [
    '<!DOCTYPE html>',
    '<html xmlns="http://www.w3.org/1999/xhtml" lang="en">',
    `<head><meta charset="utf-8" /><meta name="viewport" content="width=device-width, initial-scale=1" /><title>${escapeXml(title)}</title><style>${CSS}</style></head>`,
    '<body><main>',
    `<h1>${escapeXml(title)}</h1>`,
    `<nav>${nav.join(' ')}</nav>`,
    factsSection(data.facts, steps),
    curvesSection(steps),
    heldOutSection(data.heldOut),
    evaluationSection(data.evaluation),
    samplesSection(data.samples ?? [], assets),
    editsSection(data.edits ?? [], assets),
    reproduceSection(data.facts, data.reproduce ?? []),
    '</main></body>',
    '</html>',
    '',
  ].join('\n');
}

/**
 * Writes dir/report.html and dir/report-assets/*.png. Images are written before the HTML, the HTML is
 * replaced atomically, and only then are PNGs of an earlier report that the new one does not reference
 * removed, so a reader never sees a report that points at a missing file.
 */
export async function writeReport(dir: string, data: ReportData): Promise<WrittenReport> {
  const wanted: Array<[ImageSource, string]> = [];
  const pad = (i: number) => String(i + 1).padStart(2, '0');
  (data.samples ?? []).forEach((s, i) => {
    if (s.base !== null) wanted.push([s.base, `sample-${pad(i)}-base.png`]);
    if (s.finetuned !== null) wanted.push([s.finetuned, `sample-${pad(i)}-finetuned.png`]);
  });
  (data.edits ?? []).forEach((e, i) => {
    if (e.input !== null) wanted.push([e.input, `edit-${pad(i)}-input.png`]);
    if (e.base !== null) wanted.push([e.base, `edit-${pad(i)}-base.png`]);
    if (e.finetuned !== null) wanted.push([e.finetuned, `edit-${pad(i)}-finetuned.png`]);
  });
  // Keyed by source: the same buffer or path used twice becomes one file.
  const assets: AssetMap = new Map();
  for (const [src, name] of wanted) if (!assets.has(src)) assets.set(src, await loadAsset(src, name));
  const html = renderHtml(data, latestPerStep(data.steps), assets);

  const assetDir = path.join(dir, ASSET_DIR);
  await fs.promises.mkdir(assetDir, { recursive: true });
  const files: string[] = [];
  for (const a of assets.values()) {
    const file = path.join(dir, a.rel);
    await fs.promises.writeFile(file, a.bytes);
    files.push(file);
  }
  const htmlFile = path.join(dir, REPORT_FILE);
  await atomicWriteFile(htmlFile, html);
  const keep = new Set(files.map((f) => path.basename(f)));
  for (const name of await fs.promises.readdir(assetDir)) {
    if (name.endsWith('.png') && !keep.has(name)) await fs.promises.rm(path.join(assetDir, name), { force: true });
  }
  return { html: htmlFile, files };
}
