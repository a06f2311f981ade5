/**
 * Durable file-system primitives for checkpoints. A rename is atomic but not durable until the directory that
 * holds the entry is fsynced, and file contents are not durable until the file is fsynced, so after a power
 * loss or SIGKILL a name either refers to complete, synced data or does not exist.
 */
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { SafetensorsFile, writeSafetensors } from './safetensors';

/**
 * Fault-injection seam for storage failures: when set, it is called before every write this module makes for a
 * checkpoint (new file, rename, folder, copy) with the operation and the path, and an error it throws stands for
 * the file system failing there (ENOSPC, EROFS, EACCES). Tests use it; nothing else sets it.
 */
export type WriteFault = (op: 'write' | 'rename' | 'mkdir' | 'copy', file: string) => void;
let writeFault: WriteFault | null = null;

export function setWriteFault(fault: WriteFault | null): void {
  writeFault = fault;
}

/** Creates a folder (and its parents). */
export async function makeDir(dir: string): Promise<void> {
  writeFault?.('mkdir', dir);
  await fs.promises.mkdir(dir, { recursive: true });
}

/** Directory fsync is unsupported on Windows (EPERM/EISDIR); there the rename itself is the best we get. */
function ignorableDirSyncError(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return process.platform === 'win32' && (code === 'EPERM' || code === 'EISDIR' || code === 'EINVAL');
}

export async function fsyncDir(dir: string): Promise<void> {
  let fh: fs.promises.FileHandle | undefined;
  try {
    fh = await fs.promises.open(dir, 'r');
    await fh.sync();
  } catch (e) {
    if (!ignorableDirSyncError(e)) throw e;
  } finally {
    await fh?.close();
  }
}

export async function fsyncFile(file: string): Promise<void> {
  const fh = await fs.promises.open(file, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes chunks to a new file (truncating any old one) and fsyncs it before closing. */
export async function writeFileDurable(file: string, chunks: Iterable<Uint8Array | string> | AsyncIterable<Uint8Array | string>): Promise<number> {
  writeFault?.('write', file);
  const fh = await fs.promises.open(file, 'w');
  let bytes = 0;
  try {
    for await (const c of chunks) {
      const buf = typeof c === 'string' ? Buffer.from(c, 'utf8') : c;
      let off = 0;
      while (off < buf.byteLength) {
        const { bytesWritten } = await fh.write(buf, off, buf.byteLength - off);
        off += bytesWritten;
      }
      bytes += buf.byteLength;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  return bytes;
}

/** Replaces `file` atomically: temp file in the same directory, fsync, rename, fsync the directory. */
export async function atomicWriteFile(file: string, data: Uint8Array | string): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `${path.basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await writeFileDurable(tmp, [data]);
    writeFault?.('rename', file);
    await fs.promises.rename(tmp, file);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true });
    throw e;
  }
  await fsyncDir(dir);
}

/** Copies a file and fsyncs the copy. */
export async function copyFileDurable(src: string, dst: string): Promise<void> {
  writeFault?.('copy', dst);
  await fs.promises.copyFile(src, dst);
  await fsyncFile(dst);
}

/** Renames and fsyncs the parent directories of both names, so the move survives a crash. */
export async function renameDurable(from: string, to: string): Promise<void> {
  writeFault?.('rename', to);
  await fs.promises.rename(from, to);
  await fsyncDir(path.dirname(to));
  if (path.dirname(from) !== path.dirname(to)) await fsyncDir(path.dirname(from));
}

/**
 * Deletes a directory tree so that no half-deleted tree is ever visible under its name: first an atomic rename
 * to `trashName` (a name the startup cleanup recognises), then the recursive delete.
 */
export async function removeTreeAtomically(dir: string, trashName: string): Promise<void> {
  const trash = path.join(path.dirname(dir), trashName);
  await fs.promises.rm(trash, { recursive: true, force: true });
  await renameDurable(dir, trash);
  await fs.promises.rm(trash, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------------------
// Tensor files. The checkpoint writes weights and optimizer moments only through writeTensorFile and reads them
// only through openTensorFile; both delegate to src/io/safetensors.ts (F32 on write, any float dtype on read).

export interface TensorEntry {
  name: string;
  shape: readonly number[];
}

/**
 * Tensors to write, pulled one at a time. A synchronous `read` streams: only one tensor is in host memory at
 * a time (use it for 7B models, e.g. via tf dataSync). An asynchronous `read` is resolved for every tensor
 * before writing starts, because the safetensors writer pulls values synchronously.
 */
export interface TensorWriteSource {
  entries: readonly TensorEntry[];
  read(name: string): Float32Array | Promise<Float32Array>;
}

export interface TensorFileReader {
  file: string;
  entries: Map<string, { shape: number[] }>;
  metadata: Record<string, string>;
  has(name: string): boolean;
  read(name: string): Promise<Float32Array>;
}

/** Writes a safetensors file of F32 tensors and fsyncs it (the caller fsyncs the directory). */
export async function writeTensorFile(file: string, source: TensorWriteSource, metadata: Record<string, string> = {}): Promise<void> {
  writeFault?.('write', file);
  const values = new Map<string, Float32Array>();
  const first = source.entries.length ? source.read(source.entries[0].name) : null;
  if (first instanceof Promise) {
    values.set(source.entries[0].name, await first);
    for (const e of source.entries.slice(1)) values.set(e.name, await source.read(e.name));
  }
  const pull = (name: string): Float32Array => {
    const buffered = values.get(name);
    if (buffered) {
      values.delete(name);
      return buffered;
    }
    if (first && name === source.entries[0].name) return first as Float32Array;
    const v = source.read(name);
    if (v instanceof Promise) throw new Error(`tensor file ${file}: "${name}" was read asynchronously after a synchronous first read`);
    return v;
  };
  writeSafetensors(file, source.entries.map((e) => ({ name: e.name, shape: e.shape, values: () => pull(e.name) })), { dtype: 'F32', metadata });
}

/** Opens a safetensors file, validating its header now; tensors are read on demand (one open per read). */
export async function openTensorFile(file: string): Promise<TensorFileReader> {
  const st = SafetensorsFile.open(file);
  const entries = new Map<string, { shape: number[] }>();
  let metadata: Record<string, string>;
  try {
    for (const name of st.names()) entries.set(name, { shape: st.info(name).shape });
    metadata = { ...st.metadata };
  } finally {
    st.close();
  }
  return {
    file,
    entries,
    metadata,
    has: (name) => entries.has(name),
    read: async (name) => {
      if (!entries.has(name)) throw new Error(`tensor file ${file} has no tensor "${name}"`);
      const f = SafetensorsFile.open(file);
      try {
        return f.read(name);
      } finally {
        f.close();
      }
    },
  };
}
