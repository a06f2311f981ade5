/**
 * GatherV2 for wasm: whole rows moved with one memmove each (HEAPU8.copyWithin), in place on the heap. The
 * stock kernel computes every element's source index separately (~15 M elements/s here), which made the row
 * assembly of Janus4o.embed/heads (5 gathers of [512-1280, 256] rows per training step) cost ~30 ms a step,
 * about as much as all attention products on the native sgemm. Plain JS: it helps with or without the addon.
 * Anything else (batchDims, other dtypes, an out-of-range index) goes to the stock kernel, which keeps its own
 * behaviour and errors.
 */
import * as tf from '@tensorflow/tfjs-core';
import { KernelArgs, WasmBackendLike, sizeOf } from './wasm_util';

/** Rows narrower than this (in elements) are copied by a typed-array loop: copyWithin's call costs more. */
const MEMMOVE_MIN = 16;

let stockKernel: tf.KernelConfig | undefined;

function gatherV2(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as WasmBackendLike;
  const { x, indices } = args.inputs as { x: tf.TensorInfo; indices: tf.TensorInfo };
  const { axis, batchDims } = (args.attrs ?? {}) as { axis: number; batchDims?: number };
  const stock = () => stockKernel!.kernelFunc(args as never) as tf.TensorInfo;
  if ((batchDims ?? 0) !== 0 || indices.dtype !== 'int32' || (x.dtype !== 'float32' && x.dtype !== 'int32')) return stock();
  const ax = tf.util.parseAxisParam(axis, x.shape)[0];
  const outer = sizeOf(x.shape.slice(0, ax));
  const dim = x.shape[ax];
  const inner = sizeOf(x.shape.slice(ax + 1));
  const count = sizeOf(indices.shape);
  const idx = backend.typedArrayFromHeap(indices) as Int32Array;
  for (let i = 0; i < count; i++) if (idx[i] < 0 || idx[i] >= dim) return stock();
  const out = backend.makeOutput([...x.shape.slice(0, ax), ...indices.shape, ...x.shape.slice(ax + 1)], x.dtype);
  if (outer * count * inner === 0) return out;
  // Views and offsets after the allocation (malloc may grow and detach the heap).
  const ids = backend.typedArrayFromHeap(indices) as Int32Array;
  const xOff = backend.dataIdMap.get(x.dataId).memoryOffset;
  const oOff = backend.dataIdMap.get(out.dataId).memoryOffset;
  if (inner >= MEMMOVE_MIN) {
    const heap = backend.wasm.HEAPU8;
    const row = inner * 4;
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < count; i++) {
        const src = xOff + (o * dim + ids[i]) * row;
        heap.copyWithin(oOff + (o * count + i) * row, src, src + row);
      }
    }
    return out;
  }
  const xv = backend.typedArrayFromHeap(x) as Float32Array | Int32Array;
  const ov = backend.typedArrayFromHeap(out) as Float32Array | Int32Array;
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < count; i++) {
      const src = (o * dim + ids[i]) * inner;
      const dst = (o * count + i) * inner;
      for (let j = 0; j < inner; j++) ov[dst + j] = xv[src + j];
    }
  }
  return out;
}

export function registerWasmGatherV2(): void {
  const stock = tf.getKernel('GatherV2', 'wasm');
  if (!stock) throw new Error('tfjs-backend-wasm must be loaded before registering kernels');
  // A second registration would capture our own kernel as "stock".
  if (stock.kernelFunc === (gatherV2 as unknown as tf.KernelFunc)) return;
  stockKernel = stock;
  tf.unregisterKernel('GatherV2', 'wasm');
  // Keep the stock setupFunc: the fallback calls the stock kernelFunc, which needs its cwrap.
  tf.registerKernel({ kernelName: 'GatherV2', backendName: 'wasm', setupFunc: stock.setupFunc, kernelFunc: gatherV2 as unknown as tf.KernelFunc });
}
