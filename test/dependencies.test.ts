/**
 * The dependency set: every runtime dependency is used, every @tensorflow package is pinned to one version with one
 * installed tfjs-core, and op gradients come from the small @tensorflow/tfjs-layers bundle, not the
 * @tensorflow/tfjs umbrella (webgl, converter, data: about half of `npm ci`'s install size).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import '../src/gradients';

const ROOT = path.resolve(__dirname, '..');
const TFJS = '4.22.0';

interface PackageJson {
  dependencies: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  devDependencies: Record<string, string>;
}
interface LockEntry {
  version?: string;
  optional?: boolean;
  dev?: boolean;
}

const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as PackageJson;
const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry & PackageJson> };
const runtime = { ...pkg.dependencies, ...(pkg.optionalDependencies ?? {}) };

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

describe('dependencies', () => {
  test('every runtime dependency is imported or required by name somewhere in src/', () => {
    const src = sourceFiles(path.join(ROOT, 'src')).map((f) => fs.readFileSync(f, 'utf8')).join('\n');
    const unused = Object.keys(runtime).filter((name) => !src.includes(`'${name}'`) && !src.includes(`'${name}/`));
    expect(unused).toEqual([]);
  });

  test('no @tensorflow/tfjs umbrella: only tfjs-node-gpu (optional) may pull it in, with webgl, converter and data', () => {
    expect(Object.keys(runtime)).not.toContain('@tensorflow/tfjs');
    expect(lock.packages[''].dependencies).not.toHaveProperty('@tensorflow/tfjs');
    for (const name of ['tfjs', 'tfjs-backend-webgl', 'tfjs-converter', 'tfjs-data']) {
      const entry = lock.packages[`node_modules/@tensorflow/${name}`];
      if (entry) expect({ name, optional: entry.optional }).toEqual({ name, optional: true });
    }
  });

  test(`every @tensorflow package is pinned to ${TFJS}, with exactly one tfjs-core in the lockfile`, () => {
    for (const [name, range] of Object.entries(runtime)) if (name.startsWith('@tensorflow/')) expect({ name, range }).toEqual({ name, range: TFJS });
    const tfjsEntries = Object.entries(lock.packages).filter(([p]) => /(^|\/)node_modules\/@tensorflow\/[^/]+$/.test(p));
    expect(tfjsEntries.length).toBeGreaterThan(0);
    for (const [p, e] of tfjsEntries) expect({ p, version: e.version }).toEqual({ p, version: TFJS });
    expect(Object.keys(lock.packages).filter((p) => p.endsWith('node_modules/@tensorflow/tfjs-core'))).toEqual(['node_modules/@tensorflow/tfjs-core']);
  });

  test("src/gradients registers a gradient for every kernel in tfjs-core's own register_all_gradients list", () => {
    const core = path.dirname(require.resolve('@tensorflow/tfjs-core/package.json'));
    const all = fs.readFileSync(path.join(core, 'dist', 'register_all_gradients.js'), 'utf8');
    const files = [...all.matchAll(/from '\.\/(gradients\/\w+)'/g)].map((m) => m[1]);
    expect(files.length).toBeGreaterThan(90);
    const kernels = new Set<string>();
    for (const f of files) {
      const text = fs.readFileSync(path.join(core, 'dist', `${f}.js`), 'utf8');
      for (const m of text.matchAll(/kernelName: (\w+)/g)) {
        const name = (tf as unknown as Record<string, unknown>)[m[1]];
        expect(typeof name).toBe('string');
        kernels.add(name as string);
      }
    }
    const missing = [...kernels].filter((k) => tf.getGradient(k) === undefined);
    expect(missing).toEqual([]);
    // The kernels the model's backward pass leans on, by name.
    for (const k of ['BatchMatMul', 'Softmax', 'GatherV2', 'Rsqrt', 'Sum', 'Mean', 'Concat', 'Slice', 'Transpose', 'Reshape', 'Cast']) expect(tf.getGradient(k)).toBeDefined();
  });

  test('the built package loads gradients without the umbrella, webgl, converter or data', () => {
    const script = `
      require('@tensorflow/tfjs-core');
      require('./dist/gradients.js');
      const loaded = Object.keys(require.cache).filter((f) => /node_modules[\\\\/]@tensorflow[\\\\/](tfjs|tfjs-backend-webgl|tfjs-converter|tfjs-data)[\\\\/]/.test(f));
      console.log(JSON.stringify({ grads: globalThis._tfGlobals.get('gradRegistry').size, loaded }));`;
    const r = spawnSync(process.execPath, ['-e', script], { cwd: ROOT, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout.trim()) as { grads: number; loaded: string[] };
    expect(out.loaded).toEqual([]);
    expect(out.grads).toBeGreaterThan(90);
  });
});
