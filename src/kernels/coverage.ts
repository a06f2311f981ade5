/**
 * Startup check for kernel coverage. tfjs does not fall back to another backend when a kernel is missing; the
 * op throws "Kernel 'X' not registered for backend 'wasm'" mid-step, possibly hours into a run (the first
 * embedding gradient, the first conv backward). Collect the kernel names of one step on a backend that has
 * them all (cpu), then ask which of them the target backend lacks, before training starts.
 */
import * as tf from '@tensorflow/tfjs-core';

/** True when some backend registered with the engine (or cpu, the reference) has a kernel of this name. */
function isKernelName(name: string): boolean {
  const backends = new Set([...tf.engine().backendNames(), 'cpu']);
  for (const b of backends) if (tf.getKernel(name, b)) return true;
  return false;
}

/**
 * The kernels among `kernelNames` that `backendName` (default: the current backend) has no registration for,
 * sorted and de-duplicated: the ops that would need a cpu round trip (or that fail outright). Names no backend
 * knows are ignored: tf.profile also records customGrad wrappers (e.g. `softmaxCrossEntropy__op`), which are
 * not kernels.
 */
export function listCpuFallbackOps(kernelNames: readonly string[], backendName: string = tf.getBackend()): string[] {
  const missing = new Set<string>();
  for (const name of kernelNames) {
    if (!tf.getKernel(name, backendName) && isKernelName(name)) missing.add(name);
  }
  return [...missing].sort();
}

/**
 * The kernel names `fn` runs, via tf.profile, on the current backend. The tensors `fn` returns are disposed.
 * Run it on a backend that has every kernel (cpu), since a missing kernel throws before it can be listed.
 */
export async function kernelNamesUsed(fn: () => tf.TensorContainer): Promise<string[]> {
  const info = await tf.profile(fn);
  tf.dispose(info.result);
  return [...new Set(info.kernelNames)].sort();
}
