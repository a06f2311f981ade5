/**
 * Parameter counts of the official presets, computed from the config (nothing allocated), against an
 * independent count of the tensor shapes listed in janus-spec section 5.2 (attn_pool.*, quantize.codebook_used
 * and rotary inv_freq are unused buffers/modules that are not parameters of our model).
 */
import { Janus4o } from '../src/model/janus';
import { presetConfig } from '../src/model/config';

const lin = (i: number, o: number, bias = true) => i * o + (bias ? o : 0);
const conv = (i: number, o: number, k: number) => i * o * k * k + o;

function llm(v: number, d: number, layers: number, inter: number): number {
  const perLayer = 4 * d * d + 3 * d * inter + 2 * d;
  return v * d /* embed_tokens */ + layers * perLayer + d /* norm */ + v * d /* lm_head */;
}

function siglipL16(): number {
  const w = 1024;
  const block = 2 * w + lin(w, 3 * w) + lin(w, w) + 2 * w + lin(w, 4096) + lin(4096, w);
  return conv(3, w, 16) + 576 * w + 24 * block + 2 * w;
}

/** VQ-16 as LlamaGen/Janus define it: ch 128, ch_mult [1,1,2,2,4], 2 res blocks (3 in the decoder), z 256, codes 16384 x 8. */
function vq16(): number {
  const ch = 128;
  const mult = [1, 1, 2, 2, 4];
  const res = (i: number, o: number) => 2 * i + conv(i, o, 3) + 2 * o + conv(o, o, 3) + (i !== o ? lin(i, o) : 0);
  const attn = (c: number) => 2 * c + 4 * lin(c, c);
  let n = conv(3, ch, 3);
  let bin = ch;
  mult.forEach((m, i) => {
    for (let j = 0; j < 2; j++) {
      n += res(bin, ch * m);
      bin = ch * m;
      if (i === mult.length - 1) n += attn(bin);
    }
    if (i !== mult.length - 1) n += conv(bin, bin, 3);
  });
  n += res(512, 512) + attn(512) + res(512, 512) + 2 * 512 + conv(512, 256, 3);
  n += lin(256, 8) + lin(8, 256) + 16384 * 8; // quant_conv, post_quant_conv, codebook
  n += conv(256, 512, 3) + res(512, 512) + attn(512) + res(512, 512);
  bin = 512;
  for (let i = mult.length - 1; i >= 0; i--) {
    for (let j = 0; j < 3; j++) {
      n += res(bin, ch * mult[i]);
      bin = ch * mult[i];
      if (i === mult.length - 1) n += attn(bin);
    }
    if (i !== 0) n += conv(bin, bin, 3);
  }
  return n + 2 * ch + conv(ch, 3, 3);
}

function janus(d: number, layers: number, inter: number): number {
  const heads = lin(1024, d) + lin(d, d) /* aligner */ + lin(8, d) + lin(d, d) /* gen_aligner */ + lin(d, d) + lin(d, 16384) /* gen_head */ + 16384 * 8; /* gen_embed */
  return llm(102400, d, layers, inter) + siglipL16() + vq16() + heads;
}

/** SigLIP's attention-pooling head: in the checkpoint, unused by Janus (ignore_head=True), not in our model. */
const ATTN_POOL = 1024 /* latent */ + lin(1024, 1024) /* q */ + lin(1024, 2048) /* kv */ + lin(1024, 1024) /* proj */ + 2 * 1024 /* norm */ + lin(1024, 4096) + lin(4096, 1024);

describe('parameter counts from config', () => {
  test('with the unused attn_pool head, 1B matches the runtime count of the official checkpoint (2,089,232,011)', () => {
    expect(new Janus4o(presetConfig('janus-pro-1b')).parameterCount() + ATTN_POOL).toBe(2_089_232_011);
  });

  test.each([
    ['janus-pro-1b', 2048, 24, 5632, 2_076_636_811],
    ['janus-pro-7b', 4096, 30, 11008, 7_407_773_323],
  ] as const)('%s', (preset, d, layers, inter, expected) => {
    const model = new Janus4o(presetConfig(preset)); // declares only
    expect(janus(d, layers, inter)).toBe(expected);
    expect(model.parameterCount()).toBe(expected);
    expect(model.params.isMaterialized).toBe(false);
  });
});
