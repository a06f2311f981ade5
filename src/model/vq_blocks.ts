/**
 * The encoder and decoder of the LlamaGen/Janus VQ-16 tokenizer (janus-spec.md section 2), at any VQConfig.
 * Parameter names follow the original checkpoint (`gen_vision_model.encoder.conv_blocks.2.res.0.nin_shortcut`,
 * ...; janus-spec.md 5.2), so the same tree loads Janus-Pro weights and trains the tiny tokenizer.
 */
import * as tf from '@tensorflow/tfjs-core';
import { VQConfig } from './config';
import { silu } from './layers';
import { ParamStore } from './params';
import { Conv2d, GroupNorm, upsampleNearest2x } from './vision_layers';

/** Janus uses GroupNorm eps 1e-6 everywhere in the tokenizer. */
const GN_EPS = 1e-6;

/** GN -> swish -> conv3x3 -> GN -> swish -> (dropout 0) -> conv3x3, plus a 1x1 `nin_shortcut` when widths differ. */
export class ResnetBlock {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly ninShortcut: Conv2d | null;

  constructor(store: ParamStore, prefix: string, inCh: number, outCh: number, groups: number) {
    this.norm1 = new GroupNorm(store, `${prefix}.norm1`, inCh, groups, GN_EPS);
    this.conv1 = new Conv2d(store, `${prefix}.conv1`, inCh, outCh, 3);
    this.norm2 = new GroupNorm(store, `${prefix}.norm2`, outCh, groups, GN_EPS);
    this.conv2 = new Conv2d(store, `${prefix}.conv2`, outCh, outCh, 3);
    this.ninShortcut = inCh !== outCh ? new Conv2d(store, `${prefix}.nin_shortcut`, inCh, outCh, 1, { pad: 0 }) : null;
  }

  apply(x: tf.Tensor4D): tf.Tensor4D {
    // A scope per block bounds peak memory to one block's temporaries (gigabytes at 384 px otherwise); under a
    // gradient tape the engine keeps its own copies of what backprop needs.
    return tf.tidy(() => {
      const h1 = this.conv1.apply(silu(this.norm1.apply(x)) as tf.Tensor4D);
      const h2 = this.conv2.apply(silu(this.norm2.apply(h1)) as tf.Tensor4D);
      const skip = this.ninShortcut ? this.ninShortcut.apply(x) : x;
      return tf.add(skip, h2);
    });
  }
}

/** Single-head spatial self-attention: pre-GN, 1x1 q/k/v/proj_out, scale C^-0.5, residual. */
export class AttnBlock {
  readonly norm: GroupNorm;
  readonly q: Conv2d;
  readonly k: Conv2d;
  readonly v: Conv2d;
  readonly projOut: Conv2d;

  constructor(store: ParamStore, prefix: string, readonly channels: number, groups: number) {
    this.norm = new GroupNorm(store, `${prefix}.norm`, channels, groups, GN_EPS);
    this.q = new Conv2d(store, `${prefix}.q`, channels, channels, 1, { pad: 0 });
    this.k = new Conv2d(store, `${prefix}.k`, channels, channels, 1, { pad: 0 });
    this.v = new Conv2d(store, `${prefix}.v`, channels, channels, 1, { pad: 0 });
    this.projOut = new Conv2d(store, `${prefix}.proj_out`, channels, channels, 1, { pad: 0 });
  }

  apply(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => this.attend(x));
  }

  private attend(x: tf.Tensor4D): tf.Tensor4D {
    const [b, h, w, c] = x.shape;
    const tokens = tf.reshape(this.norm.apply(x), [b, h * w, c]);
    const q = this.q.applyPointwise(tokens) as tf.Tensor3D;
    const k = this.k.applyPointwise(tokens) as tf.Tensor3D;
    const v = this.v.applyPointwise(tokens) as tf.Tensor3D;
    const weights = tf.softmax(tf.mul(tf.matMul(q, k, false, true), c ** -0.5));
    const attended = this.projOut.applyPointwise(tf.matMul(weights, v));
    return tf.add(x, tf.reshape(attended, [b, h, w, c]));
  }
}

/** Pad right and bottom by one zero row/column, then conv3x3 stride 2 'valid' (not symmetric padding). */
export class Downsample {
  readonly conv: Conv2d;

  constructor(store: ParamStore, prefix: string, channels: number) {
    this.conv = new Conv2d(store, `${prefix}.conv`, channels, channels, 3, { stride: 2, pad: [0, 1, 0, 1] });
  }

  apply(x: tf.Tensor4D): tf.Tensor4D {
    return this.conv.apply(x);
  }
}

/** Nearest x2, then conv3x3 stride 1 pad 1. */
export class Upsample {
  readonly conv: Conv2d;

  constructor(store: ParamStore, prefix: string, channels: number) {
    this.conv = new Conv2d(store, `${prefix}.conv`, channels, channels, 3);
  }

  apply(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => this.conv.apply(upsampleNearest2x(x)));
  }
}

/** One resolution level: `res.{i}`, `attn.{i}` (only at the lowest resolution), optional down/upsample. */
interface Level {
  res: ResnetBlock[];
  attn: AttnBlock[];
  resample: Downsample | Upsample | null;
}

function runLevel(level: Level, x: tf.Tensor4D): tf.Tensor4D {
  let h = x;
  level.res.forEach((block, i) => {
    h = block.apply(h);
    // LlamaGen interleaves res[i] then attn[i]; with fewer attention blocks than res blocks the tail has none.
    if (i < level.attn.length) h = level.attn[i].apply(h);
  });
  return level.resample ? level.resample.apply(h) : h;
}

function checkAttnCount(vq: VQConfig): void {
  if (vq.numAttnBlocks > vq.numResBlocks) {
    throw new Error(
      `vq.numAttnBlocks (${vq.numAttnBlocks}) cannot exceed vq.numResBlocks (${vq.numResBlocks}): each attention block follows a ResNet block.`,
    );
  }
}

/** Mid block `mid.{0,1,2}` = ResNet, attention, ResNet at the lowest resolution. */
function midBlock(store: ParamStore, prefix: string, ch: number, groups: number): [ResnetBlock, AttnBlock, ResnetBlock] {
  return [
    new ResnetBlock(store, `${prefix}.mid.0`, ch, ch, groups),
    new AttnBlock(store, `${prefix}.mid.1`, ch, groups),
    new ResnetBlock(store, `${prefix}.mid.2`, ch, ch, groups),
  ];
}

/** conv_in -> levels (ResNet blocks, attention at the last, downsample between) -> mid -> GN -> swish -> conv_out. */
export class VQEncoder {
  readonly convIn: Conv2d;
  readonly levels: Level[] = [];
  readonly mid: [ResnetBlock, AttnBlock, ResnetBlock];
  readonly normOut: GroupNorm;
  readonly convOut: Conv2d;

  constructor(store: ParamStore, prefix: string, vq: VQConfig) {
    checkAttnCount(vq);
    const ch = vq.baseChannels;
    const g = vq.normGroups;
    const n = vq.chMult.length;
    this.convIn = new Conv2d(store, `${prefix}.conv_in`, 3, ch, 3);
    let blockIn = ch;
    for (let i = 0; i < n; i++) {
      const blockOut = ch * vq.chMult[i];
      const lp = `${prefix}.conv_blocks.${i}`;
      const level: Level = { res: [], attn: [], resample: null };
      for (let j = 0; j < vq.numResBlocks; j++) {
        level.res.push(new ResnetBlock(store, `${lp}.res.${j}`, blockIn, blockOut, g));
        blockIn = blockOut;
        if (i === n - 1 && j < vq.numAttnBlocks) level.attn.push(new AttnBlock(store, `${lp}.attn.${j}`, blockIn, g));
      }
      if (i !== n - 1) level.resample = new Downsample(store, `${lp}.downsample`, blockIn);
      this.levels.push(level);
    }
    this.mid = midBlock(store, prefix, blockIn, g);
    this.normOut = new GroupNorm(store, `${prefix}.norm_out`, blockIn, g, GN_EPS);
    this.convOut = new Conv2d(store, `${prefix}.conv_out`, blockIn, vq.zChannels, 3);
  }

  apply(x: tf.Tensor4D): tf.Tensor4D {
    let h = this.convIn.apply(x);
    for (const level of this.levels) h = runLevel(level, h);
    h = this.mid[2].apply(this.mid[1].apply(this.mid[0].apply(h)));
    const out = h;
    return tf.tidy(() => this.convOut.apply(silu(this.normOut.apply(out)) as tf.Tensor4D));
  }
}

/**
 * conv_in -> mid -> levels from the lowest resolution up (numResBlocks+1 ResNet blocks each, attention in
 * level 0, upsample between) -> GN -> swish -> conv_out to RGB.
 */
export class VQDecoder {
  readonly convIn: Conv2d;
  readonly mid: [ResnetBlock, AttnBlock, ResnetBlock];
  readonly levels: Level[] = [];
  readonly normOut: GroupNorm;
  readonly convOut: Conv2d;

  constructor(store: ParamStore, prefix: string, vq: VQConfig) {
    checkAttnCount(vq);
    const ch = vq.baseChannels;
    const g = vq.normGroups;
    const n = vq.chMult.length;
    let blockIn = ch * vq.chMult[n - 1];
    this.convIn = new Conv2d(store, `${prefix}.conv_in`, vq.zChannels, blockIn, 3);
    this.mid = midBlock(store, prefix, blockIn, g);
    for (let i = 0; i < n; i++) {
      const blockOut = ch * vq.chMult[n - 1 - i];
      const lp = `${prefix}.conv_blocks.${i}`;
      const level: Level = { res: [], attn: [], resample: null };
      for (let j = 0; j < vq.numResBlocks + 1; j++) {
        level.res.push(new ResnetBlock(store, `${lp}.res.${j}`, blockIn, blockOut, g));
        blockIn = blockOut;
        if (i === 0 && j < vq.numAttnBlocks + 1) level.attn.push(new AttnBlock(store, `${lp}.attn.${j}`, blockIn, g));
      }
      if (i !== n - 1) level.resample = new Upsample(store, `${lp}.upsample`, blockIn);
      this.levels.push(level);
    }
    this.normOut = new GroupNorm(store, `${prefix}.norm_out`, blockIn, g, GN_EPS);
    this.convOut = new Conv2d(store, `${prefix}.conv_out`, blockIn, 3, 3);
  }

  apply(z: tf.Tensor4D): tf.Tensor4D {
    let h = this.convIn.apply(z);
    h = this.mid[2].apply(this.mid[1].apply(this.mid[0].apply(h)));
    for (const level of this.levels) h = runLevel(level, h);
    const out = h;
    return tf.tidy(() => this.convOut.apply(silu(this.normOut.apply(out)) as tf.Tensor4D));
  }
}
