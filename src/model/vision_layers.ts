/**
 * Convolutional building blocks shared by the VQ tokenizer and the SigLIP patch embedding: Conv2d with explicit
 * (possibly asymmetric) padding, GroupNorm, nearest 2x upsampling, and the stop-gradient tfjs lacks.
 * Activations are NHWC; conv weights are HWIO in the ParamStore (layout 'conv2d', checkpoint OIHW).
 */
import * as tf from '@tensorflow/tfjs-core';
import { ParamStore } from './params';

/** Padding of a conv: one number for every side, or [top, bottom, left, right]. */
export type ConvPadding = number | [number, number, number, number];

export function explicitPadding(pad: ConvPadding): tf.backend_util.ExplicitPadding {
  const [t, b, l, r] = typeof pad === 'number' ? [pad, pad, pad, pad] : pad;
  return [[0, 0], [t, b], [l, r], [0, 0]];
}

/** NHWC conv with PyTorch-style explicit padding (tf's 'same' would silently pick its own split). */
export function conv2d(x: tf.Tensor4D, w: tf.Tensor4D, b: tf.Tensor | null, stride: number, pad: ConvPadding): tf.Tensor4D {
  const y = tf.conv2d(x, w, stride, explicitPadding(pad));
  return b ? tf.add(y, b) : y;
}

export interface Conv2dOptions {
  stride?: number;
  pad?: ConvPadding;
  bias?: boolean;
}

/** A Conv2d declared under `${prefix}.weight` [k,k,in,out] (HWIO) and `${prefix}.bias`. */
export class Conv2d {
  readonly weight: string;
  readonly bias: string | null;
  readonly stride: number;
  readonly pad: ConvPadding;

  constructor(
    private readonly store: ParamStore,
    prefix: string,
    readonly inCh: number,
    readonly outCh: number,
    readonly kernel: number,
    opts: Conv2dOptions = {},
  ) {
    this.stride = opts.stride ?? 1;
    this.pad = opts.pad ?? Math.floor(kernel / 2);
    // PyTorch's default Conv2d init (kaiming_uniform with a=sqrt(5)) is uniform(+-1/sqrt(fan_in)); LlamaGen keeps it.
    const limit = 1 / Math.sqrt(inCh * kernel * kernel);
    this.weight = store.declare(`${prefix}.weight`, [kernel, kernel, inCh, outCh], 'conv2d', { kind: 'uniform', limit });
    this.bias = opts.bias === false ? null : store.declare(`${prefix}.bias`, [outCh], 'plain', { kind: 'zeros' });
  }

  apply(x: tf.Tensor4D): tf.Tensor4D {
    const b = this.bias ? this.store.get(this.bias) : null;
    return conv2d(x, this.store.get(this.weight) as tf.Tensor4D, b, this.stride, this.pad);
  }

  /**
   * A 1x1 conv as a matmul over the channel axis of [..., in]. The attention projections use this on token
   * rows, which avoids a conv per projection and keeps the tensors 2D/3D.
   */
  applyPointwise(x: tf.Tensor): tf.Tensor {
    if (this.kernel !== 1) throw new Error(`applyPointwise needs a 1x1 conv, ${this.weight} is ${this.kernel}x${this.kernel}.`);
    const lead = x.shape.slice(0, -1);
    const w = tf.reshape(this.store.get(this.weight), [this.inCh, this.outCh]) as tf.Tensor2D;
    let y: tf.Tensor = tf.matMul(tf.reshape(x, [-1, this.inCh]) as tf.Tensor2D, w);
    if (this.bias) y = tf.add(y, this.store.get(this.bias));
    return tf.reshape(y, [...lead, this.outCh]);
  }
}

/**
 * torch.nn.GroupNorm on NHWC: channel c belongs to group floor(c / (C/G)), biased variance over (H, W, C/G).
 * Folded into one per-(image, channel) scale and shift so only two full-size tensors are made after the
 * moments: at 384x384x128 each one is 75 MB.
 */
export function groupNorm(x: tf.Tensor4D, groups: number, weight: tf.Tensor, bias: tf.Tensor, eps: number): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, h, w, c] = x.shape;
    if (c % groups !== 0) throw new Error(`GroupNorm: ${c} channels are not divisible into ${groups} groups.`);
    const g = tf.reshape(x, [b, h, w, groups, c / groups]);
    const { mean, variance } = tf.moments(g, [1, 2, 4], true);
    const perGroup = tf.rsqrt(tf.add(variance, eps));
    const w5 = tf.reshape(weight, [1, 1, 1, groups, c / groups]);
    const scale = tf.mul(perGroup, w5);
    const shift = tf.sub(tf.reshape(bias, [1, 1, 1, groups, c / groups]), tf.mul(mean, scale));
    return tf.reshape(tf.add(tf.mul(g, scale), shift), [b, h, w, c]) as tf.Tensor4D;
  });
}

/** GroupNorm with affine weight/bias declared under `${prefix}.weight` / `${prefix}.bias`. */
export class GroupNorm {
  readonly weight: string;
  readonly bias: string;

  constructor(
    private readonly store: ParamStore,
    prefix: string,
    readonly channels: number,
    readonly groups: number,
    readonly eps = 1e-6,
  ) {
    if (channels % groups !== 0) throw new Error(`GroupNorm "${prefix}": ${channels} channels are not divisible into ${groups} groups.`);
    this.weight = store.declare(`${prefix}.weight`, [channels], 'plain', { kind: 'ones' });
    this.bias = store.declare(`${prefix}.bias`, [channels], 'plain', { kind: 'zeros' });
  }

  apply(x: tf.Tensor4D): tf.Tensor4D {
    return groupNorm(x, this.groups, this.store.get(this.weight), this.store.get(this.bias), this.eps);
  }
}

/**
 * F.interpolate(scale_factor=2, mode='nearest') on NHWC: output pixel (y, x) reads input (y // 2, x // 2).
 * Built from a broadcast multiply so that the op and its gradient (a sum) exist on every backend.
 */
export function upsampleNearest2x(x: tf.Tensor4D): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  const spread = tf.mul(tf.reshape(x, [b, h, 1, w, 1, c]), tf.ones([1, 1, 2, 1, 2, 1]));
  return tf.reshape(spread, [b, 2 * h, 2 * w, c]) as tf.Tensor4D;
}

const stopGradientOp = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
  value: tf.clone(args[0] as tf.Tensor),
  gradFunc: (dy: tf.Tensor) => [tf.zerosLike(dy)],
}));

/** tfjs has no stopGradient: identity forward, zero gradient backward. */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  return stopGradientOp(x) as T;
}
