/**
 * Data parallelism for the trainer over a Communicator (one process per GPU; TCP ring, shared memory or
 * hierarchical, see src/distributed): rank 0's weights broadcast at start, gradients averaged once per optimizer
 * step, and with ZeRO the work sharded:
 *   stage 0  gradients all-reduced; every rank steps every parameter;
 *   stage 1  gradients reduce-scattered, so each rank holds only its slice and its slice of the AdamW moments,
 *            steps that slice, and the updated parameters are all-gathered;
 *   stage 2  stage 1, plus gradients partitioned during accumulation: `accumulate` reduce-scatters each
 *            micro-batch's gradients as soon as they exist and keeps only this rank's 1/N slice (summed over the
 *            step's micro-batches), so no full-size gradient accumulator is ever held.
 * Every rank ends a step with bit-identical weights.
 *
 * Gradients travel as one flat float32 buffer in the optimizer's parameter order. Every trainable parameter has
 * a gradient (zeros where the loss does not reach it, step.ts), so every parameter is updated on every step, as
 * in a single process and in the reference's ZeRO flat buffer. With `gradExchange` bf16 or fp16 (default from
 * JANUS4O_GRAD_EXCHANGE), gradients cross the transport in 16 bits and are summed in float32 (wire.ts states and
 * test/distributed/shm.test.ts checks the error bound); parameters always travel in float32.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ParamStore } from '../model/params';
import { Communicator } from '../distributed/collectives';
import { gradExchangeFromEnv } from '../distributed/env';
import { shardRange } from '../distributed/layout';
import type { ExchangeDtype } from '../distributed/wire';
import { AdamW, clipCoefficient } from './optimizer';

export type ZeroStage = 0 | 1 | 2;

export interface SyncedGradients {
  /** Averaged full gradients (ZeRO 0) by name, or null with ZeRO 1 and 2. */
  grads: Map<string, tf.Tensor> | null;
  /** ZeRO 1 and 2: this rank's averaged slice [start, end) of the flat gradient. */
  flat: tf.Tensor1D | null;
  /** Global L2 norm of the averaged gradient (before clipping). */
  norm: number;
}

export interface DataParallelOptions {
  /** What gradients travel as between ranks (default: JANUS4O_GRAD_EXCHANGE, else float32). */
  gradExchange?: ExchangeDtype;
}

export class DataParallel {
  readonly gradExchange: ExchangeDtype;
  /** ZeRO-2: this rank's slice of the step's summed gradient so far (null before the first accumulate). */
  private shard: Float32Array | null = null;
  /** ZeRO-2: accumulate() calls chain here, so their collectives keep the order they were called in. */
  private pending: Promise<void> = Promise.resolve();

  constructor(
    readonly comm: Communicator,
    readonly optimizer: AdamW,
    readonly zeroStage: ZeroStage,
    options: DataParallelOptions = {},
  ) {
    if (![0, 1, 2].includes(zeroStage)) throw new Error(`DataParallel: ZeRO stage must be 0, 1 or 2, got ${String(zeroStage)}`);
    const plan = optimizer.plan;
    if (zeroStage >= 1 && comm.worldSize > 1) {
      const own = shardRange(plan.total, comm.worldSize, comm.rank);
      if (plan.worldSize !== comm.worldSize || plan.start !== own.start || plan.end !== own.end) {
        throw new Error(`DataParallel: ZeRO stage ${zeroStage} needs an optimizer sharded over the ${comm.worldSize} ranks (AdamW(..., { rank: ${comm.rank}, worldSize: ${comm.worldSize} })); this one owns [${plan.start}, ${plan.end}) of ${plan.total} with worldSize ${plan.worldSize}`);
      }
    }
    this.gradExchange = options.gradExchange ?? gradExchangeFromEnv();
  }

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
    if (this.shard !== null) {
      tf.dispose([...local.values()]);
      throw new Error('DataParallel.reduce: gradients were accumulated with accumulate(); finish the step with reduceAccumulated()');
    }
    const buf = this.flatten(local, 'reduce');
    const plan = this.optimizer.plan;
    if (this.zeroStage === 0) {
      await this.comm.allReduce(buf, { tag: 'grads', average: true, exchange: this.gradExchange });
      let sq = 0;
      for (let i = 0; i < buf.length; i++) sq += buf[i] * buf[i];
      const grads = new Map<string, tf.Tensor>();
      for (const p of plan.params) grads.set(p.name, tf.tensor(buf.subarray(p.flatOffset, p.flatOffset + p.size), p.shape as number[]));
      return { grads, flat: null, norm: Math.sqrt(sq) };
    }
    const shard = await this.comm.reduceScatter(buf, { tag: 'grads', average: true, exchange: this.gradExchange });
    return this.synced(Float32Array.from(shard));
  }

  /**
   * ZeRO-2: adds one micro-batch's gradients to the step's sum, keeping only this rank's slice. Takes ownership
   * of `grads` (moved to the host and disposed at once). Every rank must call it the same number of times per
   * step. The returned promise may be left pending while the next micro-batch computes; reduceAccumulated()
   * waits for it.
   */
  accumulate(grads: Map<string, tf.Tensor>): Promise<void> {
    if (this.zeroStage !== 2) {
      tf.dispose([...grads.values()]);
      return Promise.reject(new Error(`DataParallel.accumulate is ZeRO stage 2's; this run uses stage ${this.zeroStage}`));
    }
    let buf: Float32Array;
    try {
      buf = this.flatten(grads, 'accumulate');
    } catch (e) {
      return Promise.reject(e);
    }
    const run = async (): Promise<void> => {
      const part = await this.comm.reduceScatter(buf, { tag: 'grads-micro', exchange: this.gradExchange });
      if (this.shard === null) this.shard = Float32Array.from(part);
      else for (let i = 0; i < part.length; i++) this.shard[i] += part[i];
    };
    const p = this.pending.then(run);
    this.pending = p.catch(() => undefined);
    return p;
  }

  /** ZeRO-2: the step's averaged gradient slice after its accumulate() calls; starts the next step's sum afresh. */
  async reduceAccumulated(): Promise<SyncedGradients> {
    await this.pending;
    const shard = this.shard;
    if (shard === null) throw new Error('DataParallel.reduceAccumulated: no gradients were accumulated this step');
    this.shard = null;
    const n = this.worldSize;
    for (let i = 0; i < shard.length; i++) shard[i] = shard[i] / n;
    return this.synced(shard);
  }

  /** One optimizer step on synced gradients (clipped to maxNorm), then the ZeRO all-gather of parameters. */
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

  /** The flat float32 gradient in the optimizer's order; disposes `local` (also on error). */
  private flatten(local: Map<string, tf.Tensor>, what: string): Float32Array {
    const plan = this.optimizer.plan;
    const missing = plan.params.filter((p) => !local.has(p.name)).map((p) => p.name);
    if (missing.length) {
      tf.dispose([...local.values()]);
      throw new Error(`DataParallel.${what}: no gradient for ${missing.length} trainable parameter(s) (${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', ...' : ''})`);
    }
    const buf = new Float32Array(plan.total);
    for (const p of plan.params) buf.set(local.get(p.name)!.dataSync() as Float32Array, p.flatOffset);
    tf.dispose([...local.values()]);
    return buf;
  }

  /** A reduced gradient slice with the global norm (the slices' squared norms summed over ranks). */
  private async synced(shard: Float32Array): Promise<SyncedGradients> {
    let sq = 0;
    for (let i = 0; i < shard.length; i++) sq += shard[i] * shard[i];
    const [totalSq] = await this.sum([sq]);
    return { grads: null, flat: tf.tensor1d(shard), norm: Math.sqrt(totalSq) };
  }
}
