/**
 * Checkpoint names. Module parameters are named exactly like the original Janus checkpoint (janus-spec 5.2), so
 * that layout needs no mapping; this file holds the one table between it and the transformers-native layout
 * (janus-spec 5.3: `model.language_model.*`, split q/k/v in SigLIP, squeezed pos_embed, `model.vqmodel.*` with
 * down/up/block/mid renames), the list of tensors Janus checkpoints carry but no module uses, and the check that
 * reports every missing, unexpected and wrongly shaped tensor in one error.
 */
import { ParamSpec, checkpointShape } from '../model/params';
import { TensorInfo, TensorSource, concatFloat32 } from './dtypes';
import { TensorToWrite } from './safetensors';

export type CheckpointNaming = 'janus' | 'transformers';

/** In Janus checkpoints but used by no module: SigLIP's attention-pool head, VQ usage counters, RoPE buffers. */
const UNUSED: readonly RegExp[] = [/^vision_model\.vision_tower\.attn_pool\./, /^gen_vision_model\.quantize\.codebook_used$/, /\.rotary_emb\.inv_freq$/];

export function isUnusedTensor(name: string): boolean {
  return UNUSED.some((r) => r.test(name));
}

interface NameRule {
  janus: string;
  native: string;
  /** One Janus tensor is these native tensors stacked along dim 0 (SigLIP fused qkv). */
  split?: readonly string[];
  /** The Janus tensor has a leading dim of 1 that the native one drops (pos_embed). */
  squeeze0?: boolean;
  /** The captured tail is a VQ module path, renamed segment by segment. */
  vq?: boolean;
}

/** The table. `{n}` = a layer index, `{p}`/`{q}` = one name segment, `{rest}` = the remaining path. */
const TABLE: readonly NameRule[] = [
  { janus: 'language_model.model.{rest}', native: 'model.language_model.{rest}' },
  { janus: 'language_model.lm_head.weight', native: 'lm_head.weight' },
  { janus: 'vision_model.vision_tower.patch_embed.proj.{p}', native: 'model.vision_model.embeddings.patch_embedding.{p}' },
  { janus: 'vision_model.vision_tower.pos_embed', native: 'model.vision_model.embeddings.position_embedding.weight', squeeze0: true },
  { janus: 'vision_model.vision_tower.blocks.{n}.norm1.{p}', native: 'model.vision_model.encoder.layers.{n}.layer_norm1.{p}' },
  { janus: 'vision_model.vision_tower.blocks.{n}.norm2.{p}', native: 'model.vision_model.encoder.layers.{n}.layer_norm2.{p}' },
  { janus: 'vision_model.vision_tower.blocks.{n}.attn.qkv.{p}', native: 'model.vision_model.encoder.layers.{n}.self_attn.{part}_proj.{p}', split: ['q', 'k', 'v'] },
  { janus: 'vision_model.vision_tower.blocks.{n}.attn.proj.{p}', native: 'model.vision_model.encoder.layers.{n}.self_attn.projection_layer.{p}' },
  { janus: 'vision_model.vision_tower.blocks.{n}.mlp.{p}.{q}', native: 'model.vision_model.encoder.layers.{n}.mlp.{p}.{q}' },
  { janus: 'vision_model.vision_tower.norm.{p}', native: 'model.vision_model.post_layernorm.{p}' },
  { janus: 'aligner.layers.0.{p}', native: 'model.aligner.fc1.{p}' },
  { janus: 'aligner.layers.2.{p}', native: 'model.aligner.hidden_layers.0.{p}' },
  { janus: 'gen_aligner.layers.0.{p}', native: 'model.generation_aligner.fc1.{p}' },
  { janus: 'gen_aligner.layers.2.{p}', native: 'model.generation_aligner.hidden_layers.0.{p}' },
  { janus: 'gen_head.output_mlp_projector.{p}', native: 'model.generation_head.proj_out.{p}' },
  { janus: 'gen_head.vision_head.{p}', native: 'model.generation_head.vision_head.{p}' },
  { janus: 'gen_embed.weight', native: 'model.generation_embeddings.weight' },
  { janus: 'gen_vision_model.{rest}', native: 'model.vqmodel.{rest}', vq: true },
];

function compile(pattern: string): RegExp {
  const src = pattern
    .split(/(\{[a-z]+\})/)
    .map((part) => {
      if (part === '{rest}') return '(?<rest>.+)';
      if (part === '{n}') return '(?<n>\\d+)';
      if (/^\{[a-z]+\}$/.test(part)) return `(?<${part.slice(1, -1)}>[^.]+)`;
      return part.replace(/[.*+?^$()|[\]\\]/g, '\\$&');
    })
    .join('');
  return new RegExp(`^${src}$`);
}

const COMPILED = TABLE.map((r) => ({ rule: r, janus: compile(r.janus), native: compile(r.native) }));

function fill(pattern: string, groups: Record<string, string>): string {
  return pattern.replace(/\{([a-z]+)\}/g, (_, k: string) => groups[k]);
}

const VQ_MID = ['block_1', 'attn_1', 'block_2'];

/** LlamaGen module path (after `gen_vision_model.`) -> transformers `model.vqmodel.` path, and back. */
function vqPath(path: string, toNative: boolean): string {
  const s = path.split('.');
  const top = s[0] === 'encoder' || s[0] === 'decoder';
  if (top && s.length > 1) {
    const blocks = s[0] === 'encoder' ? 'down' : 'up';
    if (toNative && s[1] === 'conv_blocks') s[1] = blocks;
    else if (!toNative && s[1] === blocks) s[1] = 'conv_blocks';
    if (s[1] === 'mid' && s.length > 2) {
      if (toNative && /^[012]$/.test(s[2])) s[2] = VQ_MID[Number(s[2])];
      else if (!toNative && VQ_MID.includes(s[2])) s[2] = String(VQ_MID.indexOf(s[2]));
    }
  }
  return s.map((seg) => (toNative ? (seg === 'res' ? 'block' : seg) : seg === 'block' ? 'res' : seg)).join('.');
}

/** Native names of one Janus tensor ([] for tensors the native layout drops). */
export function janusToNative(name: string): string[] {
  if (isUnusedTensor(name)) return [];
  for (const { rule, janus } of COMPILED) {
    const m = janus.exec(name);
    if (!m) continue;
    const g: Record<string, string> = { ...m.groups };
    if (rule.vq) g.rest = vqPath(g.rest, true);
    if (rule.split) return rule.split.map((part) => fill(rule.native, { ...g, part }));
    return [fill(rule.native, g)];
  }
  throw new Error(`no transformers-native name for "${name}"`);
}

/** The Janus name a native tensor belongs to, and which stacked part of it it is; null if no rule matches. */
export function nativeToJanus(name: string): { name: string; part: number | null } | null {
  for (const { rule, native } of COMPILED) {
    const m = native.exec(name);
    if (!m) continue;
    const g: Record<string, string> = { ...m.groups };
    if (rule.vq) g.rest = vqPath(g.rest, false);
    const part = rule.split ? rule.split.indexOf(g.part) : null;
    if (part === -1) continue;
    return { name: fill(rule.janus, g), part };
  }
  return null;
}

export function detectNaming(names: readonly string[]): CheckpointNaming {
  return names.some((n) => n.startsWith('model.') || n === 'lm_head.weight') ? 'transformers' : 'janus';
}

function ruleFor(janusName: string): NameRule | undefined {
  return COMPILED.find((c) => c.janus.test(janusName))?.rule;
}

/**
 * Presents any checkpoint under Janus names: a transformers-native one gets its q/k/v stacked back into qkv and
 * pos_embed's leading 1 restored; native names no rule knows keep their own name (so they show up as unexpected).
 */
export function janusView(src: TensorSource): TensorSource {
  if (detectNaming(src.names()) === 'janus') return src;
  const groups = new Map<string, { parts: string[]; squeeze0: boolean }>();
  for (const n of src.names()) {
    const m = nativeToJanus(n);
    const key = m ? m.name : n;
    const g = groups.get(key) ?? { parts: [], squeeze0: !!(m && ruleFor(m.name)?.squeeze0) };
    if (m && m.part !== null) g.parts[m.part] = n;
    else g.parts.push(n);
    groups.set(key, g);
  }
  for (const [name, g] of groups) {
    const want = ruleFor(name)?.split?.length ?? 1;
    // parts may be sparse (q and v without k): check every index, not just the ones present.
    const complete = g.parts.length === want && Array.from({ length: want }, (_, i) => g.parts[i]).every((p) => p !== undefined);
    if (!complete) throw new Error(`checkpoint: "${name}" needs ${want} native tensors, found ${g.parts.filter(Boolean).join(', ')}`);
  }
  const info = (name: string): TensorInfo => {
    const g = groups.get(name);
    if (!g) throw new Error(`checkpoint has no tensor "${name}"`);
    const infos = g.parts.map((p) => src.info(p));
    const shape = infos[0].shape.slice();
    if (infos.length > 1) {
      if (infos.some((i) => i.shape.slice(1).join() !== shape.slice(1).join())) throw new Error(`checkpoint: parts of "${name}" disagree in shape`);
      shape[0] = infos.reduce((s, i) => s + i.shape[0], 0);
    }
    return { dtype: infos[0].dtype, shape: g.squeeze0 ? [1, ...shape] : shape };
  };
  return {
    names: () => [...groups.keys()],
    info,
    read: (name) => {
      const g = groups.get(name);
      if (!g) throw new Error(`checkpoint has no tensor "${name}"`);
      if (g.parts.length === 1) return src.read(g.parts[0]);
      return concatFloat32(g.parts.map((p) => src.read(p)));
    },
    close: () => src.close(),
  };
}

/** Janus-named tensors -> the same data under native names (qkv split into thirds, pos_embed squeezed). */
export function toNativeTensors(tensors: readonly TensorToWrite[]): TensorToWrite[] {
  const out: TensorToWrite[] = [];
  for (const t of tensors) {
    const names = janusToNative(t.name);
    const rule = ruleFor(t.name);
    if (names.length === 1) {
      out.push({ name: names[0], shape: rule?.squeeze0 ? t.shape.slice(1) : t.shape, values: t.values });
      continue;
    }
    const rows = t.shape[0] / names.length;
    if (!Number.isInteger(rows)) throw new Error(`"${t.name}": dim 0 (${t.shape[0]}) does not split into ${names.length}`);
    const per = (t.shape.length > 1 ? t.shape.slice(1).reduce((a, b) => a * b, 1) : 1) * rows;
    names.forEach((n, i) => out.push({ name: n, shape: [rows, ...t.shape.slice(1)], values: () => t.values().slice(i * per, (i + 1) * per) }));
  }
  return out;
}

export interface CheckOptions {
  /** Parameters that may be absent from the checkpoint (they keep their current value). */
  allowMissing?: (name: string) => boolean;
  /** Checkpoint tensors that may have no parameter (ignored). */
  allowUnexpected?: (name: string) => boolean;
  debug?: (message: string) => void;
}

export interface CheckResult {
  /** Parameters to load, each present in the checkpoint with a compatible shape. */
  load: ParamSpec[];
  /** Checkpoint tensors not loaded (unused by design, or allowed unexpected). */
  skipped: string[];
}

const LIST_LIMIT = 20;

function dropOnes(shape: readonly number[]): string {
  return shape.filter((d) => d !== 1).join(',');
}

/** Matches parameters against a checkpoint; every problem goes into one error. */
export function checkAgainst(specs: readonly ParamSpec[], src: TensorSource, opts: CheckOptions = {}): CheckResult {
  const names = new Set(src.names());
  const declared = new Set(specs.map((s) => s.name));
  const missing: string[] = [];
  const mismatched: string[] = [];
  const load: ParamSpec[] = [];
  for (const spec of specs) {
    if (!names.has(spec.name)) {
      if (!opts.allowMissing?.(spec.name)) missing.push(spec.name);
      continue;
    }
    const stored = src.info(spec.name).shape;
    const want = checkpointShape(spec);
    // Size-1 dims may differ for plain tensors (pos_embed [1, N, D] vs [N, D]): the row-major data is the same.
    const ok = stored.join(',') === want.join(',') || (spec.layout === 'plain' && dropOnes(stored) === dropOnes(want));
    if (ok) load.push(spec);
    else mismatched.push(`${spec.name}: checkpoint [${stored.join(', ')}], model expects [${want.join(', ')}]`);
  }
  const unexpected: string[] = [];
  const skipped: string[] = [];
  for (const n of names) {
    if (declared.has(n)) continue;
    if (isUnusedTensor(n)) {
      opts.debug?.(`skipping unused checkpoint tensor ${n}`);
      skipped.push(n);
    } else if (opts.allowUnexpected?.(n)) skipped.push(n);
    else unexpected.push(n);
  }
  if (missing.length + unexpected.length + mismatched.length > 0) {
    const section = (title: string, items: string[]) =>
      items.length === 0 ? [] : [`  ${title} (${items.length}):`, ...items.slice(0, LIST_LIMIT).map((i) => `    ${i}`), ...(items.length > LIST_LIMIT ? [`    ... and ${items.length - LIST_LIMIT} more`] : [])];
    throw new Error(
      [
        `checkpoint does not match the model (${missing.length} missing, ${unexpected.length} unexpected, ${mismatched.length} with the wrong shape):`,
        ...section('missing from the checkpoint', missing),
        ...section('unexpected in the checkpoint', unexpected),
        ...section('wrong shape', mismatched),
      ].join('\n'),
    );
  }
  return { load, skipped };
}
