/**
 * `prepare` throughput: images per second from PNG files on disk to VQ-code shards (decode + pad-to-square +
 * tiny-VQ encode + shard write), the path `janus4o train` takes on first use of a dataset. The ShapeWorld
 * synthesis that makes the input files is not timed.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { imageTokenCount, presetConfig } from '../model/config';
import { readShareGPT4o } from '../data/sharegpt4o';
import { prepareShards } from '../data/shards';
import { synthesize } from '../shapeworld/synth';
import { loadImage } from '../tokenizer/image';
import { randomVq } from './vq';

export interface PrepareResult {
  images: number;
  imageSize: number;
  batchSize: number;
  seconds: number;
  imagesPerSecond: number;
}

export async function benchPrepare(opts: { images: number; batchSize: number }): Promise<PrepareResult> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-bench-prepare-'));
  const cfg = presetConfig('tiny');
  const { vq, store } = randomVq(cfg);
  try {
    const root = path.join(tmp, 'data');
    await synthesize({ out: root, t2i: opts.images, edit: 0, size: cfg.imageSize, seed: 'bench' });
    const { records } = await readShareGPT4o({ root });
    const t0 = performance.now();
    await prepareShards({
      records,
      root,
      outDir: path.join(tmp, 'shards'),
      encoder: { imageSize: cfg.imageSize, tokens: imageTokenCount(cfg), codebookSize: cfg.vq.codebookSize, fingerprint: 'bench', encode: (x) => vq.encode(x) },
      loadImage: (file, size) => loadImage(file, { size }),
      batchSize: opts.batchSize,
    });
    const seconds = (performance.now() - t0) / 1000;
    return { images: records.length, imageSize: cfg.imageSize, batchSize: opts.batchSize, seconds, imagesPerSecond: records.length / seconds };
  } finally {
    store.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
