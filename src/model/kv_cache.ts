/**
 * Key/value cache for incremental decoding: per layer, keys and values of every position seen so far, for a
 * batch of rows (the CFG rows of generation). Rows may have different real lengths (left padding): the key mask
 * and the next position id are tracked per row.
 */
import * as tf from '@tensorflow/tfjs-core';

export class KVCache {
  /** Per layer: keys and values [B, kvHeads, T, headDim]. Empty until the first forward. */
  readonly keys: (tf.Tensor4D | null)[];
  readonly values: (tf.Tensor4D | null)[];
  /** 1 where a cached position is a real token, 0 for padding; [B][T]. */
  readonly keyMask: number[][];
  /** Position id the next token of each row takes. */
  readonly nextPosition: number[];

  constructor(readonly batch: number, readonly numLayers: number, readonly maxLength: number) {
    this.keys = new Array<tf.Tensor4D | null>(numLayers).fill(null);
    this.values = new Array<tf.Tensor4D | null>(numLayers).fill(null);
    this.keyMask = Array.from({ length: batch }, () => [] as number[]);
    this.nextPosition = new Array<number>(batch).fill(0);
  }

  get length(): number {
    return this.keyMask[0]?.length ?? 0;
  }

  /** Appends this step's keys/values for one layer and returns the full (cached + new) ones. */
  append(layer: number, k: tf.Tensor4D, v: tf.Tensor4D): { k: tf.Tensor4D; v: tf.Tensor4D } {
    const oldK = this.keys[layer];
    const oldV = this.values[layer];
    const fullK = oldK ? (tf.concat([oldK, k], 2) as tf.Tensor4D) : k;
    const fullV = oldV ? (tf.concat([oldV, v], 2) as tf.Tensor4D) : v;
    // The cache outlives the caller's tidy scope; the replaced tensors are freed here.
    this.keys[layer] = tf.keep(fullK.clone());
    this.values[layer] = tf.keep(fullV.clone());
    oldK?.dispose();
    oldV?.dispose();
    return { k: fullK, v: fullV };
  }

  /** Records the mask and positions of tokens appended by one forward (called once per forward, not per layer). */
  commit(mask: number[][], positions: number[][]): void {
    for (let r = 0; r < this.batch; r++) {
      this.keyMask[r].push(...mask[r]);
      const last = positions[r][positions[r].length - 1];
      this.nextPosition[r] = last + 1;
    }
  }

  /** Bytes held by the cached tensors. */
  get bytes(): number {
    let n = 0;
    for (const t of [...this.keys, ...this.values]) if (t) n += t.size * 4;
    return n;
  }

  dispose(): void {
    for (let i = 0; i < this.numLayers; i++) {
      this.keys[i]?.dispose();
      this.values[i]?.dispose();
      this.keys[i] = this.values[i] = null;
    }
  }
}
