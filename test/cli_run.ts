/** Running the built CLI (dist/cli/main.js) from tests: one-shot runs, and runs watched until a line appears. */
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as path from 'path';
import { openTensorFile } from '../src/io/atomic';

export const ROOT = path.resolve(__dirname, '..');
export const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', env });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Exit 0 with no stack trace and no debug hint on stderr. */
export function expectCleanExit(r: { code: number | null; stderr: string }): void {
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr}`);
  expect(r.stderr).not.toMatch(/\n\s+at |JANUS4O_DEBUG/);
}

/** Starts the CLI and resolves once its stderr matches `pattern` (rejects if it exits first). */
export function startCliUntil(args: string[], pattern: RegExp, cwd: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (pattern.test(err)) resolve(child);
    });
    child.on('exit', (code) => reject(new Error(`${args[0]} exited (${code}) before ${pattern}: ${err}`)));
  });
}

/** Every tensor of a checkpoint's model.safetensors. */
export async function checkpointWeights(stepDir: string): Promise<Map<string, Float32Array>> {
  const f = await openTensorFile(path.join(stepDir, 'model.safetensors'));
  const out = new Map<string, Float32Array>();
  for (const name of f.entries.keys()) out.set(name, await f.read(name));
  return out;
}

/** The model overrides of the CLI tests' micro ShapeWorld model (32 px, 2 layers), as YAML under `model:`. */
export const MICRO_MODEL_YAML = `  preset: tiny
  overrides:
    imageSize: 32
    llm: { hiddenSize: 32, numLayers: 2, numHeads: 2, numKvHeads: 2, intermediateSize: 64, maxPositionEmbeddings: 512 }
    vq: { codebookSize: 64, baseChannels: 8, chMult: [1, 1, 1, 2], zChannels: 8, normGroups: 4, numAttnBlocks: 0 }
    siglip: { width: 16, depth: 1, numHeads: 2, mlpDim: 32 }
`;
