/**
 * RoPE position ids of image tokens. The reference (Janus, Janus-Pro, Janus-4o) numbers every position 0, 1, 2, ...
 * A model may instead declare `imagePositions` in its config (config.json key `janus4o_image_positions`):
 *
 * - `stride`: consecutive image tokens (the X block of an edit, the target image) are `stride` position ids apart.
 *   Standard RoPE rotates its fastest pair by 1 radian per position, so on integer positions no attention pattern
 *   can tell token k from token k + 1 apart by position alone (period 2 needs pi radians per step). With a stride
 *   of 4, "every other column" is a period of 8 ids, which RoPE's second pair (0.75 rad) resolves. Models trained
 *   on flat synthetic images, where neighbouring patches look the same, need this to know which column they are in.
 * - `editTargetOffset`: an edit's target token k sits exactly this many ids after X-block token k, however long the
 *   instruction between them is, so copying the input image is one fixed relative distance. From
 *   `stride x n + 2` up the target's ids follow the instruction's; a smaller offset overlays the X block's ids
 *   (RoPE only sees id differences and attention follows token order, so ids need not increase).
 *
 * Only position ids change; token order, ids and attention are the reference's. Absent, positions are the
 * reference's, which is what official checkpoints need.
 */

export interface ImagePositions {
  /** Position-id step between consecutive image tokens (1 = the reference). */
  stride: number;
  /** Ids from X-block token k to target token k in edits; null = the reference's (varies with the instruction). */
  editTargetOffset: number | null;
}

/** Problems with a config's imagePositions (empty when fine). */
export function imagePositionProblems(p: ImagePositions): string[] {
  const out: string[] = [];
  if (!Number.isInteger(p.stride) || p.stride < 1) out.push(`imagePositions.stride must be a positive integer, got ${JSON.stringify(p.stride)}`);
  if (p.editTargetOffset !== null && (!Number.isInteger(p.editTargetOffset) || p.editTargetOffset < 0)) {
    out.push(`imagePositions.editTargetOffset must be a non-negative integer or null, got ${JSON.stringify(p.editTargetOffset)}`);
  }
  return out;
}

/** Whether positions differ from the reference's 0, 1, 2, ... */
export function isReference(p: ImagePositions | undefined): boolean {
  return !p || (p.stride === 1 && p.editTargetOffset === null);
}

/** 0..length-1: the reference's ids of a row without padding. */
export function consecutivePositions(length: number): number[] {
  return Array.from({ length }, (_, i) => i);
}

/** A prefix's ids (`prefix`, or 0..L-1 when it has none of its own) followed by `n` image tokens. */
export function prefixThenImages(prefix: readonly number[], n: number, p: ImagePositions | undefined): number[] {
  return [...prefix, ...followingImagePositions(prefix[prefix.length - 1], n, p)];
}

/** Ids of `n` image tokens that follow a token at position `last`. */
export function followingImagePositions(last: number, n: number, p: ImagePositions | undefined): number[] {
  const stride = p?.stride ?? 1;
  return Array.from({ length: n }, (_, k) => last + stride * (k + 1));
}

/**
 * Position ids of an edit prefix (ending in the BOI before the target): the X block `stride` apart, the tokens
 * after it (EOI, instruction, assistant tag) consecutive, and the final BOI placed so that target token 0 lands
 * `editTargetOffset` after X token 0.
 */
export function editPrefixPositions(length: number, xBlock: [number, number], p: ImagePositions): number[] {
  const [x0, x1] = xBlock;
  const out = new Array<number>(length);
  for (let i = 0; i < x0; i++) out[i] = i;
  for (let i = x0; i < x1; i++) out[i] = x0 + p.stride * (i - x0);
  for (let i = x1; i < length; i++) out[i] = out[i - 1] + 1;
  if (p.editTargetOffset !== null) {
    const boi = x0 + p.editTargetOffset - p.stride;
    if (p.editTargetOffset >= afterXBlock(xBlock, p) && boi <= out[length - 2]) {
      const needed = out[length - 2] - x0 + 1 + p.stride;
      throw new RangeError(`the edit instruction is too long for this model: its tokens need an edit target offset of at least ${needed} position ids, the model's is ${p.editTargetOffset} (janus4o_image_positions.edit_target_offset). Shorten the instruction.`);
    }
    out[length - 1] = boi;
  }
  return out;
}

/** The smallest offset that puts the whole target after the X block, EOI and BOI (offsets below it overlay X). */
function afterXBlock(xBlock: [number, number], p: ImagePositions): number {
  return p.stride * (xBlock[1] - xBlock[0]) + 2;
}
