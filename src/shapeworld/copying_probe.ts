/**
 * Copying probe: does a model copy the input image of an edit?
 *
 * ShapeEval scores an edit right only when every object the instruction does not touch comes back in its cell,
 * so a model edits only once it copies. Sampling shows that late and all-or-nothing; this probe shows it token by
 * token, teacher-forced (docs/edit-copying.md). For ShapeEval-style edits it scores each target token by kind:
 *
 * - background: unchanged and the input's background code;
 * - kept: unchanged object tokens;
 * - objectStart: kept tokens whose left and upper neighbours in the target are background, so nothing drawn so
 *   far shows the object: only the input image can predict them (a model that does not copy gets ~0 of these);
 * - changed: tokens the edit changes.
 *
 * with the input's VQ block present (`full`, the first CFG row) and replaced by pads (`part`: the SigLIP
 * features alone, the 50%-masked training condition), as cross-entropy and argmax hit rate.
 */
import * as tf from '@tensorflow/tfjs-core';
import { TokenSample, collate } from '../data/batch';
import { makeRng } from '../data/rng';
import { shapeEvalEdits } from './shapeeval_run';
import { GenerationRuntime } from '../generate/runtime';
import { encodeScene } from './encode';
import { imageTokenScores } from '../model/loss';
import { batchInput } from '../train/step';

export const COPY_KINDS = ['background', 'kept', 'objectStart', 'changed'] as const;
export type CopyKind = (typeof COPY_KINDS)[number];

export interface TokenKindStats {
  tokens: number;
  /** Mean cross-entropy, nats per token. */
  ce: number;
  /** Share of tokens whose argmax is the target. */
  hit: number;
}

export type CopyingStats = Record<CopyKind, TokenKindStats>;

export interface CopyingProbeResult {
  seed: string | number;
  edits: number;
  /** The input's VQ block present (E and X), as in CFG's first row. */
  full: CopyingStats;
  /** The VQ block replaced by pads: the SigLIP features (E) alone. */
  part: CopyingStats;
}

export interface CopyingProbeOptions {
  seed?: string | number;
  /** Edits per ShapeEval category (seven categories). */
  perCategory?: number;
  /** Edits per forward. */
  batch?: number;
  /** Scene keys to keep out (the training data's), as ShapeEval does. */
  exclude?: ReadonlySet<string>;
}

interface EncodedEdit {
  instruction: string;
  source: number[];
  target: number[];
  /** The input image, for the SigLIP block. */
  pixels: tf.Tensor4D;
}

/** Each target token's kind; `width` is the token grid's. The input's most common code is its background. */
export function copyKinds(source: readonly number[], target: readonly number[], width: number): CopyKind[] {
  const counts = new Map<number, number>();
  for (const c of source) counts.set(c, (counts.get(c) ?? 0) + 1);
  let background = source[0];
  for (const [c, k] of counts) if (k > (counts.get(background) ?? 0)) background = c;
  return target.map((t, k) => {
    if (t !== source[k]) return 'changed';
    if (t === background) return 'background';
    const leftClear = k % width === 0 || target[k - 1] === background;
    const aboveClear = k < width || target[k - width] === background;
    return leftClear && aboveClear ? 'objectStart' : 'kept';
  });
}

function emptyTotals(): Record<CopyKind, { tokens: number; ce: number; hits: number }> {
  return Object.fromEntries(COPY_KINDS.map((kind) => [kind, { tokens: 0, ce: 0, hits: 0 }])) as Record<CopyKind, { tokens: number; ce: number; hits: number }>;
}

export async function copyingProbe(rt: GenerationRuntime, opts: CopyingProbeOptions = {}): Promise<CopyingProbeResult> {
  const seed = opts.seed ?? 0;
  const perCategory = opts.perCategory ?? 6;
  const batchSize = opts.batch ?? 8;
  const model = rt.model;
  const edits = shapeEvalEdits(`copying:${seed}`, perCategory, opts.exclude);
  const encoded: EncodedEdit[] = [];
  try {
    for (const e of edits) {
      const source = await encodeScene(model, e.source);
      const target = await encodeScene(model, e.target);
      target.pixels.dispose();
      encoded.push({ instruction: e.instruction, source: source.ids, target: target.ids, pixels: source.pixels });
    }
    const n = encoded[0]?.target.length ?? 0;
    const width = Math.round(Math.sqrt(n));
    const stats = {} as Record<'full' | 'part', CopyingStats>;
    for (const [variant, imageMaskProb] of [['full', 0], ['part', 1]] as const) {
      const totals = emptyTotals();
      for (let start = 0; start < encoded.length; start += batchSize) {
        const group = encoded.slice(start, start + batchSize);
        const samples: TokenSample[] = group.map((g, i) => ({ task: 'edit', prompt: g.instruction, target: g.target, source: g.source, sourceImage: i }));
        const batch = collate(samples, rt.templates, n, { textMaskProb: 0, imageMaskProb, lossAlignment: 'full' }, (k) => makeRng(`copying-probe:${k}`));
        const [ce, pred] = tf.tidy(() => {
          const pixels = tf.concat(group.map((g) => g.pixels)) as tf.Tensor4D;
          const { ce, predicted } = imageTokenScores(model, batchInput(model, batch, pixels), batch.lossPositions, batch.lossTargets);
          return [ce, predicted];
        });
        const ceData = await ce.data();
        const predData = await pred.data();
        tf.dispose([ce, pred]);
        group.forEach((g, r) => {
          copyKinds(g.source, g.target, width).forEach((kind, k) => {
            const t = totals[kind];
            t.tokens++;
            t.ce += ceData[r * n + k];
            if (predData[r * n + k] === g.target[k]) t.hits++;
          });
        });
      }
      stats[variant] = Object.fromEntries(
        COPY_KINDS.map((kind) => {
          const t = totals[kind];
          return [kind, { tokens: t.tokens, ce: t.tokens ? t.ce / t.tokens : 0, hit: t.tokens ? t.hits / t.tokens : 0 }];
        }),
      ) as CopyingStats;
    }
    return { seed, edits: encoded.length, full: stats.full, part: stats.part };
  } finally {
    tf.dispose(encoded.map((e) => e.pixels));
  }
}
