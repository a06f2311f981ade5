/**
 * Shared-memory segments for the ranks of one node: one preallocated file per rank on a tmpfs (/dev/shm),
 * written only by its owner and read by the others, in large chunks. Node has no mmap: with the shared-mapping
 * addon (shm_native.ts, native/shm_map.c) every segment is mapped once and float32 data moves with plain memory
 * copies, summed straight out of the peers' mappings; without it, with pwrite/pread (a kernel copy each way,
 * plus a copy into WebAssembly memory for the SIMD sums). Both paths give the same bits.
 *
 * Security and cleanup:
 *   - names are `janus4o-<hash of the job secret>.<job nonce>.<rank>`: nobody without the secret can predict
 *     them, and `removeJobSegments` (the launcher) finds every file of a job from the secret alone;
 *   - files are created with O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600 (a planted file or symlink makes creation
 *     fail, never write elsewhere), and a peer's file is opened with O_NOFOLLOW and accepted only if it is a
 *     regular file of this user, mode 0600, of the agreed size, and has the device and inode number its owner
 *     announced over the authenticated ring;
 *   - as soon as every rank of the group holds every segment open, each owner unlinks its file: from then on the
 *     segments have no name at all, the kernel frees them when the last rank exits, however it exits (SIGKILL
 *     included), and nothing of the job is left in /dev/shm. Only during setup do names exist; a rank removes its
 *     own on exit and the launcher removes the job's after its workers are gone.
 *
 * Layout: a segment holds SLOT_SETS x `groupSize` slots of `chunkElements` float32 values (two sets, so that a
 * window's data can be written while the previous window's is still being read); what goes in which slot is the
 * collective's business (shm_collectives.ts).
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Communicator } from './collectives';
import { DistributedError, Logger } from './errors';
import { decodeAdd16, decode16, encode16, ExchangeDtype } from './wire';
import { SimdKernels, simdKernels } from './simd';
import { ShmNative, shmNative } from './shm_native';
import { MAX_FRACTION_OF_FREE, MIN_CHUNK_ELEMENTS, SLOT_SETS, ShmOptions, chunkElementsFor, freeBytes, segmentName } from './shm_files';

export { DEFAULT_SHM_DIR, DEFAULT_SEGMENT_BYTES, MIN_CHUNK_ELEMENTS, SLOT_SETS, segmentPrefix, segmentName, removeJobSegments, freeBytes, chunkElementsFor } from './shm_files';
export type { ShmOptions } from './shm_files';

/** Bytes before the slots: the owner's arrival counter (a float64) for the group's barriers. */
const HEADER_BYTES = 64;

const O_NOFOLLOW = fs.constants.O_NOFOLLOW ?? 0;

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

interface Created {
  fd: number;
  dev: bigint;
  ino: bigint;
}

/** Creates and preallocates this rank's segment (zeros written once, so later writes never allocate). */
function createSegment(file: string, bytes: number): Created {
  const fd = fs.openSync(file, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_RDWR | O_NOFOLLOW, 0o600);
  try {
    fs.fchmodSync(fd, 0o600);
    const zeros = Buffer.alloc(Math.min(bytes, 1 << 20));
    for (let off = 0; off < bytes; off += zeros.length) writeFully(fd, zeros, 0, Math.min(zeros.length, bytes - off), off);
    const st = fs.fstatSync(fd, { bigint: true });
    return { fd, dev: st.dev, ino: st.ino };
  } catch (e) {
    fs.closeSync(fd);
    try {
      fs.unlinkSync(file);
    } catch {
      // already gone
    }
    throw e;
  }
}

function openPeer(file: string, bytes: number, dev: bigint, ino: bigint): number {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | O_NOFOLLOW);
  try {
    const st = fs.fstatSync(fd, { bigint: true });
    const uid = typeof process.getuid === 'function' ? BigInt(process.getuid()) : st.uid;
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.uid !== uid) throw new Error(`owned by uid ${st.uid}, not ${uid}`);
    if ((st.mode & 0o077n) !== 0n) throw new Error(`mode ${(st.mode & 0o777n).toString(8)} is not 600`);
    if (st.size !== BigInt(bytes)) throw new Error(`size ${st.size} is not ${bytes}`);
    if (st.dev !== dev || st.ino !== ino) throw new Error('not the file its owner created (device/inode differ: another /dev/shm?)');
    return fd;
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

function writeFully(fd: number, bytes: Uint8Array, offset: number, length: number, position: number): void {
  let done = 0;
  while (done < length) {
    const n = fs.writeSync(fd, bytes, offset + done, length - done, position + done);
    if (n <= 0) throw new DistributedError('PROTOCOL', `short write to a shared-memory segment (${done} of ${length} bytes)`);
    done += n;
  }
}

function readFully(fd: number, bytes: Uint8Array, offset: number, length: number, position: number): void {
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, bytes, offset + done, length - done, position + done);
    if (n <= 0) throw new DistributedError('PROTOCOL', `short read from a shared-memory segment (${done} of ${length} bytes): was it truncated?`);
    done += n;
  }
}

function addInto(dst: Float32Array, src: Float32Array): void {
  const n = dst.length;
  for (let i = 0; i < n; i++) dst[i] += src[i];
}

/** 64-bit ids as four exact 16-bit floats each, for an allGather over the ring. */
function idFloats(v: bigint): number[] {
  return [0, 1, 2, 3].map((k) => Number((v >> BigInt(16 * k)) & 0xffffn));
}

function floatsId(a: Float32Array, at: number): bigint {
  let v = 0n;
  for (let k = 3; k >= 0; k--) v = (v << 16n) | BigInt(a[at + k]);
  return v;
}

/** Floats per system call in the fused passes: 256 KiB, so a piece is summed and sent on while it is in cache. */
const SUB = 1 << 16;

/**
 * The open segments of one group, as seen by group member `index`: its own (read-write) and every peer's
 * (read-only). Transfers address a slot plus an element offset; 16-bit exchange dtypes are converted on the way,
 * a cache-sized piece at a time.
 */
export class ShmSegments {
  private readonly scratch16 = new Uint16Array(SUB);
  private readonly acc = new Float32Array(SUB);
  private readonly peer = new Float32Array(SUB);
  private readonly simd: SimdKernels | null = simdKernels();
  private readonly counter = new Float64Array(1);
  private readonly counterIn = new Float64Array(1);
  private closed = false;
  /** With the shared-mapping addon: every segment mapped (this rank's writable), and the addon; else null. */
  private readonly mapped: { views: Uint8Array[]; native: ShmNative } | null;

  constructor(
    private readonly fds: number[],
    readonly index: number,
    readonly groupSize: number,
    /** Floats per slot. */
    readonly chunkElements: number,
    native: ShmNative | null = shmNative(),
  ) {
    this.mapped = native ? mapAll(native, fds, index, segmentBytes(groupSize, chunkElements)) : null;
  }

  /** Whether float32 transfers go through shared mappings (else pwrite/pread). */
  get isMapped(): boolean {
    return this.mapped !== null;
  }

  get segmentBytes(): number {
    return segmentBytes(this.groupSize, this.chunkElements);
  }

  /** Publishes this rank's arrival counter (after its data writes: the kernel orders them for readers). */
  post(counter: number): void {
    this.mapped?.native.fence();
    this.counter[0] = counter;
    writeFully(this.fds[this.index], bytesOf(this.counter), 0, 8, 0);
  }

  /** A peer's arrival counter. */
  arrived(peer: number): number {
    readFully(this.fds[peer], bytesOf(this.counterIn), 0, 8, 0);
    this.mapped?.native.fence();
    return this.counterIn[0];
  }

  /** Writes `src` to slot `slot` of this rank's own segment, from element `offset` of the slot. */
  write(slot: number, src: Float32Array, dtype: ExchangeDtype, offset = 0): void {
    const fd = this.fds[this.index];
    if (dtype === 'float32' && this.mapped) {
      this.mapped.views[this.index].set(bytesOf(src), this.position(slot, offset, src.length, dtype));
      return;
    }
    if (dtype === 'float32') {
      writeFully(fd, bytesOf(src), 0, src.byteLength, this.position(slot, offset, src.length, dtype));
      return;
    }
    for (let a = 0; a < src.length; a += SUB) {
      const part = src.subarray(a, Math.min(src.length, a + SUB));
      const h = this.encode(dtype, part, false);
      writeFully(fd, bytesOf(h), 0, h.byteLength, this.position(slot, offset + a, part.length, dtype));
    }
  }

  /** dst = slot `slot` of `peer`'s segment (dst.length elements from element `offset`). */
  read(peer: number, slot: number, dst: Float32Array, dtype: ExchangeDtype, offset = 0): void {
    if (dtype === 'float32' && this.mapped) {
      const at = this.position(slot, offset, dst.length, dtype);
      bytesOf(dst).set(this.mapped.views[peer].subarray(at, at + dst.byteLength));
      return;
    }
    if (dtype === 'float32') {
      readFully(this.fds[peer], bytesOf(dst), 0, dst.byteLength, this.position(slot, offset, dst.length, dtype));
      return;
    }
    for (let a = 0; a < dst.length; a += SUB) {
      const part = dst.subarray(a, Math.min(dst.length, a + SUB));
      this.readPiece(peer, slot, part.length, dtype, a + offset, part, false);
    }
  }

  /**
   * own[i] = ((p0[i] + p1[i]) + ...) + own[i] over `peers`' slot `slot` (p0 first), then / `divisor` when > 1,
   * a cache-sized piece at a time; with `writeBack`, each finished piece is rounded to that dtype and written to
   * slot `slot` of this rank's segment while it is still in cache.
   */
  reduce(peers: readonly number[], slot: number, own: Float32Array, dtype: ExchangeDtype, divisor: number, writeBack: ExchangeDtype | null): void {
    if (this.mapped && dtype === 'float32' && (writeBack === null || writeBack === 'float32')) {
      // One pass over the peers' mappings, writing the result where the peers read it.
      const n = own.length;
      const at = this.position(slot, 0, n, 'float32');
      const view = (r: number): Float32Array => new Float32Array(this.mapped!.views[r].buffer, at, n);
      this.mapped.native.reduce(own, peers.map(view), divisor, writeBack ? view(this.index) : null);
      return;
    }
    const k = this.simd;
    for (let a = 0; a < own.length; a += SUB) {
      const o = own.subarray(a, Math.min(own.length, a + SUB));
      const n = o.length;
      const acc = (k ? k.acc : this.acc).subarray(0, n);
      this.readPiece(peers[0], slot, n, dtype, a, acc, false);
      for (let j = 1; j < peers.length; j++) this.readPiece(peers[j], slot, n, dtype, a, acc, true);
      // own + partial: the summation order of layout.ts, bit for bit (float addition commutes).
      const w = k ? k.own.subarray(0, n) : o;
      if (k) {
        w.set(o);
        k.add(w, acc, n);
        if (divisor > 1) k.div(w, divisor, n);
      } else {
        addInto(w, acc);
        if (divisor > 1) divideInPlace(w, divisor);
      }
      if (writeBack === 'float32') {
        writeFully(this.fds[this.index], bytesOf(w), 0, w.byteLength, this.position(slot, a, n, writeBack));
      } else if (writeBack !== null) {
        const h = this.encode(writeBack, w, true);
        writeFully(this.fds[this.index], bytesOf(h), 0, h.byteLength, this.position(slot, a, n, writeBack));
      }
      if (k) o.set(w);
    }
  }

  /** Rounds `buf` in place to values representable in `dtype` (what a rank keeps of a value it also sends). */
  roundInPlace(dtype: ExchangeDtype, buf: Float32Array): void {
    if (dtype === 'float32') return;
    for (let a = 0; a < buf.length; a += SUB) this.encode(dtype, buf.subarray(a, Math.min(buf.length, a + SUB)), true);
  }

  /** 16-bit bits of `src` (one piece); with `keepRounded`, `src` is replaced by the values the bits decode to. */
  private encode(dtype: 'bfloat16' | 'float16', src: Float32Array, keepRounded: boolean): Uint16Array {
    const k = this.simd;
    const n = src.length;
    if (k && dtype === 'bfloat16') {
      const w = k.own.subarray(0, n);
      if (src !== w && !(src.buffer === w.buffer && src.byteOffset === w.byteOffset)) w.set(src);
      k.encodeBf16(w, n);
      if (keepRounded) {
        k.decodeBf16(w, n);
        if (w.byteOffset !== src.byteOffset || w.buffer !== src.buffer) src.set(w);
      }
      return k.half.subarray(0, n);
    }
    const h = this.scratch16.subarray(0, n);
    encode16(dtype, src, h);
    if (keepRounded) decode16(dtype, h, src);
    return h;
  }

  /** dst = (or +=, with `add`) `n` values of `peer`'s slot `slot` from element `offset`, decoded to float32. */
  private readPiece(peer: number, slot: number, n: number, dtype: ExchangeDtype, offset: number, dst: Float32Array, add: boolean): void {
    const k = this.simd;
    const fd = this.fds[peer];
    const position = this.position(slot, offset, n, dtype);
    if (dtype === 'float32') {
      if (!add) {
        readFully(fd, bytesOf(dst), 0, n * 4, position);
        return;
      }
      const p = (k ? k.peer : this.peer).subarray(0, n);
      readFully(fd, bytesOf(p), 0, n * 4, position);
      if (k) k.add(dst, p, n);
      else addInto(dst, p);
      return;
    }
    if (k && dtype === 'bfloat16') {
      readFully(fd, bytesOf(k.half), 0, n * 2, position);
      if (dst.buffer === k.acc.buffer) {
        if (add) k.addBf16(dst, n);
        else k.decodeBf16(dst, n);
      } else {
        const t = k.peer.subarray(0, n);
        k.decodeBf16(t, n);
        if (add) addInto(dst, t);
        else dst.set(t);
      }
      return;
    }
    const h = this.scratch16.subarray(0, n);
    readFully(fd, bytesOf(h), 0, n * 2, position);
    if (add) decodeAdd16(dtype, h, dst);
    else decode16(dtype, h, dst);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fd of this.fds) {
      try {
        fs.closeSync(fd);
      } catch {
        // already closed
      }
    }
  }

  private position(slot: number, offset: number, n: number, dtype: ExchangeDtype): number {
    if (slot < 0 || slot >= SLOT_SETS * this.groupSize || offset < 0 || offset + n > this.chunkElements) {
      throw new RangeError(`shared-memory access outside slot ${slot} (${offset}+${n} of ${this.chunkElements})`);
    }
    return HEADER_BYTES + slot * this.chunkElements * 4 + offset * (dtype === 'float32' ? 4 : 2);
  }
}

/** Maps every open segment (this rank's writable, the peers' read-only); null if any mapping fails. */
function mapAll(native: ShmNative, fds: readonly number[], index: number, bytes: number): { views: Uint8Array[]; native: ShmNative } | null {
  try {
    return { views: fds.map((fd, r) => new Uint8Array(native.map(fd, bytes, r === index))), native };
  } catch {
    return null;
  }
}

function segmentBytes(groupSize: number, chunkElements: number): number {
  return HEADER_BYTES + SLOT_SETS * groupSize * chunkElements * 4;
}

function bytesOf(a: Float32Array | Float64Array | Uint16Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function divideInPlace(buf: Float32Array, divisor: number): void {
  const n = buf.length;
  for (let i = 0; i < n; i++) buf[i] = buf[i] / divisor;
}

export interface ShmSetup {
  /** Control channel of the group (ranks in group order); used for agreement only. */
  comm: Communicator;
  /** This rank's index in the group and the global rank of every member, in group order. */
  index: number;
  members: number[];
  secret: string;
  nonce: string;
  options: ShmOptions;
  log: Logger;
}

/**
 * Creates, exchanges and unlinks the group's segments. Resolves with them, or with the reason shared memory
 * cannot be used (every member gets a reason; the member that found it logs it, once).
 */
export async function setupShmGroup(s: ShmSetup): Promise<ShmSegments | { unavailable: string }> {
  const g = s.members.length;
  const { dir } = s.options;
  // 1. The first member sizes the chunks from the free space; everyone takes its word.
  let reason = '';
  const decided = new Float32Array(2);
  if (s.index === 0) {
    const free = freeBytes(dir);
    const p = free === null ? 0 : chunkElementsFor(g, s.options.segmentBytes, free);
    if (free === null) reason = `${dir} is not usable`;
    else if (p === 0) {
      const need = SLOT_SETS * g * g * MIN_CHUNK_ELEMENTS * 4 / MAX_FRACTION_OF_FREE;
      reason = `${dir} has ${(free / 2 ** 20).toFixed(1)} MiB free, ${g} ranks need at least ${(need / 2 ** 20).toFixed(1)} MiB (Docker: run with --shm-size=1g or larger)`;
    }
    decided[0] = Math.floor(p / 65536);
    decided[1] = p % 65536;
  }
  await s.comm.broadcast(decided, { root: 0, tag: 'shm-size' });
  const chunk = decided[0] * 65536 + decided[1];
  if (chunk === 0) {
    if (s.index === 0) s.log(`shared memory off: ${reason}; using TCP`);
    return { unavailable: reason || 'no room for shared memory' };
  }
  const bytes = segmentBytes(g, chunk);
  const names = s.members.map((r) => path.join(dir, segmentName(s.secret, s.nonce, r)));
  const own = names[s.index];
  let ownFd = -1;
  // Only a file this rank created is ever removed (a planted file at its name is left alone).
  let named = false;
  const unlinkOwn = (): void => {
    if (!named) return;
    named = false;
    try {
      fs.unlinkSync(own);
    } catch {
      // already gone
    }
  };
  const onExit = (): void => unlinkOwn();
  process.once('exit', onExit);
  const fds: number[] = [];
  try {
    // 2. Everyone creates its own segment and announces its identity.
    const mine = new Float32Array(9);
    try {
      const c = createSegment(own, bytes);
      named = true;
      ownFd = c.fd;
      mine.set([1, ...idFloats(c.dev), ...idFloats(c.ino)]);
    } catch (e) {
      reason = `cannot create ${own} (${(bytes / 2 ** 20).toFixed(1)} MiB): ${errText(e)}`;
    }
    const ids = await s.comm.allGather(mine, { tag: 'shm-create' });
    const firstFailed = (flags: (r: number) => boolean): number => s.members.findIndex((_, r) => !flags(r));
    let bad = firstFailed((r) => ids[9 * r] === 1);
    if (bad < 0) {
      // 3. Everyone opens every peer's segment and checks it is the announced file.
      for (let r = 0; r < g; r++) {
        if (r === s.index) {
          fds.push(ownFd);
          continue;
        }
        try {
          fds.push(openPeer(names[r], bytes, floatsId(ids, 9 * r + 1), floatsId(ids, 9 * r + 5)));
        } catch (e) {
          if (!reason) reason = `cannot use rank ${s.members[r]}'s segment ${names[r]}: ${errText(e)}`;
          break;
        }
      }
      const opened = await s.comm.allGather(Float32Array.from([reason ? 0 : 1]), { tag: 'shm-open' });
      bad = firstFailed((r) => opened[r] === 1);
    }
    if (bad >= 0) {
      if (bad === s.index) s.log(`shared memory off: ${reason}; using TCP`);
      return { unavailable: reason || `rank ${s.members[bad]} could not set up shared memory` };
    }
    // 4. Every member holds every segment open (the allGather above proves it): the names can go.
    unlinkOwn();
    const segments = new ShmSegments(fds.slice(), s.index, g, chunk);
    fds.length = 0;
    ownFd = -1;
    return segments;
  } finally {
    for (const fd of fds) if (fd !== ownFd) fs.closeSync(fd);
    if (ownFd >= 0) fs.closeSync(ownFd);
    unlinkOwn();
    process.off('exit', onExit);
  }
}
