/**
 * Conv2DBackpropInput for wasm. The stock kernel is a scalar C++ loop (90-135 ms of a 250 ms conv-VQ step).
 * Two formulations, both on XNNPACK:
 *  - stride 1: dx is a plain convolution of dy with the spatially flipped, in/out-swapped filter and padding
 *    (K-1-pad) per side, which the stock wasm Conv2D (XNNPACK) runs directly. No im2col at all.
 *  - anything else (stride > 1, dilation, pads larger than the kernel): cols[n, (kh,kw,c)] = dy[n,:] @ W[:,..]^T
 *    as one XNNPACK product, then col2im scatter-adds each column patch into dx in JS.
 * Which one is faster for a shape was measured (scripts/kernel_bench.ts); see `strategyFor`.
 * With the native addon loaded, the registered kernel runs ./native_conv.ts instead (product and col2im in C);
 * these two stay as the fallback and remain selectable for tests and benchmarks.
 */
import * as tf from '@tensorflow/tfjs-core';
import { countKernelCall, nativeAddon } from './native';
import { nativeConv2DBackpropInput } from './native_conv';
import { KernelArgs, WasmBackendLike, convInfoFor, f32, idOf, runWasmKernel, transposeLast2, xnnMatMul } from './wasm_util';

export type BackpropInputStrategy = 'conv' | 'col2im';

/** The conv formulation needs stride 1, dilation 1 and every pad <= kernel-1 (else the flipped pad is negative). */
export function strategyFor(info: tf.backend_util.Conv2DInfo): BackpropInputStrategy {
  const p = info.padInfo;
  const fits =
    info.strideHeight === 1 && info.strideWidth === 1 && info.dilationHeight === 1 && info.dilationWidth === 1 &&
    Math.max(p.top, p.bottom) <= info.filterHeight - 1 && Math.max(p.left, p.right) <= info.filterWidth - 1;
  return fits ? 'conv' : 'col2im';
}

function viaConv(backend: WasmBackendLike, dy: tf.TensorInfo, filter: tf.TensorInfo, info: tf.backend_util.Conv2DInfo): tf.TensorInfo {
  const { filterHeight: KH, filterWidth: KW, inChannels: C, outChannels: O } = info;
  const flipped = backend.makeOutput([KH, KW, O, C], 'float32');
  const wv = f32(backend, filter);
  const fv = f32(backend, flipped);
  for (let kh = 0; kh < KH; kh++) {
    for (let kw = 0; kw < KW; kw++) {
      const src = ((KH - 1 - kh) * KW + (KW - 1 - kw)) * C * O;
      const dst = (kh * KW + kw) * O * C;
      for (let c = 0; c < C; c++) for (let o = 0; o < O; o++) fv[dst + o * C + c] = wv[src + c * O + o];
    }
  }
  const p = info.padInfo;
  const pad: tf.backend_util.ExplicitPadding = [[0, 0], [KH - 1 - p.top, KH - 1 - p.bottom], [KW - 1 - p.left, KW - 1 - p.right], [0, 0]];
  const dx = runWasmKernel('Conv2D', backend, { x: dy, filter: flipped }, { strides: [1, 1], pad, dilations: [1, 1], dataFormat: 'NHWC' });
  // Disposing the temporary filter also deletes the XNNPACK operator cached on its id.
  backend.disposeData(flipped.dataId);
  if (dx.shape.join() !== info.inShape.join()) {
    backend.disposeData(dx.dataId);
    throw new Error(`Conv2DBackpropInput: conv formulation gave ${dx.shape}, expected ${info.inShape}`);
  }
  return dx;
}

function col2im(cols: Float32Array, dx: Float32Array, info: tf.backend_util.Conv2DInfo): void {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = info;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const K = KH * KW * C;
  dx.fill(0);
  let n = 0;
  for (let b = 0; b < B; b++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++, n++) {
        for (let kh = 0; kh < KH; kh++) {
          const ih = oh * sh - top + kh * dh;
          if (ih < 0 || ih >= H) continue;
          for (let kw = 0; kw < KW; kw++) {
            const iw = ow * sw - left + kw * dw;
            if (iw < 0 || iw >= W) continue;
            const src = n * K + (kh * KW + kw) * C;
            const dst = ((b * H + ih) * W + iw) * C;
            for (let c = 0; c < C; c++) dx[dst + c] += cols[src + c];
          }
        }
      }
    }
  }
}

function viaCol2im(backend: WasmBackendLike, dy: tf.TensorInfo, filter: tf.TensorInfo, info: tf.backend_util.Conv2DInfo): tf.TensorInfo {
  const { batchSize: B, outHeight: OH, outWidth: OW, outChannels: O } = info;
  const N = B * OH * OW;
  const K = info.filterHeight * info.filterWidth * info.inChannels;
  // W viewed as [K, O]; the product needs W^T [O, K] row-major as XNNPACK weights.
  const wT = transposeLast2(backend, filter, 1, K, O);
  const cols = backend.makeOutput([N, K], 'float32');
  const dx = backend.makeOutput(info.inShape, 'float32');
  xnnMatMul(backend, idOf(backend, dy), N, O, idOf(backend, wT), K, idOf(backend, cols));
  // Views after the C++ call: operator creation mallocs and may have grown the heap.
  col2im(f32(backend, cols), f32(backend, dx), info);
  backend.disposeData(wT.dataId);
  backend.disposeData(cols.dataId);
  return dx;
}

/**
 * Exposed for the benchmark and tests; `strategy` forces a wasm formulation (the conv one only where it applies),
 * without it the native kernel runs when loaded.
 */
export function conv2DBackpropInputWith(args: KernelArgs, strategy?: BackpropInputStrategy): tf.TensorInfo {
  const backend = args.backend as WasmBackendLike;
  const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  const attrs = args.attrs as tf.NamedAttrMap & { inputShape: [number, number, number, number] };
  const info = convInfoFor(attrs.inputShape, filter.shape, attrs);
  const { batchSize: B, outHeight: OH, outWidth: OW, outChannels: O } = info;
  if (dy.shape.join() !== [B, OH, OW, O].join()) {
    throw new Error(`Conv2DBackpropInput: dy shape ${dy.shape} does not match the conv output [${[B, OH, OW, O]}]`);
  }
  if (tf.util.sizeFromShape(info.inShape) === 0 || B * OH * OW === 0 || O === 0) {
    const dx = backend.makeOutput(info.inShape, 'float32');
    f32(backend, dx).fill(0);
    return dx;
  }
  const native = strategy === undefined ? nativeAddon() : null;
  countKernelCall('Conv2DBackpropInput', native !== null);
  if (native) return nativeConv2DBackpropInput(native, backend, dy, filter, info);
  const chosen = strategy ?? strategyFor(info);
  if (chosen === 'conv' && strategyFor(info) !== 'conv') throw new Error('Conv2DBackpropInput: the conv formulation does not apply to this shape');
  return chosen === 'conv' ? viaConv(backend, dy, filter, info) : viaCol2im(backend, dy, filter, info);
}

let stockKernel: tf.KernelConfig | undefined;
const kernelFunc = (args: KernelArgs): tf.TensorInfo => conv2DBackpropInputWith(args);

/** The stock wasm kernel we replaced, kept callable so benchmarks and tests can compare against it. */
export function stockConv2DBackpropInput(): tf.KernelFunc | undefined {
  return stockKernel?.kernelFunc;
}

export function registerWasmConv2DBackpropInput(): void {
  const stock = tf.getKernel('Conv2DBackpropInput', 'wasm');
  if (stock && stock.kernelFunc === (kernelFunc as unknown as tf.KernelFunc)) return;
  stockKernel = stock;
  if (stock) tf.unregisterKernel('Conv2DBackpropInput', 'wasm');
  // Keep the stock setupFunc so stockConv2DBackpropInput() still has its C++ binding after backend init.
  tf.registerKernel({ kernelName: 'Conv2DBackpropInput', backendName: 'wasm', setupFunc: stock?.setupFunc, kernelFunc: kernelFunc as unknown as tf.KernelFunc });
}
