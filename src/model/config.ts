/**
 * JanusConfig: every size of the model, from the CPU `tiny` preset to Janus-Pro-7B. All image-token counts
 * derive from these numbers (nothing hard-codes 576). Values for the official presets: shared janus-spec.md
 * sections 1-4 (LLaMA defaults filled where the official config.json omits them).
 */

import { ImagePositions, imagePositionProblems } from './positions';

export interface LlamaConfig {
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  /** Equal to numHeads for Janus-Pro (no GQA). */
  numKvHeads: number;
  intermediateSize: number;
  ropeTheta: number;
  rmsNormEps: number;
  maxPositionEmbeddings: number;
}

export interface VQConfig {
  codebookSize: number;
  codebookDim: number;
  /** Base channel width `ch`. */
  baseChannels: number;
  /** Channel multipliers per level; the image is downsampled 2x between levels. */
  chMult: number[];
  /** ResNet blocks per encoder level (the decoder uses one more). */
  numResBlocks: number;
  zChannels: number;
  /** GroupNorm groups (32 in Janus; smaller for tiny widths). */
  normGroups: number;
  /** Attention blocks at the lowest resolution (encoder level; the decoder uses one more). */
  numAttnBlocks: number;
}

export interface SiglipConfig {
  patchSize: number;
  width: number;
  depth: number;
  numHeads: number;
  mlpDim: number;
  layerNormEps: number;
}

export interface JanusConfig {
  /** Preset name or 'custom'. */
  name: string;
  /** Square image side in pixels, for both image encoders. */
  imageSize: number;
  llm: LlamaConfig;
  vq: VQConfig;
  siglip: SiglipConfig;
  /** gen_embed table width (the image-token embedding fed to gen_aligner). Janus: 8. */
  genEmbedDim: number;
  /** Non-reference image-token position ids (src/model/positions.ts); absent in official models. */
  imagePositions?: ImagePositions;
}

const TINY: JanusConfig = {
  name: 'tiny',
  imageSize: 64,
  llm: {
    vocabSize: 512,
    hiddenSize: 256,
    numLayers: 4,
    numHeads: 4,
    numKvHeads: 4,
    intermediateSize: 704,
    ropeTheta: 10000,
    rmsNormEps: 1e-6,
    maxPositionEmbeddings: 512,
  },
  vq: {
    codebookSize: 1024,
    codebookDim: 8,
    baseChannels: 32,
    chMult: [1, 2, 2, 4],
    numResBlocks: 1,
    zChannels: 64,
    normGroups: 8,
    numAttnBlocks: 1,
  },
  siglip: { patchSize: 8, width: 128, depth: 2, numHeads: 2, mlpDim: 512, layerNormEps: 1e-6 },
  genEmbedDim: 8,
};

const VQ16: VQConfig = {
  codebookSize: 16384,
  codebookDim: 8,
  baseChannels: 128,
  chMult: [1, 1, 2, 2, 4],
  numResBlocks: 2,
  zChannels: 256,
  normGroups: 32,
  numAttnBlocks: 2,
};

const SIGLIP_L16: SiglipConfig = { patchSize: 16, width: 1024, depth: 24, numHeads: 16, mlpDim: 4096, layerNormEps: 1e-6 };

/** LlamaConfig defaults (transformers), applied to keys the Janus config.json leaves out. */
export const LLAMA_DEFAULTS: LlamaConfig = {
  vocabSize: 32000,
  hiddenSize: 4096,
  numLayers: 32,
  numHeads: 32,
  numKvHeads: 32,
  intermediateSize: 11008,
  ropeTheta: 10000,
  rmsNormEps: 1e-6,
  maxPositionEmbeddings: 2048,
};

const PRO_1B: JanusConfig = {
  name: 'janus-pro-1b',
  imageSize: 384,
  llm: {
    vocabSize: 102400,
    hiddenSize: 2048,
    numLayers: 24,
    numHeads: 16,
    numKvHeads: 16,
    intermediateSize: 5632,
    ropeTheta: 10000,
    rmsNormEps: 1e-6,
    maxPositionEmbeddings: 16384,
  },
  vq: VQ16,
  siglip: SIGLIP_L16,
  genEmbedDim: 8,
};

const PRO_7B: JanusConfig = {
  ...PRO_1B,
  name: 'janus-pro-7b',
  llm: { ...PRO_1B.llm, hiddenSize: 4096, numLayers: 30, numHeads: 32, numKvHeads: 32, intermediateSize: 11008 },
};

export const PRESETS = { tiny: TINY, 'janus-pro-1b': PRO_1B, 'janus-pro-7b': PRO_7B } as const;
export type PresetName = keyof typeof PRESETS;

export function isPresetName(s: string): s is PresetName {
  return Object.prototype.hasOwnProperty.call(PRESETS, s);
}

/** A deep copy of a preset with optional overrides, validated. */
export function presetConfig(name: string, overrides: DeepPartial<JanusConfig> = {}): JanusConfig {
  if (!isPresetName(name)) {
    throw new Error(`Unknown model preset "${name}": expected one of ${Object.keys(PRESETS).join(', ')}.`);
  }
  const merged = deepMerge(structuredClone(PRESETS[name]) as unknown as Record<string, unknown>, overrides as Record<string, unknown>);
  return validateConfig(merged as unknown as JanusConfig);
}

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? (T[K] extends unknown[] ? T[K] : DeepPartial<T[K]>) : T[K] };

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  for (const [k, v] of Object.entries(over)) {
    const b = base[k];
    if (v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b)) {
      base[k] = deepMerge(b as Record<string, unknown>, v as Record<string, unknown>);
    } else base[k] = v;
  }
  return base;
}

/** Image-token grid side of the VQ tokenizer (= SigLIP patch grid side). */
export function tokenGridSide(cfg: JanusConfig): number {
  return cfg.imageSize / vqDownsample(cfg.vq);
}

export function vqDownsample(vq: VQConfig): number {
  return 2 ** (vq.chMult.length - 1);
}

/** Number of image tokens per image (576 for Janus-Pro at 384 px, 64 for tiny). */
export function imageTokenCount(cfg: JanusConfig): number {
  return tokenGridSide(cfg) ** 2;
}

export function headDim(llm: LlamaConfig): number {
  return llm.hiddenSize / llm.numHeads;
}

/** Throws one error listing every problem found. Returns the config for chaining. */
export function validateConfig(cfg: JanusConfig): JanusConfig {
  const problems: string[] = [];
  const posInt = (path: string, v: unknown) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) problems.push(`${path} must be a positive integer, got ${JSON.stringify(v)}`);
  };
  const posNum = (path: string, v: unknown) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) problems.push(`${path} must be a positive number, got ${JSON.stringify(v)}`);
  };
  posInt('imageSize', cfg.imageSize);
  posInt('genEmbedDim', cfg.genEmbedDim);
  const l = cfg.llm ?? ({} as LlamaConfig);
  for (const k of ['vocabSize', 'hiddenSize', 'numLayers', 'numHeads', 'numKvHeads', 'intermediateSize', 'maxPositionEmbeddings'] as const) posInt(`llm.${k}`, l[k]);
  posNum('llm.ropeTheta', l.ropeTheta);
  posNum('llm.rmsNormEps', l.rmsNormEps);
  if (l.hiddenSize % l.numHeads !== 0) problems.push(`llm.hiddenSize (${l.hiddenSize}) must be divisible by llm.numHeads (${l.numHeads})`);
  else if ((l.hiddenSize / l.numHeads) % 2 !== 0) problems.push(`llm head dim (${l.hiddenSize / l.numHeads}) must be even for rotary embeddings`);
  if (l.numHeads % l.numKvHeads !== 0) problems.push(`llm.numHeads (${l.numHeads}) must be a multiple of llm.numKvHeads (${l.numKvHeads})`);
  const v = cfg.vq ?? ({} as VQConfig);
  for (const k of ['codebookSize', 'codebookDim', 'baseChannels', 'numResBlocks', 'zChannels', 'normGroups'] as const) posInt(`vq.${k}`, v[k]);
  if (!Number.isInteger(v.numAttnBlocks) || v.numAttnBlocks < 0) problems.push(`vq.numAttnBlocks must be a non-negative integer, got ${JSON.stringify(v.numAttnBlocks)}`);
  // Attention blocks follow ResNet blocks at the lowest resolution, one per block at most.
  else if (v.numAttnBlocks > v.numResBlocks) problems.push(`vq.numAttnBlocks (${v.numAttnBlocks}) must not exceed vq.numResBlocks (${v.numResBlocks})`);
  if (!Array.isArray(v.chMult) || v.chMult.length < 1 || v.chMult.some((m) => !Number.isInteger(m) || m <= 0)) {
    problems.push(`vq.chMult must be a non-empty list of positive integers, got ${JSON.stringify(v.chMult)}`);
  } else {
    const ds = vqDownsample(v);
    if (cfg.imageSize % ds !== 0) problems.push(`imageSize (${cfg.imageSize}) must be divisible by the VQ downsample factor ${ds}`);
    for (const m of v.chMult) {
      if ((v.baseChannels * m) % v.normGroups !== 0) problems.push(`vq channel width ${v.baseChannels * m} is not divisible by vq.normGroups (${v.normGroups})`);
    }
    if (v.zChannels % v.normGroups !== 0) problems.push(`vq.zChannels (${v.zChannels}) is not divisible by vq.normGroups (${v.normGroups})`);
  }
  const s = cfg.siglip ?? ({} as SiglipConfig);
  for (const k of ['patchSize', 'width', 'depth', 'numHeads', 'mlpDim'] as const) posInt(`siglip.${k}`, s[k]);
  posNum('siglip.layerNormEps', s.layerNormEps);
  if (s.width % s.numHeads !== 0) problems.push(`siglip.width (${s.width}) must be divisible by siglip.numHeads (${s.numHeads})`);
  if (problems.length === 0 && Array.isArray(v.chMult)) {
    if (cfg.imageSize % s.patchSize !== 0) problems.push(`imageSize (${cfg.imageSize}) must be divisible by siglip.patchSize (${s.patchSize})`);
    else if (cfg.imageSize / s.patchSize !== tokenGridSide(cfg)) {
      problems.push(
        `siglip patch grid (${cfg.imageSize / s.patchSize}) must equal the VQ token grid (${tokenGridSide(cfg)}) so that E and X blocks have the same length`,
      );
    }
  }
  if (problems.length === 0 && cfg.imagePositions) problems.push(...imagePositionProblems(cfg.imagePositions));
  if (problems.length) throw new Error(`Invalid model config "${cfg.name}":\n  - ${problems.join('\n  - ')}`);
  return cfg;
}
