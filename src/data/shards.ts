/**
 * VQ-code shards (`janus4o prepare`): every image of a dataset is preprocessed and VQ-encoded once, and the
 * ids are stored compactly (uint16 when the codebook fits) with the prompt, task, input-image path and record
 * provenance. Shards are written whole and renamed into place, so a crashed prepare resumes by skipping the
 * shards that exist, and produces the same bytes as an uninterrupted run. index.json is written last.
 *
 * Layout of a shard pair: `shard-NNNNN.bin` holds, per record, the target ids then (edits) the source ids;
 * `shard-NNNNN.jsonl` holds one JSON line per record ({task, prompt, output_image, input_image?, file, index}).
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { DatasetRecord } from './sharegpt4o';
import { TokenSample } from './batch';

export const SHARD_FORMAT = 'janus4o-shards';
export const INDEX_FILE = 'index.json';

/** Turns images into VQ ids: [B, S, S, 3] in [-1, 1] -> int32 [B, tokens]. */
export interface ImageEncoder {
  imageSize: number;
  tokens: number;
  codebookSize: number;
  /** Changes whenever the encoder's weights change, so stale shards are never reused. */
  fingerprint: string;
  encode(images: tf.Tensor4D): tf.Tensor2D;
}

/** Loads one image file as [1, S, S, 3] in [-1, 1] (the Janus pad-to-square preprocessing). */
export type ImageLoader = (file: string, size: number) => Promise<tf.Tensor4D>;

export interface PrepareOptions {
  records: readonly DatasetRecord[];
  /** Dataset root: stored paths are relative to it. */
  root: string;
  outDir: string;
  encoder: ImageEncoder;
  loadImage: ImageLoader;
  shardSize?: number;
  /** Images encoded per VQ forward. */
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
  /** Called after each shard is committed (tests use it to crash at a chosen point). */
  onShard?: (shard: number) => void;
}

interface ShardRecordMeta {
  task: 't2i' | 'edit';
  prompt: string;
  output_image: string;
  input_image?: string;
  file: string;
  index: number;
}

export interface ShardIndex {
  format: typeof SHARD_FORMAT;
  version: 1;
  tokens: number;
  codebookSize: number;
  imageSize: number;
  dtype: 'uint16' | 'int32';
  encoder: string;
  shardSize: number;
  total: number;
  shards: { name: string; records: number; sha256: string }[];
}

function shardName(i: number): string {
  return `shard-${String(i).padStart(5, '0')}`;
}

function relative(root: string, file: string): string {
  return path.relative(root, file).split(path.sep).join('/');
}

async function encodeFiles(files: string[], o: PrepareOptions): Promise<Int32Array[]> {
  const out: Int32Array[] = [];
  const bs = o.batchSize ?? 16;
  for (let i = 0; i < files.length; i += bs) {
    const imgs = await Promise.all(files.slice(i, i + bs).map((f) => o.loadImage(f, o.encoder.imageSize)));
    const ids = tf.tidy(() => o.encoder.encode(tf.concat(imgs, 0) as tf.Tensor4D));
    tf.dispose(imgs);
    const flat = (await ids.data()) as Int32Array;
    ids.dispose();
    for (let r = 0; r < flat.length / o.encoder.tokens; r++) out.push(flat.slice(r * o.encoder.tokens, (r + 1) * o.encoder.tokens));
  }
  return out;
}

function writeAtomic(file: string, data: Buffer | string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    if (typeof data === 'string') fs.writeSync(fd, data);
    else fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

function sha256(data: Buffer | string): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** Encodes and writes every shard that is not on disk yet; returns the index. */
export async function prepareShards(o: PrepareOptions): Promise<ShardIndex> {
  const shardSize = o.shardSize ?? 512;
  const enc = o.encoder;
  const dtype = enc.codebookSize <= 65536 ? 'uint16' : 'int32';
  fs.mkdirSync(o.outDir, { recursive: true });
  for (const f of fs.readdirSync(o.outDir)) if (f.includes('.tmp-')) fs.rmSync(path.join(o.outDir, f), { force: true });
  const stampFile = path.join(o.outDir, 'encoder.txt');
  if (fs.existsSync(stampFile) && fs.readFileSync(stampFile, 'utf8') !== enc.fingerprint) {
    throw new Error(`${o.outDir} holds shards of another VQ encoder (${stampFile} differs); remove the folder or choose another output`);
  }
  writeAtomic(stampFile, enc.fingerprint);
  const shards: ShardIndex['shards'] = [];
  const total = o.records.length;
  for (let s = 0, start = 0; start < total; s++, start += shardSize) {
    const recs = o.records.slice(start, start + shardSize);
    const name = shardName(s);
    const bin = path.join(o.outDir, `${name}.bin`);
    const meta = path.join(o.outDir, `${name}.jsonl`);
    if (!(fs.existsSync(bin) && fs.existsSync(meta))) {
      const targets = await encodeFiles(recs.map((r) => r.outputImage), o);
      const editRecs = recs.filter((r): r is Extract<DatasetRecord, { task: 'edit' }> => r.task === 'edit');
      const sources = await encodeFiles(editRecs.map((r) => r.inputImages[0]), o);
      const parts: Int32Array[] = [];
      let e = 0;
      recs.forEach((r, i) => {
        parts.push(targets[i]);
        if (r.task === 'edit') parts.push(sources[e++]);
      });
      const n = parts.reduce((a, p) => a + p.length, 0);
      const ids = dtype === 'uint16' ? new Uint16Array(n) : new Int32Array(n);
      let off = 0;
      for (const p of parts) {
        ids.set(p, off);
        off += p.length;
      }
      const lines = recs.map((r) => {
        const m: ShardRecordMeta = { task: r.task, prompt: r.prompt, output_image: relative(o.root, r.outputImage), file: relative(o.root, r.file), index: r.index };
        if (r.task === 'edit') m.input_image = relative(o.root, r.inputImages[0]);
        return JSON.stringify(m);
      });
      // The .bin first, the .jsonl last: a shard counts as done only when both exist.
      writeAtomic(bin, Buffer.from(ids.buffer, ids.byteOffset, ids.byteLength));
      writeAtomic(meta, `${lines.join('\n')}\n`);
      o.onShard?.(s);
    }
    shards.push({ name, records: recs.length, sha256: sha256(Buffer.concat([fs.readFileSync(bin), fs.readFileSync(meta)])) });
    o.onProgress?.(Math.min(start + shardSize, total), total);
  }
  const index: ShardIndex = { format: SHARD_FORMAT, version: 1, tokens: enc.tokens, codebookSize: enc.codebookSize, imageSize: enc.imageSize, dtype, encoder: enc.fingerprint, shardSize, total, shards };
  writeAtomic(path.join(o.outDir, INDEX_FILE), `${JSON.stringify(index, null, 1)}\n`);
  return index;
}

/** A prepared dataset in memory: ids for every record plus paths of the edit sources (for SigLIP). */
export class ShardDataset {
  private constructor(
    readonly dir: string,
    readonly root: string,
    readonly index: ShardIndex,
    private readonly metas: ShardRecordMeta[],
    private readonly targets: Int32Array[],
    private readonly sources: (Int32Array | null)[],
  ) {}

  static load(dir: string, root: string): ShardDataset {
    const indexFile = path.join(dir, INDEX_FILE);
    if (!fs.existsSync(indexFile)) throw new Error(`${indexFile} is missing: run \`janus4o prepare\` (or let train prepare the data) first`);
    const index = JSON.parse(fs.readFileSync(indexFile, 'utf8')) as ShardIndex;
    if (index.format !== SHARD_FORMAT || index.version !== 1) throw new Error(`${indexFile}: not a janus4o shard index (format ${String(index.format)})`);
    const metas: ShardRecordMeta[] = [];
    const targets: Int32Array[] = [];
    const sources: (Int32Array | null)[] = [];
    const n = index.tokens;
    for (const sh of index.shards) {
      const bin = fs.readFileSync(path.join(dir, `${sh.name}.bin`));
      const text = fs.readFileSync(path.join(dir, `${sh.name}.jsonl`), 'utf8');
      if (sha256(Buffer.concat([bin, Buffer.from(text)])) !== sh.sha256) throw new Error(`${path.join(dir, sh.name)}: checksum mismatch with ${indexFile} (corrupt or partial shard)`);
      const ids = index.dtype === 'uint16' ? new Uint16Array(bin.buffer, bin.byteOffset, bin.byteLength / 2) : new Int32Array(bin.buffer, bin.byteOffset, bin.byteLength / 4);
      let off = 0;
      const lines = text.split('\n').filter((l) => l.length > 0);
      if (lines.length !== sh.records) throw new Error(`${sh.name}.jsonl has ${lines.length} records, index says ${sh.records}`);
      for (const line of lines) {
        const m = JSON.parse(line) as ShardRecordMeta;
        metas.push(m);
        targets.push(Int32Array.from(ids.subarray(off, off + n)));
        off += n;
        if (m.task === 'edit') {
          sources.push(Int32Array.from(ids.subarray(off, off + n)));
          off += n;
        } else sources.push(null);
      }
      if (off !== ids.length) throw new Error(`${sh.name}.bin holds ${ids.length} ids, its records need ${off}`);
    }
    return new ShardDataset(dir, root, index, metas, targets, sources);
  }

  get size(): number {
    return this.metas.length;
  }

  meta(i: number): Readonly<ShardRecordMeta> {
    return this.metas[i];
  }

  sample(i: number): TokenSample {
    const m = this.metas[i];
    return m.task === 'edit' ? { task: 'edit', prompt: m.prompt, target: this.targets[i], source: this.sources[i]! } : { task: 't2i', prompt: m.prompt, target: this.targets[i] };
  }

  /** Absolute path of an edit record's input image. */
  sourcePath(i: number): string {
    const rel = this.metas[i].input_image;
    if (!rel) throw new Error(`record ${i} (${this.metas[i].file}#${this.metas[i].index}) is not an edit`);
    return path.join(this.root, rel);
  }
}
