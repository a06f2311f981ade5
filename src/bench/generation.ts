/**
 * T2I generation speed: image tokens per second for a batch of images with 2-branch CFG (cond + uncond rows),
 * through the library's sampler, with the KV cache and with the recompute-everything reference path.
 */
import { Janus4o } from '../model/janus';
import { imageTokenCount } from '../model/config';
import { SampleRows, sampleImageTokens, sampleRng, t2iRows } from '../generate/sampler';

export interface GenerationResult {
  images: number;
  cfgRows: number;
  promptTokens: number;
  imageTokensPerImage: number;
  cached: { tokensPerSecond: number; seconds: number };
  recompute: { tokensPerSecond: number; seconds: number };
  /** cached / recompute tokens per second. */
  speedup: number;
  /** Both paths drew the same ids (they share per-image random streams, so they must). */
  sameIds: boolean;
}

/** A fixed prompt of `len` text ids (BOS-like 1 first), standing in for a tokenised template. */
function promptIdsOf(len: number, vocab: number): number[] {
  return Array.from({ length: len }, (_, i) => (i === 0 ? 1 : 2 + ((i * 37) % (vocab - 2))));
}

export async function benchGeneration(opts: { images: number; promptTokens: number; seed?: number }): Promise<GenerationResult> {
  const model = Janus4o.create('tiny', { seed: opts.seed ?? 0 });
  try {
    const pad = 0;
    const prefix = promptIdsOf(opts.promptTokens, model.config.llm.vocabSize);
    const samples = (): SampleRows[] => Array.from({ length: opts.images }, (_, i) => ({ rows: t2iRows(prefix, pad), rng: sampleRng('bench', 0, i) }));
    // One short warm-up so that neither timed path pays for first-use kernel and XNNPACK operator setup.
    await sampleImageTokens(model, 't2i', samples().slice(0, 1), pad, { useCache: true, maxRows: 2 });
    const cached = await sampleImageTokens(model, 't2i', samples(), pad, { useCache: true });
    const recompute = await sampleImageTokens(model, 't2i', samples(), pad, { useCache: false });
    const sameIds = JSON.stringify(cached.ids) === JSON.stringify(recompute.ids);
    return {
      images: opts.images,
      cfgRows: 2 * opts.images,
      promptTokens: opts.promptTokens,
      imageTokensPerImage: imageTokenCount(model.config),
      cached: { tokensPerSecond: cached.stats.tokensPerSecond, seconds: cached.stats.seconds },
      recompute: { tokensPerSecond: recompute.stats.tokensPerSecond, seconds: recompute.stats.seconds },
      speedup: cached.stats.tokensPerSecond / recompute.stats.tokensPerSecond,
      sameIds,
    };
  } finally {
    model.dispose();
  }
}
