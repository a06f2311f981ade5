/**
 * initBackend says which backend it took (and why it skipped the faster ones) by default, as the README
 * promises: one line on stderr, nothing on stdout; a no-op logger silences it.
 */
import { spawnSync } from 'child_process';
import * as path from 'path';
import { initBackend } from '../src/backend';

const ROOT = path.resolve(__dirname, '..');

describe('initBackend logging', () => {
  afterEach(() => jest.restoreAllMocks());

  test('by default it writes one line to stderr and nothing to stdout', async () => {
    const err = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const out = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const choice = await initBackend('cpu');
    expect(choice.name).toBe('cpu');
    expect(err.mock.calls.map((c) => String(c[0]))).toEqual(['backend: cpu\n']);
    expect(out).not.toHaveBeenCalled();
  });

  test('auto names the backends it skipped and why, on stderr', async () => {
    const err = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    await initBackend('auto');
    const lines = err.mock.calls.map((c) => String(c[0]));
    expect(lines).toHaveLength(1);
    // ... and which matrix kernels run: the native sgemm, or the wasm ones with the reason.
    expect(lines[0]).toMatch(/^backend: wasm \(skipped: @tensorflow\/tfjs-node-gpu - .+; @tensorflow\/tfjs-node - .+\); matrix kernels: (native sgemm \((avx512|avx2|generic), \d+ threads?\)|wasm \(.+\))\n$/);
  });

  test('a no-op logger silences it; a custom one receives the line', async () => {
    const err = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    await initBackend('cpu', () => undefined);
    expect(err).not.toHaveBeenCalled();
    const lines: string[] = [];
    await initBackend('cpu', (l) => lines.push(l));
    expect(lines).toEqual(['backend: cpu']);
    expect(err).not.toHaveBeenCalled();
  });

  test('a program using the built package gets the line on stderr, its stdout untouched', () => {
    const script = "require('./dist').initBackend('cpu').then((c) => console.log(JSON.stringify(c.name)))";
    const r = spawnSync(process.execPath, ['-e', script], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('"cpu"\n');
    expect(r.stderr).toBe('backend: cpu\n');
  });
});
