/** Shared test utilities. */
import * as tf from '@tensorflow/tfjs-core';
import seedrandom from 'seedrandom';
import { JanusConfig, presetConfig } from '../src/model/config';

/** A deterministic integer generator for test inputs. */
export function intRng(seed: string): (n: number) => number {
  const r = seedrandom(seed);
  return (n: number) => Math.floor(r() * n);
}

/** A small config for fast model tests: tiny preset with a narrower, shallower LLM. */
export function microConfig(overrides: { hidden?: number; layers?: number; heads?: number; kvHeads?: number; vocab?: number; imageVocab?: number } = {}): JanusConfig {
  const hidden = overrides.hidden ?? 32;
  const heads = overrides.heads ?? 2;
  return presetConfig('tiny', {
    name: 'micro',
    llm: {
      hiddenSize: hidden,
      numLayers: overrides.layers ?? 2,
      numHeads: heads,
      numKvHeads: overrides.kvHeads ?? heads,
      intermediateSize: hidden * 2,
      vocabSize: overrides.vocab ?? 48,
      maxPositionEmbeddings: 128,
    },
    vq: { codebookSize: overrides.imageVocab ?? 40 },
  });
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export async function values(t: tf.Tensor): Promise<Float32Array> {
  return (await t.data()) as Float32Array;
}

/** Largest |a - b| over every tensor of two weight maps with the same names (a throws on a missing name). */
export function maxWeightDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  let m = 0;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w) throw new Error(`weights differ in names: ${k} is missing on one side`);
    m = Math.max(m, maxAbsDiff(v, w));
  }
  return m;
}

/** Whether a process with this pid still exists (signal 0 probes without delivering anything). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A shaped float32 array of deterministic values in [-1, 1) (a small LCG), the same on every backend. */
export interface LcgArray {
  shape: number[];
  values: Float32Array;
}

export function lcgArray(shape: number[], seed: number): LcgArray {
  let s = (seed * 2654435761) >>> 0 || 1;
  const n = shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    values[i] = s / 2 ** 31 - 1;
  }
  return { shape, values };
}

/** Largest |actual - expected| over the largest |expected| (both the same length). */
export function relErr(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  expect(actual.length).toBe(expected.length);
  let diff = 0;
  let scale = 1e-12;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return diff / scale;
}

/** op(a) @ op(b) in float64, with numpy batch broadcasting: the reference every matmul kernel is checked against. */
export function refMatMul(a: LcgArray, b: LcgArray, ta: boolean, tb: boolean): Float64Array {
  const ar = a.shape.length;
  const br = b.shape.length;
  const [m, k] = ta ? [a.shape[ar - 1], a.shape[ar - 2]] : [a.shape[ar - 2], a.shape[ar - 1]];
  const n = tb ? b.shape[br - 2] : b.shape[br - 1];
  const rank = Math.max(ar, br) - 2;
  const pad = (s: number[]): number[] => [...new Array<number>(rank - (s.length - 2)).fill(1), ...s.slice(0, -2)];
  const [oa, ob] = [pad(a.shape), pad(b.shape)];
  const outer = oa.map((d, i) => Math.max(d, ob[i]));
  const batches = outer.reduce((x, y) => x * y, 1);
  const out = new Float64Array(batches * m * n);
  for (let bi = 0; bi < batches; bi++) {
    let [rem, ia, ib, sa, sb] = [bi, 0, 0, 1, 1];
    for (let d = rank - 1; d >= 0; d--) {
      const q = rem % outer[d];
      rem = Math.floor(rem / outer[d]);
      ia += (oa[d] === 1 ? 0 : q) * sa;
      ib += (ob[d] === 1 ? 0 : q) * sb;
      sa *= oa[d];
      sb *= ob[d];
    }
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let q = 0; q < k; q++) acc += a.values[ia * m * k + (ta ? q * m + i : i * k + q)] * b.values[ib * k * n + (tb ? j * k + q : q * n + j)];
        out[(bi * m + i) * n + j] = acc;
      }
  }
  return out;
}
