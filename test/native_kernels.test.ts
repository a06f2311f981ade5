/**
 * The native matrix kernels (native/*.c via src/kernels/native.ts) against the wasm ones they replace: every
 * micro-kernel this CPU runs, on 1 and 2 threads, forward and gradients, odd shapes, transposes, batch
 * broadcasting and the conv-gradient products, within 1e-5 relative. The wasm path is also checked against a
 * float64 reference, so the fallback is tested whether or not the addon is there.
 *
 * When must the addon be there? Unless JANUS4O_NATIVE=0 or the machine has no C compiler (`$CC`, else `cc`), the
 * install script builds it; then a missing or unloadable addon is a failure with its cause, not a skip. Without a
 * compiler, or with JANUS4O_NATIVE=0, the test says the addon is absent and checks only the wasm path.
 */
import { spawnSync } from 'child_process';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import { kernelCallCounts, nativeAddon, nativeStatus, resetKernelCallCounts, setNativeEnabled, defaultNativeThreads } from '../src/kernels/native';
import { WasmBackendLike } from '../src/kernels/wasm_util';
import { LcgArray, lcgArray, refMatMul, relErr } from './helpers';

const hasCompiler = spawnSync(process.env.CC || 'cc', ['--version'], { stdio: 'ignore' }).status === 0;
const expectNative = process.env.JANUS4O_NATIVE !== '0' && hasCompiler;

type Arr = LcgArray;
/** Deterministic inputs, so every backend sees identical data. */
const randArr = lcgArray;

const T = (a: Arr): tf.Tensor => tf.tensor(a.values, a.shape);


function run(fn: () => tf.Tensor | tf.Tensor[]): Float32Array[] {
  const out = tf.tidy(fn);
  const list = Array.isArray(out) ? out : [out];
  const vals = list.map((t) => Float32Array.from(t.dataSync()));
  tf.dispose(list);
  return vals;
}

function onWasmPath(fn: () => tf.Tensor | tf.Tensor[]): Float32Array[] {
  setNativeEnabled(false);
  try {
    return run(fn);
  } finally {
    setNativeEnabled(true);
  }
}

/** Every (micro-kernel, threads) configuration of the addon; empty when it is absent. */
function nativeConfigs(): { kernel: string; threads: number }[] {
  const a = nativeAddon();
  if (!a) return [];
  return a.kernels().flatMap((kernel) => [1, 2].map((threads) => ({ kernel, threads })));
}

/** Runs fn natively under every configuration and compares each result with the wasm path's. */
function expectNativeMatchesWasm(fn: () => tf.Tensor | tf.Tensor[], tol = 1e-5): void {
  const ref = onWasmPath(fn);
  const a = nativeAddon();
  if (!a) return;
  const best = a.kernel();
  try {
    for (const c of nativeConfigs()) {
      expect(a.setKernel(c.kernel)).toBe(true);
      a.setThreads(c.threads);
      const got = run(fn);
      expect(got.length).toBe(ref.length);
      for (let i = 0; i < ref.length; i++) expect({ ...c, output: i, err: relErr(got[i], ref[i]) < tol ? 'ok' : relErr(got[i], ref[i]) }).toEqual({ ...c, output: i, err: 'ok' });
    }
  } finally {
    a.setKernel(best);
    a.setThreads(defaultNativeThreads());
  }
}


// [name, a shape, b shape, transposeA, transposeB]: edges of every tile size (MR 12/6/4, NR 32/16, MC 144,
// KC 256, NC 512), all four transpose combinations, folded and true batches, one- and two-sided broadcasts.
const cases: [string, number[], number[], boolean, boolean][] = [
  ['odd 2D', [37, 53], [53, 29], false, false],
  ['odd 2D transposeA', [53, 37], [53, 29], true, false],
  ['odd 2D transposeB', [37, 53], [29, 53], false, true],
  ['odd 2D both', [53, 37], [29, 53], true, true],
  ['one row past a 12x32 tile', [13, 7], [7, 33], false, false],
  ['k = 1, n = 1', [19, 1], [1, 1], false, false],
  ['few rows, untransposed (stays on XNNPACK)', [3, 40], [40, 50], false, false],
  ['few rows, transposeB (native, B read in place is impossible)', [3, 40], [50, 40], false, true],
  ['few rows, row-major B read in place', [20, 70], [70, 100], false, false],
  ['crosses MC, KC and NC blocks', [301, 517], [517, 600], false, false],
  ['crosses every block, both transposed', [517, 301], [600, 517], true, true],
  ['rank 3 @ rank 2 (folds into rows)', [5, 7, 9], [9, 11], false, false],
  ['rank 3 transposeA @ rank 2', [2, 13, 9], [13, 6], true, false],
  ['rank 2 broadcast @ rank 3', [13, 10], [4, 10, 7], false, false],
  ['attention q @ k^T', [32, 96, 64], [32, 96, 64], false, true],
  ['attention p @ v', [32, 96, 96], [32, 96, 64], false, false],
  ['rank 4 two-sided broadcast', [3, 1, 17, 19], [1, 4, 19, 23], false, false],
  ['rank 4 two-sided broadcast, both transposed', [3, 1, 19, 17], [1, 4, 23, 19], true, true],
  ['rank 3 vs rank 4', [3, 16, 12], [2, 1, 12, 20], false, false],
];

beforeAll(async () => {
  await initBackend('wasm', () => undefined);
});

describe('native matrix kernels', () => {
  test('are in use where they should be built, or the test says why not', () => {
    const s = nativeStatus();
    if (!expectNative) {
      // Stated on stdout of the test run: the fallback is what the rest of this file then checks.
      console.log(`native kernels absent (${process.env.JANUS4O_NATIVE === '0' ? 'JANUS4O_NATIVE=0' : 'no C compiler'}): ${s.reason}; testing the wasm path only`);
      return;
    }
    if (!s.active) {
      throw new Error(
        `native kernels expected (JANUS4O_NATIVE is not 0 and a C compiler is present) but not in use: ${s.reason}. ` +
          'Build them with `npm run build:native` (log: build/native-build.log), or set JANUS4O_NATIVE=0 to test the wasm path only.',
      );
    }
    expect(s.kernel).toMatch(/^(avx512|avx2|generic)$/);
    expect(s.threads).toBe(defaultNativeThreads());
  });

  test.each(cases)('%s: wasm path matches float64, native matches wasm', (_name, as, bs, ta, tb) => {
    const a = randArr(as, 1);
    const b = randArr(bs, 2);
    const fn = () => tf.matMul(T(a), T(b), ta, tb);
    const [wasm] = onWasmPath(fn);
    expect(relErr(wasm, refMatMul(a, b, ta, tb))).toBeLessThan(1e-5);
    expectNativeMatchesWasm(fn);
  });

  // tfjs' BatchMatMul gradient does not reduce over broadcast batch dims (it fails its own shape check on every
  // backend), so gradients are compared on the cases whose operands have the same batch dims; the big block
  // cases are covered forward, and their gradients are the same products transposed.
  const sameBatch = (c: (typeof cases)[number]) => c[1].slice(0, -2).join() === c[2].slice(0, -2).join();
  const gradCases = cases.filter((c) => sameBatch(c) && !c[0].startsWith('crosses'));
  test.each(gradCases)('%s: gradients match', (_name, as, bs, ta, tb) => {
    const a = randArr(as, 3);
    const b = randArr(bs, 4);
    const fn = () => {
      const g = tf.grads((x: tf.Tensor, y: tf.Tensor) => {
        const p = tf.matMul(x, y, ta, tb);
        // A non-uniform upstream gradient, so a transposed dA/dB cannot pass by symmetry.
        return tf.sum(tf.mul(p, tf.sin(tf.reshape(tf.range(0, p.size, 1), p.shape))));
      });
      return g([T(a), T(b)]);
    };
    expectNativeMatchesWasm(fn);
  });

  const ASYM: [[number, number], [number, number], [number, number], [number, number]] = [[0, 0], [0, 1], [0, 1], [0, 0]];
  const convCases: [string, number[], number[], number | [number, number], 'same' | 'valid' | typeof ASYM][] = [
    ['3x3 s1 same', [2, 9, 7, 5], [3, 3, 5, 6], 1, 'same'],
    ['3x3 s2 asymmetric (col2im input gradient)', [2, 8, 8, 6], [3, 3, 6, 5], 2, ASYM],
    ['2x3 strides [2,1] valid', [1, 11, 9, 3], [2, 3, 3, 4], [2, 1], 'valid'],
    ['1x1 s1 (the input is the patch matrix)', [2, 5, 7, 8], [1, 1, 8, 3], 1, 'valid'],
    ['3x3 s1 same, patch matrix lowered in two chunks', [2, 64, 64, 64], [3, 3, 64, 16], 1, 'same'],
  ];
  test.each(convCases)('conv2d %s: forward and both gradients match', (_name, xs, ws, s, pad) => {
    const x = randArr(xs, 5);
    const w = randArr(ws, 6);
    const fn = () => {
      const g = tf.grads((xx: tf.Tensor, ww: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, s, pad), 0.37)));
      return [tf.conv2d(T(x) as tf.Tensor4D, T(w) as tf.Tensor4D, s, pad), ...g([T(x), T(w)])];
    };
    expectNativeMatchesWasm(fn);
  });

  test('conv2d with dilation 2 (forward only: tfjs has no dilated conv gradient) matches', () => {
    const x = randArr([2, 13, 11, 3], 11);
    const w = randArr([3, 3, 3, 5], 12);
    expectNativeMatchesWasm(() => tf.conv2d(T(x) as tf.Tensor4D, T(w) as tf.Tensor4D, 1, 'same', 'NHWC', 2));
  });

  test('exp matches wasm (values over the float range, large arrays split over threads) and its gradient', () => {
    const x = randArr([3, 70001], 13);
    const scaled = () => tf.mul(T(x), 40); // [-40, 40]: tiny to huge results, relative error checked per element below
    const ref = onWasmPath(() => tf.exp(scaled()))[0];
    const [got] = run(() => tf.exp(scaled()));
    let worst = 0;
    for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(got[i] - ref[i]) / Math.abs(ref[i]));
    expect(worst).toBeLessThan(1e-6);
    expectNativeMatchesWasm(() => tf.grad((t: tf.Tensor) => tf.sum(tf.exp(t)))(T(randArr([257, 33], 14))));
    // IEEE special values come out as tf's wasm kernel gives them.
    const special = () => tf.exp(tf.tensor1d([-Infinity, Infinity, NaN, 0, -1000, 1000, 88.7, -87.3]));
    expect(Array.from(run(special)[0])).toEqual(Array.from(onWasmPath(special)[0]));
  });

  test('the call counters say which path ran', () => {
    const a = randArr([40, 30], 7);
    const b = randArr([20, 30], 8);
    resetKernelCallCounts();
    onWasmPath(() => tf.matMul(T(a), T(b), false, true));
    expect(kernelCallCounts().BatchMatMul).toEqual({ native: 0, wasm: 1 });
    run(() => tf.matMul(T(a), T(b), false, true));
    expect(kernelCallCounts().BatchMatMul).toEqual(nativeAddon() ? { native: 1, wasm: 1 } : { native: 0, wasm: 2 });
  });

  test('the addon refuses operands outside the heap instead of writing there', () => {
    const addon = nativeAddon();
    if (!addon) return; // nothing native to misuse
    const heap = (tf.backend() as unknown as WasmBackendLike).wasm.HEAPU8;
    expect(() => addon.gemm(heap, 1, 4, 4, 4, heap.length - 16, 0, 0, false, false, null, null, false)).toThrow(/past the end of the heap/);
    expect(() => addon.gemm(heap, 2, 4, 4, 4, 0, 0, 0, false, false, new Int32Array([0, -1]), null, false)).toThrow(/negative batch index/);
    expect(() => addon.gemm(heap, 1, 4, 4, 4, 2, 0, 0, false, false, null, null, false)).toThrow(/aligned/);
    const geom = new Int32Array([1, 8, 8, 4, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1]);
    expect(() => addon.im2col(heap, 0, heap.length - 64, 0, 64, geom)).toThrow(/past the end of the heap/);
    expect(() => addon.col2im(heap, heap.length - 64, 0, geom)).toThrow(/past the end of the heap/);
    expect(() => addon.exp(heap, heap.length - 8, 0, 4)).toThrow(/past the end of the heap/);
  });

  test('no tensor leaks through the native path', () => {
    const before = tf.memory().numTensors;
    run(() => tf.matMul(T(randArr([33, 17], 9)), T(randArr([17, 35], 10))));
    expect(tf.memory().numTensors).toBe(before);
  });
});
