/**
 * UnsortedSegmentSum (the gradient of tf.gather, i.e. of every embedding lookup). wasm has no kernel for it and
 * the cpu backend's is O(numSegments * N * D) (44 s for one embedding gradient). This one is O(N * D).
 */
import * as tf from '@tensorflow/tfjs-core';

interface HeapBackend {
  readSync(dataId: tf.DataId): tf.backend_util.BackendValues;
  makeOutput?(shape: number[], dtype: tf.DataType, memoryOffset?: number | null, values?: tf.backend_util.BackendValues): tf.TensorInfo;
  typedArrayFromHeap?(t: tf.TensorInfo): tf.backend_util.TypedArray;
  makeTensorInfo?(shape: number[], dtype: tf.DataType, values?: tf.backend_util.BackendValues): tf.TensorInfo;
}

function segmentSum(x: Float32Array | Int32Array, ids: Int32Array, numSegments: number, inner: number, out: Float32Array | Int32Array): void {
  out.fill(0);
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i];
    if (s < 0 || s >= numSegments) continue; // tf semantics: out-of-range ids are dropped
    const o = s * inner;
    const xi = i * inner;
    for (let j = 0; j < inner; j++) out[o + j] += x[xi + j];
  }
}

function kernelFunc(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { x, segmentIds } = args.inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
  const numSegments = (args.attrs as { numSegments: number }).numSegments;
  const backend = args.backend as HeapBackend;
  const rows = segmentIds.shape.reduce((a, b) => a * b, 1);
  const total = x.shape.reduce((a, b) => a * b, 1);
  const inner = rows === 0 ? 0 : total / rows;
  const outShape = [numSegments, ...x.shape.slice(segmentIds.shape.length)];
  const xv = backend.readSync(x.dataId) as Float32Array | Int32Array;
  const ids = Int32Array.from(backend.readSync(segmentIds.dataId) as Int32Array);
  const out = x.dtype === 'int32' ? new Int32Array(numSegments * inner) : new Float32Array(numSegments * inner);
  segmentSum(xv, ids, numSegments, inner, out);
  if (backend.makeOutput) return backend.makeOutput(outShape, x.dtype, null, out);
  return backend.makeTensorInfo!(outShape, x.dtype, out);
}

export function registerUnsortedSegmentSum(): void {
  for (const backendName of ['wasm', 'cpu']) {
    if (tf.getKernel('UnsortedSegmentSum', backendName)) tf.unregisterKernel('UnsortedSegmentSum', backendName);
    tf.registerKernel({ kernelName: 'UnsortedSegmentSum', backendName, kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  }
}
