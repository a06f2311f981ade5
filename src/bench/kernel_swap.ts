/**
 * Temporary kernel swaps on the wasm backend, for comparisons against our own kernels:
 *  - `withCpuKernels`: the named wasm kernels run the cpu backend's kernel on copies of their inputs (what a
 *    "cpu fallback" costs; bit-for-bit the cpu kernel's arithmetic);
 *  - `recordKernels`: the named wasm kernels are wrapped to record each call's shapes, attributes and time.
 * The registrations in place before the call are restored afterwards, also when `fn` throws.
 */
import * as tf from '@tensorflow/tfjs-core';
import { KernelArgs, WasmBackendLike } from '../kernels/wasm_util';

async function withKernels<T>(names: readonly string[], make: (name: string, ours: tf.KernelConfig) => tf.KernelFunc, fn: () => Promise<T> | T): Promise<T> {
  const saved = names.map((name) => {
    const ours = tf.getKernel(name, 'wasm');
    if (!ours) throw new Error(`no wasm kernel "${name}" to swap`);
    return ours;
  });
  saved.forEach((ours, i) => {
    tf.unregisterKernel(names[i], 'wasm');
    tf.registerKernel({ kernelName: names[i], backendName: 'wasm', setupFunc: ours.setupFunc, kernelFunc: make(names[i], ours) });
  });
  try {
    return await fn();
  } finally {
    saved.forEach((ours, i) => {
      tf.unregisterKernel(names[i], 'wasm');
      tf.registerKernel(ours);
    });
  }
}

/** Runs `fn` with the named wasm kernels bridged to the cpu backend's kernels. */
export function withCpuKernels<T>(names: readonly string[], fn: () => Promise<T> | T): Promise<T> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  require('@tensorflow/tfjs-backend-cpu');
  const cpu = tf.findBackend('cpu') as tf.KernelBackend | null;
  if (!cpu) throw new Error('the cpu backend is not available');
  return withKernels(names, (name) => {
    const cpuKernel = tf.getKernel(name, 'cpu');
    if (!cpuKernel) throw new Error(`the cpu backend has no kernel "${name}"`);
    return ((args: KernelArgs) => {
      const wasm = args.backend as WasmBackendLike & tf.KernelBackend;
      const moved: tf.NamedTensorInfoMap = {};
      for (const [k, info] of Object.entries(args.inputs)) {
        const t = info as tf.TensorInfo;
        moved[k] = { dataId: cpu.write(wasm.readSync(t.dataId) as tf.backend_util.BackendValues, t.shape, t.dtype), shape: t.shape, dtype: t.dtype };
      }
      const out = cpuKernel.kernelFunc({ inputs: moved, backend: cpu, attrs: args.attrs }) as tf.TensorInfo;
      const values = cpu.readSync(out.dataId) as tf.backend_util.BackendValues;
      for (const t of Object.values(moved)) cpu.disposeData((t as tf.TensorInfo).dataId);
      cpu.disposeData(out.dataId);
      return wasm.makeOutput(out.shape, out.dtype, null, values);
    }) as unknown as tf.KernelFunc;
  }, fn);
}

export interface KernelCall {
  kernel: string;
  inputs: Record<string, number[]>;
  attrs: tf.NamedAttrMap;
  ms: number;
}

/** Runs `fn` and returns every call of the named wasm kernels it made. */
export async function recordKernels<T>(names: readonly string[], fn: () => Promise<T> | T): Promise<{ result: T; calls: KernelCall[] }> {
  const calls: KernelCall[] = [];
  const result = await withKernels(names, (name, ours) => ((args: KernelArgs) => {
    const t0 = performance.now();
    const out = ours.kernelFunc(args as never) as tf.TensorInfo;
    const ms = performance.now() - t0;
    const inputs: Record<string, number[]> = {};
    for (const [k, t] of Object.entries(args.inputs)) inputs[k] = [...(t as tf.TensorInfo).shape];
    calls.push({ kernel: name, inputs, attrs: { ...(args.attrs ?? {}) }, ms });
    return out;
  }) as unknown as tf.KernelFunc, fn);
  return { result, calls };
}
