/**
 * Times our wasm training kernels against the stock ones (or the cpu backend where wasm has none).
 * Not part of the package; run with:
 *   npx tsc --outDir /tmp/kbench --rootDir . --module commonjs --target ES2022 --esModuleInterop --skipLibCheck scripts/kernel_bench.ts
 *   NODE_PATH=$PWD/node_modules node /tmp/kbench/scripts/kernel_bench.js
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import { stockBatchMatMul } from '../src/kernels/batch_mat_mul';
import { conv2DBackpropInputWith, stockConv2DBackpropInput, BackpropInputStrategy } from '../src/kernels/conv2d_backprop_input';
import { KernelArgs } from '../src/kernels/wasm_util';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Median ms of `reps` runs after `warm` warm-up runs; the result is read back so the work is complete. */
function time(fn: () => tf.Tensor, reps = 5, warm = 2): number {
  const ts: number[] = [];
  for (let i = 0; i < warm + reps; i++) {
    const t0 = performance.now();
    const r = fn();
    r.dataSync();
    const dt = performance.now() - t0;
    r.dispose();
    if (i >= warm) ts.push(dt);
  }
  return median(ts);
}

/** Runs fn with the wasm registration of `name` temporarily replaced by `kernelFunc`. */
function withWasmKernel<T>(name: string, kernelFunc: tf.KernelFunc, fn: () => T): T {
  const ours = tf.getKernel(name, 'wasm')!;
  tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc });
  try {
    return fn();
  } finally {
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel(ours);
  }
}

function rand(shape: number[]): tf.Tensor {
  return tf.randomNormal(shape, 0, 1, 'float32', 7);
}

/** tfjs-core does not export conv2dBackpropFilter as an op, so call the kernel through the engine. */
function filterGrad(x: tf.Tensor, dy: tf.Tensor, filterShape: number[], strides: number, pad: ConvCase[5]): tf.Tensor {
  return tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides, pad, dataFormat: 'NHWC', filterShape }) as tf.Tensor;
}

const fmt = (ms: number): string => ms.toFixed(2).padStart(9);

async function matmuls(): Promise<void> {
  console.log('\nBatchMatMul (wasm): stock ms | ours ms');
  const cases: [string, number[], number[], boolean, boolean][] = [
    ['[512,128]@[128,5096]', [512, 128], [128, 5096], false, false],
    ['[512,128]@[5096,128]^T', [512, 128], [5096, 128], false, true],
    ['[512,5096]@[128,5096]^T (dX)', [512, 5096], [128, 5096], false, true],
    ['[512,128]^T@[512,5096] (dW)', [512, 128], [512, 5096], true, false],
    ['q@k^T [16,128,32]x[16,128,32]^T', [16, 128, 32], [16, 128, 32], false, true],
    ['p@v [16,128,128]x[16,128,32]', [16, 128, 128], [16, 128, 32], false, false],
    ['[4,4,128,32]x[1,4,32,128]', [4, 4, 128, 32], [1, 4, 32, 128], false, false],
    ['[512,384]x[384,128]', [512, 384], [384, 128], false, false],
  ];
  for (const [label, as, bs, ta, tb] of cases) {
    const a = rand(as);
    const b = rand(bs);
    const ours = time(() => tf.matMul(a, b, ta, tb));
    // The stock kernel cannot broadcast a batch of 1 against a larger one; skip what it would get wrong.
    const stockOk = as.length === 2 || as.slice(0, -2).join() === bs.slice(0, -2).join();
    const stock = stockOk ? withWasmKernel('BatchMatMul', stockBatchMatMul()!, () => time(() => tf.matMul(a, b, ta, tb))) : NaN;
    console.log(`${label.padEnd(34)} ${fmt(stock)} | ${fmt(ours)}`);
    tf.dispose([a, b]);
  }
}

type ConvCase = [string, number[], number, number, number, 'same' | 'valid' | tf.backend_util.ExplicitPadding];
const convCases: ConvCase[] = [
  ['3x3 s1 same x[2,16,16,64] 64->64', [2, 16, 16, 64], 3, 64, 1, 'same'],
  ['3x3 s2 same x[4,32,32,32] 32->64', [4, 32, 32, 32], 3, 64, 2, 'same'],
  ['3x3 s2 pad[[0,1],[0,1]] x[4,32,32,32] 32->64', [4, 32, 32, 32], 3, 64, 2, [[0, 0], [0, 1], [0, 1], [0, 0]]],
  ['3x3 s1 same x[4,32,32,32] 32->32', [4, 32, 32, 32], 3, 32, 1, 'same'],
  ['3x3 s1 same x[4,32,32,3] 3->32', [4, 32, 32, 3], 3, 32, 1, 'same'],
  ['1x1 s1 x[4,8,8,64] 64->16', [4, 8, 8, 64], 1, 16, 1, 'valid'],
  ['3x3 s2 valid x[2,17,17,8] 8->8', [2, 17, 17, 8], 3, 8, 2, 'valid'],
];

async function convFilter(cpuToo: boolean): Promise<void> {
  console.log('\nConv2DBackpropFilter: cpu backend ms | ours (wasm) ms');
  for (const [label, xs, k, o, s, pad] of convCases) {
    await initBackend('wasm');
    const x = rand(xs);
    const y = tf.conv2d(x as tf.Tensor4D, rand([k, k, xs[3], o]) as tf.Tensor4D, s, pad);
    const dy = rand(y.shape);
    const fshape: [number, number, number, number] = [k, k, xs[3], o];
    const ours = time(() => filterGrad(x, dy, fshape, s, pad));
    const xv = x.dataSync();
    const dyv = dy.dataSync();
    let cpu = NaN;
    if (cpuToo) {
      await initBackend('cpu');
      const xc = tf.tensor(xv, x.shape);
      const dyc = tf.tensor(dyv, dy.shape);
      cpu = time(() => filterGrad(xc, dyc, fshape, s, pad), 1, 0);
      tf.dispose([xc, dyc]);
      await initBackend('wasm');
    }
    console.log(`${label.padEnd(46)} ${fmt(cpu)} | ${fmt(ours)}`);
    tf.dispose([x, y, dy]);
  }
}

async function convInput(): Promise<void> {
  console.log('\nConv2DBackpropInput (wasm): stock ms | conv ms | col2im ms | registered ms');
  await initBackend('wasm');
  for (const [label, xs, k, o, s, pad] of convCases) {
    const w = rand([k, k, xs[3], o]) as tf.Tensor4D;
    const y = tf.conv2d(rand(xs) as tf.Tensor4D, w, s, pad);
    const dy = rand(y.shape) as tf.Tensor4D;
    const run = (): tf.Tensor => tf.conv2dTranspose(dy, w, xs as [number, number, number, number], s, pad);
    const forced = (st: BackpropInputStrategy): tf.KernelFunc => ((args: KernelArgs) => conv2DBackpropInputWith(args, st)) as unknown as tf.KernelFunc;
    const stock = withWasmKernel('Conv2DBackpropInput', stockConv2DBackpropInput()!, () => time(run));
    let conv = NaN;
    try {
      conv = withWasmKernel('Conv2DBackpropInput', forced('conv'), () => time(run));
    } catch {
      // the conv formulation does not apply to this shape
    }
    const col = withWasmKernel('Conv2DBackpropInput', forced('col2im'), () => time(run));
    const reg = time(run);
    console.log(`${label.padEnd(46)} ${fmt(stock)} | ${fmt(conv)} | ${fmt(col)} | ${fmt(reg)}`);
    tf.dispose([w, y, dy]);
  }
}

async function segmentSum(): Promise<void> {
  await initBackend('wasm');
  const x = rand([512, 128]);
  const ids = tf.tensor1d(Array.from({ length: 512 }, (_, i) => (i * 37) % 5096), 'int32');
  const ms = time(() => tf.unsortedSegmentSum(x, ids, 5096));
  console.log(`\nUnsortedSegmentSum x[512,128] -> 5096 segments (wasm): ${ms.toFixed(2)} ms`);
  tf.dispose([x, ids]);
}

async function main(): Promise<void> {
  await initBackend('wasm');
  const only = process.argv[2];
  if (!only || only === 'matmul') await matmuls();
  if (!only || only === 'filter') await convFilter(process.argv.includes('--cpu'));
  if (!only || only === 'input') await convInput();
  if (!only || only === 'uss') await segmentSum();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
