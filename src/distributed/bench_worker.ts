/**
 * One rank of the all-reduce benchmark (started by bench.ts through the launcher, once per world size and
 * transport). For each size it measures, in the same processes and back to back:
 *   - memcpy: Float32Array.set of a buffer of that size, on rank 0 alone (the others wait) and on every rank at
 *     once (what N ranks copying through shared memory compete for);
 *   - with JANUS4O_BENCH_RAW=1, raw TCP: one stream (rank 0 to rank 1, others idle) and the ring (every rank
 *     streams to rank+1 at once, what the ring's links do);
 *   - all-reduce of a Float32Array of that many bytes through the job's communicator, once per exchange dtype of
 *     JANUS4O_BENCH_EXCHANGES.
 * Each figure is the median over repetitions of the slowest rank's time. Rank 0 prints one JSON line per size and
 * exchange dtype.
 */
import * as net from 'net';
import { Communicator } from './collectives';
import { initDistributed } from './init';
import { boundAddress, closeServer, listen } from './net_util';
import { ExchangeDtype, parseExchangeDtype } from './wire';

export const BENCH_LINE_PREFIX = 'ALLREDUCE_BENCH ';

export interface BenchPoint {
  worldSize: number;
  bytes: number;
  /** comm.transport of the run. */
  transport: string;
  exchange: ExchangeDtype;
  repetitions: number;
  allReduceMs: number;
  /** bytes * 2(N-1)/N / time */
  busGBps: number;
  /** bytes / time of one Float32Array.set on rank 0 alone, and per rank with every rank copying at once. */
  memcpyGBps: number;
  memcpyConcurrentGBps: number;
  /** Raw loopback TCP (runs with JANUS4O_BENCH_RAW=1 only). */
  rawStreamGBps?: number;
  rawRingGBps?: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Slowest rank's time: a collective is done only when its last rank is. */
async function slowest(comm: Communicator, ms: number): Promise<number> {
  const all = await comm.allGather(Float32Array.from([ms]));
  return Math.max(...all);
}

/**
 * Counts bytes arriving on a raw link. The listener stays attached for the link's whole life: a flowing
 * socket without a 'data' listener drops what arrives, and a peer may start the next transfer before
 * this rank has left the preceding barrier.
 */
class ByteCounter {
  private received = 0;
  private consumed = 0;
  private waiter: { target: number; resolve: () => void } | null = null;
  constructor(socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.received += d.length;
      if (this.waiter && this.received >= this.waiter.target) {
        const w = this.waiter;
        this.waiter = null;
        w.resolve();
      }
    });
  }

  /** Resolves once `bytes` more than the previous call's target have arrived. */
  drain(bytes: number): Promise<void> {
    this.consumed += bytes;
    const target = this.consumed;
    if (this.received >= target) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiter = { target, resolve };
    });
  }
}

function send(socket: net.Socket, payload: Buffer): Promise<void> {
  return new Promise((resolve, reject) => socket.write(payload, (err) => (err ? reject(err) : resolve())));
}

interface RawLinks {
  next: net.Socket;
  prev: ByteCounter;
  close: () => void;
}

async function rawLinks(comm: Communicator): Promise<RawLinks> {
  const server = await listen('127.0.0.1', 0);
  server.removeAllListeners('connection');
  const prevP = new Promise<net.Socket>((resolve) => server.once('connection', (s: net.Socket) => resolve(s)));
  const ports = await comm.allGather(Float32Array.from([boundAddress(server).port]));
  const next = net.connect({ host: '127.0.0.1', port: ports[(comm.rank + 1) % comm.worldSize], noDelay: true });
  await new Promise<void>((resolve, reject) => {
    next.once('connect', () => resolve());
    next.once('error', reject);
  });
  const prev = await prevP;
  await closeServer(server);
  for (const s of [next, prev]) s.on('error', () => undefined);
  return { next, prev: new ByteCounter(prev), close: () => { next.destroy(); prev.destroy(); } };
}

async function timeRaw(comm: Communicator, links: RawLinks, payload: Buffer, ring: boolean): Promise<number> {
  await comm.barrier();
  const t0 = process.hrtime.bigint();
  const work: Array<Promise<void>> = [];
  const sender = ring || comm.rank === 0;
  const receiver = ring || comm.rank === 1;
  if (sender) work.push(send(links.next, payload));
  if (receiver) work.push(links.prev.drain(payload.length));
  await Promise.all(work);
  const ms = sender || receiver ? Number(process.hrtime.bigint() - t0) / 1e6 : 0;
  // The single stream is complete when the receiver has everything; senders only know the kernel took it.
  return slowest(comm, ring || comm.rank === 1 ? ms : 0);
}

async function timeMemcpy(comm: Communicator, src: Float32Array, dst: Float32Array, everyone: boolean): Promise<number> {
  await comm.barrier();
  if (!everyone && comm.rank !== 0) return slowest(comm, 0);
  const t0 = process.hrtime.bigint();
  dst.set(src);
  return slowest(comm, Number(process.hrtime.bigint() - t0) / 1e6);
}

async function main(): Promise<void> {
  const sizes = (process.env.JANUS4O_BENCH_SIZES ?? String(1 << 20)).split(',').map(Number);
  const exchanges = (process.env.JANUS4O_BENCH_EXCHANGES ?? 'fp32').split(',').map(parseExchangeDtype);
  const raw = process.env.JANUS4O_BENCH_RAW === '1';
  const { comm } = await initDistributed({ log: () => undefined });
  const n = comm.worldSize;
  const links = raw ? await rawLinks(comm) : null;
  try {
    for (const bytes of sizes) {
      const reps = Math.max(3, Math.min(10, Math.floor((256 << 20) / bytes)));
      const buf = new Float32Array(bytes / 4);
      const copy = new Float32Array(bytes / 4);
      const memcpy: number[] = [];
      const memcpyAll: number[] = [];
      for (let i = 0; i < reps; i++) {
        buf.fill(comm.rank + i);
        memcpy.push(await timeMemcpy(comm, buf, copy, false));
        memcpyAll.push(await timeMemcpy(comm, buf, copy, true));
      }
      let rawStreamGBps: number | undefined;
      let rawRingGBps: number | undefined;
      if (links) {
        const payload = Buffer.alloc(bytes, comm.rank);
        const stream: number[] = [];
        const ringRaw: number[] = [];
        for (let i = 0; i < reps; i++) {
          stream.push(await timeRaw(comm, links, payload, false));
          ringRaw.push(await timeRaw(comm, links, payload, true));
        }
        rawStreamGBps = bytes / (median(stream) * 1e6);
        rawRingGBps = bytes / (median(ringRaw) * 1e6);
      }
      for (const exchange of exchanges) {
        await comm.allReduce(buf, { exchange });
        const reduce: number[] = [];
        for (let i = 0; i < reps; i++) {
          buf.fill(comm.rank + i);
          await comm.barrier();
          const t0 = process.hrtime.bigint();
          await comm.allReduce(buf, { exchange });
          reduce.push(await slowest(comm, Number(process.hrtime.bigint() - t0) / 1e6));
        }
        const ms = median(reduce);
        const point: BenchPoint = {
          worldSize: n, bytes, transport: comm.transport, exchange, repetitions: reps, allReduceMs: ms,
          busGBps: (bytes * 2 * (n - 1)) / n / (ms * 1e6),
          memcpyGBps: bytes / (median(memcpy) * 1e6),
          memcpyConcurrentGBps: bytes / (median(memcpyAll) * 1e6),
          ...(links ? { rawStreamGBps, rawRingGBps } : {}),
        };
        if (comm.rank === 0) process.stdout.write(`${BENCH_LINE_PREFIX}${JSON.stringify(point)}\n`);
      }
    }
  } finally {
    links?.close();
    await comm.close();
  }
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`bench worker: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  });
}
