/**
 * Activation checkpointing: gradients of a loss through the decoder while keeping only each block's input
 * alive, recomputing one block at a time in the backward pass.
 *
 * tfjs cannot take gradients inside a custom gradient (a nested tf.grads in a customGrad's backward breaks the
 * engine's tape), so the chain rule is applied here by hand, stage by stage: one forward pass with no tape
 * that keeps the block inputs x_0..x_L, then one taped pass per stage from the head back to the embeddings,
 * each differentiating sum(stage(x_i) * dy_{i+1}) with respect to x_i and the stage's parameters.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Janus4o } from '../model/janus';
import { BlockContext } from '../model/llama';

export interface StagedLoss {
  /** Input embeddings [B, L, D] (text, image tokens, image features): differentiable in its parameters. */
  embed: () => tf.Tensor3D;
  positions: number[][];
  mask: number[][];
  /** Loss of the final hidden states (before the final norm) -> scalar. */
  head: (x: tf.Tensor3D) => tf.Scalar;
}

export interface CheckpointedResult {
  loss: number;
  grads: Map<string, tf.Tensor>;
  /** Largest tf.memory().numBytes seen at the end of any taped stage's forward (the activation peak). */
  peakBytes: number;
}

/** Gradients of `s` w.r.t. `trainable`, one stage at a time. Names off the loss path get no entry (microStep gives them zeros). */
export function checkpointedGrads(model: Janus4o, s: StagedLoss, trainable: readonly string[]): CheckpointedResult {
  const llm = model.llm;
  const want = new Set(trainable);
  const blockNames = llm.layers.map((_, i) => llm.blockParams(i).filter((n) => want.has(n)));
  const inBlocks = new Set(blockNames.flat());
  const outer = trainable.filter((n) => !inBlocks.has(n));
  const grads = new Map<string, tf.Tensor>();
  let peakBytes = 0;
  const probe = () => {
    peakBytes = Math.max(peakBytes, tf.memory().numBytes);
  };
  const addGrad = (name: string, g: tf.Tensor) => {
    const prev = grads.get(name);
    if (!prev) grads.set(name, tf.keep(g));
    else {
      grads.set(name, tf.keep(tf.add(prev, g)));
      prev.dispose();
    }
  };

  // Forward with no tape: keep only the inputs of every block.
  const xs: tf.Tensor3D[] = [tf.tidy(() => s.embed())];
  const [cos, sin, bias] = tf.tidy(() => {
    const c = llm.context({ embeds: xs[0], positions: s.positions, mask: s.mask });
    return [c.rope.cos, c.rope.sin, c.bias];
  });
  const ctx: BlockContext = { rope: { cos, sin }, bias, cache: null };
  for (let i = 0; i < llm.layers.length; i++) xs.push(tf.tidy(() => llm.block(i, xs[i], ctx)));

  // Backward, stage by stage. `stage` differentiates f(v) w.r.t. a stand-in variable v for x and `names`. Without
  // an x (the embedding stage) a scalar anchor added as 0 * anchor stands in, so that tfjs does not refuse a stage
  // whose parameters the loss does not reach (e.g. only SigLIP and gen_head trainable on a T2I batch).
  const stage = (x: tf.Tensor3D | null, names: string[], f: (v: tf.Tensor3D | null) => tf.Scalar): { value: number; dx: tf.Tensor3D | null } => {
    const v = x ? tf.variable(x, true) : null;
    const anchor = x ? null : tf.variable(tf.scalar(0), true);
    const vars = names.map((n) => model.params.get(n));
    let value = 0;
    let dx: tf.Tensor3D | null = null;
    tf.tidy(() => {
      const r = tf.variableGrads(() => {
        const y = f(v as tf.Tensor3D | null);
        const out = anchor ? (tf.add(y, tf.mul(anchor, 0)) as tf.Scalar) : y;
        probe();
        return out;
      }, [v ?? anchor!, ...vars]);
      value = r.value.dataSync()[0];
      names.forEach((n, k) => {
        const g = r.grads[vars[k].name];
        if (g) addGrad(n, g);
      });
      if (v) dx = tf.keep(r.grads[v.name] as tf.Tensor3D);
    });
    v?.dispose();
    anchor?.dispose();
    return { value, dx };
  };

  const headRes = stage(xs[xs.length - 1], outer, (v) => s.head(v!));
  let dy = headRes.dx!;
  for (let i = llm.layers.length - 1; i >= 0; i--) {
    const dyi = dy;
    const r = stage(xs[i], blockNames[i], (v) => tf.sum(tf.mul(llm.block(i, v!, ctx), dyi)) as tf.Scalar);
    dyi.dispose();
    dy = r.dx!;
  }
  const dy0 = dy;
  if (outer.length > 0) stage(null, outer, () => tf.sum(tf.mul(s.embed(), dy0)) as tf.Scalar);
  dy0.dispose();
  tf.dispose([...xs, ctx.rope.cos, ctx.rope.sin, ctx.bias]);
  return { loss: headRes.value, grads, peakBytes };
}
