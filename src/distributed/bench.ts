/**
 * All-reduce benchmark on one machine: for each world size and transport, launches that many local workers
 * (bench_worker.ts) and reports, per buffer size and exchange dtype, the all-reduce time and bus bandwidth next to
 * memcpy bandwidth and (for the TCP ring) raw loopback TCP throughput, all measured by the same processes in the
 * same run.
 *
 * Transports: 'tcp' (the ring over loopback TCP, JANUS4O_TRANSPORT=tcp), 'shm' (shared memory, one group),
 * 'hierarchical' (two simulated nodes of N/2 ranks: JANUS4O_SHM_GROUP_SIZE=N/2, so shared memory inside each half
 * and the TCP ring between their leaders; N >= 4).
 *
 * With `rounds` > 1 the whole set of launches is repeated, transports interleaved, and each row is the round
 * with the median time: on a shared machine the load drifts, and interleaving exposes every transport to it alike.
 *
 *   node dist/distributed/bench.js [--nproc 2,4,8] [--sizes-mb 16,64,256] [--transports tcp,shm,hierarchical]
 *                                  [--exchange fp32,bf16] [--rounds 3] [--table]
 */
import * as os from 'os';
import * as path from 'path';
import { launch } from './launcher';
import { BENCH_LINE_PREFIX, BenchPoint } from './bench_worker';
import { ExchangeDtype, parseExchangeDtype } from './wire';

export type BenchTransport = 'tcp' | 'shm' | 'hierarchical';

export interface AllReduceBenchOptions {
  worldSizes?: number[];
  sizesBytes?: number[];
  transports?: BenchTransport[];
  exchanges?: ExchangeDtype[];
  /** Repetitions of every launch, interleaved; rows report the median round (default 1). */
  rounds?: number;
}

export interface AllReduceBenchRow extends BenchPoint {
  kind: BenchTransport;
  /** The TCP ring's float32 time over this row's, same world size and size (null without a TCP row). */
  speedupVsTcp: number | null;
  /** busGBps / memcpyGBps. */
  ratioToMemcpy: number;
  /** TCP rows: busGBps / rawRingGBps (how close the all-reduce gets to what the ring's links carry at once). */
  ratioToRawRing?: number;
  /** TCP rows: busGBps / rawStreamGBps (against a single idle-machine TCP stream). */
  ratioToRawStream?: number;
  /** allReduceMs of every round, in round order (the row is the median one). */
  roundsMs: number[];
}

export interface AllReduceBenchReport {
  host: { cpus: number; cpuModel: string; node: string; platform: string; loadAverage: number[] };
  command: string;
  rows: AllReduceBenchRow[];
}

export const DEFAULT_BENCH_SIZES_MB = [16, 64, 256];

function envFor(kind: BenchTransport, n: number): Record<string, string> {
  if (kind === 'tcp') return { JANUS4O_TRANSPORT: 'tcp', JANUS4O_BENCH_RAW: '1' };
  if (kind === 'shm') return { JANUS4O_TRANSPORT: 'auto' };
  return { JANUS4O_TRANSPORT: 'auto', JANUS4O_SHM_GROUP_SIZE: String(n / 2) };
}

/** One launch: `n` workers over `kind`, every size and exchange dtype. */
async function launchBench(n: number, kind: BenchTransport, sizes: number[], exchanges: ExchangeDtype[]): Promise<BenchPoint[]> {
  const errors: string[] = [];
  const points: BenchPoint[] = [];
  const env: Record<string, string | undefined> = { ...process.env, JANUS4O_SHM_GROUP_SIZE: undefined, ...envFor(kind, n) };
  const result = await launch({
    script: path.join(__dirname, 'bench_worker.js'),
    nproc: n,
    env: {
      ...env,
      JANUS4O_BENCH_SIZES: sizes.join(','),
      // The TCP ring carries float32 whatever the option says: one dtype is enough there.
      JANUS4O_BENCH_EXCHANGES: (kind === 'tcp' ? ['float32'] : exchanges).join(','),
    },
    forwardSignals: true,
    onLine: (rank, stream, line) => {
      if (rank === 0 && stream === 'stdout' && line.startsWith(BENCH_LINE_PREFIX)) points.push(JSON.parse(line.slice(BENCH_LINE_PREFIX.length)) as BenchPoint);
      else if (stream === 'stderr') errors.push(`[rank ${rank}] ${line}`);
    },
  });
  if (result.exitCode !== 0) throw new Error(`benchmark with ${n} workers over ${kind} failed: ${result.message ?? ''}\n${errors.join('\n')}`);
  const want = kind === 'tcp' ? 'TCP ring' : kind === 'shm' ? 'shared memory' : 'hierarchical';
  for (const p of points) {
    if (!p.transport.startsWith(want)) throw new Error(`benchmark with ${n} workers asked for ${kind} but ran on ${p.transport}\n${errors.join('\n')}`);
  }
  return points;
}

export async function runAllReduceBench(options: AllReduceBenchOptions = {}): Promise<AllReduceBenchReport> {
  const worldSizes = options.worldSizes ?? [2, 4, 8];
  const sizes = options.sizesBytes ?? DEFAULT_BENCH_SIZES_MB.map((mb) => mb * 2 ** 20);
  const transports = options.transports ?? ['tcp', 'shm', 'hierarchical'];
  const exchanges = options.exchanges ?? ['float32', 'bfloat16'];
  for (const s of sizes) if (s % 4 !== 0 || s <= 0) throw new Error(`buffer size ${s} is not a positive multiple of 4 bytes`);
  const rounds = options.rounds ?? 1;
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`rounds must be a positive integer, got ${rounds}`);
  const byKey = new Map<string, Array<BenchPoint & { kind: BenchTransport }>>();
  for (let round = 0; round < rounds; round++) {
    for (const n of worldSizes) {
      for (const kind of transports) {
        if (kind === 'hierarchical' && (n < 4 || n % 2 !== 0)) continue;
        for (const p of await launchBench(n, kind, sizes, exchanges)) {
          const key = `${n}|${kind}|${p.exchange}|${p.bytes}`;
          byKey.set(key, [...(byKey.get(key) ?? []), { ...p, kind }]);
        }
      }
    }
  }
  const rows: AllReduceBenchRow[] = [...byKey.values()].map((all) => {
    const p = [...all].sort((a, b) => a.allReduceMs - b.allReduceMs)[Math.floor((all.length - 1) / 2)];
    const extra = p.rawRingGBps !== undefined && p.rawStreamGBps !== undefined
      ? { ratioToRawRing: p.busGBps / p.rawRingGBps, ratioToRawStream: p.busGBps / p.rawStreamGBps }
      : {};
    return { ...p, speedupVsTcp: null, ratioToMemcpy: p.busGBps / p.memcpyGBps, ...extra, roundsMs: all.map((q) => q.allReduceMs) };
  });
  for (const r of rows) {
    const tcp = rows.find((t) => t.kind === 'tcp' && t.exchange === 'float32' && t.worldSize === r.worldSize && t.bytes === r.bytes);
    r.speedupVsTcp = tcp ? tcp.allReduceMs / r.allReduceMs : null;
  }
  const cpus = os.cpus();
  const mb = sizes.map((s) => s / 2 ** 20).join(',');
  return {
    host: { cpus: cpus.length, cpuModel: cpus[0]?.model ?? 'unknown', node: process.version, platform: `${os.platform()} ${os.release()}`, loadAverage: os.loadavg() },
    command: `node dist/distributed/bench.js --nproc ${worldSizes.join(',')} --sizes-mb ${mb} --transports ${transports.join(',')} --exchange ${exchanges.join(',')} --rounds ${rounds}`,
    rows,
  };
}

/** One line per row, for people. */
export function formatAllReduceBench(r: AllReduceBenchReport): string {
  const lines = [`${r.command}   (${r.host.cpus} x ${r.host.cpuModel})`];
  lines.push('  N  MiB  transport     exchange   ms/op    bus GB/s  memcpy GB/s (alone/all)  vs TCP fp32  (ms of each round)');
  for (const row of r.rows) {
    lines.push(`${String(row.worldSize).padStart(3)} ${String(row.bytes / 2 ** 20).padStart(4)}  ${row.kind.padEnd(12)}  ${row.exchange.padEnd(9)} ${row.allReduceMs.toFixed(1).padStart(7)}  ${row.busGBps.toFixed(2).padStart(8)}  ${row.memcpyGBps.toFixed(2).padStart(8)} / ${row.memcpyConcurrentGBps.toFixed(2).padEnd(13)} ${(row.speedupVsTcp === null ? '' : `${row.speedupVsTcp.toFixed(2)}x`).padEnd(12)} ${row.roundsMs.map((m) => m.toFixed(0)).join(' ')}`);
  }
  return lines.join('\n');
}

function listArg(argv: string[], flag: string): string[] | undefined {
  const i = argv.indexOf(flag);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  if (v === undefined) throw new Error(`${flag} needs a value`);
  return v.split(',');
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  const mb = listArg(argv, '--sizes-mb');
  const transports = listArg(argv, '--transports');
  for (const t of transports ?? []) if (!['tcp', 'shm', 'hierarchical'].includes(t)) throw new Error(`unknown transport ${t}`);
  runAllReduceBench({
    worldSizes: listArg(argv, '--nproc')?.map(Number),
    sizesBytes: mb?.map((m) => Math.round(Number(m) * (1 << 20))),
    transports: transports as BenchTransport[] | undefined,
    exchanges: listArg(argv, '--exchange')?.map(parseExchangeDtype),
    rounds: listArg(argv, '--rounds')?.map(Number)[0],
  }).then(
    (report) => {
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      if (argv.includes('--table')) process.stderr.write(`${formatAllReduceBench(report)}\n`);
    },
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
