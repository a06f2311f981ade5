/**
 * All-reduce benchmark on loopback: for each world size, launches that many local workers
 * (bench_worker.ts) and reports, per buffer size, the ring all-reduce bus bandwidth next to raw TCP
 * throughput measured by the same processes in the same run, and their ratios.
 *
 *   node dist/distributed/bench.js [--nproc 2,4] [--sizes-mb 1,4,16,64]
 */
import * as os from 'os';
import * as path from 'path';
import { launch } from './launcher';
import { BENCH_LINE_PREFIX, BenchPoint } from './bench_worker';

export interface AllReduceBenchOptions {
  worldSizes?: number[];
  sizesBytes?: number[];
}

export interface AllReduceBenchRow extends BenchPoint {
  /** busGBps / rawRingGBps: how close the all-reduce gets to what the ring's links can carry at once. */
  ratioToRawRing: number;
  /** busGBps / rawStreamGBps: against a single idle-machine TCP stream. */
  ratioToRawStream: number;
}

export interface AllReduceBenchReport {
  host: { cpus: number; cpuModel: string; node: string; platform: string; loadAverage: number[] };
  rows: AllReduceBenchRow[];
}

export async function runAllReduceBench(options: AllReduceBenchOptions = {}): Promise<AllReduceBenchReport> {
  const worldSizes = options.worldSizes ?? [2, 4];
  const sizes = options.sizesBytes ?? [1, 4, 16, 64].map((mb) => mb << 20);
  for (const s of sizes) if (s % 4 !== 0 || s <= 0) throw new Error(`buffer size ${s} is not a positive multiple of 4 bytes`);
  const rows: AllReduceBenchRow[] = [];
  for (const n of worldSizes) {
    const errors: string[] = [];
    const result = await launch({
      script: path.join(__dirname, 'bench_worker.js'),
      nproc: n,
      env: { ...process.env, JANUS4O_BENCH_SIZES: sizes.join(',') },
      forwardSignals: true,
      onLine: (rank, stream, line) => {
        if (rank === 0 && stream === 'stdout' && line.startsWith(BENCH_LINE_PREFIX)) {
          const p = JSON.parse(line.slice(BENCH_LINE_PREFIX.length)) as BenchPoint;
          rows.push({ ...p, ratioToRawRing: p.busGBps / p.rawRingGBps, ratioToRawStream: p.busGBps / p.rawStreamGBps });
        } else if (stream === 'stderr') {
          errors.push(`[rank ${rank}] ${line}`);
        }
      },
    });
    if (result.exitCode !== 0) throw new Error(`benchmark with ${n} workers failed: ${result.message ?? ''}\n${errors.join('\n')}`);
  }
  const cpus = os.cpus();
  return {
    host: { cpus: cpus.length, cpuModel: cpus[0]?.model ?? 'unknown', node: process.version, platform: `${os.platform()} ${os.release()}`, loadAverage: os.loadavg() },
    rows,
  };
}

function listArg(argv: string[], flag: string): number[] | undefined {
  const i = argv.indexOf(flag);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  if (v === undefined) throw new Error(`${flag} needs a value`);
  return v.split(',').map(Number);
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  const mb = listArg(argv, '--sizes-mb');
  runAllReduceBench({ worldSizes: listArg(argv, '--nproc'), sizesBytes: mb?.map((m) => Math.round(m * (1 << 20))) }).then(
    (report) => process.stdout.write(`${JSON.stringify(report, null, 2)}\n`),
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
