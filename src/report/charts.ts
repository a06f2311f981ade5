/**
 * Hand-written SVG line charts for the training report. The report must open from disk with no network and no
 * script, so each chart is a static SVG string inlined into the HTML; it is also valid XML so the report stays
 * XHTML-compatible and a strict parser can check it.
 */

/** One line: points as [x, y]; non-finite points are dropped (a NaN loss on a skipped step is not a value). */
export interface ChartSeries {
  name: string;
  points: ReadonlyArray<readonly [number, number]>;
  /** Any CSS colour; defaults to a palette entry by position. */
  color?: string;
  /** Shown in the legend when the series has no finite points, instead of drawing nothing silently. */
  emptyNote?: string;
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
  /**
   * Longer series are bucket-averaged to this many points: a 100k-step run would otherwise put megabytes of
   * coordinates into the HTML, and a screen cannot show more points than it has pixels anyway.
   */
  maxPoints?: number;
  /** Shown in the plot area when no series has any point. */
  emptyMessage?: string;
}

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf'] as const;

const DEFAULT_MAX_POINTS = 800;

/** Escapes text for HTML/XML text and double-quoted attribute values. */
export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** Finite points only, in input order. */
export function finitePoints(points: ReadonlyArray<readonly [number, number]>): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const [x, y] of points) if (Number.isFinite(x) && Number.isFinite(y)) out.push([x, y]);
  return out;
}

/** Averages consecutive runs of points so at most `maxPoints` remain; shorter input is returned unchanged. */
export function downsample(points: ReadonlyArray<readonly [number, number]>, maxPoints: number): Array<[number, number]> {
  if (!(maxPoints >= 1)) throw new Error(`maxPoints must be at least 1, got ${maxPoints}`);
  if (points.length <= maxPoints) return points.map(([x, y]) => [x, y]);
  const out: Array<[number, number]> = [];
  for (let b = 0; b < maxPoints; b++) {
    const lo = Math.floor((b * points.length) / maxPoints);
    const hi = Math.floor(((b + 1) * points.length) / maxPoints);
    let sx = 0;
    let sy = 0;
    for (let i = lo; i < hi; i++) {
      sx += points[i][0];
      sy += points[i][1];
    }
    out.push([sx / (hi - lo), sy / (hi - lo)]);
  }
  return out;
}

/** Round tick values (1, 2, 5 times a power of ten) covering [min, max], about `count` of them. */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) return [min];
  const raw = (max - min) / Math.max(1, count);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const ticks: number[] = [];
  // Multiplying from an integer index (not accumulating) keeps labels like 6e-5 free of drift; the slack
  // keeps rounding error from dropping a tick that sits exactly on max.
  const first = Math.ceil(min / step - 1e-9);
  for (let k = first; k * step <= max + step * 1e-9; k++) ticks.push(k === 0 ? 0 : Number((k * step).toPrecision(12)));
  return ticks;
}

/** Short tick label: plain decimals for ordinary magnitudes, exponent form for learning rates like 3e-5. */
export function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a < 1e-3 || a >= 1e6) {
    const [m, e] = v.toExponential(2).split('e');
    return `${String(Number(m))}e${Number(e)}`;
  }
  return String(Number(v.toPrecision(4)));
}

/** [lo, hi] padded so a flat line or a single point still gets a drawable range. */
function domain(values: number[], pad: number): [number, number] {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (hi === lo) {
    const d = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    return [lo - d, hi + d];
  }
  const d = (hi - lo) * pad;
  lo -= d;
  hi += d;
  return [lo, hi];
}

function num(v: number): string {
  return String(Math.round(v * 100) / 100);
}

/** An SVG line chart: one <polyline> per non-empty series (carrying data-series), axes, ticks, legend. */
export function lineChart(series: readonly ChartSeries[], opts: LineChartOptions): string {
  const W = opts.width ?? 640;
  const H = opts.height ?? 280;
  const m = { left: 64, right: 16, top: 46, bottom: 44 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const maxPoints = opts.maxPoints ?? DEFAULT_MAX_POINTS;
  const lines = series.map((s, i) => ({
    name: s.name,
    color: s.color ?? PALETTE[i % PALETTE.length],
    emptyNote: s.emptyNote ?? 'no data',
    points: downsample(finitePoints(s.points), maxPoints),
  }));
  const all = lines.flatMap((l) => l.points);
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeXml(opts.title)}">`,
    `<title>${escapeXml(opts.title)}</title>`,
    `<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff" />`,
    `<text x="${m.left}" y="20" font-size="14" font-weight="bold">${escapeXml(opts.title)}</text>`,
    `<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#999999" />`,
    `<text x="${m.left + pw / 2}" y="${H - 8}" font-size="12" text-anchor="middle">${escapeXml(opts.xLabel)}</text>`,
    `<text x="14" y="${m.top + ph / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 14 ${m.top + ph / 2})">${escapeXml(opts.yLabel)}</text>`,
  );
  if (all.length === 0) {
    const msg = opts.emptyMessage ?? 'no data yet';
    parts.push(`<text class="chart-empty" x="${m.left + pw / 2}" y="${m.top + ph / 2}" font-size="13" fill="#666666" text-anchor="middle">${escapeXml(msg)}</text>`);
  } else {
    const [x0, x1] = domain(all.map((p) => p[0]), 0);
    const [y0, y1] = domain(all.map((p) => p[1]), 0.05);
    const sx = (x: number) => m.left + ((x - x0) / (x1 - x0)) * pw;
    const sy = (y: number) => m.top + ph - ((y - y0) / (y1 - y0)) * ph;
    for (const t of niceTicks(y0, y1, 5)) {
      const y = num(sy(t));
      parts.push(`<line x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#e5e5e5" />`);
      parts.push(`<text x="${m.left - 6}" y="${y}" font-size="11" text-anchor="end" dominant-baseline="middle">${escapeXml(formatTick(t))}</text>`);
    }
    for (const t of niceTicks(x0, x1, 6)) {
      const x = num(sx(t));
      parts.push(`<line x1="${x}" y1="${m.top + ph}" x2="${x}" y2="${m.top + ph + 4}" stroke="#999999" />`);
      parts.push(`<text x="${x}" y="${m.top + ph + 16}" font-size="11" text-anchor="middle">${escapeXml(formatTick(t))}</text>`);
    }
    for (const l of lines) {
      if (l.points.length === 0) continue;
      const pts = l.points.map(([x, y]) => `${num(sx(x))},${num(sy(y))}`).join(' ');
      parts.push(`<polyline data-series="${escapeXml(l.name)}" fill="none" stroke="${escapeXml(l.color)}" stroke-width="1.5" points="${pts}" />`);
      // A one-point polyline draws nothing; a dot makes a single logged step visible.
      if (l.points.length === 1) parts.push(`<circle cx="${num(sx(l.points[0][0]))}" cy="${num(sy(l.points[0][1]))}" r="3" fill="${escapeXml(l.color)}" />`);
    }
  }
  // Legend on its own row under the title (so a long title cannot collide with it); empty series are greyed
  // with their note so a missing curve is explained, not silently absent.
  let lx = m.left;
  for (const l of lines) {
    const empty = l.points.length === 0;
    const label = empty ? `${l.name}: ${l.emptyNote}` : l.name;
    parts.push(`<line x1="${num(lx)}" y1="32" x2="${num(lx + 14)}" y2="32" stroke="${empty ? '#bbbbbb' : escapeXml(l.color)}" stroke-width="3" />`);
    parts.push(`<text class="${empty ? 'legend-empty' : 'legend'}" x="${num(lx + 18)}" y="36" font-size="11" fill="${empty ? '#888888' : '#222222'}">${escapeXml(label)}</text>`);
    lx += 32 + label.length * 6.5;
  }
  parts.push('</svg>');
  return parts.join('\n');
}
