/** `janus4o synth`: write a ShapeWorld dataset in the ShareGPT-4o-Image layout (see src/shapeworld/synth.ts). */
import type { CommandModule } from 'yargs';
import { SingleBar, Presets } from 'cli-progress';
import { SYNTH_CAPTIONS, SynthCaptions, synthesize } from '../shapeworld/synth';

export interface SynthArgs {
  t2i: number;
  edit: number;
  size: number;
  seed: string;
  out: string;
  'caption-noise': number;
  'max-objects': number;
  captions: SynthCaptions;
  force: boolean;
  progress: boolean;
}

export const synthCommand: CommandModule<object, SynthArgs> = {
  command: 'synth',
  describe: 'Write a synthetic ShapeWorld dataset (T2I and edit records, images, exact scenes) in the ShareGPT-4o-Image layout',
  builder: (y) =>
    y
      .option('t2i', { type: 'number', default: 2000, describe: 'text-to-image records' })
      .option('edit', { type: 'number', default: 2000, describe: 'edit (text+image-to-image) records' })
      .option('size', { type: 'number', default: 64, describe: 'image side in pixels (64 tiny, 384 Janus)' })
      .option('seed', { type: 'string', default: '1', describe: 'dataset seed; equal options give byte-identical output' })
      .option('out', { type: 'string', demandOption: true, describe: 'output directory' })
      .option('caption-noise', { type: 'number', default: 0, describe: 'probability each stated caption attribute is dropped or wrong' })
      .option('max-objects', { type: 'number', default: 4, describe: 'most objects in a T2I image (1-4); 1 writes a single-object curriculum set' })
      .option('captions', { choices: SYNTH_CAPTIONS, default: 'rich' as SynthCaptions, describe: 'T2I captions: rich (varied, 1-4 objects) or class (one object, "a {colour} {shape} on a {background} background")' })
      .option('force', { type: 'boolean', default: false, describe: 'replace an existing ShapeWorld dataset at --out' })
      .option('progress', { type: 'boolean', default: true, describe: 'show a progress bar (on a terminal)' }),
  handler: async (a) => {
    const started = Date.now();
    const bar = new SingleBar({ format: 'synth [{bar}] {value}/{total} images | {eta}s left', stream: process.stderr, noTTYOutput: false }, Presets.shades_classic);
    let barStarted = false;
    try {
      const result = await synthesize({
        out: a.out,
        t2i: a.t2i,
        edit: a.edit,
        size: a.size,
        seed: a.seed,
        captionNoise: a['caption-noise'],
        maxObjects: a['max-objects'],
        captions: a.captions,
        force: a.force,
        onProgress: (done, total) => {
          if (!a.progress) return;
          if (!barStarted) {
            bar.start(total, 0);
            barStarted = true;
          }
          bar.update(done);
        },
      });
      bar.stop();
      barStarted = false;
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      process.stdout.write(
        `wrote ${result.t2i} T2I + ${result.edit} edit records, ${result.images} images (${(result.bytes / 1e6).toFixed(2)} MB) to ${result.out} in ${secs}s\n`,
      );
    } finally {
      if (barStarted) bar.stop();
    }
  },
};
