/**
 * How a flat Float32Array is cut for the ring collectives, and the exact summation order that results.
 *
 * The buffer is split into `worldSize` contiguous shards (the first `length % worldSize` shards are one
 * element longer); shard r is owned by rank r. That is the same layout ZeRO-1 uses for optimizer state, so
 * reduce-scatter leaves each rank holding exactly the gradient slice its AdamW shard needs, and
 * all-reduce (= reduce-scatter + all-gather on that layout) produces bit-identical sums to the ZeRO path.
 * Each shard is cut into pieces of at most `chunkElements`; bucket k is piece k of every shard, and one
 * piece travels in one frame.
 *
 * Summation order: the partial sum of shard c starts at rank c+1 and travels the ring c+1 -> c+2 -> ...
 * -> c, each rank adding its own values, so element i of shard c is
 *   ((x[c+1] + x[c+2]) + ...) + x[c]        (rank indices mod N, float32 rounding after every add)
 * independent of the chunk size. With `average`, the owner then divides by N before the all-gather, so all
 * ranks hold the owner's bytes. `referenceAllReduce` computes exactly this on one process.
 */

export interface Range {
  start: number;
  end: number;
}

/** Element range of shard `rank` of a buffer of `length` elements. */
export function shardRange(length: number, worldSize: number, rank: number): Range {
  const base = Math.floor(length / worldSize);
  const extra = length % worldSize;
  const start = rank * base + Math.min(rank, extra);
  return { start, end: start + base + (rank < extra ? 1 : 0) };
}

/** Number of buckets; at least one, so a zero-length collective still exchanges (and checks) headers. */
export function bucketCount(length: number, worldSize: number, chunkElements: number): number {
  return Math.max(1, Math.ceil(Math.ceil(length / worldSize) / chunkElements));
}

/** Piece `bucket` of shard `shard` (possibly empty when shards are short). */
export function pieceRange(length: number, worldSize: number, shard: number, bucket: number, chunkElements: number): Range {
  const s = shardRange(length, worldSize, shard);
  const start = Math.min(s.start + bucket * chunkElements, s.end);
  return { start, end: Math.min(start + chunkElements, s.end) };
}

export function mod(a: number, n: number): number {
  return ((a % n) + n) % n;
}

/** The all-reduce result every rank ends with, computed locally in the same order (see above). */
export function referenceAllReduce(inputs: Float32Array[], options: { average?: boolean } = {}): Float32Array {
  const n = inputs.length;
  if (n === 0) throw new Error('referenceAllReduce: no inputs');
  const length = inputs[0].length;
  for (const x of inputs) if (x.length !== length) throw new Error('referenceAllReduce: inputs differ in length');
  const out = new Float32Array(length);
  const acc = new Float32Array(1);
  for (let c = 0; c < n; c++) {
    const { start, end } = shardRange(length, n, c);
    for (let i = start; i < end; i++) {
      acc[0] = inputs[mod(c + 1, n)][i];
      for (let j = 2; j <= n; j++) acc[0] = acc[0] + inputs[mod(c + j, n)][i];
      if (options.average && n > 1) acc[0] = acc[0] / n;
      out[i] = acc[0];
    }
  }
  return out;
}
