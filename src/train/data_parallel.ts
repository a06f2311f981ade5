/**
 * Data parallelism for the trainer over a Communicator (ring collectives, one process per GPU): rank 0's weights
 * broadcast at start, gradients averaged once per optimizer step, and with ZeRO stage 1 the AdamW moments
 * sharded: gradients are reduce-scattered so each rank holds only its slice, steps its slice, and the updated
 * parameters are all-gathered. Every rank ends a step with bit-identical weights.
 *
 * Gradients travel as one flat float32 buffer in the optimizer's parameter order. Every trainable parameter has
 * a gradient (zeros where the loss does not reach it, step.ts), so every parameter is updated on every step, as
 * in a single process and in the reference's ZeRO-1 flat buffer.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ParamStore } from '../model/params';
import { Communicator } from '../distributed/collectives';
import { AdamW, clipCoefficient } from './optimizer';

export interface SyncedGradients {
  /** Averaged full gradients (ZeRO 0) by name, or null with ZeRO 1. */
  grads: Map<string, tf.Tensor> | null;
  /** ZeRO 1: this rank's averaged slice [start, end) of the flat gradient. */
  flat: tf.Tensor1D | null;
  /** Global L2 norm of the averaged gradient (before clipping). */
  norm: number;
}

export class DataParallel {
  constructor(
    readonly comm: Communicator,
    readonly optimizer: AdamW,
    readonly zeroStage: 0 | 1,
  ) {}

  get rank(): number {
    return this.comm.rank;
  }

  get worldSize(): number {
    return this.comm.worldSize;
  }

  /** Makes every rank hold rank 0's values of the given parameters. */
  async broadcastParams(store: ParamStore, names: readonly string[]): Promise<void> {
    if (this.worldSize === 1) return;
    const sizes = names.map((n) => store.get(n).size);
    const buf = new Float32Array(sizes.reduce((a, b) => a + b, 0));
    let off = 0;
    for (const n of names) {
      buf.set(store.get(n).dataSync() as Float32Array, off);
      off += store.get(n).size;
    }
    await this.comm.broadcast(buf, { tag: 'params', root: 0 });
    off = 0;
    names.forEach((n, i) => {
      store.setValue(n, buf.slice(off, off + sizes[i]));
      off += sizes[i];
    });
  }

  /** Sums small host values over ranks (losses, counts, stop votes). */
  async sum(values: number[]): Promise<number[]> {
    if (this.worldSize === 1) return values;
    const buf = Float32Array.from(values);
    await this.comm.allReduce(buf, { tag: 'scalars' });
    return Array.from(buf);
  }

  /**
   * Averages this rank's gradients with every other rank's. Takes ownership of `local`, which must hold a
   * gradient for every parameter of the optimizer (microStep gives zeros to those off the loss path).
   */
  async reduce(local: Map<string, tf.Tensor>): Promise<SyncedGradients> {
    const plan = this.optimizer.plan;
    const total = plan.total;
    const buf = new Float32Array(total);
    const missing = plan.params.filter((p) => !local.has(p.name)).map((p) => p.name);
    if (missing.length) {
      tf.dispose([...local.values()]);
      throw new Error(`DataParallel.reduce: no gradient for ${missing.length} trainable parameter(s) (${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', ...' : ''})`);
    }
    for (const p of plan.params) buf.set(local.get(p.name)!.dataSync() as Float32Array, p.flatOffset);
    tf.dispose([...local.values()]);
    if (this.zeroStage === 0) {
      await this.comm.allReduce(buf, { tag: 'grads', average: true });
      let sq = 0;
      for (let i = 0; i < total; i++) sq += buf[i] * buf[i];
      const grads = new Map<string, tf.Tensor>();
      for (const p of plan.params) grads.set(p.name, tf.tensor(buf.subarray(p.flatOffset, p.flatOffset + p.size), p.shape as number[]));
      return { grads, flat: null, norm: Math.sqrt(sq) };
    }
    const shard = await this.comm.reduceScatter(buf, { tag: 'grads', average: true });
    let sq = 0;
    for (let i = 0; i < shard.length; i++) sq += shard[i] * shard[i];
    const [totalSq] = await this.sum([sq]);
    return { grads: null, flat: tf.tensor1d(Float32Array.from(shard)), norm: Math.sqrt(totalSq) };
  }

  /** One optimizer step on synced gradients (clipped to maxNorm), then the ZeRO-1 all-gather of parameters. */
  async step(store: ParamStore, g: SyncedGradients, lr: number, maxNorm: number): Promise<void> {
    const coef = maxNorm > 0 ? clipCoefficient(g.norm, maxNorm) : 1;
    if (g.grads) {
      const scaled = coef < 1 ? new Map([...g.grads].map(([n, t]) => [n, tf.tidy(() => tf.mul(t, coef))] as const)) : g.grads;
      this.optimizer.step(store, scaled, lr);
      if (scaled !== g.grads) tf.dispose([...scaled.values()]);
      return;
    }
    const flat = coef < 1 ? tf.tidy(() => tf.mul(g.flat!, coef) as tf.Tensor1D) : g.flat!;
    this.optimizer.step(store, { flat }, lr);
    if (flat !== g.flat) flat.dispose();
    const plan = this.optimizer.plan;
    const all = new Float32Array(plan.total);
    const own = this.optimizer.ownedValues(store);
    all.set(own.dataSync() as Float32Array, plan.start);
    own.dispose();
    await this.comm.allGatherInPlace(all, { tag: 'params' });
    for (const p of plan.params) store.setValue(p.name, all.slice(p.flatOffset, p.flatOffset + p.size));
  }

  static dispose(g: SyncedGradients): void {
    if (g.grads) tf.dispose([...g.grads.values()]);
    g.flat?.dispose();
  }
}
