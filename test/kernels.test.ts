/**
 * Our wasm training kernels (src/kernels) against the cpu backend or a direct JS reference, plus leak checks and
 * a conv-net training step on wasm with no missing kernels.
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import { listCpuFallbackOps, kernelNamesUsed } from '../src/kernels';
import { stockBatchMatMul } from '../src/kernels/batch_mat_mul';
import { conv2DBackpropInputWith, stockConv2DBackpropInput, strategyFor, BackpropInputStrategy } from '../src/kernels/conv2d_backprop_input';
import { KernelArgs } from '../src/kernels/wasm_util';
import { LcgArray, lcgArray, refMatMul, relErr } from './helpers';

type Backend = 'cpu' | 'wasm';
type Pad = 'same' | 'valid' | tf.backend_util.ExplicitPadding;

type Arr = LcgArray;
/** Deterministic inputs, so every backend sees identical data. */
const randArr = lcgArray;

const T = (a: Arr): tf.Tensor => tf.tensor(a.values, a.shape);

/** Runs fn on a backend inside tidy and returns copies of the outputs' values. */
async function on(backend: Backend, fn: () => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  await initBackend(backend);
  const out = tf.tidy(fn);
  const list = Array.isArray(out) ? out : [out];
  const vals = list.map((t) => Float32Array.from(t.dataSync()));
  tf.dispose(list);
  return vals;
}

/** Max abs difference relative to the reference's largest magnitude. */

async function expectSameOnBoth(fn: () => tf.Tensor | tf.Tensor[], tol = 1e-4): Promise<void> {
  const ref = await on('cpu', fn);
  const got = await on('wasm', fn);
  expect(got.length).toBe(ref.length);
  for (let i = 0; i < ref.length; i++) expect(relErr(got[i], ref[i])).toBeLessThan(tol);
}

/** Runs fn with the wasm registration of `name` replaced by `kernelFunc`. */
function withWasmKernel<R>(name: string, kernelFunc: tf.KernelFunc, fn: () => R): R {
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

function filterGrad(x: tf.Tensor, dy: tf.Tensor, filterShape: number[], strides: number | [number, number], pad: Pad, dilations?: number): tf.Tensor {
  const attrs = { strides, pad, dataFormat: 'NHWC', filterShape, ...(dilations ? { dilations } : {}) };
  return tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
}

const ASYM: Pad = [[0, 0], [0, 1], [0, 1], [0, 0]]; // the VQ encoder's stride-2 downsample
const convCases: { name: string; x: number[]; k: [number, number]; o: number; s: number | [number, number]; pad: Pad }[] = [
  { name: '3x3 s1 same', x: [2, 8, 8, 5], k: [3, 3], o: 6, s: 1, pad: 'same' },
  { name: '3x3 s2 same', x: [2, 9, 9, 4], k: [3, 3], o: 7, s: 2, pad: 'same' },
  { name: '3x3 s2 asymmetric [[0,1],[0,1]]', x: [2, 8, 8, 6], k: [3, 3], o: 5, s: 2, pad: ASYM },
  { name: '1x1 s1', x: [3, 4, 5, 8], k: [1, 1], o: 3, s: 1, pad: 'valid' },
  { name: '3x3 s2 valid, odd size', x: [1, 11, 9, 3], k: [3, 3], o: 4, s: 2, pad: 'valid' },
  { name: '2x3 strides [2,1] same', x: [2, 7, 6, 3], k: [2, 3], o: 4, s: [2, 1], pad: 'same' },
  { name: '3x3 s1 explicit pads > k-1', x: [1, 5, 5, 2], k: [3, 3], o: 3, s: 1, pad: [[0, 0], [3, 0], [1, 2], [0, 0]] },
];

function convData(c: (typeof convCases)[number], seed: number): { x: Arr; w: Arr; dy: Arr } {
  const w = randArr([c.k[0], c.k[1], c.x[3], c.o], seed + 1);
  const info = tf.backend_util.computeConv2DInfo(c.x as [number, number, number, number], w.shape as [number, number, number, number], c.s, 1, c.pad);
  return { x: randArr(c.x, seed), w, dy: randArr(info.outShape, seed + 2) };
}

beforeAll(async () => {
  await initBackend('wasm');
});

describe('wasm BatchMatMul override', () => {
  const cases: [string, number[], number[], boolean, boolean][] = [
    ['2D', [7, 5], [5, 9], false, false],
    ['2D transposeA', [5, 7], [5, 9], true, false],
    ['2D transposeB', [7, 5], [9, 5], false, true],
    ['2D both transposed', [5, 7], [9, 5], true, true],
    ['rank 3 batched, transposeB (q@k^T)', [3, 6, 4], [3, 8, 4], false, true],
    ['rank 3 batched, transposeA', [3, 40, 16], [3, 40, 24], true, false],
    ['rank 3 @ rank 2 (batch folds into rows)', [4, 6, 5], [5, 7], false, false],
    ['rank 3 @ rank 2 transposed', [4, 5, 6], [7, 5], true, true],
    ['rank 4 broadcast b batch [2,3]x[1,3]', [2, 3, 16, 12], [1, 3, 12, 20], false, false],
    ['rank 4 broadcast both [2,1]x[1,3], transposeB', [2, 1, 16, 12], [1, 3, 20, 12], false, true],
    ['rank 3 a batch 1 vs b batch 4', [1, 16, 12], [4, 12, 20], false, false],
    ['rank 3 vs rank 4 broadcast', [3, 16, 12], [2, 1, 12, 20], false, false],
    ['tiny matrices, many batches (JS path)', [6, 3, 2], [6, 4, 3], true, true],
    ['tiny, broadcast a', [1, 3, 2], [5, 2, 4], false, false],
  ];

  test.each(cases)('%s matches a direct reference', async (_name, as, bs, ta, tb) => {
    const a = randArr(as, 1);
    const b = randArr(bs, 2);
    const [got] = await on('wasm', () => tf.matMul(T(a), T(b), ta, tb));
    // Against the float64 reference rounded to float32 (the cpu kernel gets two-sided broadcasts wrong).
    expect(relErr(got, Float32Array.from(refMatMul(a, b, ta, tb)))).toBeLessThan(1e-5);
  });

  // Speed is measured by `npm run bench` (scripts/kernel_bench.ts), never asserted here.
  test('is registered in place of the stock kernel', async () => {
    await initBackend('wasm');
    const stock = stockBatchMatMul();
    expect(stock).toBeDefined();
    expect(tf.getKernel('BatchMatMul', 'wasm')!.kernelFunc).not.toBe(stock);
  });

  test('empty inner dimension gives zeros', async () => {
    const [v] = await on('wasm', () => tf.matMul(tf.zeros([3, 0]), tf.zeros([0, 4])));
    expect(Array.from(v)).toEqual(new Array(12).fill(0));
  });

  test('the same data used as weights under two shapes (shared dataId via reshape) gives both right products', async () => {
    const w = randArr([6, 8], 3);
    const a1 = randArr([5, 6], 4);
    const a2 = randArr([5, 12], 5);
    await expectSameOnBoth(() => {
      const wt = T(w);
      return [tf.matMul(T(a1), wt), tf.matMul(T(a2), tf.reshape(wt, [12, 4])), tf.matMul(T(a1), wt)];
    });
  });
});

describe('wasm Conv2DBackpropFilter', () => {
  test.each(convCases)('$name matches cpu', async (c) => {
    const { x, dy } = convData(c, 10);
    await expectSameOnBoth(() => filterGrad(T(x), T(dy), [c.k[0], c.k[1], c.x[3], c.o], c.s, c.pad));
  });

  test('dilation 2 matches a direct JS reference', async () => {
    const [B, H, W, C, O, K, d, s] = [2, 9, 8, 3, 4, 3, 2, 1];
    const x = randArr([B, H, W, C], 20);
    const info = tf.backend_util.computeConv2DInfo([B, H, W, C], [K, K, C, O], s, d, 'same');
    const dy = randArr(info.outShape, 21);
    const [got] = await on('wasm', () => filterGrad(T(x), T(dy), [K, K, C, O], s, 'same', d));
    const ref = new Float32Array(K * K * C * O);
    const { top, left } = info.padInfo;
    for (let b = 0; b < B; b++)
      for (let oh = 0; oh < info.outHeight; oh++)
        for (let ow = 0; ow < info.outWidth; ow++)
          for (let kh = 0; kh < K; kh++)
            for (let kw = 0; kw < K; kw++) {
              const ih = oh * s - top + kh * d;
              const iw = ow * s - left + kw * d;
              if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
              for (let c = 0; c < C; c++)
                for (let o = 0; o < O; o++)
                  ref[((kh * K + kw) * C + c) * O + o] += x.values[((b * H + ih) * W + iw) * C + c] * dy.values[((b * info.outHeight + oh) * info.outWidth + ow) * O + o];
            }
    expect(relErr(got, ref)).toBeLessThan(1e-5);
  });
});

describe('wasm Conv2DBackpropInput', () => {
  test('uses the conv formulation for stride 1 and col2im for strides, dilations and oversized pads', () => {
    const pick = (s: number, pad: Pad, d = 1): BackpropInputStrategy => strategyFor(tf.backend_util.computeConv2DInfo([1, 8, 8, 2], [3, 3, 2, 2], s, d, pad));
    expect(pick(1, 'same')).toBe('conv');
    expect(pick(1, 'valid')).toBe('conv');
    expect(pick(2, ASYM)).toBe('col2im');
    expect(pick(1, 'same', 2)).toBe('col2im');
    expect(pick(1, [[0, 0], [3, 0], [0, 0], [0, 0]])).toBe('col2im');
  });


  const forced = (st: BackpropInputStrategy): tf.KernelFunc => ((args: KernelArgs) => conv2DBackpropInputWith(args, st)) as unknown as tf.KernelFunc;

  test.each(convCases)('$name matches cpu (registered kernel, col2im, conv where it applies, stock)', async (c) => {
    const { w, dy } = convData(c, 30);
    const run = (): tf.Tensor => tf.conv2dTranspose(T(dy) as tf.Tensor4D, T(w) as tf.Tensor4D, c.x as [number, number, number, number], c.s, c.pad);
    const [ref] = await on('cpu', run);
    const [reg] = await on('wasm', run);
    expect(relErr(reg, ref)).toBeLessThan(1e-4);
    const [col] = await on('wasm', () => withWasmKernel('Conv2DBackpropInput', forced('col2im'), run));
    expect(relErr(col, ref)).toBeLessThan(1e-4);
    const info = tf.backend_util.computeConv2DInfo(c.x as [number, number, number, number], w.shape as [number, number, number, number], c.s, 1, c.pad);
    if (strategyFor(info) === 'conv') {
      const [conv] = await on('wasm', () => withWasmKernel('Conv2DBackpropInput', forced('conv'), run));
      expect(relErr(conv, ref)).toBeLessThan(1e-4);
    } else {
      await expect(on('wasm', () => withWasmKernel('Conv2DBackpropInput', forced('conv'), run))).rejects.toThrow(/does not apply/);
    }
    const [stock] = await on('wasm', () => withWasmKernel('Conv2DBackpropInput', stockConv2DBackpropInput()!, run));
    expect(relErr(stock, ref)).toBeLessThan(1e-4);
  });
});

describe('gradients through tf.grad on wasm match cpu', () => {
  test.each(convCases)('conv2d $name', async (c) => {
    const { x, w } = convData(c, 40);
    await expectSameOnBoth(() => {
      const f = (xx: tf.Tensor, ww: tf.Tensor): tf.Tensor => tf.sum(tf.square(tf.conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, c.s, c.pad)));
      return tf.grads(f)([T(x), T(w)]);
    });
  });

  test('matMul chain with transposes and a batched attention-like product', async () => {
    const x = randArr([12, 8], 50);
    const wq = randArr([8, 8], 51);
    const wk = randArr([8, 8], 52);
    await expectSameOnBoth(() => {
      // tfjs's BatchMatMul gradient does not reduce broadcast batch dims, so projections stay rank 2.
      const f = (xx: tf.Tensor, q: tf.Tensor, k: tf.Tensor): tf.Tensor => {
        const qx = tf.reshape(tf.matMul(xx, q), [2, 6, 8]);
        const kx = tf.reshape(tf.matMul(xx, k, false, true), [2, 6, 8]);
        const att = tf.matMul(qx, kx, false, true);
        return tf.sum(tf.square(tf.matMul(att, kx)));
      };
      return tf.grads(f)([T(x), T(wq), T(wk)]);
    });
  });
});

describe('wasm GatherV2 (whole rows per memmove)', () => {
  const cases: [string, number[], number[], number][] = [
    ['embedding rows, axis 0', [50, 40], [7, 0, 49, 7, 3], 0],
    ['axis 1 of rank 3, rows of 16', [3, 9, 16], [8, 0, 4], 1],
    ['narrow rows (typed-array loop), 2-D indices', [20, 3], [1, 19, 5, 5, 0, 2], 0],
    ['last axis (inner 1)', [4, 6], [5, 0, 2], 1],
  ];
  test.each(cases)('%s matches cpu', async (_name, shape, ids, axis) => {
    const x = randArr(shape, 90);
    const idx = _name.includes('2-D') ? tf.tensor2d(ids, [2, 3], 'int32') : tf.tensor1d(ids, 'int32');
    await expectSameOnBoth(() => tf.gather(T(x), idx.clone(), axis), 1e-12);
    idx.dispose();
  });

  test('int32 values and its gradient (UnsortedSegmentSum) match cpu', async () => {
    await expectSameOnBoth(() => tf.cast(tf.gather(tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2], 'int32'), tf.tensor1d([2, 0, 2], 'int32')), 'float32'), 1e-12);
    const x = randArr([10, 24], 91);
    await expectSameOnBoth(() => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, tf.tensor1d([1, 9, 1, 4], 'int32')), 1.5)))(T(x)));
  });
});

describe('UnsortedSegmentSum', () => {
  function reference(x: Arr, ids: number[], numSegments: number): Float32Array {
    const inner = x.values.length / ids.length;
    const out = new Float32Array(numSegments * inner);
    ids.forEach((s, i) => {
      if (s >= 0 && s < numSegments) for (let j = 0; j < inner; j++) out[s * inner + j] += x.values[i * inner + j];
    });
    return out;
  }

  test.each(['cpu', 'wasm'] as Backend[])('%s: matches a JS reference, drops out-of-range ids, handles int32', async (backend) => {
    const x = randArr([6, 2, 3], 60);
    const ids = [0, 3, 3, -1, 7, 1];
    const [got] = await on(backend, () => tf.unsortedSegmentSum(T(x), tf.tensor1d(ids, 'int32'), 5));
    expect(relErr(got, reference(x, ids, 5))).toBeLessThan(1e-6);
    const [ints] = await on(backend, () => tf.unsortedSegmentSum(tf.tensor2d([[1, 2], [3, 4], [5, 6]], [3, 2], 'int32'), tf.tensor1d([1, 1, 0], 'int32'), 2));
    expect(Array.from(ints)).toEqual([5, 6, 4, 6]);
  });

});

describe('wasm Identity and same-dtype Cast share bytes', () => {
  test('clone and float32->float32 cast share the data id; a dtype change still converts; disposal is reference-counted', async () => {
    await initBackend('wasm');
    const before = tf.engine().backend.numDataIds();
    const x = tf.tensor1d([1.5, -2.25, 3]);
    const c = tf.clone(x);
    const same = tf.cast(x, 'float32');
    const asInt = tf.cast(x, 'int32');
    expect(c.dataId).toBe(x.dataId);
    expect(same.dataId).toBe(x.dataId);
    expect(asInt.dataId).not.toBe(x.dataId);
    expect(Array.from(await asInt.data())).toEqual([1, -2, 3]);
    // One set of bytes for the three float tensors (plus the int32 one).
    expect(tf.engine().backend.numDataIds() - before).toBe(2);
    x.dispose();
    expect(Array.from(await c.data())).toEqual([1.5, -2.25, 3]);
    c.dispose();
    expect(Array.from(await same.data())).toEqual([1.5, -2.25, 3]);
    tf.dispose([same, asInt]);
    expect(tf.engine().backend.numDataIds()).toBe(before);
  });

  test('a variable updated in place does not change a clone taken before', async () => {
    await initBackend('wasm');
    const v = tf.variable(tf.tensor1d([1, 2]));
    const snap = tf.clone(v);
    v.assign(tf.tensor1d([5, 6]));
    expect(Array.from(await snap.data())).toEqual([1, 2]);
    expect(Array.from(await v.data())).toEqual([5, 6]);
    tf.dispose([v, snap]);
  });
});

describe('no leaks', () => {
  test('tensor count and backend data ids stay flat over repeated kernel calls on wasm', async () => {
    await initBackend('wasm');
    const s2 = convData(convCases[2], 70); // stride 2, asymmetric pad: col2im path
    const s1 = convData(convCases[0], 71); // stride 1: conv path
    const held = [s2.x, s2.w, s2.dy, s1.w, s1.dy].map(T);
    const [x2, w2, dy2, w1, dy1] = held;
    const a4 = tf.randomNormal([2, 3, 16, 12]);
    const b4 = tf.randomNormal([1, 3, 20, 12]);
    const round = (): void => {
      filterGrad(x2, dy2, w2.shape, convCases[2].s, convCases[2].pad).dispose();
      tf.conv2dTranspose(dy2 as tf.Tensor4D, w2 as tf.Tensor4D, convCases[2].x as [number, number, number, number], 2, ASYM).dispose();
      tf.conv2dTranspose(dy1 as tf.Tensor4D, w1 as tf.Tensor4D, convCases[0].x as [number, number, number, number], 1, 'same').dispose();
      tf.matMul(a4, b4, false, true).dispose(); // per-batch views
      tf.tidy(() => tf.matMul(tf.reshape(a4, [96, 12]), tf.reshape(b4, [60, 12]), false, true)).dispose(); // folded
      tf.tidy(() => tf.matMul(tf.randomNormal([6, 2, 3]), tf.randomNormal([6, 3, 2]))).dispose(); // JS path
      tf.dispose(tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.conv2d(p as tf.Tensor4D, q as tf.Tensor4D, 2, ASYM)))([x2, w2]));
    };
    round();
    const tensors = tf.memory().numTensors;
    const dataIds = tf.engine().backend.numDataIds();
    for (let i = 0; i < 5; i++) round();
    expect(tf.memory().numTensors).toBe(tensors);
    // Catches kernel-internal temporaries and heap views that were never released.
    expect(tf.engine().backend.numDataIds()).toBe(dataIds);
    tf.dispose([...held, a4, b4]);
  });
});

describe('kernel coverage check', () => {
  test('listCpuFallbackOps reports kernels the backend lacks and ignores non-kernel profile names', async () => {
    await initBackend('wasm');
    const names = ['Conv2DBackpropFilter', 'Einsum', 'softmaxCrossEntropy__op', 'Add', 'Einsum', 'FFT'];
    expect(listCpuFallbackOps(names)).toEqual(['Einsum', 'FFT']);
    expect(listCpuFallbackOps(names, 'cpu')).toEqual([]);
  });

  /** A small conv net: stride-2 asymmetric-pad conv, 1x1 conv, embedding lookup, linear head, MSE + CE-ish loss. */
  function convNetStep(params: tf.Variable[], x: tf.Tensor, ids: tf.Tensor, target: tf.Tensor): tf.Tensor[] {
    const [w1, w2, emb, head] = params;
    const { value, grads } = tf.variableGrads(() => {
      const h1 = tf.relu(tf.conv2d(x as tf.Tensor4D, w1 as tf.Tensor4D, 2, ASYM));
      const h2 = tf.conv2d(h1, w2 as tf.Tensor4D, 1, 'same');
      const pooled = tf.mean(h2, [1, 2]);
      const e = tf.gather(emb, ids);
      const logits = tf.matMul(tf.add(pooled, e), head, false, true);
      return tf.mean(tf.square(tf.sub(logits, target)));
    }, params);
    return [value, ...params.map((p) => grads[p.name])];
  }

  async function trainStep(backend: Backend): Promise<{ vals: Float32Array[]; kernels: string[] }> {
    await initBackend(backend);
    const params = [randArr([3, 3, 3, 8], 80), randArr([1, 1, 8, 6], 81), randArr([10, 6], 82), randArr([4, 6], 83)].map((a, i) =>
      tf.tidy(() => tf.variable(T(a), true, `kernels_test_p${i}_${backend}`)),
    );
    const x = T(randArr([2, 8, 8, 3], 84));
    const ids = tf.tensor1d([3, 7], 'int32');
    const target = T(randArr([2, 4], 85));
    const kernels = await kernelNamesUsed(() => convNetStep(params, x, ids, target));
    const out = convNetStep(params, x, ids, target);
    const vals = out.map((t) => Float32Array.from(t.dataSync()));
    tf.dispose([...out, x, ids, target, ...params]);
    return { vals, kernels };
  }

  test('a conv-net training step runs on wasm with zero kernels missing and matches cpu', async () => {
    const cpu = await trainStep('cpu');
    expect(cpu.kernels).toEqual(expect.arrayContaining(['Conv2D', 'Conv2DBackpropFilter', 'Conv2DBackpropInput', 'BatchMatMul', 'UnsortedSegmentSum']));
    expect(listCpuFallbackOps(cpu.kernels, 'wasm')).toEqual([]);
    const wasm = await trainStep('wasm');
    expect(listCpuFallbackOps(wasm.kernels, 'wasm')).toEqual([]);
    expect(wasm.vals.length).toBe(cpu.vals.length);
    for (let i = 0; i < cpu.vals.length; i++) expect(relErr(wasm.vals[i], cpu.vals[i])).toBeLessThan(1e-4);
  });
});
