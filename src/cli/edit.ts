/**
 * `janus4o edit --checkpoint DIR --image IMG --prompt TEXT`: the Janus-4o edit (text + image -> image) with
 * the 3-branch CFG of janus-spec 8.4: rows [full: E + X, part: E + pad X, uncond], weights --cfg (w1) and
 * --cfg2 (w2), by default the model folder's cfg_weight, cfg_weight2 and edit_temperature. Writes the plain layout
 * of `generate` (sidecar JSON per image, grid).
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import type { Argv, CommandModule } from 'yargs';
import { SampleRecord, writePromptSamples } from '../generate/export';
import { loadImagePixels } from '../generate/runtime';
import { checkPositionBudget, generateEdits } from '../generate/sampler';
import { imageTokenCount } from '../model/config';
import { ImageInputError, decodeImage } from '../tokenizer/image';
import { UserError } from '../errors';
import { GenerateSummary, SamplingArgs, asUserError, samplingFlags, samplingNote, samplingOptions, startRuntime, tokenProgress } from './generate';

export interface EditArgs extends SamplingArgs {
  image: string;
  prompt: string;
  /** Unset: the model folder's cfg_weight2 (generation_config.json). */
  cfg2?: number;
  out: string;
  grid: boolean;
}

/** Reads an image file as [1, S, S, 3] in [-1, 1]; injectable so other preprocessing can be swapped in. */
export type ImageLoader = (file: string, size: number) => Promise<tf.Tensor4D>;

export async function runEdit(a: EditArgs, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`), loadImage: ImageLoader = (f, size) => loadImagePixels(f, size, '--image')): Promise<GenerateSummary> {
  samplingOptions(a, 'edit', a.cfg2);
  if (!a.prompt || !a.prompt.trim()) throw new UserError('--prompt (the edit instruction) is empty');
  const imageFile = path.resolve(a.image);
  const st = await fs.stat(imageFile).catch(() => null);
  if (!st || !st.isFile()) throw new UserError(`--image ${imageFile} does not exist or is not a file`);
  // Undecodable input is reported before the model is loaded.
  await decodeImage(imageFile).catch((e: unknown) => {
    throw e instanceof ImageInputError ? new UserError(`--image ${e.message}`) : e;
  });
  const { runtime, backend } = await startRuntime(a, log);
  const started = performance.now();
  const bar = tokenProgress(a.progress, 'edit');
  let features: tf.Tensor2D | null = null;
  let images = 0;
  let tokens = 0;
  try {
    const opts = samplingOptions(a, 'edit', a.cfg2, { generation: runtime.generation });
    log(samplingNote(opts));
    const cfg = runtime.model.config;
    try {
      const prefix = runtime.templates.editPrefix(a.prompt, imageTokenCount(cfg));
      checkPositionBudget(cfg, prefix.positions ?? prefix.ids.length, 'the edit instruction with its two image blocks');
    } catch (e) {
      throw asUserError(e);
    }
    const pixels = await loadImage(imageFile, cfg.imageSize);
    let ids: number[];
    try {
      ({ ids, features } = runtime.encodeSource(pixels));
    } finally {
      pixels.dispose();
    }
    const res = await generateEdits(runtime.model, runtime.templates, [{ instruction: a.prompt, sourceIds: ids, sourceFeatures: features, count: a.n }], {
      ...opts,
      onProgress: (p) => bar.update(p, a.prompt.slice(0, 30)),
    }).catch((e: unknown) => {
      throw asUserError(e);
    });
    const pngs = await runtime.decode(res.ids[0]);
    const seconds = (performance.now() - started) / 1000;
    const records = pngs.map((_, s): SampleRecord => ({
      prompt: a.prompt,
      image: imageFile,
      seed: a.seed,
      prompt_index: 0,
      sample_index: s,
      cfg: opts.cfg,
      cfg2: opts.cfg2,
      temperature: opts.temperature,
      ...(opts.topK ? { top_k: opts.topK } : {}),
      ...(opts.topP ? { top_p: opts.topP } : {}),
      checkpoint: runtime.source,
      backend,
      seconds: Number(seconds.toFixed(3)),
    }));
    await fs.mkdir(a.out, { recursive: true });
    await writePromptSamples(a.out, 0, pngs, records, a.grid);
    images = pngs.length;
    tokens = images * imageTokenCount(cfg);
  } finally {
    bar.stop();
    features?.dispose();
    runtime.dispose();
  }
  const seconds = (performance.now() - started) / 1000;
  return { out: path.resolve(a.out), prompts: 1, images, seconds, image_tokens_per_s: seconds > 0 ? tokens / seconds : 0, backend, checkpoint: runtime.source };
}

export const editCommand: CommandModule<object, EditArgs> = {
  command: 'edit',
  describe: 'Edit an image by instruction (Janus-4o text+image-to-image) with 3-branch classifier-free guidance',
  builder: (y) =>
    samplingFlags(y)
      .option('image', { type: 'string', demandOption: true, describe: 'source image (PNG, JPEG, WebP, ...)' })
      .option('prompt', { type: 'string', demandOption: true, describe: 'edit instruction' })
      .option('cfg2', { type: 'number', describe: "w2: weight of the image-dropped condition inside the condition; default: the model folder's generation_config.json cfg_weight2, else 5" })
      .option('out', { type: 'string', demandOption: true, describe: 'output directory' })
      .option('grid', { type: 'boolean', default: true, describe: 'also write grid.png' }) as unknown as Argv<EditArgs>,
  handler: async (a) => {
    const summary = await runEdit(a);
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  },
};
