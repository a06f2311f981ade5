/**
 * Small functional building blocks over tfjs-core ops, shared by the LLaMA decoder, the aligners/heads and the
 * SigLIP encoder. Weights come from a ParamStore by name; layouts are tfjs-native (Linear weight [in, out]).
 */
import * as tf from '@tensorflow/tfjs-core';
import { ParamStore } from './params';

/** x[..., in] @ W[in, out] (+ b). Flattens leading dims so the matmul is one unbatched 2D product. */
export function linear(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor): tf.Tensor {
  const inDim = x.shape[x.shape.length - 1];
  const lead = x.shape.slice(0, -1);
  const y2 = tf.matMul(tf.reshape(x, [-1, inDim]), w as tf.Tensor2D);
  const y = b ? tf.add(y2, b) : y2;
  return tf.reshape(y, [...lead, w.shape[1] as number]);
}

/** Exact (erf) GELU, as torch.nn.GELU() computes it. */
export function gelu(x: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
}

export function silu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(x));
}

/** LLaMA RMSNorm: x * rsqrt(mean(x^2) + eps) * weight (all float32 here, which is the fp32 path of the reference). */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor, eps: number): tf.Tensor {
  const ms = tf.mean(tf.square(x), -1, true);
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, eps))), weight);
}

/** LayerNorm over the last axis with affine weight and bias. */
export function layerNorm(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor, eps: number): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), weight), bias);
}

/** A Linear layer declared in a ParamStore under `${prefix}.weight` / `${prefix}.bias`. */
export class Linear {
  readonly weight: string;
  readonly bias: string | null;

  constructor(
    private readonly store: ParamStore,
    prefix: string,
    readonly inDim: number,
    readonly outDim: number,
    opts: { bias?: boolean; std?: number } = {},
  ) {
    const std = opts.std ?? 0.02;
    this.weight = store.declare(`${prefix}.weight`, [inDim, outDim], 'linear', { kind: 'normal', std });
    this.bias = opts.bias === false ? null : store.declare(`${prefix}.bias`, [outDim], 'plain', { kind: 'zeros' });
  }

  apply(x: tf.Tensor): tf.Tensor {
    return linear(x, this.store.get(this.weight), this.bias ? this.store.get(this.bias) : undefined);
  }
}

/**
 * Janus `MlpProjector` (mlp_gelu, depth 2): Linear -> GELU -> Linear, named `${prefix}.layers.0` and
 * `${prefix}.layers.2` (index 1 is the GELU). Used for `aligner` and `gen_aligner`.
 */
export class MlpProjector {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(store: ParamStore, prefix: string, inDim: number, hidden: number) {
    this.fc1 = new Linear(store, `${prefix}.layers.0`, inDim, hidden);
    this.fc2 = new Linear(store, `${prefix}.layers.2`, hidden, hidden);
  }

  apply(x: tf.Tensor): tf.Tensor {
    return this.fc2.apply(gelu(this.fc1.apply(x)));
  }
}
