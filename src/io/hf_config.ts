/**
 * The Janus `config.json` (MultiModalityCausalLM layout: language_config, vision_config, aligner_config,
 * gen_vision_config, gen_aligner_config, gen_head_config) <-> JanusConfig.
 *
 * Janus-Pro's language_config lists only a few keys; the rest are LlamaConfig defaults (janus-spec 1.1 note a),
 * filled from LLAMA_DEFAULTS. Janus builds VQ-16 and SigLIP-L from fixed class names, so their sizes are not in
 * the file; this reader takes them from the names and accepts extension keys inside the `params` dicts for other
 * sizes (the tiny presets and test fixtures):
 *   gen_vision_config.params: codebook_embed_dim, ch, ch_mult, num_res_blocks, z_channels, norm_groups,
 *                             num_attn_blocks (defaults: VQ-16)
 *   vision_config.params:     width, layers, heads, patch_size, mlp_ratio, layer_norm_eps (defaults: the SigLIP
 *                             named by model_name; required for an unknown name)
 * The writer emits these keys only where the values differ from what the class name implies, so a Janus-Pro
 * config written here is the Janus one (with language_config written out in full).
 *
 * One top-level key is this project's own: `janus4o_image_positions: {stride, edit_target_offset}` for models
 * trained with non-reference image-token position ids (src/model/positions.ts). Absent means the reference's.
 */
import * as fs from 'fs';
import { JanusConfig, LLAMA_DEFAULTS, PRESETS, SiglipConfig, VQConfig, validateConfig } from '../model/config';
import { ImagePositions } from '../model/positions';

type Json = Record<string, unknown>;

const VQ16: Omit<VQConfig, 'codebookSize'> = PRESETS['janus-pro-7b'].vq;
const SIGLIP_NAMES: Readonly<Record<string, { width: number; layers: number; heads: number; patch_size: number; mlp_ratio: number }>> = {
  siglip_large_patch16_384: { width: 1024, layers: 24, heads: 16, patch_size: 16, mlp_ratio: 4 },
};
const DEFAULT_SIGLIP = 'siglip_large_patch16_384';

function obj(v: unknown): Json {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {};
}

/** Reads a Janus config.json object; every problem found is reported in one error. */
export function janusConfigFromHf(json: unknown, name?: string): JanusConfig {
  const root = obj(json);
  const problems: string[] = [];
  for (const k of ['language_config', 'vision_config', 'aligner_config', 'gen_vision_config', 'gen_aligner_config', 'gen_head_config']) {
    if (!(k in root)) problems.push(`missing "${k}" (is this a Janus MultiModalityCausalLM config.json?)`);
  }
  if (problems.length) throw new Error(`Janus config.json: ${problems.join('; ')}`);
  const lc = obj(root.language_config);
  const num = (src: Json, key: string, fallback: number | undefined, where: string): number => {
    const v = src[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      problems.push(`${where}.${key} must be a number, got ${JSON.stringify(v)}`);
      return NaN;
    }
    return v;
  };
  const heads = num(lc, 'num_attention_heads', LLAMA_DEFAULTS.numHeads, 'language_config');
  const llm = {
    vocabSize: num(lc, 'vocab_size', LLAMA_DEFAULTS.vocabSize, 'language_config'),
    hiddenSize: num(lc, 'hidden_size', LLAMA_DEFAULTS.hiddenSize, 'language_config'),
    numLayers: num(lc, 'num_hidden_layers', LLAMA_DEFAULTS.numLayers, 'language_config'),
    numHeads: heads,
    // LlamaConfig: num_key_value_heads None means no grouped-query attention.
    numKvHeads: num(lc, 'num_key_value_heads', heads, 'language_config'),
    intermediateSize: num(lc, 'intermediate_size', LLAMA_DEFAULTS.intermediateSize, 'language_config'),
    ropeTheta: num(lc, 'rope_theta', LLAMA_DEFAULTS.ropeTheta, 'language_config'),
    rmsNormEps: num(lc, 'rms_norm_eps', LLAMA_DEFAULTS.rmsNormEps, 'language_config'),
    maxPositionEmbeddings: num(lc, 'max_position_embeddings', LLAMA_DEFAULTS.maxPositionEmbeddings, 'language_config'),
  };
  const unsupported = (cond: boolean, what: string) => cond && problems.push(`language_config: ${what} is not supported`);
  unsupported(lc.hidden_act !== undefined && lc.hidden_act !== 'silu', `hidden_act ${JSON.stringify(lc.hidden_act)}`);
  unsupported(lc.tie_word_embeddings === true, 'tie_word_embeddings=true');
  unsupported(lc.attention_bias === true || lc.mlp_bias === true, 'attention/MLP bias');
  unsupported(lc.rope_scaling !== undefined && lc.rope_scaling !== null, 'rope_scaling');
  unsupported(lc.head_dim !== undefined && lc.head_dim !== llm.hiddenSize / llm.numHeads, `head_dim ${String(lc.head_dim)} != hidden_size / num_attention_heads`);

  const gv = obj(obj(root.gen_vision_config).params);
  const cls = obj(root.gen_vision_config).cls;
  if (cls !== undefined && cls !== 'VQ-16') problems.push(`gen_vision_config.cls ${JSON.stringify(cls)} is not supported (VQ-16 only)`);
  const chMult = gv.ch_mult ?? gv.encoder_ch_mult ?? VQ16.chMult;
  if (gv.decoder_ch_mult !== undefined && JSON.stringify(gv.decoder_ch_mult) !== JSON.stringify(chMult)) problems.push('gen_vision_config: encoder and decoder ch_mult differ');
  const numRes = num(gv, 'num_res_blocks', VQ16.numResBlocks, 'gen_vision_config.params');
  const vq: VQConfig = {
    codebookSize: num(gv, 'image_token_size', 16384, 'gen_vision_config.params'),
    codebookDim: num(gv, 'codebook_embed_dim', VQ16.codebookDim, 'gen_vision_config.params'),
    baseChannels: num(gv, 'ch', VQ16.baseChannels, 'gen_vision_config.params'),
    chMult: Array.isArray(chMult) ? (chMult as number[]).slice() : [],
    numResBlocks: numRes,
    zChannels: num(gv, 'z_channels', VQ16.zChannels, 'gen_vision_config.params'),
    normGroups: num(gv, 'norm_groups', VQ16.normGroups, 'gen_vision_config.params'),
    // LlamaGen puts one attention block after each res block of the lowest level.
    numAttnBlocks: num(gv, 'num_attn_blocks', numRes, 'gen_vision_config.params'),
  };
  if (gv.codebook_size !== undefined && gv.codebook_size !== vq.codebookSize) problems.push('gen_vision_config: codebook_size differs from image_token_size');
  const genEmbedDim = num(gv, 'n_embed', 8, 'gen_vision_config.params');

  const vp = obj(obj(root.vision_config).params);
  const modelName = typeof vp.model_name === 'string' ? vp.model_name : DEFAULT_SIGLIP;
  const known = SIGLIP_NAMES[modelName];
  const sv = (key: 'width' | 'layers' | 'heads' | 'patch_size' | 'mlp_ratio'): number => {
    if (vp[key] === undefined && !known) {
      problems.push(`vision_config.params.${key} is required for the unknown model_name ${JSON.stringify(modelName)}`);
      return NaN;
    }
    return num(vp, key, known?.[key], 'vision_config.params');
  };
  const layers = sv('layers');
  const width = sv('width');
  // Janus builds min(layers, layers + select_layer + 1) blocks for select_layer <= 0 (-1: all of them).
  const select = num(vp, 'select_layer', -1, 'vision_config.params');
  const siglip: SiglipConfig = {
    patchSize: sv('patch_size'),
    width,
    depth: select <= 0 ? Math.min(layers, layers + select + 1) : Math.min(layers, select),
    numHeads: sv('heads'),
    mlpDim: Math.round(width * sv('mlp_ratio')),
    layerNormEps: num(vp, 'layer_norm_eps', 1e-6, 'vision_config.params'),
  };
  if (vp.select_feature !== undefined && vp.select_feature !== 'same') problems.push(`vision_config.params.select_feature ${JSON.stringify(vp.select_feature)} is not supported`);
  const imageSize = num(vp, 'image_size', 384, 'vision_config.params');

  const d = llm.hiddenSize;
  const expect = (section: string, key: string, want: number | string) => {
    const v = obj(obj(root[section]).params)[key];
    if (v !== undefined && v !== want) problems.push(`${section}.params.${key} is ${JSON.stringify(v)}, expected ${JSON.stringify(want)}`);
  };
  for (const section of ['aligner_config', 'gen_aligner_config']) {
    expect(section, 'projector_type', 'mlp_gelu');
    expect(section, 'depth', 2);
    expect(section, 'n_embed', d);
  }
  expect('aligner_config', 'input_dim', siglip.width);
  expect('gen_aligner_config', 'input_dim', genEmbedDim);
  expect('gen_head_config', 'n_embed', d);
  expect('gen_head_config', 'image_token_embed', d);
  expect('gen_head_config', 'image_token_size', vq.codebookSize);
  const imagePositions = readImagePositions(root.janus4o_image_positions, problems);
  if (problems.length) throw new Error(`Janus config.json:\n  - ${problems.join('\n  - ')}`);

  const cfg: JanusConfig = { name: 'custom', imageSize, llm, vq, siglip, genEmbedDim, ...(imagePositions ? { imagePositions } : {}) };
  cfg.name = name ?? presetNameOf(cfg) ?? 'custom';
  return validateConfig(cfg);
}

function readImagePositions(v: unknown, problems: string[]): ImagePositions | undefined {
  if (v === undefined) return undefined;
  const o = obj(v);
  const offset = o.edit_target_offset ?? null;
  if (typeof o.stride !== 'number' || (offset !== null && typeof offset !== 'number')) {
    problems.push(`janus4o_image_positions must be {"stride": number, "edit_target_offset": number or null}, got ${JSON.stringify(v)}`);
    return undefined;
  }
  return { stride: o.stride, editTargetOffset: offset as number | null };
}

/** JSON with sorted keys, so equal configs compare equal whatever order their fields were written in. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Json;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

function presetNameOf(cfg: JanusConfig): string | undefined {
  const key = (c: JanusConfig) => canonical({ ...c, name: '' });
  return Object.entries(PRESETS).find(([, p]) => key(p) === key(cfg))?.[0];
}

/** Writes a Janus config.json object (language_config in full, so no reader has to know LLaMA defaults). */
export function janusConfigToHf(cfg: JanusConfig, opts: { torchDtype?: string } = {}): Json {
  const dtype = opts.torchDtype ?? 'float32';
  const d = cfg.llm.hiddenSize;
  const vqExt: Json = {};
  const vqKeys: [keyof Omit<VQConfig, 'codebookSize'>, string][] = [
    ['codebookDim', 'codebook_embed_dim'],
    ['baseChannels', 'ch'],
    ['chMult', 'ch_mult'],
    ['numResBlocks', 'num_res_blocks'],
    ['zChannels', 'z_channels'],
    ['normGroups', 'norm_groups'],
  ];
  for (const [k, key] of vqKeys) if (JSON.stringify(cfg.vq[k]) !== JSON.stringify(VQ16[k])) vqExt[key] = cfg.vq[k];
  if (cfg.vq.numAttnBlocks !== cfg.vq.numResBlocks) vqExt.num_attn_blocks = cfg.vq.numAttnBlocks;
  const s = cfg.siglip;
  const L = SIGLIP_NAMES[DEFAULT_SIGLIP];
  const isL = s.width === L.width && s.depth === L.layers && s.numHeads === L.heads && s.patchSize === L.patch_size && s.mlpDim === L.width * L.mlp_ratio;
  const sigExt: Json = isL
    ? {}
    : { width: s.width, layers: s.depth, heads: s.numHeads, patch_size: s.patchSize, mlp_ratio: s.mlpDim / s.width };
  if (s.layerNormEps !== 1e-6) sigExt.layer_norm_eps = s.layerNormEps;
  const mlp = (inputDim: number) => ({ depth: 2, input_dim: inputDim, n_embed: d, projector_type: 'mlp_gelu' });
  return {
    aligner_config: { cls: 'MlpProjector', model_type: 'aligner', params: mlp(s.width) },
    architectures: ['MultiModalityCausalLM'],
    gen_aligner_config: { cls: 'MlpProjector', model_type: 'gen_aligner', params: mlp(cfg.genEmbedDim) },
    gen_head_config: { cls: 'vision_head', model_type: 'gen_head', params: { image_token_embed: d, image_token_size: cfg.vq.codebookSize, n_embed: d } },
    gen_vision_config: { cls: 'VQ-16', model_type: 'gen_vision', params: { image_token_size: cfg.vq.codebookSize, n_embed: cfg.genEmbedDim, ...vqExt } },
    language_config: {
      hidden_size: d,
      intermediate_size: cfg.llm.intermediateSize,
      max_position_embeddings: cfg.llm.maxPositionEmbeddings,
      model_type: 'llama',
      num_attention_heads: cfg.llm.numHeads,
      num_hidden_layers: cfg.llm.numLayers,
      num_key_value_heads: cfg.llm.numKvHeads,
      rms_norm_eps: cfg.llm.rmsNormEps,
      rope_theta: cfg.llm.ropeTheta,
      torch_dtype: dtype,
      vocab_size: cfg.llm.vocabSize,
    },
    model_type: 'multi_modality',
    ...(cfg.imagePositions ? { janus4o_image_positions: { stride: cfg.imagePositions.stride, edit_target_offset: cfg.imagePositions.editTargetOffset } } : {}),
    torch_dtype: dtype,
    vision_config: {
      cls: 'CLIPVisionTower',
      model_type: 'vision',
      params: { image_size: cfg.imageSize, model_name: isL ? DEFAULT_SIGLIP : 'siglip_custom', select_feature: 'same', select_layer: -1, ...sigExt },
    },
  };
}

export function readHfConfig(file: string, name?: string): JanusConfig {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as Error).message}`);
  }
  return janusConfigFromHf(json, name);
}

export function writeHfConfig(file: string, cfg: JanusConfig, opts: { torchDtype?: string } = {}): void {
  fs.writeFileSync(file, `${JSON.stringify(janusConfigToHf(cfg, opts), null, 2)}\n`);
}
