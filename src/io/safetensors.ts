/**
 * safetensors: an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then
 * raw little-endian bytes. Reading validates the whole header before touching data and then reads one tensor at a
 * time with positioned reads, so a multi-GB file never needs one Buffer and a hostile header can neither make us
 * allocate what it claims nor read outside the file.
 */
import * as fs from 'fs';
import * as path from 'path';
import { DTYPE_BYTES, StoredDtype, TensorInfo, TensorSource, decodeInto, isStoredDtype, numelOf, toBf16Bits, toF16Bits } from './dtypes';
import { UserError } from '../errors';

/** Real headers are ~100 KB for a 7B model; anything near this is not a safetensors file. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;
/** Bytes converted per positioned read, so a BF16 tensor never needs a second full-size raw copy. */
const CHUNK_BYTES = 16 * 1024 * 1024;

interface Entry extends TensorInfo {
  /** Absolute file offsets [begin, end). */
  begin: number;
  end: number;
}

/** A malformed file is the user's input, not our bug: one paragraph naming the file, no debug hint. */
function fail(file: string, msg: string): never {
  throw new UserError(`safetensors ${file}: ${msg}`);
}

/** Reads exactly `length` bytes at `position` into `into[offset..]`, looping because one read may return less. */
export function readFully(fd: number, into: Uint8Array, offset: number, length: number, position: number, what: string): void {
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, into, offset + done, Math.min(length - done, 1 << 30), position + done);
    if (n === 0) throw new Error(`${what}: unexpected end of file`);
    done += n;
  }
}

export class SafetensorsFile implements TensorSource {
  private readonly entries: Map<string, Entry>;
  private fd: number | null;
  readonly metadata: Record<string, string>;

  private constructor(readonly file: string, fd: number, entries: Map<string, Entry>, metadata: Record<string, string>) {
    this.fd = fd;
    this.entries = entries;
    this.metadata = metadata;
  }

  /** Opens and validates a file; throws one clear error for anything malformed. */
  static open(file: string): SafetensorsFile {
    const fd = fs.openSync(file, 'r');
    try {
      const { entries, metadata } = parseHeader(fd, file);
      return new SafetensorsFile(file, fd, entries, metadata);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  info(name: string): TensorInfo {
    const e = this.entry(name);
    return { dtype: e.dtype, shape: e.shape.slice() };
  }

  read(name: string): Float32Array {
    const e = this.entry(name);
    const count = numelOf(e.shape, name);
    const out = new Float32Array(count);
    const size = DTYPE_BYTES[e.dtype];
    const perChunk = Math.max(1, Math.floor(CHUNK_BYTES / size));
    const scratch = new Uint8Array(Math.min(count, perChunk) * size);
    for (let i = 0; i < count; i += perChunk) {
      const n = Math.min(perChunk, count - i);
      readFully(this.handle(), scratch, 0, n * size, e.begin + i * size, `safetensors ${this.file} "${name}"`);
      decodeInto(scratch, e.dtype, n, out, i);
    }
    return out;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }

  private entry(name: string): Entry {
    const e = this.entries.get(name);
    if (!e) fail(this.file, `has no tensor "${name}"`);
    return e;
  }

  private handle(): number {
    if (this.fd === null) throw new Error(`safetensors ${this.file}: is closed`);
    return this.fd;
  }
}

function parseHeader(fd: number, file: string): { entries: Map<string, Entry>; metadata: Record<string, string> } {
  const size = fs.fstatSync(fd).size;
  if (size < 8) fail(file, `is ${size} bytes, too short for a header`);
  const lenBuf = new Uint8Array(8);
  readFully(fd, lenBuf, 0, 8, 0, `safetensors ${file}`);
  const n = Number(new DataView(lenBuf.buffer).getBigUint64(0, true));
  if (n > MAX_HEADER_BYTES) fail(file, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file, or corrupt)`);
  if (8 + n > size) fail(file, `header length ${n} runs past the end of the ${size}-byte file`);
  const raw = new Uint8Array(n);
  readFully(fd, raw, 0, n, 8, `safetensors ${file}`);
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8'));
  } catch (e) {
    fail(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) fail(file, 'header is not a JSON object');
  const dataStart = 8 + n;
  const entries = new Map<string, Entry>();
  let metadata: Record<string, string> = {};
  for (const [name, h] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = checkMetadata(file, h);
      continue;
    }
    entries.set(name, checkEntry(file, name, h, dataStart, size));
  }
  checkTiling(file, entries, dataStart, size);
  return { entries, metadata };
}

/** What the format requires of the data section, quoted in every tiling error. */
const TILING_RULE =
  'safetensors requires the tensors\' data_offsets to tile the data section exactly: sorted by begin, the first begins at 0, ' +
  'each begins where the previous ends, and the last ends at the end of the file';

/**
 * Refuses byte ranges that do not tile the data section exactly (the reference reader's rule): a gap, an overlap
 * or trailing bytes mean a corrupt, truncated-then-padded or crafted file, whose unowned bytes could hide anything.
 * Zero-size tensors own no bytes; they sit where the previous tensor ends ([k, k]) and sort before a tensor that
 * begins at k.
 */
function checkTiling(file: string, entries: Map<string, Entry>, dataStart: number, size: number): void {
  const dataBytes = size - dataStart;
  const sorted = [...entries.entries()].sort((a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const range = (e: Entry) => `[${e.begin - dataStart}, ${e.end - dataStart}]`;
  let prev: [string, Entry] | null = null;
  for (const cur of sorted) {
    const [name, e] = cur;
    const at = prev ? prev[1].end : dataStart;
    if (e.begin > at) {
      const gap = `bytes [${at - dataStart}, ${e.begin - dataStart}) of the data section belong to no tensor`;
      fail(file, prev ? `${gap}: "${prev[0]}" (data_offsets ${range(prev[1])}) ends at ${at - dataStart} but the next tensor, "${name}" (data_offsets ${range(e)}), begins at ${e.begin - dataStart}; ${TILING_RULE}` : `${gap}: the first tensor, "${name}" (data_offsets ${range(e)}), begins at ${e.begin - dataStart} instead of 0; ${TILING_RULE}`);
    }
    if (e.begin < at && prev) {
      fail(file, `tensors "${prev[0]}" and "${name}" overlap: "${name}" (data_offsets ${range(e)}) begins at ${e.begin - dataStart}, inside "${prev[0]}" (data_offsets ${range(prev[1])}); ${TILING_RULE}`);
    }
    prev = cur;
  }
  const end = prev ? prev[1].end - dataStart : 0;
  if (end < dataBytes) {
    const last = prev ? `its last tensor, "${prev[0]}" (data_offsets ${range(prev[1])}), ends at ${end}` : 'the header lists no tensors';
    fail(file, `the data section is ${dataBytes} bytes but ${last}: ${dataBytes - end} trailing bytes belong to no tensor; ${TILING_RULE}`);
  }
}

function checkMetadata(file: string, h: unknown): Record<string, string> {
  if (!h || typeof h !== 'object' || Array.isArray(h)) fail(file, '__metadata__ is not an object');
  for (const [k, v] of Object.entries(h)) if (typeof v !== 'string') fail(file, `__metadata__ value for "${k}" is not a string`);
  return h as Record<string, string>;
}

function checkEntry(file: string, name: string, h: unknown, dataStart: number, size: number): Entry {
  if (!h || typeof h !== 'object') fail(file, `entry "${name}" is not an object`);
  const { dtype, shape, data_offsets: off } = h as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (!isStoredDtype(dtype)) fail(file, `"${name}" has unsupported dtype ${JSON.stringify(dtype)}`);
  if (!Array.isArray(shape)) fail(file, `"${name}" has no shape list`);
  const dims = shape as unknown[];
  if (dims.some((d) => typeof d !== 'number')) fail(file, `"${name}" has a non-numeric shape ${JSON.stringify(shape)}`);
  const count = numelOf(dims as number[], `safetensors ${file} "${name}"`);
  if (!Array.isArray(off) || off.length !== 2 || !off.every((x) => Number.isSafeInteger(x) && x >= 0) || off[0] > off[1]) {
    fail(file, `"${name}" has invalid data_offsets ${JSON.stringify(off)}`);
  }
  const [a, b] = off as [number, number];
  const bytes = count * DTYPE_BYTES[dtype];
  if (b - a !== bytes) fail(file, `"${name}": shape [${dims.join(', ')}] of ${dtype} needs ${bytes} bytes but data_offsets [${a}, ${b}] hold ${b - a}`);
  if (dataStart + b > size) fail(file, `"${name}": data_offsets [${a}, ${b}] run past the end of the file (${size - dataStart} data bytes)`);
  return { dtype, shape: dims as number[], begin: dataStart + a, end: dataStart + b };
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

export type SaveDtype = 'F32' | 'BF16' | 'F16';

/** One tensor to write, in stored (PyTorch) layout; values are produced only when the writer reaches it. */
export interface TensorToWrite {
  name: string;
  shape: readonly number[];
  values: () => Float32Array;
}

export interface WriteOptions {
  dtype?: SaveDtype;
  metadata?: Record<string, string>;
}

/** Writes one safetensors file (to `file.tmp` then renamed, so a crash never leaves a truncated file in place). */
export function writeSafetensors(file: string, tensors: readonly TensorToWrite[], opts: WriteOptions = {}): void {
  const dtype = opts.dtype ?? 'F32';
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', ...(opts.metadata ?? {}) } };
  let offset = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__' || Object.prototype.hasOwnProperty.call(header, t.name)) throw new Error(`safetensors ${file}: duplicate or reserved tensor name "${t.name}"`);
    const bytes = numelOf(t.shape, t.name) * DTYPE_BYTES[dtype];
    header[t.name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  // Data starts 8-byte aligned, as the reference writer pads it, so readers can map the bytes in place.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, len);
    fs.writeSync(fd, Buffer.from(json, 'utf8'));
    for (const t of tensors) {
      const v = t.values();
      if (v.length !== numelOf(t.shape, t.name)) throw new Error(`safetensors ${file}: "${t.name}" has ${v.length} values for shape [${t.shape.join(', ')}]`);
      const bits = dtype === 'F32' ? v : dtype === 'BF16' ? toBf16Bits(v) : toF16Bits(v);
      fs.writeSync(fd, new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength));
    }
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
}

export interface ShardOptions extends WriteOptions {
  /** Largest shard in bytes (HF's default is 5 GB); one tensor larger than this gets a shard of its own. */
  maxShardBytes?: number;
  /** File stem: `model` gives model.safetensors or model-00001-of-0000N.safetensors + model.safetensors.index.json. */
  stem?: string;
}

/**
 * Writes `tensors` into `dir` following the HF convention: one `<stem>.safetensors` when it fits in one shard,
 * otherwise `<stem>-0000i-of-0000N.safetensors` plus `<stem>.safetensors.index.json` ({metadata.total_size,
 * weight_map}). Returns the file names written.
 */
export function writeShardedSafetensors(dir: string, tensors: readonly TensorToWrite[], opts: ShardOptions = {}): string[] {
  const stem = opts.stem ?? 'model';
  const max = opts.maxShardBytes ?? 5e9;
  const dtypeBytes = DTYPE_BYTES[opts.dtype ?? 'F32'];
  const shards: TensorToWrite[][] = [];
  let current: TensorToWrite[] = [];
  let currentBytes = 0;
  let total = 0;
  for (const t of tensors) {
    const bytes = numelOf(t.shape, t.name) * dtypeBytes;
    if (current.length > 0 && currentBytes + bytes > max) {
      shards.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(t);
    currentBytes += bytes;
    total += bytes;
  }
  if (current.length > 0 || shards.length === 0) shards.push(current);
  fs.mkdirSync(dir, { recursive: true });
  if (shards.length === 1) {
    writeSafetensors(path.join(dir, `${stem}.safetensors`), shards[0], opts);
    return [`${stem}.safetensors`];
  }
  const pad = (i: number) => String(i).padStart(5, '0');
  const files: string[] = [];
  const weightMap: Record<string, string> = {};
  shards.forEach((shard, i) => {
    const name = `${stem}-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`;
    writeSafetensors(path.join(dir, name), shard, opts);
    for (const t of shard) weightMap[t.name] = name;
    files.push(name);
  });
  const index = `${stem}.safetensors.index.json`;
  fs.writeFileSync(path.join(dir, index), `${JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2)}\n`);
  return [...files, index];
}

export type { StoredDtype };
