/**
 * Janus4o: the unified decoder-only model. One sequence mixes text embeddings, image-token embeddings
 * (gen_aligner(gen_embed(id))) and image features (SigLIP -> aligner); the LLaMA decoder runs over it; image
 * logits come from gen_head and text logits from lm_head at chosen positions.
 */
import { createHash } from 'crypto';
import * as tf from '@tensorflow/tfjs-core';
import { JanusConfig, presetConfig, validateConfig } from './config';
import { GenerationModules } from './heads';
import { KVCache } from './kv_cache';
import { MlpProjector } from './layers';
import { LlamaDecoder } from './llama';
import { ParamStore } from './params';
import { followingImagePositions } from './positions';
import { SequenceInput, checkSequence } from './sequence';
import { LoadOptions, SaveOptions, loadIntoStore, loadPretrained, savePretrained } from '../io/pretrained';
import { InitScheme, applyInitScheme } from './init_scheme';
import { SiglipEncoder } from './siglip';
import { VQModel } from './vq';

export interface ForwardOptions {
  /** Flat positions (into B*L) at which to return image logits. */
  imageLogitsAt?: ArrayLike<number>;
  /** Flat positions at which to return text logits (lm_head). */
  textLogitsAt?: ArrayLike<number>;
  /** Also return the final-normed hidden states [B, L, D]. */
  returnHidden?: boolean;
  /** Continue from (and extend) this cache. */
  cache?: KVCache;
}

export interface ForwardOutput {
  imageLogits?: tf.Tensor2D;
  textLogits?: tf.Tensor2D;
  hidden?: tf.Tensor3D;
}

export interface CreateOptions {
  /** Seed of the random initialisation (default 0). */
  seed?: number | string;
  /** Leave weights unallocated (for planning or before loading a checkpoint). */
  allocate?: boolean;
  /** Initialisation scheme of the random weights (init_scheme.ts); default 'reference'. */
  init?: InitScheme;
}

export class Janus4o {
  readonly params = new ParamStore();
  readonly llm: LlamaDecoder;
  readonly gen: GenerationModules;
  /** Understanding aligner: SigLIP features -> LLM width (`aligner.layers.{0,2}`). */
  readonly aligner: MlpProjector;
  /** The semantic encoder (`vision_model.vision_tower.*`): the E block of edits. */
  readonly siglip: SiglipEncoder;
  /** The VQ-16 image tokenizer (`gen_vision_model.*`): image <-> ids. */
  readonly vq: VQModel;

  constructor(readonly config: JanusConfig) {
    validateConfig(config);
    this.llm = new LlamaDecoder(this.params, config.llm);
    this.gen = new GenerationModules(this.params, config);
    this.aligner = new MlpProjector(this.params, 'aligner', config.siglip.width, config.llm.hiddenSize);
    this.siglip = new SiglipEncoder(this.params, config);
    this.vq = new VQModel(this.params, config);
  }

  /**
   * LLM-width features of images for E-block positions: aligner(SigLIP(pixels)). `imageOf[i]` names the image
   * of the i-th position; positions come in runs of one image's tokens in raster order (the E block layout).
   */
  imageFeatures(pixels: tf.Tensor4D, imageOf: ArrayLike<number>): tf.Tensor2D {
    const n = this.siglip.numTokens;
    const d = this.config.llm.hiddenSize;
    const all = tf.reshape(this.aligner.apply(this.siglip.apply(pixels)), [pixels.shape[0] * n, d]) as tf.Tensor2D;
    const idx = new Int32Array(imageOf.length);
    for (let i = 0; i < imageOf.length; i++) idx[i] = imageOf[i] * n + (i % n);
    return tf.gather(all, tf.tensor1d(idx, 'int32')) as tf.Tensor2D;
  }

  /** Builds a model from a config or preset name; weights randomly initialised from `seed` unless allocate=false. */
  static create(config: JanusConfig | string, opts: CreateOptions = {}): Janus4o {
    const cfg = typeof config === 'string' ? presetConfig(config) : config;
    const model = new Janus4o(cfg);
    applyInitScheme(model.params, opts.init ?? 'reference', { textEmbeddings: model.llm.embedTokens, projectors: [model.gen.genAligner, model.aligner] });
    if (opts.allocate !== false) model.params.materialize(opts.seed ?? 0);
    return model;
  }

  /**
   * Loads a model folder: an official Janus-Pro download (config.json + pytorch_model*.bin or safetensors) or one
   * saved by `save`. Every tensor is checked against the config; problems are reported all at once.
   */
  static fromPretrained(dir: string, opts: LoadOptions = {}): Janus4o {
    const { config, tensors } = loadPretrained(dir, opts);
    const model = new Janus4o(config);
    try {
      loadIntoStore(model.params, tensors, opts);
    } catch (e) {
      model.dispose();
      throw e;
    } finally {
      tensors.close();
    }
    return model;
  }

  /** Writes config.json + model.safetensors in the original Janus names (plus tokenizer files with tokenizerFrom). */
  save(dir: string, opts: SaveOptions = {}): string[] {
    return savePretrained(this.params, this.config, dir, opts);
  }

  /** A short hash of the weights under `prefix` (e.g. the VQ tokenizer's, to key cached VQ codes). */
  async weightsFingerprint(prefix = ''): Promise<string> {
    const h = createHash('sha256');
    for (const spec of this.params.list()) {
      if (!spec.name.startsWith(prefix)) continue;
      h.update(spec.name);
      const d = (await this.params.get(spec.name).data()) as Float32Array;
      h.update(Buffer.from(d.buffer, d.byteOffset, d.byteLength));
    }
    return h.digest('hex').slice(0, 16);
  }

  /** Number of parameters (declared, whether allocated or not). */
  parameterCount(filter?: (name: string) => boolean): number {
    return this.params.count(filter);
  }

  /** A new empty KV cache for `batch` rows, sized by this model's config. */
  newCache(batch: number): KVCache {
    return new KVCache(batch, this.config.llm.numLayers, this.config.llm.maxPositionEmbeddings);
  }

  /** Assembles the input embeddings [B, L, D] of a checked sequence. */
  private embed(input: SequenceInput, batch: number, length: number): tf.Tensor3D {
    const d = this.config.llm.hiddenSize;
    const ids = tf.tensor1d(input.textIds.flat(), 'int32');
    const text = this.llm.embed(ids);
    const parts: tf.Tensor2D[] = [text];
    const n = batch * length;
    let source: Int32Array | null = null;
    let offset = n;
    if (input.genTokens && input.genTokens.positions.length > 0) {
      const gids = input.genTokens.ids instanceof tf.Tensor ? tf.cast(input.genTokens.ids, 'int32') : tf.tensor1d(Array.from(input.genTokens.ids), 'int32');
      parts.push(this.gen.imageTokenEmbeds(gids as tf.Tensor1D));
      source = identity(n);
      const pos = input.genTokens.positions;
      for (let i = 0; i < pos.length; i++) source[pos[i]] = offset + i;
      offset += pos.length;
    }
    if (input.imageEmbeds && input.imageEmbeds.positions.length > 0) {
      parts.push(input.imageEmbeds.embeds);
      source = source ?? identity(n);
      const pos = input.imageEmbeds.positions;
      for (let i = 0; i < pos.length; i++) source[pos[i]] = offset + i;
    }
    // One gather from [text; image tokens; image features] places every row; its gradient is a segment sum.
    const rows = source ? tf.gather(tf.concat(parts, 0), tf.tensor1d(source, 'int32')) : text;
    return tf.reshape(rows, [batch, length, d]) as tf.Tensor3D;
  }

  /** Full (or cache-continuing) forward. Call inside tf.tidy; outputs are ordinary tensors of that scope. */
  forward(input: SequenceInput, opts: ForwardOptions = {}): ForwardOutput {
    const { embeds, decoderInputs, cache } = this.embedInputs(input, opts.cache ?? null);
    const hidden = this.llm.forward({ ...decoderInputs, embeds }, cache);
    return this.heads(hidden, embeds.shape[0] * embeds.shape[1], opts);
  }

  /** Checks a sequence and assembles its input embeddings (the first stage of forward). */
  embedInputs(input: SequenceInput, cache: KVCache | null = null): { embeds: tf.Tensor3D; decoderInputs: { positions: number[][]; mask: number[][] }; cache: KVCache | null } {
    const cfg = this.config;
    if (cache && cache.batch !== input.textIds.length) {
      throw new Error(`Invalid model input: the KV cache holds ${cache.batch} rows but ${input.textIds.length} rows were given`);
    }
    const checked = checkSequence(input, {
      textVocab: cfg.llm.vocabSize,
      imageVocab: cfg.vq.codebookSize,
      hidden: cfg.llm.hiddenSize,
      maxPositions: cfg.llm.maxPositionEmbeddings,
      pastLength: cache ? cache.length : 0,
      pastNextPosition: cache && cache.length > 0 ? cache.nextPosition : undefined,
    });
    const embeds = this.embed(input, checked.batch, checked.length);
    return { embeds, decoderInputs: { positions: checked.positions, mask: checked.mask }, cache };
  }

  /** Image/text logits at chosen positions of final-normed hidden states (the last stage of forward). */
  heads(hidden: tf.Tensor3D, n: number, opts: ForwardOptions): ForwardOutput {
    const out: ForwardOutput = {};
    const flat = tf.reshape(hidden, [n, this.config.llm.hiddenSize]) as tf.Tensor2D;
    const pick = (at: ArrayLike<number>, what: string) => {
      for (let i = 0; i < at.length; i++) {
        if (!Number.isInteger(at[i]) || at[i] < 0 || at[i] >= n) throw new Error(`Invalid model input: ${what} position ${at[i]} is outside 0..${n - 1}`);
      }
      return tf.gather(flat, tf.tensor1d(Array.from(at), 'int32'));
    };
    if (opts.imageLogitsAt) out.imageLogits = this.gen.genHead.apply(pick(opts.imageLogitsAt, 'imageLogitsAt')) as tf.Tensor2D;
    if (opts.textLogitsAt) out.textLogits = this.gen.lmHead.apply(pick(opts.textLogitsAt, 'textLogitsAt')) as tf.Tensor2D;
    if (opts.returnHidden) out.hidden = hidden;
    return out;
  }

  /**
   * Decoding step with the cache: one new image token per row (ids [B], e.g. the sampled token fed to every CFG
   * row), returns the image logits [B, V] of the new position. Keeps no intermediate tensors.
   */
  stepImageTokens(cache: KVCache, ids: tf.Tensor1D | ArrayLike<number>): tf.Tensor2D {
    return tf.tidy(() => {
      const b = cache.batch;
      const padId = 0;
      const scheme = this.config.imagePositions;
      const input: SequenceInput = {
        textIds: Array.from({ length: b }, () => [padId]),
        genTokens: { positions: Array.from({ length: b }, (_, r) => r), ids: ids instanceof tf.Tensor ? ids : Array.from(ids) },
        // The cache's next position is the last one + 1; image tokens of a strided model step further.
        ...(scheme && scheme.stride !== 1 ? { positionIds: cache.nextPosition.map((p) => followingImagePositions(p - 1, 1, scheme)) } : {}),
      };
      const out = this.forward(input, { cache, imageLogitsAt: Array.from({ length: b }, (_, r) => r) });
      return out.imageLogits!;
    });
  }

  /** Frees every weight (and the RoPE tables). */
  dispose(): void {
    this.params.dispose();
    this.llm.rotary.dispose();
  }
}

function identity(n: number): Int32Array {
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  return a;
}
