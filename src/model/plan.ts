/**
 * Memory plan of a training run, computed from the config alone (nothing allocated): weights, gradients, AdamW
 * moments and activations per rank, for N data-parallel ranks with and without ZeRO-1 optimizer sharding.
 * All tensors are float32 in TF.js (no bf16 dtype), so every element costs 4 bytes.
 */
import { JanusConfig } from './config';
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
