/**
 * The convolution products on the native addon (./native.ts), in place on the wasm heap. Each lowers the conv
 * to im2col + sgemm with the data movement in C too (the JS im2col/col2im moved one float at a time):
 *  - Conv2D:               y[N, O]  = cols[N, K] @ W[K, O]
 *  - Conv2DBackpropFilter: dW[K, O] = cols[N, K]^T @ dy[N, O]   (the transpose is read by the sgemm's packing)
 *  - Conv2DBackpropInput:  cols[N, K] = dy[N, O] @ W[K, O]^T, then col2im scatter-adds cols into dx
 * with N = B*OH*OW positions and K = KH*KW*C. The patch matrix of a large conv (a 384 px VQ layer: N = 147,456,
 * K = 1,152) would take hundreds of MB, so forward and filter gradient lower it in chunks of rows.
 */
import * as tf from '@tensorflow/tfjs-core';
import { NativeAddon, convGeom } from './native';
import { WasmBackendLike } from './wasm_util';

/** Floats of patch matrix per chunk (16 MiB): big enough for full-speed products, small next to the heap. */
const CHUNK_FLOATS = 1 << 22;

const offsetOf = (backend: WasmBackendLike, t: tf.TensorInfo) => backend.dataIdMap.get(t.dataId).memoryOffset;

/** Rows (output positions) per chunk of the patch matrix. */
function chunkRows(N: number, K: number): number {
  return Math.max(1, Math.min(N, Math.floor(CHUNK_FLOATS / Math.max(1, K))));
}

/** True for a 1x1, stride-1, unpadded conv: the input itself is the patch matrix. */
function isPointwise(info: tf.backend_util.Conv2DInfo): boolean {
  const p = info.padInfo;
  return info.filterHeight === 1 && info.filterWidth === 1 && info.strideHeight === 1 && info.strideWidth === 1 && p.top === 0 && p.left === 0 && p.bottom === 0 && p.right === 0;
}

export function nativeConv2D(native: NativeAddon, backend: WasmBackendLike, x: tf.TensorInfo, filter: tf.TensorInfo, info: tf.backend_util.Conv2DInfo): tf.TensorInfo {
  const { batchSize: B, outHeight: OH, outWidth: OW, outChannels: O } = info;
  const N = B * OH * OW;
  const K = info.filterHeight * info.filterWidth * info.inChannels;
  const out = backend.makeOutput(info.outShape, 'float32');
  if (N === 0 || O === 0) return out;
  if (isPointwise(info)) {
    native.gemm(backend.wasm.HEAPU8, 1, N, O, K, offsetOf(backend, x), offsetOf(backend, filter), offsetOf(backend, out), false, false, null, null, false);
    return out;
  }
  const rows = chunkRows(N, K);
  const cols = backend.makeOutput([rows, K], 'float32');
  const heap = backend.wasm.HEAPU8; // after the last allocation
  const geom = convGeom(info);
  const [xOff, wOff, cOff, oOff] = [offsetOf(backend, x), offsetOf(backend, filter), offsetOf(backend, cols), offsetOf(backend, out)];
  for (let n0 = 0; n0 < N; n0 += rows) {
    const r = Math.min(rows, N - n0);
    native.im2col(heap, xOff, cOff, n0, r, geom);
    native.gemm(heap, 1, r, O, K, cOff, wOff, oOff + n0 * O * 4, false, false, null, null, false);
  }
  backend.disposeData(cols.dataId);
  return out;
}

export function nativeConv2DBackpropFilter(native: NativeAddon, backend: WasmBackendLike, x: tf.TensorInfo, dy: tf.TensorInfo, filterShape: number[], info: tf.backend_util.Conv2DInfo): tf.TensorInfo {
  const { batchSize: B, outHeight: OH, outWidth: OW, outChannels: O } = info;
  const N = B * OH * OW;
  const K = info.filterHeight * info.filterWidth * info.inChannels;
  const out = backend.makeOutput(filterShape, 'float32');
  if (isPointwise(info)) {
    native.gemm(backend.wasm.HEAPU8, 1, K, O, N, offsetOf(backend, x), offsetOf(backend, dy), offsetOf(backend, out), true, false, null, null, false);
    return out;
  }
  const rows = chunkRows(N, K);
  const cols = backend.makeOutput([rows, K], 'float32');
  const heap = backend.wasm.HEAPU8;
  const geom = convGeom(info);
  const [xOff, dyOff, cOff, oOff] = [offsetOf(backend, x), offsetOf(backend, dy), offsetOf(backend, cols), offsetOf(backend, out)];
  for (let n0 = 0; n0 < N; n0 += rows) {
    const r = Math.min(rows, N - n0);
    native.im2col(heap, xOff, cOff, n0, r, geom);
    // Chunks after the first add their share of the reduction over positions.
    native.gemm(heap, 1, K, O, r, cOff, dyOff + n0 * O * 4, oOff, true, false, null, null, n0 > 0);
  }
  backend.disposeData(cols.dataId);
  return out;
}

export function nativeConv2DBackpropInput(native: NativeAddon, backend: WasmBackendLike, dy: tf.TensorInfo, filter: tf.TensorInfo, info: tf.backend_util.Conv2DInfo): tf.TensorInfo {
  const { batchSize: B, outHeight: OH, outWidth: OW, outChannels: O } = info;
  const N = B * OH * OW;
  const K = info.filterHeight * info.filterWidth * info.inChannels;
  const dx = backend.makeOutput(info.inShape, 'float32');
  if (isPointwise(info)) {
    native.gemm(backend.wasm.HEAPU8, 1, N, K, O, offsetOf(backend, dy), offsetOf(backend, filter), offsetOf(backend, dx), false, true, null, null, false);
    return dx;
  }
  const cols = backend.makeOutput([N, K], 'float32');
  const heap = backend.wasm.HEAPU8;
  native.gemm(heap, 1, N, K, O, offsetOf(backend, dy), offsetOf(backend, filter), offsetOf(backend, cols), false, true, null, null, false);
  native.col2im(heap, offsetOf(backend, cols), offsetOf(backend, dx), convGeom(info));
  backend.disposeData(cols.dataId);
  return dx;
}
