/**
 * Where a job's shared-memory segments live, what they are called and how big they may be: names derived from the
 * job secret (so only the job can find them and the launcher can remove them after a SIGKILL), the free space of
 * the tmpfs, and the chunk size that fits it. The segments themselves are shm.ts.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { DistributedError } from './errors';

export const DEFAULT_SHM_DIR = '/dev/shm';
/** Per-rank segment size unless JANUS4O_SHM_SEGMENT_MB says otherwise; the slots (chunks) are this / (2 groupSize). */
export const DEFAULT_SEGMENT_BYTES = 64 << 20;
/** Below this many floats per chunk, shared memory is not worth it and the job uses TCP. */
export const MIN_CHUNK_ELEMENTS = 4096;
/** At most this fraction of the free space of the tmpfs is taken by the job's segments. */
export const MAX_FRACTION_OF_FREE = 0.5;
const PREFIX = 'janus4o-';
/** Slot sets per segment (double buffering). */
export const SLOT_SETS = 2;

export interface ShmOptions {
  /** Directory on a tmpfs shared by the node's ranks (default /dev/shm). */
  dir: string;
  /** Upper bound of one rank's segment in bytes. */
  segmentBytes: number;
}

/** The part of every segment name of the job that only the secret determines. */
export function segmentPrefix(secret: string): string {
  return PREFIX + crypto.createHash('sha256').update(`janus4o-shm/v1\0${secret}`).digest('hex').slice(0, 24);
}

export function segmentName(secret: string, nonce: string, rank: number): string {
  if (!/^[0-9a-f]{8,64}$/.test(nonce)) throw new DistributedError('PROTOCOL', `malformed job nonce "${nonce}"`);
  return `${segmentPrefix(secret)}.${nonce}.${rank}`;
}

/** Removes every segment file of the job in `dir` (the launcher calls this once its workers have exited). */
export function removeJobSegments(dir: string, secret: string): string[] {
  const prefix = `${segmentPrefix(secret)}.`;
  const removed: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    try {
      fs.unlinkSync(path.join(dir, name));
      removed.push(name);
    } catch {
      // gone already, or not ours to remove
    }
  }
  return removed;
}

/** Bytes a new file on `dir` may still take, or null when the directory is unusable. */
export function freeBytes(dir: string): number | null {
  try {
    const s = fs.statfsSync(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return null;
  }
}

/**
 * Chunk (slot) size in floats for a group of `groupSize` ranks: the configured segment size, shrunk until the
 * whole group's segments take at most half the free space; 0 when even MIN_CHUNK_ELEMENTS does not fit.
 */
export function chunkElementsFor(groupSize: number, segmentBytes: number, free: number): number {
  const wanted = Math.floor(segmentBytes / (4 * SLOT_SETS * groupSize));
  const fits = Math.floor((free * MAX_FRACTION_OF_FREE) / (4 * SLOT_SETS * groupSize * groupSize));
  const p = Math.min(wanted, fits);
  return p >= MIN_CHUNK_ELEMENTS ? p - (p % 1024) : 0;
}
