/**
 * The optional shared-mapping addon of the intra-node transport (native/shm_map.c, built with the native
 * kernels at `npm ci`): with it, shm.ts maps every segment of its group once and sums peers' pieces straight out
 * of their mappings; without it (no compiler at install, JANUS4O_NATIVE=0, another platform), shm.ts moves the
 * same bytes with pwrite/pread. Both give the same bits.
 */
import * as path from 'path';

export interface ShmNative {
  /** A MAP_SHARED view of an open segment (read-only unless `writable`); unmapped when collected. */
  map(fd: number, bytes: number, writable: boolean): ArrayBuffer;
  /** own[i] = (((p0[i] + p1[i]) + ...) + own[i]) / divisor; out[i] = own[i] when `out` is given. */
  reduce(own: Float32Array, peers: Float32Array[], divisor: number, out: Float32Array | null): void;
  /** A full memory barrier (around arrival counters, so mapped data is seen before the counter that covers it). */
  fence(): void;
}

export const SHM_ADDON_PATH = path.resolve(__dirname, '..', '..', 'build', 'Release', 'janus4o_shm.node');

let addon: ShmNative | null | undefined;
let reason = '';

/** The addon, or null (with `shmNativeReason()` saying why). Loaded once. */
export function shmNative(): ShmNative | null {
  if (addon !== undefined) return addon;
  if (process.env.JANUS4O_NATIVE === '0') {
    reason = 'JANUS4O_NATIVE=0';
    addon = null;
    return addon;
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require(SHM_ADDON_PATH) as Partial<ShmNative>;
    if (typeof mod.map !== 'function' || typeof mod.reduce !== 'function' || typeof mod.fence !== 'function') throw new Error('it lacks map/reduce/fence');
    addon = mod as ShmNative;
    reason = `mapped through ${path.relative(process.cwd(), SHM_ADDON_PATH) || SHM_ADDON_PATH}`;
  } catch (e) {
    addon = null;
    const code = (e as NodeJS.ErrnoException).code;
    reason = code === 'MODULE_NOT_FOUND' ? 'the shared-mapping addon is not built (build/Release/janus4o_shm.node)' : `the shared-mapping addon did not load: ${(e as Error).message}`;
  }
  return addon;
}

export function shmNativeReason(): string {
  shmNative();
  return reason;
}
