/**
 * `janus4o convert <in> <out>`: rewrites a model folder's weights (PyTorch .bin, single or sharded, or
 * safetensors) as safetensors with the same tensor names, copying config.json and the tokenizer files, so the
 * official .bin releases load without the pickle reader afterwards. Tensors stream one at a time.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { CommandModule } from 'yargs';
import { SaveDtype, writeShardedSafetensors } from '../io/safetensors';
import { copyTokenizerFiles, openWeights } from '../io/pretrained';
import { UserError } from '../errors';

interface ConvertArgs {
  in: string;
  out: string;
  dtype: string;
  'max-shard-gb': number;
}

const DTYPES: Record<string, SaveDtype> = { f32: 'F32', bf16: 'BF16', f16: 'F16' };

export interface ConvertResult {
  tensors: number;
  files: string[];
}

/** The conversion itself (the command's handler is a thin wrapper), usable from code and tests. */
export function convertCheckpoint(input: string, output: string, opts: { dtype?: SaveDtype; maxShardBytes?: number } = {}): ConvertResult {
  if (!fs.existsSync(input)) throw new UserError(`convert: ${input} does not exist`);
  if (path.resolve(input) === path.resolve(output)) throw new UserError('convert: <in> and <out> must be different folders');
  const inDir = fs.statSync(input).isDirectory() ? input : path.dirname(input);
  const src = openWeights(input);
  try {
    const names = src.names();
    const files = writeShardedSafetensors(
      output,
      names.map((name) => ({ name, shape: src.info(name).shape, values: () => src.read(name) })),
      { dtype: opts.dtype ?? 'F32', maxShardBytes: opts.maxShardBytes, metadata: { converted_by: 'janus4o-tf' } },
    );
    const cfg = path.join(inDir, 'config.json');
    if (fs.existsSync(cfg)) {
      fs.copyFileSync(cfg, path.join(output, 'config.json'));
      files.push('config.json');
    }
    files.push(...copyTokenizerFiles(inDir, output));
    return { tensors: names.length, files };
  } finally {
    src.close();
  }
}

export const convertCommand: CommandModule<object, ConvertArgs> = {
  command: 'convert <in> <out>',
  describe: 'Convert a model folder (or one weights file) from PyTorch .bin to safetensors, keeping tensor names',
  builder: (y) =>
    y
      .positional('in', { type: 'string', demandOption: true, describe: 'model folder (pytorch_model.bin[.index.json] or model.safetensors[.index.json]) or a weights file' })
      .positional('out', { type: 'string', demandOption: true, describe: 'output folder' })
      .option('dtype', { type: 'string', default: 'f32', choices: Object.keys(DTYPES), describe: 'stored dtype (bf16/f16 halve the size)' })
      .option('max-shard-gb', { type: 'number', default: 5, describe: 'largest output shard in GB (HF convention)' }),
  handler: (a) => {
    if (!(a['max-shard-gb'] > 0)) throw new UserError('convert: --max-shard-gb must be positive');
    const r = convertCheckpoint(a.in, a.out, { dtype: DTYPES[a.dtype], maxShardBytes: a['max-shard-gb'] * 1e9 });
    process.stdout.write(`converted ${r.tensors} tensors into ${a.out}: ${r.files.join(', ')}\n`);
  },
};
