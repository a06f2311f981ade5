/**
 * Rotary position embeddings, HF LLaMA convention (rotate-half: dims i and i + hd/2 are paired). The cos/sin
 * tables are built once per (headDim, theta, maxPositions) and sliced or gathered by position id, so a step
 * never loops over positions in JS.
 */
import * as tf from '@tensorflow/tfjs-core';

export class RotaryTable {
  private cosT: tf.Tensor2D | null = null;
  private sinT: tf.Tensor2D | null = null;
  private rotation: tf.Tensor2D | null = null;

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

  /**
   * cos and sin for host position ids [B][L] as [B', 1, L, hd]. When every row has the same ids (training
   * batches without padding) B' = 1 and the tables broadcast over rows; consecutive ids are a slice of the
   * table. Both avoid a gather, which is a slow generic kernel on wasm (~15 M elements/s).
   */
  lookupRows(positions: number[][]): { cos: tf.Tensor4D; sin: tf.Tensor4D } {
    if (!this.cosT) this.build();
    const hd = this.headDim;
    const first = positions[0];
    const l = first.length;
    const shared = positions.every((row) => row === first || row.every((p, j) => p === first[j]));
    if (shared && first.every((p, j) => p === first[0] + j)) {
      const pick = (t: tf.Tensor2D) => tf.reshape(tf.slice(t, [first[0], 0], [l, hd]), [1, 1, l, hd]) as tf.Tensor4D;
      return { cos: pick(this.cosT!), sin: pick(this.sinT!) };
    }
    const rows = shared ? 1 : positions.length;
    const ids = tf.tensor1d(shared ? first : positions.flat(), 'int32');
    const pick = (t: tf.Tensor2D) => tf.reshape(tf.gather(t, ids), [rows, 1, l, hd]) as tf.Tensor4D;
    return { cos: pick(this.cosT!), sin: pick(this.sinT!) };
  }

  /**
   * The constant R [hd, hd] with x @ R = rotate_half(x) = concat(-x2, x1). One XNNPACK product over all heads
   * beats split + neg + concat (three copies, and three more in the gradient) on wasm.
   */
  rotationMatrix(): tf.Tensor2D {
    if (!this.rotation) {
      const hd = this.headDim;
      const half = hd / 2;
      const r = new Float32Array(hd * hd);
      for (let j = 0; j < half; j++) {
        r[(j + half) * hd + j] = -1;
        r[j * hd + j + half] = 1;
      }
      this.rotation = tf.keep(tf.tensor2d(r, [hd, hd]));
    }
    return this.rotation;
  }

  dispose(): void {
    this.cosT?.dispose();
    this.sinT?.dispose();
    this.rotation?.dispose();
    this.cosT = this.sinT = this.rotation = null;
  }
}

/** x * cos + rotate_half(x) * sin, with rotate_half(x) = concat(-x2, x1) over the last axis. */
export function applyRotary(x: tf.Tensor4D, cos: tf.Tensor4D, sin: tf.Tensor4D): tf.Tensor4D {
  const half = x.shape[3] / 2;
  const [x1, x2] = tf.split(x, [half, half], 3);
  const rotated = tf.concat([tf.neg(x2), x1], 3);
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin)) as tf.Tensor4D;
}

/** applyRotary with rotate_half as one product with `rotation` (RotaryTable.rotationMatrix). */
export function applyRotaryMatMul(x: tf.Tensor4D, cos: tf.Tensor4D, sin: tf.Tensor4D, rotation: tf.Tensor2D): tf.Tensor4D {
  const hd = x.shape[3];
  const rotated = tf.reshape(tf.matMul(tf.reshape(x, [-1, hd]), rotation), x.shape);
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin)) as tf.Tensor4D;
}
