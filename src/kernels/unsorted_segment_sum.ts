/**
 * UnsortedSegmentSum (the gradient of tf.gather, i.e. of every embedding lookup). wasm has no kernel for it and
 * the cpu backend's is O(numSegments * N * D) (44 s for one embedding gradient). This one is O(N * D).
 * On wasm it reads and writes the heap directly (no copies in or out).
 */
import * as tf from '@tensorflow/tfjs-core';
import { KernelArgs, isWasmBackend, sizeOf } from './wasm_util';

type Values = Float32Array | Int32Array;

interface CpuBackendLike {
  readSync(dataId: tf.DataId): tf.backend_util.BackendValues;
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: tf.backend_util.BackendValues): tf.TensorInfo;
}

function segmentSum(x: Values, ids: Int32Array, numSegments: number, inner: number, out: Values): void {
  out.fill(0);
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i];
    if (s < 0 || s >= numSegments) continue; // tf semantics: out-of-range ids are dropped
    const o = s * inner;
    const xi = i * inner;
    for (let j = 0; j < inner; j++) out[o + j] += x[xi + j];
  }
}

function kernelFunc(args: KernelArgs): tf.TensorInfo {
  const { x, segmentIds } = args.inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const numSegments = (args.attrs as { numSegments: number }).numSegments;
  if (x.dtype !== 'float32' && x.dtype !== 'int32') throw new Error(`UnsortedSegmentSum: unsupported dtype ${x.dtype}`);
  const rows = sizeOf(segmentIds.shape);
  const total = sizeOf(x.shape);
  const inner = rows === 0 ? 0 : total / rows;
  const outShape = [numSegments, ...x.shape.slice(segmentIds.shape.length)];
  const backend = args.backend;
  if (isWasmBackend(backend)) {
    const out = backend.makeOutput(outShape, x.dtype);
    // Views after makeOutput, whose malloc may grow the heap and detach earlier views.
    const xv = backend.typedArrayFromHeap(x) as Values;
    const ids = backend.typedArrayFromHeap(segmentIds);
    const idv = ids instanceof Int32Array ? ids : Int32Array.from(ids);
    segmentSum(xv, idv, numSegments, inner, backend.typedArrayFromHeap(out) as Values);
    return out;
  }
  const cpu = backend as CpuBackendLike;
  const xv = cpu.readSync(x.dataId) as Values;
  const ids = Int32Array.from(cpu.readSync(segmentIds.dataId) as ArrayLike<number>);
  const out = x.dtype === 'int32' ? new Int32Array(numSegments * inner) : new Float32Array(numSegments * inner);
  segmentSum(xv, ids, numSegments, inner, out);
  return cpu.makeTensorInfo(outShape, x.dtype, out);
}

export function registerUnsortedSegmentSum(): void {
  for (const backendName of ['wasm', 'cpu']) {
    if (tf.getKernel('UnsortedSegmentSum', backendName)) tf.unregisterKernel('UnsortedSegmentSum', backendName);
    tf.registerKernel({ kernelName: 'UnsortedSegmentSum', backendName, kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  }
}
