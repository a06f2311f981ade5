/**
 * A read-only zip reader for PyTorch checkpoints. torch.save writes an uncompressed ("stored") zip, ZIP64 when a
 * file or offset passes 4 GiB, so the reader finds the central directory, validates every entry, and afterwards
 * serves positioned reads into stored entries: a 10 GB shard is never read whole.
 *
 * Names are validated at open: absolute paths, `..` segments, backslashes, drive letters, NULs and duplicates
 * reject the whole archive, because a later consumer that joins an entry name to a folder must never be able to
 * escape it.
 */
import * as fs from 'fs';
import { readFully } from './safetensors';

export interface ZipEntry {
  name: string;
  /** Absolute file offset of the entry's first data byte. */
  dataOffset: number;
  size: number;
  /** 0 = stored; anything else is refused at read time. */
  method: number;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CDH_SIG = 0x02014b50;
const LFH_SIG = 0x04034b50;
/** A 7B checkpoint has ~1000 entries (~100 KB of directory); this bound is far above any real one. */
const MAX_CENTRAL_DIR = 64 * 1024 * 1024;

export class ZipReader {
  private fd: number | null;
  readonly entries: Map<string, ZipEntry>;

  private constructor(readonly file: string, fd: number, entries: Map<string, ZipEntry>) {
    this.fd = fd;
    this.entries = entries;
  }

  static open(file: string): ZipReader {
    const fd = fs.openSync(file, 'r');
    try {
      return new ZipReader(file, fd, readDirectory(fd, file));
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /** Reads `length` bytes at `offset` inside a stored entry (bounds-checked against the entry). */
  readRange(entry: ZipEntry, offset: number, length: number, into: Uint8Array, intoOffset = 0): void {
    if (entry.method !== 0) throw new Error(`zip ${this.file}: entry "${entry.name}" is compressed (method ${entry.method}); only stored entries are supported`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > entry.size) {
      throw new Error(`zip ${this.file}: read of [${offset}, ${offset + length}) is outside entry "${entry.name}" (${entry.size} bytes)`);
    }
    if (this.fd === null) throw new Error(`zip ${this.file} is closed`);
    readFully(this.fd, into, intoOffset, length, entry.dataOffset + offset, `zip ${this.file} "${entry.name}"`);
  }

  /** A whole entry, refused above `maxBytes` so a hostile size field cannot make us allocate it. */
  readEntry(name: string, maxBytes: number): Uint8Array {
    const e = this.entries.get(name);
    if (!e) throw new Error(`zip ${this.file}: no entry "${name}"`);
    if (e.size > maxBytes) throw new Error(`zip ${this.file}: entry "${name}" is ${e.size} bytes, more than the ${maxBytes}-byte limit`);
    const out = new Uint8Array(e.size);
    this.readRange(e, 0, e.size, out);
    return out;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

function fail(file: string, msg: string): never {
  throw new Error(`zip ${file}: ${msg}`);
}

function u64(dv: DataView, at: number, file: string): number {
  const v = dv.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(file, 'ZIP64 field exceeds 2^53');
  return Number(v);
}

function readDirectory(fd: number, file: string): Map<string, ZipEntry> {
  const size = fs.fstatSync(fd).size;
  // The end record is 22 bytes plus a comment of at most 65535 bytes.
  const tailLen = Math.min(size, 22 + 65535);
  const tail = new Uint8Array(tailLen);
  readFully(fd, tail, 0, tailLen, size - tailLen, `zip ${file}`);
  const tv = new DataView(tail.buffer);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tv.getUint32(i, true) === EOCD_SIG) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) fail(file, 'no end-of-central-directory record (not a zip file; PyTorch checkpoints older than 1.6 use a legacy format that is not supported)');
  let count = tv.getUint16(eocd + 10, true);
  let cdSize = tv.getUint32(eocd + 12, true);
  let cdOffset = tv.getUint32(eocd + 16, true);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || tv.getUint32(loc, true) !== ZIP64_LOCATOR_SIG) fail(file, 'ZIP64 fields without a ZIP64 locator');
    const z64Offset = u64(tv, loc + 8, file);
    if (z64Offset + 56 > size) fail(file, 'ZIP64 end record is outside the file');
    const rec = new Uint8Array(56);
    readFully(fd, rec, 0, 56, z64Offset, `zip ${file}`);
    const rv = new DataView(rec.buffer);
    if (rv.getUint32(0, true) !== ZIP64_EOCD_SIG) fail(file, 'bad ZIP64 end record signature');
    count = u64(rv, 32, file);
    cdSize = u64(rv, 40, file);
    cdOffset = u64(rv, 48, file);
  }
  if (cdSize > MAX_CENTRAL_DIR) fail(file, `central directory of ${cdSize} bytes exceeds the ${MAX_CENTRAL_DIR}-byte limit`);
  if (cdOffset + cdSize > size) fail(file, 'central directory is outside the file');
  if (count * 46 > cdSize) fail(file, `${count} entries cannot fit in a ${cdSize}-byte central directory`);
  const cd = new Uint8Array(cdSize);
  readFully(fd, cd, 0, cdSize, cdOffset, `zip ${file}`);
  const dv = new DataView(cd.buffer);
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdSize || dv.getUint32(p, true) !== CDH_SIG) fail(file, `central directory entry ${i} is malformed`);
    const flags = dv.getUint16(p + 8, true);
    const method = dv.getUint16(p + 10, true);
    let compSize = dv.getUint32(p + 20, true);
    let size32 = dv.getUint32(p + 24, true);
    const nameLen = dv.getUint16(p + 28, true);
    const extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    let localOffset = dv.getUint32(p + 42, true);
    const end = p + 46 + nameLen + extraLen + commentLen;
    if (end > cdSize) fail(file, `central directory entry ${i} runs past the directory`);
    const name = Buffer.from(cd.buffer, p + 46, nameLen).toString('utf8');
    if (flags & 1) fail(file, `entry "${name}" is encrypted`);
    // ZIP64 extended information: only the fields whose 32-bit slot is saturated are present, in this order.
    let x = p + 46 + nameLen;
    const xEnd = x + extraLen;
    while (x + 4 <= xEnd) {
      const id = dv.getUint16(x, true);
      const len = dv.getUint16(x + 2, true);
      if (x + 4 + len > xEnd) fail(file, `entry "${name}" has a malformed extra field`);
      if (id === 0x0001) {
        let q = x + 4;
        const take = () => {
          if (q + 8 > x + 4 + len) fail(file, `entry "${name}" has a short ZIP64 extra field`);
          const v = u64(dv, q, file);
          q += 8;
          return v;
        };
        if (size32 === 0xffffffff) size32 = take();
        if (compSize === 0xffffffff) compSize = take();
        if (localOffset === 0xffffffff) localOffset = take();
      }
      x += 4 + len;
    }
    checkName(file, name);
    if (entries.has(name)) fail(file, `duplicate entry "${name}"`);
    if (method === 0 && compSize !== size32) fail(file, `stored entry "${name}" has compressed size ${compSize} != size ${size32}`);
    entries.set(name, { name, dataOffset: localDataOffset(fd, file, name, localOffset, compSize, cdOffset), size: size32, method });
    p = end;
  }
  return entries;
}

function localDataOffset(fd: number, file: string, name: string, at: number, compSize: number, limit: number): number {
  if (at + 30 > limit) fail(file, `entry "${name}" has a local header outside the data area`);
  const h = new Uint8Array(30);
  readFully(fd, h, 0, 30, at, `zip ${file}`);
  const hv = new DataView(h.buffer);
  if (hv.getUint32(0, true) !== LFH_SIG) fail(file, `entry "${name}" has a bad local header signature`);
  const start = at + 30 + hv.getUint16(26, true) + hv.getUint16(28, true);
  if (start + compSize > limit) fail(file, `entry "${name}" data runs past the data area`);
  return start;
}

/** Refuses names that could escape a destination folder or mean something else on another OS. */
function checkName(file: string, name: string): void {
  const bad =
    name.length === 0 ||
    name.includes('\0') ||
    name.includes('\\') ||
    name.startsWith('/') ||
    /^[A-Za-z]:/.test(name) ||
    name.split('/').some((seg) => seg === '..');
  if (bad) fail(file, `unsafe entry name ${JSON.stringify(name)} (absolute or path-traversal names are refused)`);
}
