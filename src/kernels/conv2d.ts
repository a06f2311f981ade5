/**
 * Conv2D override for wasm: with the native addon loaded, the forward conv runs as im2col + sgemm in C
 * (./native_conv.ts); otherwise, and for anything it does not cover (non-float, NCHW), the stock XNNPACK kernel.
 * The stock conv is reasonably fast already; going native here is for the cores (the pool runs the product
 * multi-threaded) and the FMA micro-kernels.
 */
import * as tf from '@tensorflow/tfjs-core';
import { countKernelCall, nativeAddon } from './native';
import { nativeConv2D } from './native_conv';
import { KernelArgs, WasmBackendLike, convInfoFor } from './wasm_util';

let stockKernel: tf.KernelConfig | undefined;

function conv2D(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as WasmBackendLike;
  const { x, filter } = args.inputs as { x: tf.TensorInfo; filter: tf.TensorInfo };
  const attrs = (args.attrs ?? {}) as tf.NamedAttrMap & { dataFormat?: string };
  const native = nativeAddon();
  if (!native || x.dtype !== 'float32' || filter.dtype !== 'float32' || attrs.dataFormat === 'NCHW') {
    countKernelCall('Conv2D', false);
    return stockKernel!.kernelFunc(args as never) as tf.TensorInfo;
  }
  countKernelCall('Conv2D', true);
  return nativeConv2D(native, backend, x, filter, convInfoFor(x.shape, filter.shape, attrs));
}

/** The stock wasm kernel we replaced, kept callable so benchmarks and tests can compare against it. */
export function stockConv2D(): tf.KernelFunc | undefined {
  return stockKernel?.kernelFunc;
}

export function registerWasmConv2D(): void {
  const stock = tf.getKernel('Conv2D', 'wasm');
  if (!stock) throw new Error('tfjs-backend-wasm must be loaded before registering kernels');
  // A second registration would capture our own kernel as "stock".
  if (stock.kernelFunc === (conv2D as unknown as tf.KernelFunc)) return;
  stockKernel = stock;
  tf.unregisterKernel('Conv2D', 'wasm');
  // Keep the stock setupFunc: the fallback calls the stock kernelFunc, which needs its cwrap.
  tf.registerKernel({ kernelName: 'Conv2D', backendName: 'wasm', setupFunc: stock.setupFunc, kernelFunc: conv2D as unknown as tf.KernelFunc });
}
