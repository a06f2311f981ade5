/**
 * Conv2DBackpropFilter for wasm, which has none (the cpu kernel does ~8 M MAC/s: seconds per conv layer).
 * dW[kh,kw,c,o] = sum_n cols[n,(kh,kw,c)] * dy[n,o] with n = (batch, oh, ow). We write the im2col matrix
 * already transposed, colsT[(kh,kw,c), n], straight into a heap tensor, so the whole reduction is one XNNPACK
 * product colsT @ dy whose [KH*KW*C, O] result is the filter gradient in tf's layout with no further copies.
 * Handles stride, dilation (an optional `dilations` attr; tf's own op never passes one) and same/valid/explicit
 * (asymmetric) padding via computeConv2DInfo. NHWC only, like the stock wasm Conv2D.
 * With the native addon loaded, ./native_conv.ts does the same lowering in C (this JS path is the fallback).
 */
import * as tf from '@tensorflow/tfjs-core';
import { countKernelCall, nativeAddon } from './native';
import { nativeConv2DBackpropFilter } from './native_conv';
import { KernelArgs, WasmBackendLike, convInfoFor, f32, idOf, releaseView, weightId, xnnMatMul } from './wasm_util';

/** Fills colsT[K, N] (K = KH*KW*C, N = B*OH*OW); out-of-image taps are zero padding. */
function im2colT(xv: Float32Array, cols: Float32Array, info: tf.backend_util.Conv2DInfo): void {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = info;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const N = B * OH * OW;
  // Valid ow range per kw, so the inner loop has no bounds checks.
  for (let kh = 0; kh < KH; kh++) {
    for (let kw = 0; kw < KW; kw++) {
      const off = kw * dw - left;
      const owLo = Math.min(OW, Math.max(0, Math.ceil(-off / sw)));
      const owHi = Math.max(owLo, Math.min(OW, Math.ceil((W - off) / sw)));
      for (let c = 0; c < C; c++) {
        const row = ((kh * KW + kw) * C + c) * N;
        let n = row;
        for (let b = 0; b < B; b++) {
          for (let oh = 0; oh < OH; oh++) {
            const ih = oh * sh - top + kh * dh;
            if (ih < 0 || ih >= H) {
              cols.fill(0, n, n + OW);
              n += OW;
              continue;
            }
            const base = ((b * H + ih) * W + off) * C + c;
            for (let ow = 0; ow < owLo; ow++) cols[n++] = 0;
            for (let ow = owLo; ow < owHi; ow++) cols[n++] = xv[base + ow * sw * C];
            for (let ow = owHi; ow < OW; ow++) cols[n++] = 0;
          }
        }
      }
    }
  }
}

function conv2DBackpropFilter(args: KernelArgs): tf.TensorInfo {
  const backend = args.backend as WasmBackendLike;
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const attrs = args.attrs as tf.NamedAttrMap & { filterShape: [number, number, number, number] };
  const filterShape = attrs.filterShape;
  const info = convInfoFor(x.shape, filterShape, attrs);
  const { batchSize: B, outHeight: OH, outWidth: OW, outChannels: O } = info;
  if (dy.shape.join() !== [B, OH, OW, O].join()) {
    throw new Error(`Conv2DBackpropFilter: dy shape ${dy.shape} does not match the conv output [${[B, OH, OW, O]}]`);
  }
  const N = B * OH * OW;
  const K = info.filterHeight * info.filterWidth * info.inChannels;
  const native = nativeAddon();
  if (native && N > 0 && K > 0 && O > 0) {
    countKernelCall('Conv2DBackpropFilter', true);
    return nativeConv2DBackpropFilter(native, backend, x, dy, filterShape, info);
  }
  countKernelCall('Conv2DBackpropFilter', false);
  const out = backend.makeOutput(filterShape, 'float32');
  if (N === 0 || K === 0 || O === 0) {
    f32(backend, out).fill(0);
    return out;
  }
  const cols = backend.makeOutput([K, N], 'float32');
  // Views only after the last allocation: malloc can grow (and detach) the heap.
  im2colT(f32(backend, x), f32(backend, cols), info);
  const w = weightId(backend, dy, N, O);
  xnnMatMul(backend, idOf(backend, cols), K, N, w.id, O, idOf(backend, out));
  if (w.view) releaseView(backend, w.view);
  backend.disposeData(cols.dataId);
  return out;
}

export function registerWasmConv2DBackpropFilter(): void {
  if (tf.getKernel('Conv2DBackpropFilter', 'wasm')) tf.unregisterKernel('Conv2DBackpropFilter', 'wasm');
  tf.registerKernel({ kernelName: 'Conv2DBackpropFilter', backendName: 'wasm', kernelFunc: conv2DBackpropFilter as unknown as tf.KernelFunc });
}
