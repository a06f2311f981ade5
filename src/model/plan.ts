/**
 * Plan of a training run, computed from the config alone (nothing allocated).
 *
 * `memoryPlan`: weights, gradients, AdamW moments and activations per rank, for N data-parallel ranks with and
 * without ZeRO-1 optimizer sharding. All tensors are float32 in TF.js (no bf16 dtype), so every element costs 4
 * bytes.
 *
 * `trainingPlan`: every setting of ZeRO stage (0, 1, 2), activation checkpointing and micro-batch for a global
 * batch on N GPUs of a given memory: bytes per rank, whether it fits, and seconds per optimizer step split into
 * compute (model FLOPs at a stated TFLOP/s), GPU<->host copies (at a stated bandwidth) and gradient exchange (at a
 * stated or measured all-reduce bus bandwidth). The recommendation is the fastest setting that fits.
 */
import { imageTokenCount, JanusConfig } from './config';
import { Janus4o } from './janus';

export interface PlanOptions {
  microBatch: number;
  seqLen: number;
  nproc: number;
  /** Modules excluded from training (default: the VQ tokenizer and lm_head, as in Janus-4o). */
  frozen?: (name: string) => boolean;
  activationCheckpointing?: boolean;
}

export interface MemoryPlan {
  preset: string;
  parameters: number;
  trainableParameters: number;
  bytes: {
    weights: number;
    gradients: number;
    adamw: number;
    adamwZero1: number;
    activations: number;
    totalPerRank: number;
    totalPerRankZero1: number;
  };
  options: Required<Omit<PlanOptions, 'frozen'>>;
}

export const DEFAULT_FROZEN = (name: string): boolean => name.startsWith('gen_vision_model.') || name === 'language_model.lm_head.weight';

/**
 * Activation bytes kept for backward by one micro-batch: per decoder layer and token roughly 10 hidden-wide
 * tensors (norm outputs, q/k/v before and after RoPE, attention output, residuals), 4 MLP-wide tensors (gate,
 * up, silu(gate), product) and the attention scores and probabilities (2 x heads x seqLen per token).
 * With activation checkpointing only each block's input is kept, plus one block's full set during recompute.
 */
function activationBytes(cfg: JanusConfig, o: Required<Omit<PlanOptions, 'frozen'>>): number {
  const l = cfg.llm;
  const tokens = o.microBatch * o.seqLen;
  const perLayer = tokens * (10 * l.hiddenSize + 4 * l.intermediateSize + 2 * l.numHeads * o.seqLen);
  const logits = tokens * (2 * cfg.vq.codebookSize + 2 * l.hiddenSize);
  const layers = o.activationCheckpointing ? l.numLayers * tokens * l.hiddenSize + perLayer : l.numLayers * perLayer;
  return 4 * (layers + logits);
}

export function memoryPlan(cfg: JanusConfig, opts: PlanOptions): MemoryPlan {
  for (const [k, v] of Object.entries({ microBatch: opts.microBatch, seqLen: opts.seqLen, nproc: opts.nproc })) {
    if (!Number.isInteger(v) || v <= 0) throw new Error(`plan: ${k} must be a positive integer, got ${v}`);
  }
  const model = new Janus4o(cfg); // declares parameters only; nothing is allocated
  const frozen = opts.frozen ?? DEFAULT_FROZEN;
  const parameters = model.parameterCount();
  const trainable = model.parameterCount((n) => !frozen(n));
  const o = { microBatch: opts.microBatch, seqLen: opts.seqLen, nproc: opts.nproc, activationCheckpointing: opts.activationCheckpointing ?? false };
  const weights = 4 * parameters;
  const gradients = 4 * trainable;
  const adamw = 2 * 4 * trainable;
  const adamwZero1 = Math.ceil(adamw / o.nproc);
  const activations = activationBytes(cfg, o);
  return {
    preset: cfg.name,
    parameters,
    trainableParameters: trainable,
    bytes: {
      weights,
      gradients,
      adamw,
      adamwZero1,
      activations,
      totalPerRank: weights + gradients + adamw + activations,
      totalPerRankZero1: weights + gradients + adamwZero1 + activations,
    },
    options: o,
  };
}

function gib(n: number): string {
  return `${(n / 2 ** 30).toFixed(2)} GiB`;
}

export function formatPlan(p: MemoryPlan): string {
  const b = p.bytes;
  const o = p.options;
  const rows: [string, string][] = [
    ['parameters', `${p.parameters.toLocaleString('en-US')} (${p.trainableParameters.toLocaleString('en-US')} trainable)`],
    ['weights (fp32)', gib(b.weights)],
    ['gradients (fp32, trainable)', gib(b.gradients)],
    ['AdamW moments', gib(b.adamw)],
    [`AdamW moments, ZeRO-1 over ${o.nproc} ranks`, gib(b.adamwZero1)],
    [`activations (micro-batch ${o.microBatch} x ${o.seqLen} positions${o.activationCheckpointing ? ', checkpointed' : ''})`, gib(b.activations)],
    ['total per rank, no sharding', gib(b.totalPerRank)],
    [`total per rank, ZeRO-1 (saves ${gib(b.totalPerRank - b.totalPerRankZero1)})`, gib(b.totalPerRankZero1)],
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  return [`memory plan for ${p.preset} on ${o.nproc} data-parallel rank(s)`, ...rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`)].join('\n');
}

// --- settings and step time -----------------------------------------------------------------------------------

export type ZeroStage = 0 | 1 | 2;
export type PlanTransport = 'tcp' | 'shm' | 'hierarchical';

export interface JobShape {
  /** Data-parallel ranks (GPUs) in all. */
  nproc: number;
  /** Samples per optimizer step over all ranks (the paper: 64). */
  globalBatch: number;
  /** Positions per row (a TI2I row at 384 px is ~1.75K). */
  seqLen: number;
  gpuMemoryGiB: number;
  /** Fraction of the card a setting may plan to use; the rest is CUDA context, workspace and fragmentation. */
  usableFraction: number;
}

export interface Throughput {
  /** Sustained training throughput per GPU at large micro-batches, TFLOP/s (model FLOPs). */
  tflops: number;
  /** Tokens per micro-batch at which a GPU reaches half of `tflops` (small matrices leave it idle). */
  halfSaturationTokens: number;
  /** GPU<->host copy bandwidth per rank, GB/s (gradients to the host, parameters back). */
  hostGBps: number;
  /** All-reduce bus bandwidth of the transport, GB/s (bytes * 2(N-1)/N / time, as the all-reduce bench reports). */
  allreduceGBps: number;
  transport: PlanTransport;
  /** Where allreduceGBps comes from, for the report. */
  allreduceSource: string;
  /** Bytes per gradient element on the wire: 4 (float32) or 2 (bfloat16/float16 exchange). */
  exchangeBytes: 2 | 4;
}

export interface Setting {
  zeroStage: ZeroStage;
  activationCheckpointing: boolean;
  microBatch: number;
}

export interface SettingEstimate extends Setting {
  gradAccum: number;
  /** Bytes per rank of each part at the step's peak. */
  bytes: { weights: number; gradients: number; gradAccumulator: number; adamw: number; activations: number; total: number };
  perRankGiB: number;
  fits: boolean;
  computeSecondsPerStep: number;
  copySecondsPerStep: number;
  commSecondsPerStep: number;
  stepSeconds: number;
}

export interface TrainingPlan {
  preset: string;
  parameters: number;
  trainableParameters: number;
  job: JobShape;
  throughput: Throughput;
  /** Training FLOPs (forward + backward) of one row, without recomputation. */
  flopsPerSample: number;
  settings: SettingEstimate[];
  /** The fastest setting that fits, or null. */
  recommended: SettingEstimate | null;
}

/** Training FLOPs (forward + backward) of one row of `textLen` text and `imageLen` image positions. */
export type FlopsFn = (cfg: JanusConfig, row: { textLen: number; imageLen: number }) => number;

const GIB = 2 ** 30;

/**
 * Bytes per rank at the step's peak for one setting, following what the trainer allocates:
 *   weights        every parameter, float32, on every rank;
 *   gradients      one micro-batch's gradient of every trainable parameter (tf.grads returns them all at once);
 *   accumulator    the step's running gradient sum when gradAccum > 1: full size with ZeRO 0/1; none on the GPU
 *                  with ZeRO-2 (DataParallel.accumulate moves each micro-batch's gradient to the host and keeps
 *                  this rank's 1/N slice there);
 *   AdamW          two moments per trainable element, 1/N of them with ZeRO >= 1;
 *   activations    see activationBytes.
 */
export function settingBytes(cfg: JanusConfig, parameters: number, trainable: number, job: JobShape, s: Setting): SettingEstimate['bytes'] {
  const gradAccum = job.globalBatch / (job.nproc * s.microBatch);
  const weights = 4 * parameters;
  const gradients = 4 * trainable;
  const gradAccumulator = gradAccum > 1 && s.zeroStage < 2 ? 4 * trainable : 0;
  const adamw = s.zeroStage >= 1 ? Math.ceil((8 * trainable) / job.nproc) : 8 * trainable;
  const activations = activationBytes(cfg, { microBatch: s.microBatch, seqLen: job.seqLen, nproc: job.nproc, activationCheckpointing: s.activationCheckpointing });
  return { weights, gradients, gradAccumulator, adamw, activations, total: weights + gradients + gradAccumulator + adamw + activations };
}

/**
 * Seconds per optimizer step of one setting on one rank, the three parts added (nothing overlaps today):
 *   compute  rows per rank x FLOPs per row (x 4/3 with activation checkpointing: one more forward), at
 *            tflops x t / (t + halfSaturationTokens) for t tokens per micro-batch;
 *   copies   gradients to the host (every micro-batch with ZeRO-2, else once) and back (ZeRO 0: the averaged
 *            gradient; ZeRO >= 1: this rank's slice, plus every parameter after the all-gather);
 *   comm     ZeRO 0: an all-reduce of the gradient; ZeRO 1: a reduce-scatter of it and an all-gather of the
 *            parameters (float32); ZeRO-2: one reduce-scatter per micro-batch plus the all-gather. A reduce-scatter
 *            or all-gather moves (N-1)/N of the buffer, an all-reduce twice that, at the bus bandwidth.
 */
export function settingSeconds(trainable: number, flopsPerSample: number, job: JobShape, t: Throughput, s: Setting): Pick<SettingEstimate, 'computeSecondsPerStep' | 'copySecondsPerStep' | 'commSecondsPerStep' | 'stepSeconds'> {
  const n = job.nproc;
  const gradAccum = job.globalBatch / (n * s.microBatch);
  const rows = job.globalBatch / n;
  const tokens = s.microBatch * job.seqLen;
  const efficiency = tokens / (tokens + t.halfSaturationTokens);
  const compute = (rows * flopsPerSample * (s.activationCheckpointing ? 4 / 3 : 1)) / (t.tflops * 1e12 * efficiency);
  const g = 4 * trainable;
  const toHost = s.zeroStage === 2 ? gradAccum * g : g;
  const toGpu = s.zeroStage === 0 ? g : g / n + g;
  const copies = (toHost + toGpu) / (t.hostGBps * 1e9);
  const wire = (t.exchangeBytes / 4) * g;
  const part = (n - 1) / n;
  const bytes = n === 1 ? 0 : s.zeroStage === 0 ? 2 * part * wire : s.zeroStage === 1 ? part * (wire + g) : part * (gradAccum * wire + g);
  const comm = bytes / (t.allreduceGBps * 1e9);
  return { computeSecondsPerStep: compute, copySecondsPerStep: copies, commSecondsPerStep: comm, stepSeconds: compute + copies + comm };
}

/**
 * Every setting (ZeRO 0/1/2 x checkpointing off/on x each micro-batch that divides the per-rank batch, or the
 * pinned values) with its memory and step time; the recommendation is the fastest that fits (ties: lower ZeRO
 * stage, then no checkpointing).
 */
export function trainingPlan(cfg: JanusConfig, job: JobShape, t: Throughput, flops: FlopsFn, pin: Partial<Setting> = {}): TrainingPlan {
  for (const [k, v] of Object.entries({ nproc: job.nproc, globalBatch: job.globalBatch, seqLen: job.seqLen })) {
    if (!Number.isInteger(v) || v <= 0) throw new Error(`plan: ${k} must be a positive integer, got ${v}`);
  }
  if (job.globalBatch % job.nproc !== 0) throw new Error(`plan: the global batch ${job.globalBatch} does not split over ${job.nproc} ranks`);
  for (const [k, v] of Object.entries({ gpuMemoryGiB: job.gpuMemoryGiB, tflops: t.tflops, hostGBps: t.hostGBps, allreduceGBps: t.allreduceGBps })) {
    if (!(v > 0) || !Number.isFinite(v)) throw new Error(`plan: ${k} must be a positive number, got ${v}`);
  }
  const model = new Janus4o(cfg);
  const parameters = model.parameterCount();
  const trainable = model.parameterCount((name) => !DEFAULT_FROZEN(name));
  const imageLen = Math.min(imageTokenCount(cfg), job.seqLen);
  const flopsPerSample = flops(cfg, { textLen: job.seqLen - imageLen, imageLen });
  const perRank = job.globalBatch / job.nproc;
  const micros = pin.microBatch !== undefined ? [pin.microBatch] : Array.from({ length: perRank }, (_, i) => i + 1).filter((m) => perRank % m === 0);
  if (pin.microBatch !== undefined && perRank % pin.microBatch !== 0) throw new Error(`plan: micro-batch ${pin.microBatch} does not divide the ${perRank} rows per rank`);
  const stages: ZeroStage[] = pin.zeroStage !== undefined ? [pin.zeroStage] : [0, 1, 2];
  const checkpointing = pin.activationCheckpointing !== undefined ? [pin.activationCheckpointing] : [false, true];
  const usable = job.gpuMemoryGiB * job.usableFraction;
  const settings: SettingEstimate[] = [];
  for (const zeroStage of stages) {
    for (const activationCheckpointing of checkpointing) {
      for (const microBatch of micros) {
        const s: Setting = { zeroStage, activationCheckpointing, microBatch };
        const bytes = settingBytes(cfg, parameters, trainable, job, s);
        const perRankGiB = bytes.total / GIB;
        settings.push({ ...s, gradAccum: perRank / microBatch, bytes, perRankGiB, fits: perRankGiB <= usable, ...settingSeconds(trainable, flopsPerSample, job, t, s) });
      }
    }
  }
  const fitting = settings.filter((s) => s.fits).sort((a, b) => a.stepSeconds - b.stepSeconds || a.zeroStage - b.zeroStage || Number(a.activationCheckpointing) - Number(b.activationCheckpointing));
  return { preset: cfg.name, parameters, trainableParameters: trainable, job, throughput: t, flopsPerSample, settings, recommended: fitting[0] ?? null };
}

function secs(x: number): string {
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

export function formatTrainingPlan(p: TrainingPlan): string {
  const j = p.job;
  const t = p.throughput;
  const lines = [
    `training plan for ${p.preset} (${p.parameters.toLocaleString('en-US')} parameters, ${p.trainableParameters.toLocaleString('en-US')} trainable) on ${j.nproc} GPU(s) of ${j.gpuMemoryGiB} GiB`,
    `  global batch ${j.globalBatch} x ${j.seqLen} positions; a setting fits at <= ${(j.gpuMemoryGiB * j.usableFraction).toFixed(1)} GiB per rank (${Math.round(100 * j.usableFraction)}% of the card)`,
    `  assumed: ${t.tflops} TFLOP/s per GPU at large micro-batches (half of it at ${t.halfSaturationTokens} tokens per micro-batch), GPU<->host ${t.hostGBps} GB/s,`,
    `           all-reduce bus ${t.allreduceGBps} GB/s over ${t.transport} (${t.allreduceSource}), gradients exchanged in ${t.exchangeBytes === 4 ? 'float32' : '16 bits'}`,
    '',
    '  ZeRO  ckpt  micro x accum   GiB/rank  fits   compute    copies    all-reduce   s/step',
  ];
  const sorted = [...p.settings].sort((a, b) => Number(b.fits) - Number(a.fits) || a.stepSeconds - b.stepSeconds);
  for (const s of sorted) {
    const mark = s === p.recommended ? ' <- recommended' : '';
    lines.push(`  ${String(s.zeroStage).padStart(4)}  ${(s.activationCheckpointing ? 'on' : 'off').padEnd(4)}  ${`${s.microBatch} x ${s.gradAccum}`.padEnd(13)}  ${s.perRankGiB.toFixed(1).padStart(8)}  ${(s.fits ? 'yes' : 'no').padEnd(4)}  ${secs(s.computeSecondsPerStep).padStart(7)}   ${secs(s.copySecondsPerStep).padStart(7)}   ${secs(s.commSecondsPerStep).padStart(10)}   ${secs(s.stepSeconds).padStart(6)}${mark}`);
  }
  const r = p.recommended;
  lines.push('');
  if (r === null) {
    lines.push(`  nothing fits in ${j.gpuMemoryGiB} GiB: use more GPUs (ZeRO shards the optimizer over them) or larger cards`);
  } else {
    const b = r.bytes;
    lines.push(`  recommended: distributed.zero_stage ${r.zeroStage}, train.activation_checkpointing ${r.activationCheckpointing}, train.micro_batch ${r.microBatch}, train.grad_accum ${r.gradAccum}`);
    lines.push(`    per rank ${r.perRankGiB.toFixed(1)} GiB = weights ${(b.weights / GIB).toFixed(1)} + gradients ${(b.gradients / GIB).toFixed(1)} + accumulator ${(b.gradAccumulator / GIB).toFixed(1)} + AdamW ${(b.adamw / GIB).toFixed(1)} + activations ${(b.activations / GIB).toFixed(1)}`);
    lines.push(`    ${secs(r.stepSeconds)} s per step = compute ${secs(r.computeSecondsPerStep)} + copies ${secs(r.copySecondsPerStep)} + all-reduce ${secs(r.commSecondsPerStep)}`);
  }
  return lines.join('\n');
}
