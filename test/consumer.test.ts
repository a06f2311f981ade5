/**
 * A separate package that depends on janus4o-tf by path imports it by name, from CommonJS, from ESM and from
 * TypeScript, and builds the tiny model.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

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

  const run = (file: string) => JSON.parse(execFileSync(process.execPath, [file], { cwd: dir, encoding: 'utf8' }).trim().split('\n').pop()!);

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
    const tsc = (f: string): string => {
      try {
        execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '--noEmit', '--strict', '--skipLibCheck', '--module', 'commonjs', '--esModuleInterop', f], { cwd: dir, encoding: 'utf8' });
        return 'ok';
      } catch (e) {
        return String((e as { stdout?: string }).stdout);
      }
    };
    expect(tsc('c.ts')).toBe('ok');
    expect(tsc('bad.ts')).toMatch(/Type 'number' is not assignable to type 'string'/);
  });
});
