/**
 * Identity and same-dtype Cast on wasm without copying. tfjs' engine clones every tensor a gradient will need
 * (an Identity per saved tensor: ~430 per reference training step) and the gradient of a clone is a
 * float32 -> float32 Cast; the stock wasm kernels copy the bytes each time. Sharing the data id instead is what
 * wasm's own Reshape and the cpu backend's Identity do: the engine reference-counts data ids, and no wasm kernel
 * writes into its inputs. A Cast that changes the dtype still goes to the stock kernel (the bytes differ).
 */
import * as tf from '@tensorflow/tfjs-core';

interface RefCountingBackend {
  incRef(dataId: object): void;
}

function share(x: tf.TensorInfo, backend: unknown): tf.TensorInfo {
  (backend as RefCountingBackend).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

const identity: tf.KernelFunc = ({ inputs, backend }) => share(inputs.x as tf.TensorInfo, backend);

let stockCast: tf.KernelConfig | undefined;

const cast: tf.KernelFunc = (args) => {
  const x = args.inputs.x as tf.TensorInfo;
  if ((args.attrs as { dtype?: string } | undefined)?.dtype === x.dtype) return share(x, args.backend);
  return (stockCast as tf.KernelConfig).kernelFunc(args);
};

export function registerWasmZeroCopy(): void {
  const stock = tf.getKernel('Cast', 'wasm');
  if (!stock) throw new Error('tfjs-backend-wasm must be loaded before registering kernels');
  // A second registration would capture our own kernel as "stock".
  if (stock.kernelFunc === cast) return;
  stockCast = stock;
  tf.unregisterKernel('Cast', 'wasm');
  tf.registerKernel({ kernelName: 'Cast', backendName: 'wasm', setupFunc: stock.setupFunc, kernelFunc: cast });
  if (tf.getKernel('Identity', 'wasm')) tf.unregisterKernel('Identity', 'wasm');
  tf.registerKernel({ kernelName: 'Identity', backendName: 'wasm', kernelFunc: identity });
}
