/**
 * Exp on wasm through the native addon when it is loaded: the stock kernel calls a scalar exp per element
 * (~75 M/s here), and the image-token softmax cross-entropy runs it on the [rows, vocab] logits twice a step
 * (~8 ms of a ~300 ms reference step at 1 thread). Anything but float32, or no addon: the stock kernel.
 */
import * as tf from '@tensorflow/tfjs-core';
import { countKernelCall, nativeAddon } from './native';
import { KernelArgs, WasmBackendLike, sizeOf } from './wasm_util';

let stockKernel: tf.KernelConfig | undefined;

function exp(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as WasmBackendLike;
  const x = args.inputs.x as tf.TensorInfo;
  const native = nativeAddon();
  if (!native || x.dtype !== 'float32') {
    countKernelCall('Exp', false);
    return stockKernel!.kernelFunc(args as never) as tf.TensorInfo;
  }
  countKernelCall('Exp', true);
  const out = backend.makeOutput(x.shape, 'float32');
  const n = sizeOf(x.shape);
  if (n > 0) native.exp(backend.wasm.HEAPU8, backend.dataIdMap.get(x.dataId).memoryOffset, backend.dataIdMap.get(out.dataId).memoryOffset, n);
  return out;
}

export function registerWasmExp(): void {
  const stock = tf.getKernel('Exp', 'wasm');
  if (!stock) throw new Error('tfjs-backend-wasm must be loaded before registering kernels');
  // A second registration would capture our own kernel as "stock".
  if (stock.kernelFunc === (exp as unknown as tf.KernelFunc)) return;
  stockKernel = stock;
  tf.unregisterKernel('Exp', 'wasm');
  // Keep the stock setupFunc: the fallback calls the stock kernelFunc, which needs its cwrap.
  tf.registerKernel({ kernelName: 'Exp', backendName: 'wasm', setupFunc: stock.setupFunc, kernelFunc: exp as unknown as tf.KernelFunc });
}
