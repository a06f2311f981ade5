/**
 * `janus4o export`: a training checkpoint -> a model folder (config.json in the Janus HF layout,
 * model.safetensors under the original Janus names, every side file of the checkpoint (tokenizer and processor
 * files, byte for byte), generation_config.json, the training config for provenance), the form `model.pretrained`,
 * `generate` and the PyTorch Janus code read. BF16 halves the size.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Argv, CommandModule } from 'yargs';
import { initBackend } from '../backend';
import { GENERATION_CONFIG_FILE } from '../io/checkpoint';
import { SIDE_FILES, loadModelFolder, readGenerationConfig, sideFilesOf } from '../io/model_folder';
import { SaveDtype } from '../io/safetensors';
import { UserError } from '../errors';

interface ExportArgs {
  checkpoint: string;
  out: string;
  dtype: string;
}

const DTYPES: Record<string, SaveDtype> = { f32: 'F32', bf16: 'BF16', f16: 'F16' };

/**
 * Writes the model folder; returns the names of the files written. The side files are the checkpoint's own
 * (design.md, "Model folders are complete"): a side file the checkpoint lacks is removed from `out`, so an export
 * over an earlier one never leaves another model's tokenizer settings behind. A checkpoint without a
 * generation_config.json (written before checkpoints carried one) gets the reference settings.
 */
export async function exportCheckpoint(checkpoint: string, out: string, dtype: SaveDtype): Promise<string[]> {
  const { model, dir } = await loadModelFolder(checkpoint);
  try {
    if (path.resolve(out) === path.resolve(dir)) throw new UserError(`--out ${out} is the checkpoint itself; choose another folder.`);
    // Checked before anything is written: a bad file would make the exported folder unusable for generate.
    const generation = readGenerationConfig(dir);
    const files = model.save(out, { dtype });
    const sides = sideFilesOf(dir);
    for (const name of SIDE_FILES) if (!sides.some((f) => path.basename(f) === name)) fs.rmSync(path.join(out, name), { force: true });
    for (const f of sides) {
      fs.copyFileSync(f, path.join(out, path.basename(f)));
      files.push(path.basename(f));
    }
    if (!files.includes(GENERATION_CONFIG_FILE)) {
      fs.writeFileSync(path.join(out, GENERATION_CONFIG_FILE), `${JSON.stringify(generation, null, 2)}\n`);
      files.push(GENERATION_CONFIG_FILE);
    }
    const trainConfig = path.join(dir, 'train_config.json');
    if (fs.existsSync(trainConfig)) {
      fs.copyFileSync(trainConfig, path.join(out, 'train_config.json'));
      files.push('train_config.json');
    }
    return files;
  } finally {
    model.dispose();
  }
}

export const exportCommand: CommandModule<object, ExportArgs> = {
  command: 'export',
  describe: 'Write a training checkpoint as a model folder (config.json, safetensors, tokenizer and processor files, generation_config.json) for model.pretrained, generate and PyTorch Janus',
  builder: (y) =>
    y
      .option('checkpoint', { type: 'string', demandOption: true, describe: 'checkpoint folder, or a run folder (its latest checkpoint)' })
      .option('out', { type: 'string', demandOption: true, describe: 'output model folder' })
      .option('dtype', { type: 'string', default: 'f32', choices: Object.keys(DTYPES), describe: 'stored dtype (bf16/f16 halve the size)' }) as unknown as Argv<ExportArgs>,
  handler: async (a) => {
    await initBackend('cpu', () => undefined);
    const files = await exportCheckpoint(a.checkpoint, a.out, DTYPES[a.dtype]);
    process.stdout.write(`wrote ${files.join(', ')} to ${path.resolve(a.out)}\n`);
  },
};
