/**
 * `janus4o prepare --data DIR --checkpoint DIR --out DIR`: VQ-encodes a ShareGPT-4o-Image-layout dataset
 * (or a ShapeWorld one) once into shards, resumably, with a progress bar and a JSON report of skipped records.
 * `train` does the same on its own (cached); this command lets a cluster job prepare data ahead of training.
 */
import * as fs from 'fs';
import * as path from 'path';
import { SingleBar } from 'cli-progress';
import type { CommandModule } from 'yargs';
import { initBackend } from '../backend';
import { formatReport, readShareGPT4o } from '../data/sharegpt4o';
import { prepareShards } from '../data/shards';
import { loadRuntime } from '../generate/runtime';
import { imageTokenCount } from '../model/config';
import { loadImage } from '../tokenizer/image';
import { UserError } from '../errors';

interface PrepareArgs {
  data: string;
  checkpoint: string;
  out: string;
  'shard-size': number;
  'max-bad-fraction': number;
  backend: string;
  progress: boolean;
}

export const prepareCommand: CommandModule<object, PrepareArgs> = {
  command: 'prepare',
  describe: 'VQ-encode a dataset into resumable shards (uint16 ids, prompts, provenance) with a skipped-record report',
  builder: (y) =>
    y
      .option('data', { type: 'string', demandOption: true, describe: 'dataset root (text_to_image.json, text_and_image_to_image.json, images)' })
      .option('checkpoint', { type: 'string', demandOption: true, describe: 'model whose VQ tokenizer encodes the images (model folder or checkpoint)' })
      .option('out', { type: 'string', demandOption: true, describe: 'shard folder (a re-run skips finished shards)' })
      .option('shard-size', { type: 'number', default: 512, describe: 'records per shard' })
      .option('max-bad-fraction', { type: 'number', default: 0.01, describe: 'abort when more records than this are broken' })
      .option('backend', { type: 'string', default: 'auto', choices: ['auto', 'tensorflow', 'wasm', 'cpu'] })
      .option('progress', { type: 'boolean', default: true }),
  handler: async (a) => {
    const root = path.resolve(a.data);
    if (!fs.existsSync(root)) throw new UserError(`--data ${root} does not exist.`);
    await initBackend(a.backend as 'auto', (l) => process.stderr.write(`${l}\n`));
    const rt = await loadRuntime(a.checkpoint);
    const cfg = rt.model.config;
    const { records, report } = await readShareGPT4o({ root, maxBadFraction: a['max-bad-fraction'] });
    fs.mkdirSync(a.out, { recursive: true });
    const reportFile = path.join(a.out, 'report.json');
    fs.writeFileSync(reportFile, `${JSON.stringify(report, null, 1)}\n`);
    if (report.bad.length) process.stderr.write(`${formatReport(report)}\n`);
    const bar = a.progress && process.stderr.isTTY ? new SingleBar({ format: 'prepare |{bar}| {value}/{total} records | ETA {eta_formatted}', stream: process.stderr }) : null;
    bar?.start(records.length, 0);
    const fingerprint = await rt.model.weightsFingerprint('gen_vision_model.');
    const index = await prepareShards({
      records,
      root,
      outDir: a.out,
      encoder: { imageSize: cfg.imageSize, tokens: imageTokenCount(cfg), codebookSize: cfg.vq.codebookSize, fingerprint, encode: (x) => rt.model.vq.encode(x) },
      loadImage: (file, size) => loadImage(file, { size }),
      shardSize: a['shard-size'],
      onProgress: (done) => bar?.update(done),
    });
    bar?.stop();
    process.stdout.write(`${JSON.stringify({ out: path.resolve(a.out), records: index.total, shards: index.shards.length, skipped: report.bad.length, report: reportFile })}\n`);
  },
};
