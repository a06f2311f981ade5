/** Timing and memory helpers shared by the bench modules. */

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Rounds to `digits` significant decimals, keeping JSON output readable and stable. */
export function round(x: number, digits = 3): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export interface CallTimes {
  /** Wall-clock milliseconds of each timed call. */
  wall: number[];
  /**
   * CPU milliseconds (user + system, all threads of this process) of each timed call. On a shared machine the
   * wall clock also counts time spent waiting for a core; CPU time does not, so it is the steadier figure for
   * comparing two variants of single-threaded code.
   */
  cpu: number[];
}

/** Times `reps` calls after `warm` untimed ones. `fn` must finish its work before returning. */
export async function timeCalls(fn: () => void | Promise<void>, reps: number, warm: number): Promise<CallTimes> {
  const out: CallTimes = { wall: [], cpu: [] };
  for (let i = 0; i < warm + reps; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await fn();
    const dt = performance.now() - t0;
    const c = process.cpuUsage(c0);
    if (i >= warm) {
      out.wall.push(dt);
      out.cpu.push((c.user + c.system) / 1000);
    }
  }
  return out;
}

/** Peak resident set size of this process so far, in MiB (the kernel's high-water mark, not a sample). */
export function peakRssMiB(): number {
  // resourceUsage().maxRSS is in KiB on Linux and macOS.
  return process.resourceUsage().maxRSS / 1024;
}

/** What a bench section reports when it cannot run, instead of a made-up number. */
export interface Skipped {
  skipped: string;
}

export function isSkipped(x: unknown): x is Skipped {
  return typeof x === 'object' && x !== null && typeof (x as Skipped).skipped === 'string';
}
