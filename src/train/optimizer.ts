/**
 * AdamW with the arithmetic of torch.optim.AdamW (single-tensor path, amsgrad=False), plus global-norm gradient
 * clipping like torch.nn.utils.clip_grad_norm_.
 *
 * Ownership (ZeRO-1): the optimizer owns a contiguous slice [start, end) of the virtual flat vector made by
 * concatenating every parameter (row-major, in the order given to the constructor). One rank of N owns slice
 * rank of an even split, which is how DeepSpeed partitions ZeRO-1 state. A flat slice, rather than whole
 * parameters per rank, keeps optimizer memory balanced even when a few tensors dominate (the two 102400x4096
 * embedding/head tables of Janus-Pro-7B are about 11% of the model), and it matches a reduce-scatter over the flat
 * gradient buffer, so a rank's gradient shard maps straight onto its segments. A single process is rank 0 of 1
 * and owns everything, with every segment a whole parameter.
 *
 * State is per segment: exp_avg and exp_avg_sq (1-D, the segment's elements) and a step count. Like torch, a
 * parameter missing from a gradient map (torch's `grad is None`) is skipped entirely (no decay, no moment
 * update, no step), and its moments are allocated on its first update. A zero gradient is a gradient: the
 * parameter is decayed and its moments and step advance. The trainer always passes one for every trainable
 * parameter (zeros off the loss path, as the reference's DeepSpeed flat buffer does: janus-spec 8.6).
 */
import * as tf from '@tensorflow/tfjs-core';
import { shardRange } from '../distributed/layout';
import { ExportedOptimizerState, OptimizerShardMeta, OptimizerStateSource, inMemorySource } from '../io/optimizer_state';

export type { ExportedOptimizerState, OptimizerShardMeta, OptimizerStateSource };
export { inMemorySource };

export interface ParamShape {
  name: string;
  shape: readonly number[];
}

export interface AdamWOptions {
  betas?: readonly [number, number];
  eps?: number;
  weightDecay?: number;
  /** Parameters whose name contains any of these substrings (case-sensitive) get no weight decay. */
  noDecay?: readonly string[];
}

/** The reference's no-decay rule (train_janus.py). LLaMA RMSNorm weights do not match it, so they decay. */
export const DEFAULT_NO_DECAY: readonly string[] = ['bias', 'LayerNorm.weight'];

/** The part of one parameter that this optimizer owns. */
export interface Segment {
  name: string;
  /** Parameter shape (tfjs layout). */
  shape: readonly number[];
  paramSize: number;
  /** First owned element within the flattened parameter. */
  offset: number;
  length: number;
  /** Position of the segment's first element in the flat vector of all parameters. */
  flatStart: number;
}

export interface ShardPlan {
  rank: number;
  worldSize: number;
  /** Total elements over all parameters. */
  total: number;
  start: number;
  end: number;
  /** Every parameter's offset in the flat vector (the same on every rank). */
  params: { name: string; shape: readonly number[]; size: number; flatOffset: number }[];
  segments: Segment[];
}

/**
 * Splits the flat vector into worldSize contiguous slices, with the ring collectives' layout (shardRange: the
 * first total % worldSize slices are one element longer), so a reduce-scatter hands each rank exactly the
 * gradient slice its optimizer shard owns.
 */
export function planShards(params: readonly ParamShape[], rank = 0, worldSize = 1): ShardPlan {
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new Error(`planShards: worldSize must be a positive integer, got ${worldSize}`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) throw new Error(`planShards: rank ${rank} out of range for worldSize ${worldSize}`);
  const seen = new Set<string>();
  let total = 0;
  const layout = params.map((p) => {
    if (seen.has(p.name)) throw new Error(`planShards: parameter "${p.name}" listed twice`);
    seen.add(p.name);
    const size = p.shape.reduce((a, b) => a * b, 1);
    const entry = { name: p.name, shape: [...p.shape], size, flatOffset: total };
    total += size;
    return entry;
  });
  const { start, end } = shardRange(total, worldSize, rank);
  const segments: Segment[] = [];
  for (const p of layout) {
    const a = Math.max(start, p.flatOffset);
    const b = Math.min(end, p.flatOffset + p.size);
    if (a < b) segments.push({ name: p.name, shape: p.shape, paramSize: p.size, offset: a - p.flatOffset, length: b - a, flatStart: a });
  }
  return { rank, worldSize, total, start, end, params: layout, segments };
}

/** Writes a segment's new values into its parameter (the whole tensor, or the slice this shard owns). */
function assignSegment(variable: tf.Variable, pFlat: tf.Tensor, pNew: tf.Tensor, seg: Segment, whole: boolean): void {
  if (whole) {
    variable.assign(tf.reshape(pNew, variable.shape));
    return;
  }
  const parts: tf.Tensor[] = [];
  if (seg.offset > 0) parts.push(tf.slice(pFlat, [0], [seg.offset]));
  parts.push(pNew);
  const tail = seg.paramSize - seg.offset - seg.length;
  if (tail > 0) parts.push(tf.slice(pFlat, [seg.offset + seg.length], [tail]));
  variable.assign(tf.reshape(tf.concat(parts), variable.shape));
}

/** Something that hands out the variable of a parameter: a ParamStore or a Map. */
export interface VariableSource {
  get(name: string): tf.Variable | undefined;
}

/**
 * Gradients for an update: full-parameter gradients by name (the shapes of the parameters; missing names are
 * skipped like torch skips `grad is None`), or this rank's slice of the flat gradient vector ([start, end)),
 * which covers every owned segment (zeros included, like DeepSpeed's flat buffer).
 */
export type GradientSource = ReadonlyMap<string, tf.Tensor> | { flat: tf.Tensor };

interface SegmentState {
  step: number;
  m: tf.Tensor | null;
  v: tf.Tensor | null;
}

export class AdamW {
  readonly plan: ShardPlan;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly noDecay: readonly string[];
  private readonly state = new Map<string, SegmentState>();

  constructor(params: readonly ParamShape[], options: AdamWOptions = {}, shard: { rank: number; worldSize: number } = { rank: 0, worldSize: 1 }) {
    const [b1, b2] = options.betas ?? [0.9, 0.999];
    const eps = options.eps ?? 1e-8;
    const wd = options.weightDecay ?? 0.01;
    if (!(b1 >= 0 && b1 < 1) || !(b2 >= 0 && b2 < 1)) throw new Error(`AdamW: betas must be in [0, 1), got [${b1}, ${b2}]`);
    if (!(eps >= 0)) throw new Error(`AdamW: eps must be >= 0, got ${eps}`);
    if (!(wd >= 0)) throw new Error(`AdamW: weightDecay must be >= 0, got ${wd}`);
    this.betas = [b1, b2];
    this.eps = eps;
    this.weightDecay = wd;
    this.noDecay = [...(options.noDecay ?? DEFAULT_NO_DECAY)];
    this.plan = planShards(params, shard.rank, shard.worldSize);
    for (const s of this.plan.segments) this.state.set(s.name, { step: 0, m: null, v: null });
  }

  /** Whether a parameter gets weight decay under the no-decay rule. */
  decays(name: string): boolean {
    return !this.noDecay.some((p) => name.includes(p));
  }

  /** Update count of a parameter's segment (0 before its first update or when not owned). */
  stepOf(name: string): number {
    return this.state.get(name)?.step ?? 0;
  }

  /**
   * One AdamW update of every owned segment that has a gradient, writing the new values into the variables.
   * For a segment that covers part of a parameter only that part changes; the other ranks' parts arrive later
   * through the ZeRO all-gather. Gradients are not disposed (the caller owns them).
   */
  step(params: VariableSource, grads: GradientSource, lr: number): void {
    if (!(lr >= 0) || !Number.isFinite(lr)) throw new Error(`AdamW: lr must be a finite number >= 0, got ${lr}`);
    const flat = isFlat(grads) ? grads.flat : null;
    if (flat && (flat.rank !== 1 || flat.size !== this.plan.end - this.plan.start)) {
      throw new Error(`AdamW: flat gradient shard has shape [${flat.shape}], expected [${this.plan.end - this.plan.start}]`);
    }
    for (const seg of this.plan.segments) {
      const variable = params.get(seg.name);
      if (!variable) throw new Error(`AdamW: no variable for parameter "${seg.name}"`);
      if (variable.size !== seg.paramSize) throw new Error(`AdamW: "${seg.name}" has ${variable.size} elements, optimizer expects ${seg.paramSize}`);
      let grad: tf.Tensor | undefined;
      if (flat) grad = flat;
      else {
        grad = (grads as ReadonlyMap<string, tf.Tensor>).get(seg.name);
        if (!grad) continue;
        if (grad.size !== seg.paramSize) throw new Error(`AdamW: gradient of "${seg.name}" has shape [${grad.shape}], parameter has [${seg.shape}]`);
      }
      this.updateSegment(seg, variable, grad, flat !== null, lr);
    }
  }

  /** The segment's parameter values and gradient as flat tensors (plus the whole flattened parameter). */
  private views(seg: Segment, variable: tf.Variable, grad: tf.Tensor, gradIsShard: boolean): { pFlat: tf.Tensor; p: tf.Tensor; g: tf.Tensor } {
    const whole = seg.length === seg.paramSize;
    const pFlat = tf.reshape(variable, [-1]);
    const p = whole ? pFlat : tf.slice(pFlat, [seg.offset], [seg.length]);
    const g = gradIsShard
      ? tf.slice(grad, [seg.flatStart - this.plan.start], [seg.length])
      : whole
        ? tf.reshape(grad, [-1])
        : tf.slice(tf.reshape(grad, [-1]), [seg.offset], [seg.length]);
    return { pFlat, p, g };
  }

  private updateSegment(seg: Segment, variable: tf.Variable, grad: tf.Tensor, gradIsShard: boolean, lr: number): void {
    const st = this.state.get(seg.name) as SegmentState;
    const [b1, b2] = this.betas;
    const t = st.step + 1;
    const whole = seg.length === seg.paramSize;
    const [m, v] = tf.tidy(() => {
      const { pFlat, p, g } = this.views(seg, variable, grad, gradIsShard);
      const m0 = st.m ?? tf.zeros([seg.length]);
      const v0 = st.v ?? tf.zeros([seg.length]);
      // torch: param.mul_(1 - lr * weight_decay), before the moments are touched.
      const wd = this.decays(seg.name) ? this.weightDecay : 0;
      const pDecayed = wd > 0 ? tf.mul(p, tf.scalar(1 - lr * wd)) : p;
      // torch: exp_avg.lerp_(grad, 1 - beta1); its CPU lerp switches formula at weight 0.5.
      const w = 1 - b1;
      const mNew = w < 0.5 ? tf.add(m0, tf.mul(tf.scalar(w), tf.sub(g, m0))) : tf.sub(g, tf.mul(tf.sub(g, m0), tf.scalar(1 - w)));
      // torch: exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
      const vNew = tf.add(tf.mul(v0, tf.scalar(b2)), tf.mul(tf.mul(tf.scalar(1 - b2), g), g));
      // Bias corrections in double precision on the host, as torch does with Python floats.
      const stepSize = lr / (1 - Math.pow(b1, t));
      const bc2Sqrt = Math.sqrt(1 - Math.pow(b2, t));
      const denom = tf.add(tf.div(tf.sqrt(vNew), tf.scalar(bc2Sqrt)), tf.scalar(this.eps));
      // torch: param.addcdiv_(exp_avg, denom, value=-step_size)
      const pNew = tf.add(pDecayed, tf.mul(tf.scalar(-stepSize), tf.div(mNew, denom)));
      assignSegment(variable, pFlat, pNew, seg, whole);
      return [mNew, vNew];
    });
    st.m?.dispose();
    st.v?.dispose();
    st.m = m;
    st.v = v;
    st.step = t;
  }

  /**
   * This rank's owned values as one 1-D tensor ([start, end) of the flat parameter vector): what a ZeRO-1
   * all-gather sends after an update. The caller disposes it.
   */
  ownedValues(params: VariableSource): tf.Tensor1D {
    return tf.tidy(() => {
      const parts = this.plan.segments.map((seg) => {
        const v = params.get(seg.name);
        if (!v) throw new Error(`AdamW: no variable for parameter "${seg.name}"`);
        return tf.slice(tf.reshape(v, [-1]), [seg.offset], [seg.length]);
      });
      return parts.length ? (tf.concat(parts) as tf.Tensor1D) : tf.zeros([0]);
    });
  }

  async exportState(): Promise<ExportedOptimizerState> {
    const tensors = new Map<string, Float32Array>();
    const segments: OptimizerShardMeta['segments'] = [];
    for (const seg of this.plan.segments) {
      const st = this.state.get(seg.name) as SegmentState;
      segments.push({ name: seg.name, paramSize: seg.paramSize, offset: seg.offset, length: seg.length, step: st.step });
      if (st.step > 0 && st.m && st.v) {
        tensors.set(`${seg.name}.exp_avg`, (await st.m.data()) as Float32Array);
        tensors.set(`${seg.name}.exp_avg_sq`, (await st.v.data()) as Float32Array);
      }
    }
    const { rank, worldSize, total, start, end } = this.plan;
    const meta: OptimizerShardMeta = {
      format: 'janus4o-adamw',
      version: 1,
      rank,
      worldSize,
      total,
      start,
      end,
      betas: [...this.betas],
      eps: this.eps,
      weightDecay: this.weightDecay,
      noDecay: [...this.noDecay],
      segments,
    };
    return { meta, tensors };
  }

  /**
   * Loads state from the shards of a checkpoint, written by any world size: each owned segment is assembled from
   * the pieces of the shards that overlap it, so resuming on a different number of ranks re-shards the state.
   * Pass every shard (only overlapping tensors are read). Replaces the current state.
   */
  async importState(sources: readonly OptimizerStateSource[]): Promise<void> {
    const byParam = new Map<string, { src: OptimizerStateSource; seg: OptimizerShardMeta['segments'][number] }[]>();
    for (const src of sources) {
      if (src.meta.format !== 'janus4o-adamw') throw new Error(`optimizer state: unknown format "${String(src.meta.format)}"`);
      if (src.meta.total !== this.plan.total) {
        throw new Error(`optimizer state: shard ${src.meta.rank} of ${src.meta.worldSize} covers ${src.meta.total} parameter elements, the model has ${this.plan.total}`);
      }
      for (const seg of src.meta.segments) {
        const list = byParam.get(seg.name) ?? [];
        list.push({ src, seg });
        byParam.set(seg.name, list);
      }
    }
    const next = new Map<string, SegmentState>();
    try {
      for (const seg of this.plan.segments) {
        next.set(seg.name, await this.assembleSegment(seg, byParam.get(seg.name) ?? []));
      }
    } catch (e) {
      for (const st of next.values()) disposeState(st);
      throw e;
    }
    for (const st of this.state.values()) disposeState(st);
    for (const [k, st] of next) this.state.set(k, st);
  }

  private async assembleSegment(seg: Segment, pieces: { src: OptimizerStateSource; seg: OptimizerShardMeta['segments'][number] }[]): Promise<SegmentState> {
    const lo = seg.offset;
    const hi = seg.offset + seg.length;
    const overlapping = pieces.filter((p) => p.seg.offset < hi && p.seg.offset + p.seg.length > lo);
    for (const p of overlapping) {
      if (p.seg.paramSize !== seg.paramSize) {
        throw new Error(`optimizer state: "${seg.name}" has ${p.seg.paramSize} elements in shard ${p.src.meta.rank}, the model has ${seg.paramSize}`);
      }
    }
    const steps = new Set(overlapping.map((p) => p.seg.step));
    if (steps.size > 1) throw new Error(`optimizer state: "${seg.name}" has different step counts across shards (${[...steps].join(', ')})`);
    const step = overlapping.length ? overlapping[0].seg.step : 0;
    if (step === 0) return { step: 0, m: null, v: null };
    const m = new Float32Array(seg.length);
    const v = new Float32Array(seg.length);
    let covered = 0;
    for (const p of overlapping) {
      const a = Math.max(lo, p.seg.offset);
      const b = Math.min(hi, p.seg.offset + p.seg.length);
      for (const [key, dst] of [[`${seg.name}.exp_avg`, m], [`${seg.name}.exp_avg_sq`, v]] as const) {
        const data = await p.src.read(key);
        if (data.length !== p.seg.length) throw new Error(`optimizer state: "${key}" in shard ${p.src.meta.rank} has ${data.length} values, expected ${p.seg.length}`);
        dst.set(data.subarray(a - p.seg.offset, b - p.seg.offset), a - lo);
      }
      covered += b - a;
    }
    if (covered !== seg.length) {
      throw new Error(`optimizer state: the shards cover ${covered} of ${seg.length} owned elements of "${seg.name}" (missing or overlapping shards)`);
    }
    return { step, m: tf.tensor1d(m, 'float32'), v: tf.tensor1d(v, 'float32') };
  }

  /** Releases the moment tensors. */
  dispose(): void {
    for (const st of this.state.values()) disposeState(st);
  }
}

function disposeState(st: SegmentState): void {
  st.m?.dispose();
  st.v?.dispose();
  st.m = null;
  st.v = null;
}

function isFlat(g: GradientSource): g is { flat: tf.Tensor } {
  return !(g instanceof Map) && 'flat' in g;
}

/** Sum of squares of every gradient, accumulated in double on the host (one device read). */
export function gradSquaredSum(grads: Iterable<tf.Tensor>): number {
  const list = [...grads];
  if (list.length === 0) return 0;
  const sums = tf.tidy(() => tf.stack(list.map((g) => tf.sum(tf.square(g)))));
  const host = sums.dataSync();
  sums.dispose();
  let total = 0;
  for (const s of host) total += s;
  return total;
}

/** torch.nn.utils.clip_grad_norm_'s factor: min(1, maxNorm / (norm + 1e-6)). */
export function clipCoefficient(norm: number, maxNorm: number): number {
  return Math.min(1, maxNorm / (norm + 1e-6));
}

/**
 * Clips gradients to a global L2 norm like clip_grad_norm_, returning the norm before clipping. Takes ownership
 * of `grads`: tensors it scales are disposed and replaced, so afterwards the caller owns exactly the returned
 * map's tensors. maxNorm <= 0 disables clipping. A non-finite norm leaves the gradients untouched (the caller's
 * NaN guard skips the update). For ZeRO, sum gradSquaredSum over ranks and use clipCoefficient instead.
 */
export function clipByGlobalNorm(grads: Map<string, tf.Tensor>, maxNorm: number): { grads: Map<string, tf.Tensor>; norm: number } {
  const norm = Math.sqrt(gradSquaredSum(grads.values()));
  if (!(maxNorm > 0) || !Number.isFinite(norm)) return { grads, norm };
  const coef = clipCoefficient(norm, maxNorm);
  if (coef >= 1) return { grads, norm };
  const out = new Map<string, tf.Tensor>();
  for (const [name, g] of grads) {
    out.set(name, tf.tidy(() => tf.mul(g, tf.scalar(coef))));
    g.dispose();
  }
  return { grads: out, norm };
}
