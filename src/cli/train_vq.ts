/** `janus4o train-vq`: train the image tokenizer of a small config on ShapeWorld (see src/train/vq_train.ts). */
import * as path from 'path';
import type { CommandModule } from 'yargs';
import { readHfConfig } from '../io/hf_config';
import { SingleBar, Presets } from 'cli-progress';
import { initBackend, BackendName } from '../backend';
import { isPresetName, presetConfig } from '../model/config';
import { PRESET_NAMES } from '../train/config';
import { SaveDtype } from '../io/safetensors';
import { trainVQ } from '../shapeworld/vq_train';
import { UserError } from '../errors';

interface TrainVQArgs {
  data: string;
  out: string;
  preset: string;
  'image-size'?: number;
  codebook?: number;
  'base-channels': number;
  'ch-mult': string;
  'z-channels': number;
  'norm-groups': number;
  'attn-blocks': number;
  steps: number;
  batch: number;
  lr: number;
  crop: number;
  images: number;
  heldout: number;
  'revive-every': number;
  'eval-every': number;
  recon: string;
  'ae-steps': number;
  'object-weight': number;
  codes: string;
  init?: string;
  seed: number;
  dtype: string;
  backend: string;
  progress: boolean;
}

function intList(text: string, flag: string): number[] {
  const v = text.split(',').map((s) => Number(s.trim()));
  if (v.length === 0 || v.some((n) => !Number.isInteger(n) || n < 1)) throw new UserError(`--${flag} must be a comma-separated list of positive integers, got "${text}"`);
  return v;
}

function positive(v: number, flag: string, integer = true): number {
  if (!(v > 0) || (integer && !Number.isInteger(v))) throw new UserError(`--${flag} must be a positive ${integer ? 'integer' : 'number'}, got ${v}`);
  return v;
}

export const trainVQCommand: CommandModule<object, TrainVQArgs> = {
  command: 'train-vq',
  describe: 'Train the VQ image tokenizer of a small config on a ShapeWorld dataset (writes a gen_vision_model-only model folder)',
  builder: (y) =>
    y
      .option('data', { type: 'string', demandOption: true, describe: 'ShapeWorld dataset folder (janus4o synth)' })
      .option('out', { type: 'string', demandOption: true, describe: 'output folder (config.json, model.safetensors, vq_train.json)' })
      .option('preset', { type: 'string', default: 'tiny', describe: 'model preset the tokenizer belongs to' })
      .option('image-size', { type: 'number', describe: 'image side in pixels (default: the preset\'s)' })
      .option('codebook', { type: 'number', describe: 'codebook size (image-token vocabulary of the language model); default 256, or with --init that tokenizer\'s (another size there keeps everything but the codebook)' })
      .option('base-channels', { type: 'number', default: 16, describe: 'channels of the first encoder level' })
      .option('ch-mult', { type: 'string', default: '1,1,2,2', describe: 'channel multipliers per level; levels - 1 = downsamplings' })
      .option('z-channels', { type: 'number', default: 32, describe: 'latent channels before quant_conv' })
      .option('norm-groups', { type: 'number', default: 8, describe: 'GroupNorm groups' })
      .option('attn-blocks', { type: 'number', default: 1, describe: 'attention blocks at the lowest resolution' })
      .option('steps', { type: 'number', default: 1200, describe: 'optimizer steps' })
      .option('batch', { type: 'number', default: 16, describe: 'crops per step' })
      .option('lr', { type: 'number', default: 2e-3, describe: 'peak learning rate (5% warmup, cosine to a tenth)' })
      .option('crop', { type: 'number', default: 32, describe: 'training crop side in pixels (0: whole images)' })
      .option('images', { type: 'number', default: 2000, describe: 'training images read from the dataset' })
      .option('heldout', { type: 'number', default: 128, describe: 'held-out images (the last of scenes.jsonl) for the before/after figures' })
      .option('revive-every', { type: 'number', default: 100, describe: 'restart codes unused over the last N steps (first half of the run; 0: never)' })
      .option('eval-every', { type: 'number', default: 0, describe: 'log held-out figures every N steps (0: only at the end)' })
      .option('ae-steps', { type: 'number', default: 300, describe: 'plain autoencoder steps before a k-means codebook (0: straight to VQ)' })
      .option('codes', { type: 'string', default: 'learned', choices: ['learned', 'patches'], describe: 'learned: codes found by the quantiser; patches: one code per distinct token-sized patch of the data (ShapeWorld)' })
      .option('init', { type: 'string', describe: 'continue from this tokenizer folder (its config.json wins over the size flags)' })
      .option('object-weight', { type: 'number', default: 10, describe: 'reconstruction weight of object pixels (those unlike the corner colour); 1 = plain mean' })
      .option('recon', { type: 'string', default: 'l2', choices: ['l1', 'l2'], describe: 'reconstruction loss' })
      .option('seed', { type: 'number', default: 1, describe: 'init, order and crop seed' })
      .option('dtype', { type: 'string', default: 'F32', choices: ['F32', 'BF16', 'F16'], describe: 'stored weight dtype' })
      .option('backend', { type: 'string', default: 'wasm', choices: ['auto', 'tensorflow', 'wasm', 'cpu'], describe: 'tfjs backend' })
      .option('progress', { type: 'boolean', default: true, describe: 'show a progress bar' }) as unknown as import('yargs').Argv<TrainVQArgs>,
  handler: async (a) => {
    const log = (l: string) => process.stderr.write(`${l}\n`);
    await initBackend(a.backend as BackendName, log);
    const chMult = intList(a['ch-mult'], 'ch-mult');
    if (!isPresetName(a.preset)) throw new UserError(`--preset ${a.preset}: expected one of ${PRESET_NAMES.join(', ')}`);
    const initConfig = a.init ? readHfConfig(path.join(a.init, 'config.json')) : null;
    const config = initConfig ? (a.codebook === undefined ? initConfig : { ...initConfig, vq: { ...initConfig.vq, codebookSize: positive(a.codebook, 'codebook') } }) : presetConfig(a.preset, {
      ...(a['image-size'] !== undefined ? { imageSize: positive(a['image-size'], 'image-size') } : {}),
      vq: {
        codebookSize: positive(a.codebook ?? 256, 'codebook'),
        baseChannels: positive(a['base-channels'], 'base-channels'),
        chMult,
        zChannels: positive(a['z-channels'], 'z-channels'),
        normGroups: positive(a['norm-groups'], 'norm-groups'),
        numAttnBlocks: a['attn-blocks'],
      },
    });
    const bar = new SingleBar({ format: 'train-vq [{bar}] {value}/{total} steps | loss {loss} | {eta}s left', stream: process.stderr }, Presets.shades_classic);
    let barOn = false;
    try {
      const r = await trainVQ({
        data: a.data, out: a.out, config, steps: positive(a.steps, 'steps'), batch: positive(a.batch, 'batch'), lr: positive(a.lr, 'lr', false),
        crop: a.crop, images: positive(a.images, 'images'), heldout: positive(a.heldout, 'heldout'), reviveEvery: a['revive-every'], evalEvery: a['eval-every'], recon: a.recon as 'l1' | 'l2', aeSteps: a['ae-steps'], codes: a.codes as 'learned' | 'patches', init: a.init, objectWeight: positive(a['object-weight'], 'object-weight', false), seed: a.seed,
        dtype: a.dtype as SaveDtype, log: (l) => { if (barOn) bar.stop(); barOn = false; log(l); },
        onStep: (s, loss) => {
          if (!a.progress) return;
          if (!barOn && s === 1) {
            bar.start(a.steps, 0, { loss: '-' });
            barOn = true;
          }
          if (barOn) bar.update(s, { loss: loss.toFixed(4) });
        },
      });
      bar.stop();
      process.stdout.write(`${JSON.stringify({ out: a.out, steps: r.steps, seconds: Math.round(r.seconds), before: r.before, after: r.after })}\n`);
    } finally {
      bar.stop();
    }
  },
};
