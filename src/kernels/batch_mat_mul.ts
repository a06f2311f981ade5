/**
 * BatchMatMul override for wasm. The stock C++ kernel uses XNNPACK only for an untransposed, unbatched product;
 * everything else (every backward-pass matmul, all attention products) goes to a scalar loop at 2-3 GFLOP/s,
 * and it mishandles broadcast batch dims (it flattens each side to 3-D and loops over a's batch only).
 * Here: transposes are materialised with the C++ Transpose kernel, an unbatched b lets a's batch fold into rows
 * (one XNNPACK call), and true batched products run one XNNPACK call per batch on zero-copy heap views, with
 * full numpy-style broadcasting of the batch dims. Tiny per-batch products use a JS loop, where XNNPACK's
 * per-call operator creation would dominate.
 * When the native addon is loaded (./native.ts), float32 products go to its sgemm instead, in place on the heap:
 * it reads transposed and broadcast operands through strides, so nothing is materialised. The XNNPACK path above
 * stays as the fallback and for products with a handful of rows and a shared untransposed b (KV-cached decoding).
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  KernelArgs,
  WasmBackendLike,
  f32,
  idOf,
  makeView,
  releaseView,
  sizeOf,
  transposeLast2,
  weightId,
  xnnMatMul,
} from './wasm_util';
import { NativeAddon, countKernelCall, nativeAddon } from './native';

/** Below this many multiply-adds per batch entry, a JS loop beats creating an XNNPACK operator per entry. */
const TINY_MACS = 2048;

/**
 * Untransposed products with a shared b and fewer rows than this stay on XNNPACK even with the native addon:
 * XNNPACK keeps each weight's packed copy across calls, which pays when the same weights meet a few rows per
 * call (KV-cached decoding: one row per CFG branch and token).
 */
const NATIVE_MIN_ROWS = 16;

let stockKernel: tf.KernelConfig | undefined;

/** For each flat index of the broadcast batch shape `outer`, the flat index into an operand with batch dims `dims`. */
function broadcastIndex(outer: number[], dims: number[]): Int32Array {
  const rank = outer.length;
  const padded = [...new Array<number>(rank - dims.length).fill(1), ...dims];
  const strides = new Array<number>(rank).fill(0);
  let s = 1;
  for (let d = rank - 1; d >= 0; d--) {
    strides[d] = padded[d] === 1 ? 0 : s;
    s *= padded[d];
  }
  const total = sizeOf(outer);
  const out = new Int32Array(total);
  for (let i = 0; i < total; i++) {
    let rem = i;
    let idx = 0;
    for (let d = rank - 1; d >= 0; d--) {
      const q = rem % outer[d];
      rem = (rem - q) / outer[d];
      idx += q * strides[d];
    }
    out[i] = idx;
  }
  return out;
}

interface Product {
  m: number;
  k: number;
  n: number;
  transposeA: boolean;
  transposeB: boolean;
  aIdx: Int32Array;
  bIdx: Int32Array;
}

/** Strided JS loop: reads a and b in their stored layout, so nothing is materialised. */
function jsBatchMatMul(av: Float32Array, bv: Float32Array, out: Float32Array, p: Product): void {
  const { m, k, n, transposeA, transposeB } = p;
  const aRow = transposeA ? 1 : k;
  const aCol = transposeA ? m : 1;
  const bRow = transposeB ? 1 : n;
  const bCol = transposeB ? k : 1;
  for (let bi = 0; bi < p.aIdx.length; bi++) {
    const aOff = p.aIdx[bi] * m * k;
    const bOff = p.bIdx[bi] * k * n;
    const oOff = bi * m * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let q = 0; q < k; q++) s += av[aOff + i * aRow + q * aCol] * bv[bOff + q * bRow + j * bCol];
        out[oOff + i * n + j] = s;
      }
    }
  }
}

function heapOffset(backend: WasmBackendLike, t: tf.TensorInfo): number {
  return backend.dataIdMap.get(t.dataId).memoryOffset;
}

/** The product on the native sgemm, reading a and b where they lie (transposed or broadcast) and writing out in place. */
function nativeBatchMatMul(native: NativeAddon, backend: WasmBackendLike, a: tf.TensorInfo, b: tf.TensorInfo, p: Product, outShape: number[], batchA: number, batchB: number): tf.TensorInfo {
  const out = backend.makeOutput(outShape, 'float32');
  // The heap only after the last allocation (malloc may grow the memory and detach older views).
  const heap = backend.wasm.HEAPU8;
  if (batchB === 1 && !p.transposeA) {
    // a's batch entries are consecutive [m, k] blocks: one product with batchA * m rows (bigger blocks, one call).
    native.gemm(heap, 1, batchA * p.m, p.n, p.k, heapOffset(backend, a), heapOffset(backend, b), heapOffset(backend, out), false, p.transposeB, null, null, false);
  } else {
    native.gemm(heap, p.aIdx.length, p.m, p.n, p.k, heapOffset(backend, a), heapOffset(backend, b), heapOffset(backend, out), p.transposeA, p.transposeB, p.aIdx, p.bIdx, false);
  }
  return out;
}

function batchMatMul(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as WasmBackendLike;
  const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
  // Non-float matmuls are not ours to speed up; the stock kernel gives its usual error.
  if (a.dtype !== 'float32' || b.dtype !== 'float32') {
    countKernelCall('BatchMatMul', false);
    return stockKernel!.kernelFunc(args as never) as tf.TensorInfo;
  }
  const ar = a.shape.length;
  const br = b.shape.length;
  const m = transposeA ? a.shape[ar - 1] : a.shape[ar - 2];
  const k = transposeA ? a.shape[ar - 2] : a.shape[ar - 1];
  const kb = transposeB ? b.shape[br - 1] : b.shape[br - 2];
  const n = transposeB ? b.shape[br - 2] : b.shape[br - 1];
  if (k !== kb) {
    throw new Error(`Error in matMul: inner shapes (${k}) and (${kb}) of Tensors with shapes ${a.shape} and ${b.shape} and transposeA=${transposeA} and transposeB=${transposeB} must match.`);
  }
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const outer = tf.backend_util.assertAndGetBroadcastShape(outerA, outerB);
  const outShape = [...outer, m, n];
  const batchA = sizeOf(outerA);
  const batchB = sizeOf(outerB);
  const batch = sizeOf(outer);

  if (sizeOf(outShape) === 0 || k === 0) {
    const out = backend.makeOutput(outShape, 'float32');
    f32(backend, out).fill(0); // malloc'd memory is not zeroed; an empty inner dim sums to 0
    return out;
  }
  const product: Product = {
    m, k, n, transposeA, transposeB,
    aIdx: broadcastIndex(outer, outerA),
    bIdx: broadcastIndex(outer, outerB),
  };
  const native = nativeAddon();
  const rows = batchB === 1 && !transposeA ? batchA * m : m;
  if (native && (transposeA || transposeB || batchB > 1 || rows >= NATIVE_MIN_ROWS)) {
    countKernelCall('BatchMatMul', true);
    return nativeBatchMatMul(native, backend, a, b, product, outShape, batchA, batchB);
  }
  countKernelCall('BatchMatMul', false);
  if (batchB > 1 && m * k * n < TINY_MACS) {
    const out = backend.makeOutput(outShape, 'float32');
    jsBatchMatMul(f32(backend, a), f32(backend, b), f32(backend, out), product);
    return out;
  }

  // XNNPACK wants row-major a[m,k] and b[k,n]; transposing costs one pass, far less than the slow loop.
  const aRM = transposeA ? transposeLast2(backend, a, batchA, k, m) : a;
  const bRM = transposeB ? transposeLast2(backend, b, batchB, n, k) : b;
  const out = backend.makeOutput(outShape, 'float32');
  if (batchB === 1) {
    // b is shared by every batch entry, so a's batch entries are just more rows of one product.
    const w = weightId(backend, bRM, k, n);
    xnnMatMul(backend, idOf(backend, aRM), batchA * m, k, w.id, n, idOf(backend, out));
    if (w.view) releaseView(backend, w.view);
  } else {
    const bViews = new Map<number, tf.TensorInfo>(); // reused across broadcast a-entries, so XNNPACK packs each b once
    for (let i = 0; i < batch; i++) {
      const bi = product.bIdx[i];
      let bv = bViews.get(bi);
      if (!bv) {
        bv = makeView(backend, bRM, bi * k * n * 4, [k, n]);
        bViews.set(bi, bv);
      }
      const av = makeView(backend, aRM, product.aIdx[i] * m * k * 4, [m, k]);
      const ov = makeView(backend, out, i * m * n * 4, [m, n]);
      xnnMatMul(backend, idOf(backend, av), m, k, idOf(backend, bv), n, idOf(backend, ov));
      releaseView(backend, av);
      releaseView(backend, ov);
    }
    for (const bv of bViews.values()) releaseView(backend, bv);
  }
  if (aRM !== a) backend.disposeData(aRM.dataId);
  if (bRM !== b) backend.disposeData(bRM.dataId);
  return out;
}

/** The stock wasm kernel we replaced, kept callable so benchmarks and tests can compare against it. */
export function stockBatchMatMul(): tf.KernelFunc | undefined {
  return stockKernel?.kernelFunc;
}

export function registerWasmBatchMatMul(): void {
  const stock = tf.getKernel('BatchMatMul', 'wasm');
  if (!stock) throw new Error('tfjs-backend-wasm must be loaded before registering kernels');
  // A second registration would capture our own kernel as "stock".
  if (stock.kernelFunc === (batchMatMul as unknown as tf.KernelFunc)) return;
  stockKernel = stock;
  tf.unregisterKernel('BatchMatMul', 'wasm');
  // Keep the stock setupFunc: the non-float fallback calls the stock kernelFunc, which needs its cwrap.
  tf.registerKernel({ kernelName: 'BatchMatMul', backendName: 'wasm', setupFunc: stock.setupFunc, kernelFunc: batchMatMul as unknown as tf.KernelFunc });
}
