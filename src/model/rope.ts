/**
 * Rotary position embeddings, HF LLaMA convention (rotate-half: dims i and i + hd/2 are paired). The cos/sin
 * tables are built once per (headDim, theta, maxPositions) and gathered by position id, so a step never loops
 * over positions in JS.
 */
import * as tf from '@tensorflow/tfjs-core';

export class RotaryTable {
  private cosT: tf.Tensor2D | null = null;
  private sinT: tf.Tensor2D | null = null;

  constructor(readonly headDim: number, readonly theta: number, readonly maxPositions: number) {}

  private build(): void {
    const hd = this.headDim;
    const half = hd / 2;
    // One row per position up to the config's maximum (16K rows x 128 x 2 tables = 16 MB for Janus-Pro).
    const n = this.maxPositions;
    const cos = new Float32Array(n * hd);
    const sin = new Float32Array(n * hd);
    for (let i = 0; i < half; i++) {
      // Computed in float64 then rounded: matches torch's float32 inv_freq * position within float32 rounding.
      const invFreq = Math.fround(1 / Math.pow(this.theta, (2 * i) / hd));
      for (let p = 0; p < n; p++) {
        const a = Math.fround(p * invFreq);
        const c = Math.cos(a);
        const s = Math.sin(a);
        cos[p * hd + i] = c;
        cos[p * hd + i + half] = c;
        sin[p * hd + i] = s;
        sin[p * hd + i + half] = s;
      }
    }
    this.cosT = tf.keep(tf.tensor2d(cos, [n, hd]));
    this.sinT = tf.keep(tf.tensor2d(sin, [n, hd]));
  }

  /** cos and sin for the given position ids [B, L], shaped [B, 1, L, hd] to broadcast over heads. */
  lookup(positions: tf.Tensor2D): { cos: tf.Tensor4D; sin: tf.Tensor4D } {
    if (!this.cosT) this.build();
    const [b, l] = positions.shape;
    const flat = tf.reshape(positions, [-1]);
    const cos = tf.reshape(tf.gather(this.cosT!, flat), [b, 1, l, this.headDim]) as tf.Tensor4D;
    const sin = tf.reshape(tf.gather(this.sinT!, flat), [b, 1, l, this.headDim]) as tf.Tensor4D;
    return { cos, sin };
  }

  dispose(): void {
    this.cosT?.dispose();
    this.sinT?.dispose();
    this.cosT = this.sinT = null;
  }
}

/** x * cos + rotate_half(x) * sin, with rotate_half(x) = concat(-x2, x1) over the last axis. */
export function applyRotary(x: tf.Tensor4D, cos: tf.Tensor4D, sin: tf.Tensor4D): tf.Tensor4D {
  const half = x.shape[3] / 2;
  const [x1, x2] = tf.split(x, [half, half], 3);
  const rotated = tf.concat([tf.neg(x2), x1], 3);
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin)) as tf.Tensor4D;
}
