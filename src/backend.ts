/**
 * Picks the TensorFlow.js backend. `auto` prefers native TensorFlow (GPU, then CPU), then wasm, then the
 * pure-JS cpu backend, and says which one it took and why the others were skipped.
 */
import * as tf from '@tensorflow/tfjs-core';
// Gradients of every op (see gradients.ts).
import './gradients';
import * as path from 'path';
import { registerTrainingKernels } from './kernels';
import { describeMatrixKernels } from './kernels/native';

export type BackendName = 'auto' | 'tensorflow' | 'wasm' | 'cpu';
export const BACKEND_NAMES: readonly BackendName[] = ['auto', 'tensorflow', 'wasm', 'cpu'];

export interface BackendChoice {
  /** tfjs backend name actually in use: 'tensorflow', 'wasm' or 'cpu'. */
  name: string;
  /** Why earlier candidates were skipped, in the order they were tried. */
  skipped: { candidate: string; reason: string }[];
  /** True when the native backend found a GPU. */
  gpu: boolean;
}

/** Receives initBackend's one log line. */
export type BackendLogger = (line: string) => void;

let current: BackendChoice | null = null;

function tryRequire(moduleName: string): string | null {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require(moduleName);
    return null;
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    return (e as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' ? `${moduleName} is not installed` : msg;
  }
}

async function initNative(skipped: BackendChoice['skipped']): Promise<boolean> {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    const err = tryRequire(pkg);
    if (err !== null) {
      skipped.push({ candidate: pkg, reason: err });
      continue;
    }
    if (await tf.setBackend('tensorflow')) return true;
    skipped.push({ candidate: pkg, reason: 'loaded, but the tensorflow backend failed to initialise' });
  }
  return false;
}

async function initWasm(skipped: BackendChoice['skipped']): Promise<boolean> {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const wasm = require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
    // Point at the .wasm files explicitly: under jest and bundlers the default lookup next to the
    // calling script can miss them.
    const dir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
    wasm.setWasmPaths(dir + path.sep);
    if (await tf.setBackend('wasm')) return true;
    skipped.push({ candidate: 'wasm', reason: 'tf.setBackend("wasm") returned false' });
  } catch (e) {
    skipped.push({ candidate: 'wasm', reason: (e as Error).message.split('\n')[0] });
  }
  return false;
}

async function initCpu(): Promise<boolean> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  require('@tensorflow/tfjs-backend-cpu');
  const ok = await tf.setBackend('cpu');
  // The cpu backend prints a "install tfjs-node" banner on first use; initBackend already logged its choice
  // and why the faster backends were skipped.
  const b = tf.backend() as unknown as { firstUse?: boolean };
  if (ok && 'firstUse' in b) b.firstUse = false;
  return ok;
}

/** The default logger of initBackend: one line on stderr, so stdout stays free for a program's own output. */
const logToStderr: BackendLogger = (line) => {
  process.stderr.write(`${line}\n`);
};

/**
 * Selects and initialises a backend and logs one line saying which and why the faster ones were skipped, and on
 * wasm which matrix kernels run (`backend: wasm (skipped: @tensorflow/tfjs-node-gpu - ...); matrix kernels:
 * native sgemm (avx512, 2 threads)`), on stderr by default; pass `() => undefined` to
 * silence it. Idempotent for the same request; switching between wasm and cpu in one process is allowed
 * (tests compare them).
 */
export async function initBackend(request: BackendName = 'auto', log: BackendLogger = logToStderr): Promise<BackendChoice> {
  if (!BACKEND_NAMES.includes(request)) {
    throw new Error(`Unknown backend "${request}": expected one of ${BACKEND_NAMES.join(', ')}.`);
  }
  const skipped: BackendChoice['skipped'] = [];
  // Kernels must be registered before a backend initialises (their setup functions run at init).
  registerTrainingKernels();
  let ok = false;
  if (request === 'auto' || request === 'tensorflow') {
    ok = await initNative(skipped);
    if (!ok && request === 'tensorflow') {
      throw new Error(
        `Backend "tensorflow" requested but unavailable: ${skipped.map((s) => `${s.candidate}: ${s.reason}`).join('; ')}. ` +
          'Install @tensorflow/tfjs-node-gpu (CUDA 11.2 + cuDNN 8.1) or @tensorflow/tfjs-node, or use --backend wasm.',
      );
    }
  }
  if (!ok && (request === 'auto' || request === 'wasm')) {
    ok = await initWasm(skipped);
    if (!ok && request === 'wasm') {
      throw new Error(`Backend "wasm" requested but failed: ${skipped.map((s) => s.reason).join('; ')}`);
    }
  }
  if (!ok) ok = await initCpu();
  if (!ok) throw new Error('No TensorFlow.js backend could be initialised (tried tensorflow, wasm, cpu).');
  await tf.ready();
  const name = tf.getBackend();
  const gpu = name === 'tensorflow' && Boolean((tf.backend() as unknown as { isUsingGpuDevice?: boolean }).isUsingGpuDevice);
  current = { name, skipped, gpu };
  const why = skipped.length ? ` (skipped: ${skipped.map((s) => `${s.candidate} - ${s.reason}`).join('; ')})` : '';
  // On wasm the matrix products run natively when the addon is there; say which, and why when not.
  const matrix = name === 'wasm' ? `; ${describeMatrixKernels()}` : '';
  log(`backend: ${name}${gpu ? ' (GPU)' : ''}${why}${matrix}`);
  return current;
}

/** The last choice made by initBackend, or null before the first call. */
export function currentBackend(): BackendChoice | null {
  return current;
}
