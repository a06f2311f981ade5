/**
 * The import graph of src/ follows design.md's layering: imports point down, ShapeWorld is a client of the core,
 * and nothing imports the CLI. The graph is read from the sources (static imports, re-exports, require and dynamic
 * import of relative paths), so a new file or import is checked without listing it here.
 */
import * as fs from 'fs';
import * as path from 'path';

const SRC = path.resolve(__dirname, '../src');

/** Rank of each top-level part of src/ (a folder, or a file at the top); a file imports only lower ranks or its own part. */
const RANK: Record<string, number> = {
  'errors.ts': 0,
  distributed: 0,
  kernels: 0,
  'gradients.ts': 0,
  'backend.ts': 1,
  model: 2,
  io: 3,
  tokenizer: 3,
  data: 4,
  train: 5,
  generate: 5,
  report: 5,
  shapeworld: 6,
  bench: 7,
  cli: 8,
  'index.ts': 9,
};

/**
 * The upward imports kept on purpose, each with its reason. Janus4o.fromPretrained / savePretrained are the public
 * API's one-call loaders, so the model class reaches the folder reader.
 */
const ALLOWED_UP = new Set(['model/janus.ts -> io/pretrained.ts']);

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

function resolveImport(from: string, spec: string): string {
  const base = path.resolve(path.dirname(from), spec);
  for (const c of [base, `${base}.ts`, path.join(base, 'index.ts')]) if (fs.existsSync(c) && fs.statSync(c).isFile()) return c;
  throw new Error(`${path.relative(SRC, from)} imports ${spec}, which does not resolve`);
}

function importsOf(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const re = /(?:\bfrom\s+|\brequire\(\s*|\bimport\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm;
  return [...text.matchAll(re)].map((m) => resolveImport(file, m[1]));
}

const part = (file: string) => path.relative(SRC, file).split(path.sep)[0];
const rel = (file: string) => path.relative(SRC, file).split(path.sep).join('/');

const edges = sources(SRC).flatMap((f) => importsOf(f).map((t) => ({ from: f, to: t })));

describe('the import graph of src/', () => {
  it('has every part ranked', () => {
    const unranked = [...new Set(sources(SRC).map(part))].filter((p) => RANK[p] === undefined);
    expect(unranked).toEqual([]);
    expect(edges.length).toBeGreaterThan(200);
  });

  it('points down: no file imports a part above its own', () => {
    const up = edges
      .filter((e) => part(e.from) !== part(e.to) && RANK[part(e.to)] >= RANK[part(e.from)])
      .map((e) => `${rel(e.from)} -> ${rel(e.to)}`)
      .filter((e) => !ALLOWED_UP.has(e));
    expect(up).toEqual([]);
  });

  it('keeps ShapeWorld a client: only the CLI, the benchmarks and the public index import src/shapeworld', () => {
    const core = edges.filter((e) => part(e.to) === 'shapeworld' && !['shapeworld', 'cli', 'bench', 'index.ts'].includes(part(e.from)));
    expect(core.map((e) => `${rel(e.from)} -> ${rel(e.to)}`)).toEqual([]);
  });

  it('keeps src/distributed a leaf and the CLI unimported', () => {
    expect(edges.filter((e) => part(e.from) === 'distributed' && part(e.to) !== 'distributed').map((e) => rel(e.to))).toEqual([]);
    expect(edges.filter((e) => part(e.to) === 'cli' && part(e.from) !== 'cli').map((e) => rel(e.from))).toEqual([]);
  });

  it('would catch a violation (the checker is not vacuous)', () => {
    const fake = { from: path.join(SRC, 'model/llama.ts'), to: path.join(SRC, 'shapeworld/scene.ts') };
    expect(RANK[part(fake.to)] >= RANK[part(fake.from)]).toBe(true);
    expect(importsOf(path.join(SRC, 'train/run.ts')).map(rel)).toContain('train/trainer.ts');
  });
});
