/**
 * Model folders: open a downloaded Janus / Janus-Pro / Janus-4o folder (config.json + safetensors or PyTorch .bin,
 * single or sharded, original or transformers-native names) and load it into a ParamStore; save a store back as
 * config.json + safetensors under the original Janus names (loadable by the PyTorch Janus code after a plain
 * safetensors load) + the tokenizer files.
 *
 * Everything streams one tensor at a time: loading reads a tensor, converts it to the tfjs layout and hands it to
 * the store; saving pulls one variable at a time off the backend.
 */
import * as fs from 'fs';
import * as path from 'path';
import { JanusConfig } from '../model/config';
import { ParamSpec, ParamStore, checkpointShape } from '../model/params';
import { TensorInfo, TensorSource } from './dtypes';
import { readHfConfig, writeHfConfig } from './hf_config';
import { CheckOptions, checkAgainst, janusView } from './names';
import { SafetensorsFile, SaveDtype, TensorToWrite, writeShardedSafetensors } from './safetensors';
import { TorchCheckpoint } from './torch';

export type WeightFormat = 'safetensors' | 'bin';

/** Files copied next to saved weights so the folder is a complete model. */
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'preprocessor_config.json', 'processor_config.json'];

export interface OpenOptions {
  /** Which weights to read when a folder holds several formats (default: safetensors, then .bin). */
  format?: WeightFormat;
}

export interface LoadOptions extends OpenOptions, CheckOptions {}

/** A folder's config and its weights, opened lazily under Janus names. Close `tensors` when done. */
export interface Pretrained {
  dir: string;
  config: JanusConfig;
  tensors: TensorSource;
}

export function defaultDebug(): ((message: string) => void) | undefined {
  return process.env.JANUS4O_DEBUG === '1' ? (m) => process.stderr.write(`janus4o: ${m}\n`) : undefined;
}

/** Several files presented as one source; each name must live in exactly one file. */
function merged(files: TensorSource[], owner: Map<string, TensorSource>): TensorSource {
  const get = (name: string) => {
    const f = owner.get(name);
    if (!f) throw new Error(`checkpoint has no tensor "${name}"`);
    return f;
  };
  return {
    names: () => [...owner.keys()],
    info: (name): TensorInfo => get(name).info(name),
    read: (name) => get(name).read(name),
    close: () => files.forEach((f) => f.close()),
  };
}

/** Shard file names from an HF index, refusing anything that is not a plain file name in the folder. */
function shardsFromIndex(dir: string, index: string): { files: string[]; weightMap: Record<string, string> } {
  const json = JSON.parse(fs.readFileSync(path.join(dir, index), 'utf8')) as { weight_map?: unknown };
  const map = json.weight_map;
  if (!map || typeof map !== 'object') throw new Error(`${index}: no weight_map`);
  const weightMap = map as Record<string, unknown>;
  const files = new Set<string>();
  for (const [name, f] of Object.entries(weightMap)) {
    if (typeof f !== 'string' || f !== path.basename(f) || f === '.' || f === '..' || f.includes('\\')) throw new Error(`${index}: "${name}" points at ${JSON.stringify(f)}, not a file in the folder`);
    files.add(f);
  }
  return { files: [...files].sort(), weightMap: weightMap as Record<string, string> };
}

function openFile(file: string): TensorSource {
  return file.endsWith('.safetensors') ? SafetensorsFile.open(file) : TorchCheckpoint.open(file);
}

/** Opens a single weights file, or a folder's weights, as one source under its stored names. */
export function openWeights(target: string, opts: OpenOptions = {}): TensorSource {
  if (fs.statSync(target).isFile()) return openFile(target);
  const dir = target;
  const has = (f: string) => fs.existsSync(path.join(dir, f));
  const candidates: Record<WeightFormat, [string, string]> = {
    safetensors: ['model.safetensors.index.json', 'model.safetensors'],
    bin: ['pytorch_model.bin.index.json', 'pytorch_model.bin'],
  };
  const order: WeightFormat[] = opts.format ? [opts.format] : ['safetensors', 'bin'];
  for (const fmt of order) {
    const [index, single] = candidates[fmt];
    if (has(index)) {
      const { files, weightMap } = shardsFromIndex(dir, index);
      const opened: TensorSource[] = [];
      try {
        const byFile = new Map<string, TensorSource>();
        for (const f of files) {
          const src = openFile(path.join(dir, f));
          opened.push(src);
          byFile.set(f, src);
        }
        const owner = new Map<string, TensorSource>();
        for (const [name, f] of Object.entries(weightMap)) {
          const src = byFile.get(f)!;
          if (!src.names().includes(name)) throw new Error(`${index} maps "${name}" to ${f}, which does not hold it`);
          owner.set(name, src);
        }
        return merged(opened, owner);
      } catch (e) {
        opened.forEach((o) => o.close());
        throw e;
      }
    }
    if (has(single)) return openFile(path.join(dir, single));
  }
  const wanted = order.flatMap((f) => candidates[f]).join(', ');
  throw new Error(`no weights in ${dir}: expected one of ${wanted}`);
}

/** Reads config.json and opens the weights (under Janus names, whatever naming the files use). */
export function loadPretrained(dir: string, opts: OpenOptions = {}): Pretrained {
  const cfgFile = path.join(dir, 'config.json');
  if (!fs.existsSync(cfgFile)) throw new Error(`${dir} has no config.json (a Janus model folder is expected)`);
  const config = readHfConfig(cfgFile);
  return { dir, config, tensors: janusView(openWeights(dir, opts)) };
}

/** [rows, cols] -> [cols, rows] in tiles, so a 102400 x 4096 embedding-sized matrix does not thrash the cache. */
function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  const T = 64;
  for (let r0 = 0; r0 < rows; r0 += T) {
    const r1 = Math.min(rows, r0 + T);
    for (let c0 = 0; c0 < cols; c0 += T) {
      const c1 = Math.min(cols, c0 + T);
      for (let r = r0; r < r1; r++) {
        const base = r * cols;
        for (let c = c0; c < c1; c++) out[c * rows + r] = data[base + c];
      }
    }
  }
  return out;
}

/** Checkpoint layout (PyTorch Linear [out, in], Conv2d OIHW) -> the store's tfjs layout. */
export function toStoreLayout(spec: ParamSpec, data: Float32Array): Float32Array {
  const s = checkpointShape(spec);
  if (spec.layout === 'linear') return transpose2d(data, s[0], s[1]);
  if (spec.layout === 'conv2d') {
    const [O, I, H, W] = s;
    const out = new Float32Array(data.length);
    for (let o = 0; o < O; o++)
      for (let i = 0; i < I; i++)
        for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) out[((h * W + w) * I + i) * O + o] = data[((o * I + i) * H + h) * W + w];
    return out;
  }
  return data;
}

/** The store's tfjs layout -> checkpoint layout (inverse of toStoreLayout). */
export function toCheckpointLayout(spec: ParamSpec, data: Float32Array): Float32Array {
  const s = checkpointShape(spec);
  if (spec.layout === 'linear') return transpose2d(data, s[1], s[0]);
  if (spec.layout === 'conv2d') {
    const [O, I, H, W] = s;
    const out = new Float32Array(data.length);
    for (let o = 0; o < O; o++)
      for (let i = 0; i < I; i++)
        for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) out[((o * I + i) * H + h) * W + w] = data[((h * W + w) * I + i) * O + o];
    return out;
  }
  return data;
}

export interface LoadReport {
  loaded: string[];
  skipped: string[];
}

/**
 * Loads weights into every parameter the store declares. All mismatches (missing, unexpected, wrong shape) are
 * reported in one error before any value is assigned. `source` is a model folder, a weights file or an opened
 * source (which stays open).
 */
export function loadIntoStore(store: ParamStore, source: string | TensorSource, opts: LoadOptions = {}): LoadReport {
  const src = typeof source === 'string' ? janusView(openWeights(source, opts)) : janusView(source);
  try {
    const { load, skipped } = checkAgainst(store.list(), src, { ...opts, debug: opts.debug ?? defaultDebug() });
    for (const spec of load) store.setValue(spec.name, toStoreLayout(spec, src.read(spec.name)));
    return { loaded: load.map((s) => s.name), skipped };
  } finally {
    if (typeof source === 'string') src.close();
  }
}

export interface SaveOptions {
  /** Stored dtype (default F32; BF16/F16 halve the size, values rounded to nearest even). */
  dtype?: SaveDtype;
  /** Largest shard in bytes (default 5 GB, as HF). */
  maxShardBytes?: number;
  /** A folder whose tokenizer / processor files are copied beside the weights. */
  tokenizerFrom?: string;
  /** Save only the parameters whose names pass (e.g. the VQ tokenizer's); default all. */
  only?: (name: string) => boolean;
}

const OWN_WEIGHT_FILE = /^model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?$/;

/**
 * Saves every materialised parameter under its Janus name in checkpoint layout, plus config.json and the
 * tokenizer files. Weight files of an earlier save into the same folder are removed first, so a stale shard
 * can never be picked up with the new index. Returns the files written.
 */
export function savePretrained(store: ParamStore, config: JanusConfig, dir: string, opts: SaveOptions = {}): string[] {
  const specs = store.list().filter((s) => opts.only?.(s.name) ?? true);
  const tensors: TensorToWrite[] = specs.map((spec) => ({
    name: spec.name,
    shape: checkpointShape(spec),
    values: () => toCheckpointLayout(spec, store.get(spec.name).dataSync() as Float32Array),
  }));
  // Fail before touching the folder if any parameter has no value.
  for (const s of specs) store.get(s.name);
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(dir)) if (OWN_WEIGHT_FILE.test(f)) fs.rmSync(path.join(dir, f));
  const dtype = opts.dtype ?? 'F32';
  const written = writeShardedSafetensors(dir, tensors, { dtype, maxShardBytes: opts.maxShardBytes });
  writeHfConfig(path.join(dir, 'config.json'), config, { torchDtype: TORCH_DTYPE[dtype] });
  written.push('config.json');
  if (opts.tokenizerFrom) written.push(...copyTokenizerFiles(opts.tokenizerFrom, dir));
  return written;
}

export const TORCH_DTYPE: Readonly<Record<SaveDtype, string>> = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' };

/** Copies the tokenizer / processor files that exist in `from` into `to`; returns their names. */
export function copyTokenizerFiles(from: string, to: string): string[] {
  const copied: string[] = [];
  if (path.resolve(from) === path.resolve(to)) return copied;
  for (const f of TOKENIZER_FILES) {
    const src = path.join(from, f);
    if (fs.existsSync(src)) {
      fs.copyFileSync(src, path.join(to, f));
      copied.push(f);
    }
  }
  return copied;
}
