/**
 * The slice of the tfjs wasm backend's internals that our kernels use (see /work/shared/tfjs-platform.md §2),
 * typed once here so that no kernel needs `any`. These are stable in tfjs-backend-wasm 4.x but not public API,
 * so every access goes through this file.
 */
import * as tf from '@tensorflow/tfjs-core';

export interface WasmTensorData {
  id: number;
  memoryOffset: number;
  shape: number[];
  dtype: tf.DataType;
  refCount: number;
}

type CwrapArg = number | Uint8Array;
export interface WasmModuleLike {
  HEAPU8: Uint8Array;
  cwrap(name: string, returnType: null, argTypes: string[]): (...args: CwrapArg[]) => void;
  tfjs: { disposeData(id: number): void };
}

export interface WasmBackendLike {
  wasm: WasmModuleLike;
  dataIdMap: { get(dataId: tf.DataId): WasmTensorData; delete(dataId: tf.DataId): boolean };
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number | null, values?: tf.backend_util.BackendValues): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): tf.backend_util.TypedArray;
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
}

/** The argument object every kernelFunc receives; `backend` is whatever backend the engine runs. */
export interface KernelArgs {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}

export function isWasmBackend(backend: unknown): backend is WasmBackendLike {
  const b = backend as Partial<WasmBackendLike> | null;
  return b != null && typeof b === 'object' && b.wasm != null && typeof b.typedArrayFromHeap === 'function';
}

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Zero-copy float32 view of a tensor. Take it only after the last allocation of the kernel (malloc may grow and detach the heap). */
export function f32(backend: WasmBackendLike, t: tf.TensorInfo): Float32Array {
  return backend.typedArrayFromHeap(t) as Float32Array;
}

/**
 * Registers `shape` at byte `byteOffset` inside `base`'s memory as a new tensor with its own C++ id, without
 * allocating. XNNPACK caches operators per weight-tensor id, so a fresh id per view keeps caches honest.
 * Must be released with `releaseView`, never `disposeData` (that would free memory the view does not own).
 */
export function makeView(backend: WasmBackendLike, base: tf.TensorInfo, byteOffset: number, shape: number[]): tf.TensorInfo {
  const offset = backend.dataIdMap.get(base.dataId).memoryOffset + byteOffset;
  return backend.makeOutput(shape, base.dtype, offset);
}

export function releaseView(backend: WasmBackendLike, view: tf.TensorInfo): void {
  const { id } = backend.dataIdMap.get(view.dataId);
  backend.dataIdMap.delete(view.dataId);
  // Drops the C++ registration and runs its disposal callbacks (which delete any XNNPACK operator cached on it).
  backend.wasm.tfjs.disposeData(id);
}

/** Runs a stock wasm kernel (Transpose, Conv2D, ...) on TensorInfos; the caller owns the result. */
export function runWasmKernel(name: string, backend: WasmBackendLike, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap): tf.TensorInfo {
  const kernel = tf.getKernel(name, 'wasm');
  if (!kernel) throw new Error(`wasm kernel ${name} is not registered`);
  return kernel.kernelFunc({ inputs, backend, attrs }) as tf.TensorInfo;
}

/** [batch, rows, cols] -> [batch, cols, rows] through the wasm Transpose kernel (C++). */
export function transposeLast2(backend: WasmBackendLike, t: tf.TensorInfo, batch: number, rows: number, cols: number): tf.TensorInfo {
  const x = { dataId: t.dataId, shape: [batch, rows, cols], dtype: t.dtype };
  return runWasmKernel('Transpose', backend, { x }, { perm: [0, 2, 1] });
}

type MatMulFn = (...args: CwrapArg[]) => void;
const matMulFns = new WeakMap<WasmModuleLike, MatMulFn>();

function shapeBytes(shape: number[]): Uint8Array {
  return new Uint8Array(new Int32Array(shape).buffer);
}

/**
 * out[rows, n] = a[rows, k] @ b[k, n] on XNNPACK's fully-connected operator, which the C++ BatchMatMul uses only
 * for untransposed, unbatched products. Our own cwrap (rather than the stock kernel's) lets us write straight
 * into an output view and needs no setupFunc, so it works even if the backend initialised before registration.
 * XNNPACK packs b as weights and caches the packed copy under b's id until b is disposed.
 */
export function xnnMatMul(backend: WasmBackendLike, aId: number, rows: number, k: number, bId: number, n: number, outId: number): void {
  let fn = matMulFns.get(backend.wasm);
  if (!fn) {
    fn = backend.wasm.cwrap('BatchMatMul', null, ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number']);
    matMulFns.set(backend.wasm, fn);
  }
  fn(aId, shapeBytes([1, rows, k]), 3, bId, shapeBytes([1, k, n]), 3, 0, 0, outId);
}

/** Parses an NHWC conv's attrs the way the stock kernels do. */
export function convInfoFor(
  xShape: number[],
  filterShape: number[],
  attrs: tf.NamedAttrMap,
): tf.backend_util.Conv2DInfo {
  const a = attrs as {
    strides: number | [number, number];
    pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
    dataFormat?: 'NHWC' | 'NCHW';
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
    dilations?: number | [number, number];
  };
  if (a.dataFormat === 'NCHW') throw new Error('wasm conv kernels support only NHWC (dataFormat "NHWC"), as does the stock wasm Conv2D.');
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    a.strides,
    a.dilations ?? 1,
    a.pad,
    a.dimRoundingMode,
    false,
    'channelsLast',
  );
}

const weightDims = new WeakMap<tf.DataId, string>();

/**
 * The C++ id to pass as XNNPACK weights for `t` seen as [k, n]. XNNPACK's operator cache is keyed by that id
 * alone, so if the same data (wasm Reshape shares the dataId) was used as weights with other dims before, the
 * cached operator would silently compute the wrong product. In that case we pass a fresh view instead, which
 * the caller must release (returned in `view`).
 */
export function weightId(backend: WasmBackendLike, t: tf.TensorInfo, k: number, n: number): { id: number; view: tf.TensorInfo | null } {
  const dims = `${k}x${n}`;
  const seen = weightDims.get(t.dataId);
  if (seen === undefined || seen === dims) {
    weightDims.set(t.dataId, dims);
    return { id: backend.dataIdMap.get(t.dataId).id, view: null };
  }
  const view = makeView(backend, t, 0, [k, n]);
  return { id: backend.dataIdMap.get(view.dataId).id, view };
}

export function idOf(backend: WasmBackendLike, t: tf.TensorInfo): number {
  return backend.dataIdMap.get(t.dataId).id;
}
