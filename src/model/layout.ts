/**
 * Converts parameter data between the tfjs layout the model computes with (Linear [in, out], Conv2d HWIO) and
 * the PyTorch checkpoint layout (Linear [out, in], Conv2d OIHW). Lossless permutations on host arrays.
 */
import { ParamSpec, checkpointShape } from './params';

function permute(data: Float32Array, shape: readonly number[], perm: readonly number[]): Float32Array {
  const rank = shape.length;
  const outShape = perm.map((p) => shape[p]);
  const inStrides = new Array<number>(rank);
  let s = 1;
  for (let i = rank - 1; i >= 0; i--) {
    inStrides[i] = s;
    s *= shape[i];
  }
  const stride = perm.map((p) => inStrides[p]);
  const out = new Float32Array(data.length);
  const idx = new Array<number>(rank).fill(0);
  for (let o = 0; o < out.length; o++) {
    let src = 0;
    for (let d = 0; d < rank; d++) src += idx[d] * stride[d];
    out[o] = data[src];
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d] < outShape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

/** tfjs layout -> checkpoint layout. */
export function toCheckpointLayout(spec: Pick<ParamSpec, 'shape' | 'layout'>, data: Float32Array): Float32Array {
  if (spec.layout === 'linear') return permute(data, spec.shape, [1, 0]);
  if (spec.layout === 'conv2d') return permute(data, spec.shape, [3, 2, 0, 1]); // HWIO -> OIHW
  return data;
}

/** checkpoint layout -> tfjs layout. */
export function fromCheckpointLayout(spec: Pick<ParamSpec, 'shape' | 'layout'>, data: Float32Array): Float32Array {
  const ck = checkpointShape(spec);
  if (spec.layout === 'linear') return permute(data, ck, [1, 0]);
  if (spec.layout === 'conv2d') return permute(data, ck, [2, 3, 1, 0]); // OIHW -> HWIO
  return data;
}
