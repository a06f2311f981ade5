/**
 * The input of one Janus forward: text ids for every position, plus the positions whose embedding is replaced by
 * an image-token embedding (gen_aligner(gen_embed(id))) or by an externally computed image feature (SigLIP ->
 * aligner). Checked on the host before any tensor is made, so a bad batch fails with a message, not a NaN.
 */
import * as tf from '@tensorflow/tfjs-core';

export interface SequenceInput {
  /** Token ids, [B][L], every row the same length. Positions overridden below may hold any valid id (pad). */
  textIds: number[][];
  /** Image-token positions (flat indices into B*L, row-major) and their ids in the image vocabulary. */
  genTokens?: { positions: ArrayLike<number>; ids: ArrayLike<number> | tf.Tensor1D };
  /** Image-feature positions (flat indices) and their embeddings [K, hidden] (already through the aligner). */
  imageEmbeds?: { positions: ArrayLike<number>; embeds: tf.Tensor2D };
  /** 1 = real token, 0 = padding, [B][L]. Default: all ones. */
  attentionMask?: number[][];
  /** Position ids, [B][L]. Default: running count of real tokens (continuing after a KV cache). */
  positionIds?: number[][];
}

export interface SequenceLimits {
  textVocab: number;
  imageVocab: number;
  hidden: number;
  maxPositions: number;
  /** Positions already in the KV cache. */
  pastLength: number;
  /** Next position id per row after the cache, if any. */
  pastNextPosition?: number[];
}

export interface CheckedSequence {
  batch: number;
  length: number;
  mask: number[][];
  positions: number[][];
}

function fail(msg: string): never {
  throw new Error(`Invalid model input: ${msg}`);
}

function checkPositions(what: string, positions: ArrayLike<number>, total: number, taken: Uint8Array): void {
  for (let i = 0; i < positions.length; i++) {
    const p = positions[i];
    if (!Number.isInteger(p) || p < 0 || p >= total) fail(`${what} position ${p} (entry ${i}) is outside 0..${total - 1} (B*L flat index)`);
    if (taken[p]) fail(`${what} position ${p} is marked twice (image tokens and image embeddings must not overlap)`);
    taken[p] = 1;
  }
}

export function checkSequence(input: SequenceInput, lim: SequenceLimits): CheckedSequence {
  const ids = input.textIds;
  if (!Array.isArray(ids) || ids.length === 0) fail('textIds must be a non-empty [B][L] array');
  const batch = ids.length;
  const length = ids[0].length;
  if (length === 0) fail('textIds rows must not be empty');
  ids.forEach((row, r) => {
    if (row.length !== length) fail(`textIds row ${r} has length ${row.length}, expected ${length} like row 0 (pad rows to one length)`);
    for (let j = 0; j < row.length; j++) {
      const v = row[j];
      if (!Number.isInteger(v) || v < 0 || v >= lim.textVocab) fail(`text id ${v} at row ${r}, position ${j} is outside the text vocabulary 0..${lim.textVocab - 1}`);
    }
  });
  if (lim.pastLength + length > lim.maxPositions) {
    fail(`sequence of ${lim.pastLength + length} positions (${lim.pastLength} cached + ${length} new) exceeds max_position_embeddings ${lim.maxPositions}`);
  }
  const total = batch * length;
  const taken = new Uint8Array(total);
  if (input.genTokens) {
    const { positions, ids: gids } = input.genTokens;
    checkPositions('image-token', positions, total, taken);
    const n = gids instanceof tf.Tensor ? gids.size : gids.length;
    if (n !== positions.length) fail(`${n} image-token ids given for ${positions.length} marked image-token positions`);
    if (!(gids instanceof tf.Tensor)) {
      for (let i = 0; i < gids.length; i++) {
        const v = gids[i];
        if (!Number.isInteger(v) || v < 0 || v >= lim.imageVocab) fail(`image-token id ${v} (entry ${i}) is outside the image vocabulary 0..${lim.imageVocab - 1}`);
      }
    }
  }
  if (input.imageEmbeds) {
    const { positions, embeds } = input.imageEmbeds;
    checkPositions('image-embedding', positions, total, taken);
    if (embeds.rank !== 2 || embeds.shape[1] !== lim.hidden) fail(`image embeddings must be [K, ${lim.hidden}], got [${embeds.shape.join(', ')}]`);
    if (embeds.shape[0] !== positions.length) fail(`${embeds.shape[0]} image embeddings given for ${positions.length} marked image positions`);
  }
  const mask = input.attentionMask ?? ids.map((row) => row.map(() => 1));
  if (mask.length !== batch || mask.some((row) => row.length !== length)) fail(`attentionMask must be [${batch}][${length}] like textIds`);
  let positions = input.positionIds;
  if (positions) {
    if (positions.length !== batch || positions.some((row) => row.length !== length)) fail(`positionIds must be [${batch}][${length}] like textIds`);
  } else {
    positions = mask.map((row, r) => {
      let next = lim.pastNextPosition ? lim.pastNextPosition[r] : 0;
      // HF convention: padding takes position 0 before the first real token, real tokens count up from there.
      return row.map((m) => (m ? next++ : Math.max(next - 1, 0)));
    });
  }
  for (const row of positions) for (const p of row) if (p >= lim.maxPositions) fail(`position id ${p} exceeds max_position_embeddings ${lim.maxPositions}`);
  return { batch, length, mask, positions };
}
