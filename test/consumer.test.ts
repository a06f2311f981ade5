/**
 * A separate package that depends on janus4o-tf by path imports it by name, from CommonJS, from ESM and from
 * TypeScript, and builds the tiny model; gets the types of the generation and ShapeEval API; and compiles and
 * runs the README's library example (sampling a PNG from checkpoints/pretrained/janus4o-tiny) verbatim.
 */
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';

const ROOT = path.resolve(__dirname, '..');

describe('consumer package', () => {
  let dir: string;

  beforeAll(() => {
    // The package's entry points are the compiled dist/ files (npm ci builds them through `prepare`).
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-consumer-'));
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, dependencies: { 'janus4o-tf': `file:${ROOT}` } }));
    execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: dir, stdio: 'pipe' });
  });

  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const script = (imp: string) => `${imp}
(async () => {
  await initBackend('cpu');
  const model = Janus4o.create('tiny', { seed: 1 });
  console.log(JSON.stringify({ params: model.parameterCount(), layers: model.config.llm.numLayers }));
})().catch((e) => { console.error(e); process.exit(1); });
`;

  /** 'ok', or tsc's diagnostics; `emit` writes the .js beside the .ts. */
  const tsc = (f: string, emit = false): string => {
    try {
      // A TypeScript user of a Node library has @types/node; the consumer borrows this repository's.
      const node = ['--typeRoots', path.join(ROOT, 'node_modules', '@types'), '--types', 'node'];
      const args = ['--strict', '--skipLibCheck', '--module', 'commonjs', '--target', 'es2020', '--esModuleInterop', ...node, ...(emit ? [] : ['--noEmit']), f];
      execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), ...args], { cwd: dir, encoding: 'utf8' });
      return 'ok';
    } catch (e) {
      return String((e as { stdout?: string }).stdout);
    }
  };

  const run = (file: string) => {
    const r = spawnSync(process.execPath, [file], { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${file} failed (${r.status}):\n${r.stderr}`);
    // initBackend's default logger: one line on stderr, stdout left to the program.
    expect(r.stderr).toBe('backend: cpu\n');
    return JSON.parse(r.stdout.trim().split('\n').pop()!);
  };

  test('require and import by package name build the tiny model', () => {
    fs.writeFileSync(path.join(dir, 'a.cjs'), script("const { Janus4o, initBackend } = require('janus4o-tf');"));
    fs.writeFileSync(path.join(dir, 'b.mjs'), script("import { Janus4o, initBackend } from 'janus4o-tf';"));
    const a = run('a.cjs');
    expect(a.layers).toBe(4);
    expect(a.params).toBeGreaterThan(1_000_000);
    expect(run('b.mjs')).toEqual(a);
  });

  test('TypeScript consumers get the types', () => {
    fs.writeFileSync(
      path.join(dir, 'c.ts'),
      "import { Janus4o, JanusConfig, presetConfig } from 'janus4o-tf';\nconst cfg: JanusConfig = presetConfig('tiny');\nconst m: Janus4o = Janus4o.create(cfg, { allocate: false });\nconst n: number = m.parameterCount();\nexport { n };\n",
    );
    fs.writeFileSync(path.join(dir, 'bad.ts'), "import { Janus4o } from 'janus4o-tf';\nconst n: string = Janus4o.create('tiny').parameterCount();\nexport { n };\n");
    expect(tsc('c.ts')).toBe('ok');
    expect(tsc('bad.ts')).toMatch(/Type 'number' is not assignable to type 'string'/);
  });

  test('the generation and ShapeEval API is typed from the package root; internals and deep imports are not', () => {
    fs.writeFileSync(
      path.join(dir, 'gen.ts'),
      [
        "import { EditJob, GenerationRuntime, GuidanceWeights, SamplingOptions, SamplingStats, ShapeEvalGenerator, ShapeEvalOptions, ShapeEvalReport, T2IJob,",
        "  generateEdits, generateT2I, guideLogits, loadImagePixels, loadRuntime, makeRng, modelGenerator, renderScene, runShapeEval, sampleToken } from 'janus4o-tf';",
        'export async function run(dir: string, file: string): Promise<{ pngs: Buffer[]; report: ShapeEvalReport; stats: SamplingStats; token: number }> {',
        '  const rt: GenerationRuntime = await loadRuntime(dir);',
        '  const sampling: SamplingOptions = { cfg: rt.generation.cfg_weight, temperature: rt.generation.temperature, onProgress: (p) => console.log(p.tokensPerSecond) };',
        "  const jobs: T2IJob[] = [{ prompt: 'a red circle', count: 1 }];",
        '  const { ids, stats } = await generateT2I(rt.model, rt.templates, jobs, sampling);',
        '  const pngs: Buffer[] = await rt.decode(ids[0]);',
        '  const src = rt.encodeSource(await loadImagePixels(file, rt.model.config.imageSize));',
        "  const edits: EditJob[] = [{ instruction: 'use a pink background', sourceIds: src.ids, sourceFeatures: src.features, count: 1 }];",
        '  await generateEdits(rt.model, rt.templates, edits, { ...sampling, cfg2: rt.generation.cfg_weight2 });',
        '  const gen: ShapeEvalGenerator = modelGenerator(rt, sampling);',
        '  const opts: ShapeEvalOptions = { seed: 1, perCategory: 1, renderSource: (s) => renderScene(s, rt.model.config.imageSize) };',
        '  const report: ShapeEvalReport = await runShapeEval(gen, opts);',
        "  const w: GuidanceWeights = { cfg: 5 };",
        "  const guided = guideLogits(src.features, 't2i', w);",
        '  const token: number = sampleToken(guided.dataSync(), { temperature: 1 }, makeRng(1));',
        '  return { pngs, report, stats, token };',
        '}',
        '',
      ].join('\n'),
    );
    expect(tsc('gen.ts')).toBe('ok');
    fs.writeFileSync(path.join(dir, 'internal.ts'), "import { layoutSample } from 'janus4o-tf';\nexport { layoutSample };\n");
    expect(tsc('internal.ts')).toMatch(/has no exported member 'layoutSample'/);
    const deep = execFileSync(process.execPath, ['-e', "try { require('janus4o-tf/dist/generate/cfg'); console.log('loaded') } catch (e) { console.log(e.code) }"], { cwd: dir, encoding: 'utf8' });
    expect(deep.trim()).toBe('ERR_PACKAGE_PATH_NOT_EXPORTED');
  });

  test("the README's library example compiles and samples a PNG from the shipped janus4o-tiny", async () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## As a library'));
    const blocks = [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
    const example = blocks.find((b) => b.includes('loadRuntime('));
    expect(example).toBeDefined();
    const model = example!.match(/loadRuntime\('([^']+)'\)/)![1];
    expect(model).toBe('checkpoints/pretrained/janus4o-tiny');
    // The example's relative paths resolve in the consumer folder as they would in a clone of this repository.
    fs.mkdirSync(path.join(dir, path.dirname(model)), { recursive: true });
    fs.symlinkSync(path.join(ROOT, model), path.join(dir, model), 'dir');
    fs.writeFileSync(path.join(dir, 'example.ts'), example!);
    expect(tsc('example.ts', true)).toBe('ok');
    const r = spawnSync(process.execPath, ['example.js'], { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`README example failed (${r.status}):\n${r.stderr}`);
    expect(r.stderr).toMatch(/^backend: (wasm|tensorflow|cpu)/m);
    const png = fs.readFileSync(path.join(dir, 'sample.png'));
    const meta = await sharp(png).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 64]);
  });
});
