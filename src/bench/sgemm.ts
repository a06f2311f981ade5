/**
 * Matmul microbenchmark on the current backend: the sgemm rate this machine gives tfjs, measured in the same run
 * as the training step so that the step's FLOPs/s can be read as a fraction of it.
 */
import * as tf from '@tensorflow/tfjs-core';
import { median, timeCalls } from './util';

export interface SgemmPoint {
  m: number;
  k: number;
  n: number;
  /** Median of the timed calls. */
  gflops: number;
  /** Fastest timed call. */
  bestGflops: number;
}

export interface SgemmResult {
  points: SgemmPoint[];
  /** The fastest call over all points: what the machine gave tfjs at best in this run. */
  peakGflops: number;
}

export async function benchSgemm(opts: { sizes: [number, number, number][]; reps: number }): Promise<SgemmResult> {
  const points: SgemmPoint[] = [];
  for (const [m, k, n] of opts.sizes) {
    const a = tf.randomNormal([m, k], 0, 1, 'float32', 1);
    const b = tf.randomNormal([k, n], 0, 1, 'float32', 2);
    const times = await timeCalls(() => {
      const c = tf.matMul(a, b);
      c.dataSync();
      c.dispose();
    }, opts.reps, 1);
    tf.dispose([a, b]);
    const rate = (ms: number) => (2 * m * k * n) / (ms * 1e6);
    points.push({ m, k, n, gflops: rate(median(times.wall)), bestGflops: rate(Math.min(...times.wall)) });
  }
  return { points, peakGflops: Math.max(...points.map((p) => p.bestGflops)) };
}
