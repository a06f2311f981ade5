/**
 * Collectives through shared memory (shm.ts) for ranks on one node, and hierarchical collectives for several
 * nodes: shared memory inside each node, the TCP ring among node leaders.
 *
 * Data never crosses a socket inside a node. Each rank writes into its own segment and reads its peers'; the
 * group's TCP ring (`local`) carries only small synchronisation messages: an allGather of a 12-float descriptor
 * (op, sequence number, length, options, tag, window), which is both the barrier (a rank's allGather completes
 * only when every rank of the group has entered it) and the cross-check that all ranks run the same collective on
 * the same sizes (a mismatch fails every rank with a message naming both sides, as the ring does).
 *
 * Buffers are processed in windows of at most one slot (chunkElements floats) per rank, so a segment of bounded
 * size serves tensors of any size. A flat all-reduce (G = N ranks, layout.ts pieces), per window k:
 *   write(k)   every rank writes its pieces of the other ranks' shards into the matching slots of its segment
 *   sync
 *   reduce(k)  the owner of shard c reads piece c from ranks c+1, c+2, ... and adds them up, then adds its own
 *              value (the ring's order, so sums are bit-identical to RingCommunicator's), divides once for an
 *              average, and writes the result into slot c of its own segment, a cache-sized piece at a time
 *   write(k+1), sync
 *   read(k)    every rank reads the other shards' results
 * Windows alternate between two slot sets, so writing window k+1 never touches what another rank may still be
 * reading of window k, and one sync per window (plus one) suffices. Sums run in WebAssembly SIMD (simd.ts).

 * Hierarchical (several groups, each a consecutive range of ranks; the first rank of each group is its leader):
 * all-reduce = reduce inside each group onto its leader (steps 1-4, then the leader gathers the group's shard
 * sums), ring all-reduce among leaders over TCP (sum; the leader divides by N for an average), then a broadcast
 * from the leader inside each group. Reduce-scatter is the same with each rank reading only its own shard of the
 * result; all-gather gathers each group's shards on its leader, leaders broadcast their groups' blocks to each
 * other, and each leader broadcasts the whole buffer inside its group. The summation order differs from the flat
 * ring's (groups first), so hierarchical sums equal `referenceHierarchicalAllReduce`, not `referenceAllReduce`.
 *
 * Exchange dtype (ReduceOptions.exchange, wire.ts): with bfloat16 or float16 each contribution is rounded once
 * when written and the result once before it is shared; sums accumulate in float32. Every rank ends with the same
 * bytes. Gathers of leaders' partial sums and the leaders' ring stay float32.
 */
import * as os from 'os';
import { BroadcastOptions, CollectiveOptions, Communicator, DEFAULT_OP_TIMEOUT_MS, ReduceOptions, RingCommunicator, allGatherThroughInPlace, badBroadcastRoot, checkBuffer } from './collectives';
import { DistributedError, Logger } from './errors';
import { fingerprint32 } from './framing';
import { bucketCount, mod, pieceRange, Range, referenceAllReduce, shardRange } from './layout';
import { ShmSegments, SLOT_SETS } from './shm';
import { ExchangeDtype, roundInPlace } from './wire';

export interface ShmCommunicatorOptions {
  rank: number;
  worldSize: number;
  /** Global ranks of every group, each a consecutive range, in rank order. */
  groups: number[][];
  /** Every rank over TCP; only closed (and told of failures) by this communicator. */
  global: RingCommunicator;
  /** The group's TCP ring, for synchronisation; the same object as `global` when one group holds every rank; null for a group of one. */
  local: RingCommunicator | null;
  /** TCP ring of the group leaders: only on leaders, and only with several groups. */
  leaders: RingCommunicator | null;
  /** This group's segments; null for a group of one. */
  segments: ShmSegments | null;
  /** Longest wait without progress at a barrier of the group (as RingOptions.opTimeoutMs). */
  opTimeoutMs?: number;
  /**
   * Barriers inside a window wait by polling the peers' arrival counters in shared memory (a busy wait that
   * yields to the event loop) instead of sleeping until the ring's message wakes the process. Default: on when
   * the group has no more ranks than the machine has cores.
   */
  spinWait?: boolean;
  log?: Logger;
}

/** How long a barrier polls without yielding, then yielding to the event loop, before it sleeps between polls. */
const SPIN_NS = 200_000n;
const YIELD_NS = 20_000_000n;

enum Op {
  AllReduce = 1,
  ReduceScatter = 2,
  AllGather = 3,
  Broadcast = 4,
  Barrier = 5,
}

const OP_NAMES: Record<Op, string> = { 1: 'allReduce', 2: 'reduceScatter', 3: 'allGather', 4: 'broadcast', 5: 'barrier' };
const DTYPE_CODES: Record<ExchangeDtype, number> = { float32: 0, bfloat16: 1, float16: 2 };
const DESC = 12;
const TWO24 = 2 ** 24;

interface Running {
  op: Op;
  name: string;
  seq: number;
  length: number;
  desc: Float32Array;
}

type Piece = (index: number, window: number) => Range;

export class ShmCommunicator implements Communicator {
  readonly rank: number;
  readonly worldSize: number;
  readonly transport: string;
  private readonly groups: number[][];
  private readonly group: number[];
  private readonly groupIndex: number;
  /** This rank's index in its group. */
  private readonly me: number;
  private readonly global: RingCommunicator;
  private readonly local: RingCommunicator | null;
  private readonly leaders: RingCommunicator | null;
  private readonly seg: ShmSegments | null;
  private readonly log: Logger;
  private seq = 0;
  private arrivals = 0;
  /** Windows run so far: slot sets alternate across collectives too, so a collective's first writes never land where a slower rank may still be reading the previous one's last window. */
  private windowsRun = 0;
  private readonly spinWait: boolean;
  private readonly opTimeoutMs: number;
  private queue: Promise<unknown> = Promise.resolve();
  private failure: DistributedError | null = null;
  private closed = false;
  private round16 = new Uint16Array(0);

  constructor(o: ShmCommunicatorOptions) {
    this.rank = o.rank;
    this.worldSize = o.worldSize;
    this.groups = o.groups;
    this.groupIndex = o.groups.findIndex((g) => g.includes(o.rank));
    if (this.groupIndex < 0) throw new RangeError(`rank ${o.rank} is in no group`);
    this.group = o.groups[this.groupIndex];
    this.me = this.group.indexOf(o.rank);
    for (const g of o.groups) {
      if (!g.every((r, i) => r === g[0] + i)) throw new RangeError('shared-memory groups must be consecutive ranges of ranks');
    }
    if ((this.group.length > 1) !== (o.local !== null && o.segments !== null)) throw new RangeError('a group of several ranks needs its ring and segments');
    if (this.me === 0 && o.groups.length > 1 && o.leaders === null) throw new RangeError('a leader of several groups needs the leaders\' ring');
    this.global = o.global;
    this.local = o.local;
    this.leaders = o.leaders;
    this.seg = o.segments;
    this.log = o.log ?? (() => undefined);
    this.opTimeoutMs = o.opTimeoutMs ?? DEFAULT_OP_TIMEOUT_MS;
    this.spinWait = o.spinWait ?? this.group.length <= os.cpus().length;
    this.transport = o.groups.length === 1
      ? `shared memory (${this.group.length} ranks)`
      : `hierarchical (${o.groups.length} groups: shared memory inside, TCP ring among leaders)`;
  }

  allReduce(buf: Float32Array, options: ReduceOptions = {}): Promise<Float32Array> {
    return this.enqueue(Op.AllReduce, buf, options, 0, async (run) => {
      await this.reduce(run, buf, !!options.average, options.exchange ?? 'float32', 'all', options.tag ?? '');
      return buf;
    });
  }

  reduceScatter(buf: Float32Array, options: ReduceOptions = {}): Promise<Float32Array> {
    return this.enqueue(Op.ReduceScatter, buf, options, 0, async (run) => {
      await this.reduce(run, buf, !!options.average, options.exchange ?? 'float32', 'own', options.tag ?? '');
      const own = shardRange(buf.length, this.worldSize, this.rank);
      return buf.subarray(own.start, own.end);
    });
  }

  allGatherInPlace(buf: Float32Array, options: CollectiveOptions = {}): Promise<Float32Array> {
    return this.enqueue(Op.AllGather, buf, options, 0, async (run) => {
      await this.gather(run, buf, options.tag ?? '');
      return buf;
    });
  }

  allGather(local: Float32Array, options: CollectiveOptions = {}): Promise<Float32Array> {
    return allGatherThroughInPlace(this, local, options);
  }

  broadcast(buf: Float32Array, options: BroadcastOptions = {}): Promise<Float32Array> {
    const root = options.root ?? 0;
    const bad = badBroadcastRoot(root, this.worldSize);
    if (bad) return Promise.reject(bad);
    return this.enqueue(Op.Broadcast, buf, options, root, async (run) => {
      await this.broadcastFrom(run, buf, root, options.tag ?? '');
      return buf;
    });
  }

  async barrier(options: CollectiveOptions = {}): Promise<void> {
    await this.enqueue(Op.Barrier, new Float32Array(0), options, 0, async () => {
      const tag = options.tag ?? '';
      if (this.local) await this.local.barrier({ tag });
      if (this.leaders) await this.leaders.barrier({ tag });
      if (this.local && this.groups.length > 1) await this.local.barrier({ tag });
      return undefined;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue.catch(() => undefined);
    if (!this.failure) this.failure = new DistributedError('CLOSED', `rank ${this.rank}: communicator is closed`);
    this.seg?.close();
    const rings = [this.leaders, this.local === this.global ? null : this.local].filter((r): r is RingCommunicator => r !== null);
    await Promise.all(rings.map((r) => r.close()));
    await this.global.close();
  }

  private enqueue<T>(op: Op, buf: Float32Array, options: ReduceOptions, root: number, body: (run: Running) => Promise<T>): Promise<T> {
    const go = async (): Promise<T> => {
      checkBuffer(buf, OP_NAMES[op]);
      if (this.failure) throw this.failure;
      const seq = this.seq++;
      const tag = fingerprint32(options.tag ?? '');
      const desc = Float32Array.from([
        op, Math.floor(seq / 65536) % 65536, seq % 65536, Math.floor(buf.length / TWO24), buf.length % TWO24,
        options.average ? 1 : 0, root, tag >>> 16, tag & 0xffff, DTYPE_CODES[options.exchange ?? 'float32'], 0, 0,
      ]);
      try {
        return await body({ op, name: OP_NAMES[op], seq, length: buf.length, desc });
      } catch (e) {
        throw this.fail(e);
      }
    };
    const p = this.queue.then(go, go);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** Fails this communicator and every ring under it, so the other ranks (other nodes too) learn of it. */
  private fail(e: unknown): DistributedError {
    const err = e instanceof DistributedError ? e : new DistributedError('PROTOCOL', `rank ${this.rank}: shared-memory collective failed: ${e instanceof Error ? e.message : String(e)}`);
    if (this.failure === null) {
      this.failure = err;
      this.log(err.message);
    }
    for (const ring of [this.local, this.leaders, this.global]) ring?.abort(err);
    return err;
  }

  /**
   * Barrier of the group. The first of each collective goes over the group's ring as an allGather of the
   * descriptor, which also cross-checks what every rank is running; the later ones (between windows) compare
   * arrival counters in shared memory when `spinWait` is on.
   */
  private async sync(run: Running, step: number): Promise<void> {
    const local = this.local as RingCommunicator;
    const seg = this.seg as ShmSegments;
    this.arrivals++;
    seg.post(this.arrivals);
    if (step > 0 && this.spinWait) {
      await this.waitForPeers(run);
      return;
    }
    run.desc[10] = step % TWO24;
    run.desc[11] = Math.floor(step / TWO24);
    const all = await local.allGather(run.desc, { tag: 'shm-sync' });
    for (let j = 0; j < this.group.length; j++) {
      if (j === this.me) continue;
      const other = all.subarray(j * DESC, (j + 1) * DESC);
      if (other.every((v, i) => v === run.desc[i])) continue;
      throw new DistributedError('MISMATCH', `${run.name} #${run.seq} on rank ${this.rank}: ${this.describeMismatch(run, this.group[j], other)}`);
    }
  }

  /** Waits until every peer's arrival counter reached ours, watching the rings for a lost peer. */
  private async waitForPeers(run: Running): Promise<void> {
    const seg = this.seg as ShmSegments;
    const target = this.arrivals;
    const started = process.hrtime.bigint();
    let waiting = 1;
    for (let polls = 0; ; polls++) {
      while (waiting < this.group.length && seg.arrived(mod(this.me + waiting, this.group.length)) >= target) waiting++;
      if (waiting === this.group.length) return;
      const elapsed = process.hrtime.bigint() - started;
      if (elapsed < SPIN_NS && (polls & 63) !== 63) continue;
      // Only the group's ring tells: a rank elsewhere that finished the job and hung up is no failure here, while
      // a group peer that is gone before arriving at this barrier is.
      const lost = (this.local as RingCommunicator).failed;
      if (lost) throw lost;
      if (elapsed > BigInt(this.opTimeoutMs) * 1_000_000n) {
        throw new DistributedError('TIMEOUT', `${run.name} #${run.seq} on rank ${this.rank} timed out after ${this.opTimeoutMs} ms waiting for rank ${this.group[mod(this.me + waiting, this.group.length)]} at a shared-memory barrier`);
      }
      await new Promise<void>((resolve) => (elapsed < YIELD_NS ? setImmediate(resolve) : setTimeout(resolve, 1)));
    }
  }

  private describeMismatch(run: Running, from: number, d: Float32Array): string {
    const seq = d[1] * 65536 + d[2];
    const length = d[3] * TWO24 + d[4];
    if (d[0] !== run.op) return `rank ${from} is running ${OP_NAMES[d[0] as Op] ?? d[0]} #${seq} (ranks call collectives in a different order)`;
    if (length !== run.length) return `rank ${from} has ${length} elements, this rank has ${run.length} (tensor sizes differ across ranks)`;
    if (seq !== run.seq) return `rank ${from} is at collective #${seq} (ranks ran a different number of collectives)`;
    return `rank ${from} uses different options, tag or exchange dtype (a worker on another config?)`;
  }

  private roundOwn(dtype: ExchangeDtype, values: Float32Array): void {
    if (dtype === 'float32') return;
    if (this.seg) {
      this.seg.roundInPlace(dtype, values);
      return;
    }
    if (this.round16.length === 0) this.round16 = new Uint16Array(1 << 16);
    roundInPlace(dtype, values, this.round16);
  }

  /** Slot of group member `member` in the slot set of window `k` of the running primitive (sets alternate; see shm.ts). */
  private slot(member: number, k: number): number {
    return ((this.windowsRun + k) % SLOT_SETS) * this.group.length + member;
  }

  /**
   * Reduce-scatter inside the group over `piece(j, k)` (group member j owns piece j of window k), windows
   * 0..windows-1. Afterwards: 'allGather': every member holds every sum; 'toLeader': member 0 holds every sum;
   * 'none': each member holds its own. `divisor` > 1 divides the owner's sums once.
   *
   * Per rank: write(0) sync(0), then for each window k: reduce(k), write(k+1), sync(k+1), read(k). A window's
   * pieces go to slot set k % 2, so write(k+1) never touches what reduce(k) or read(k) of another rank may still
   * read, and one sync per window (plus one) suffices: sync(k+1) follows everyone's reduce(k) and write(k+1).
   */
  private async groupReduce(
    run: Running, buf: Float32Array, piece: Piece, windows: number, divisor: number, dtype: ExchangeDtype, then: 'allGather' | 'toLeader' | 'none',
  ): Promise<number> {
    const seg = this.seg as ShmSegments;
    const g = this.group.length;
    const me = this.me;
    const write = (k: number): void => {
      for (let c = 0; c < g; c++) {
        if (c === me) continue;
        const p = piece(c, k);
        seg.write(this.slot(c, k), buf.subarray(p.start, p.end), dtype);
      }
    };
    // Peers from c+1 on, then own: the ring's order, ((x[c+1] + x[c+2]) + ...) + x[c].
    const peers = Array.from({ length: g - 1 }, (_, j) => mod(me + 1 + j, g));
    const writeBack = then === 'allGather' ? dtype : then === 'toLeader' && me !== 0 ? 'float32' : null;
    const reads = then === 'allGather' || (then === 'toLeader' && me === 0);
    const wire = then === 'allGather' ? dtype : 'float32';
    write(0);
    await this.sync(run, 0);
    for (let k = 0; k < windows; k++) {
      const r = piece(me, k);
      if (r.end > r.start) seg.reduce(peers, this.slot(me, k), buf.subarray(r.start, r.end), dtype, divisor, writeBack);
      if (k + 1 < windows) write(k + 1);
      await this.sync(run, k + 1);
      if (!reads) continue;
      for (let c = 0; c < g; c++) {
        if (c === me) continue;
        const p = piece(c, k);
        seg.read(c, this.slot(c, k), buf.subarray(p.start, p.end), wire);
      }
    }
    this.windowsRun += windows;
    return windows + 1;
  }

  /**
   * Windows k of copies through shared memory: `write(k)` into slot set k % 2, sync, `read(k)`; a final sync
   * (the next collective may write where the last window is still being read). Returns the syncs used.
   */
  private async copyWindows(run: Running, windows: number, step0: number, write: (k: number) => void, read: (k: number) => void): Promise<number> {
    for (let k = 0; k < windows; k++) {
      write(k);
      await this.sync(run, step0 + k);
      read(k);
    }
    await this.sync(run, step0 + windows);
    this.windowsRun += windows;
    return windows + 1;
  }

  /**
   * Group member `src` sends [0, length) of buf to the group, in windows of groupSize slots. With `only`, a member
   * reads just that range of the buffer (the rest of its buf is left as it was).
   */
  private groupBroadcast(run: Running, buf: Float32Array, src: number, dtype: ExchangeDtype, only: Range | null, step0: number): Promise<number> {
    const seg = this.seg as ShmSegments;
    const p = seg.chunkElements;
    const g = this.group.length;
    const span = g * p;
    const windows = Math.max(1, Math.ceil(buf.length / span));
    const bounds = (k: number): [number, number] => [k * span, Math.min(buf.length, (k + 1) * span)];
    return this.copyWindows(run, windows, step0, (k) => {
      if (this.me !== src) return;
      const [w0, w1] = bounds(k);
      for (let s = 0; w0 + s * p < w1; s++) seg.write(this.slot(s, k), buf.subarray(w0 + s * p, Math.min(w1, w0 + (s + 1) * p)), dtype);
    }, (k) => {
      if (this.me === src) return;
      const [w0, w1] = bounds(k);
      const a = only ? Math.max(w0, only.start) : w0;
      const b = only ? Math.min(w1, only.end) : w1;
      for (let s = Math.floor((a - w0) / p); a < b && w0 + s * p < b; s++) {
        const from = Math.max(a, w0 + s * p);
        const to = Math.min(b, w0 + (s + 1) * p);
        seg.read(src, this.slot(s, k), buf.subarray(from, to), dtype, from - (w0 + s * p));
      }
    });
  }

  private async reduce(run: Running, buf: Float32Array, average: boolean, dtype: ExchangeDtype, keep: 'all' | 'own', tag: string): Promise<void> {
    const n = this.worldSize;
    const length = buf.length;
    if (this.groups.length === 1) {
      const p = (this.seg as ShmSegments).chunkElements;
      const piece: Piece = (c, k) => pieceRange(length, n, c, k, p);
      await this.groupReduce(run, buf, piece, bucketCount(length, n, p), average ? n : 1, dtype, keep === 'all' ? 'allGather' : 'none');
      return;
    }
    const g = this.group.length;
    let steps = 0;
    if (g > 1) {
      const p = (this.seg as ShmSegments).chunkElements;
      steps = await this.groupReduce(run, buf, (j, k) => pieceRange(length, g, j, k, p), bucketCount(length, g, p), 1, dtype, 'toLeader');
    }
    if (this.me === 0) {
      await (this.leaders as RingCommunicator).allReduce(buf, { tag: `${tag}|leaders` });
      if (average) divideInPlace(buf, n);
      if (dtype !== 'float32') this.roundOwn(dtype, buf);
    }
    if (g > 1) await this.groupBroadcast(run, buf, 0, dtype, keep === 'own' ? shardRange(length, n, this.rank) : null, steps);
  }

  private async gather(run: Running, buf: Float32Array, tag: string): Promise<void> {
    const n = this.worldSize;
    const length = buf.length;
    const g = this.group.length;
    const flat = this.groups.length === 1;
    let steps = 0;
    if (g > 1) {
      // Flat: everyone writes its piece and reads the others'. Hierarchical: the group's shards gather on the leader.
      const seg = this.seg as ShmSegments;
      const p = seg.chunkElements;
      const piece = (j: number, k: number): Range => pieceRange(length, n, this.group[j], k, p);
      steps = await this.copyWindows(run, bucketCount(length, n, p), 0, (k) => {
        if (!flat && this.me === 0) return;
        const own = piece(this.me, k);
        seg.write(this.slot(this.me, k), buf.subarray(own.start, own.end), 'float32');
      }, (k) => {
        if (!flat && this.me !== 0) return;
        for (let c = 0; c < g; c++) {
          if (c === this.me) continue;
          const q = piece(c, k);
          seg.read(c, this.slot(c, k), buf.subarray(q.start, q.end), 'float32');
        }
      });
    }
    if (flat) return;
    if (this.me === 0) {
      const leaders = this.leaders as RingCommunicator;
      for (let m = 0; m < this.groups.length; m++) {
        const grp = this.groups[m];
        const start = shardRange(length, n, grp[0]).start;
        const end = shardRange(length, n, grp[grp.length - 1]).end;
        await leaders.broadcast(buf.subarray(start, end), { root: m, tag: `${tag}|gather${m}` });
      }
    }
    if (g > 1) await this.groupBroadcast(run, buf, 0, 'float32', null, steps);
  }

  private async broadcastFrom(run: Running, buf: Float32Array, root: number, tag: string): Promise<void> {
    const rootGroup = this.groups.findIndex((grp) => grp.includes(root));
    const g = this.group.length;
    const mine = rootGroup === this.groupIndex;
    if (mine && g > 1) await this.groupBroadcast(run, buf, this.group.indexOf(root), 'float32', null, 0);
    if (this.groups.length === 1) return;
    if (this.me === 0) await (this.leaders as RingCommunicator).broadcast(buf, { root: rootGroup, tag: `${tag}|leaders` });
    if (!mine && g > 1) await this.groupBroadcast(run, buf, 0, 'float32', null, 0);
  }
}

/**
 * The hierarchical all-reduce's result computed in one process, in its exact order: each group's sum in the ring
 * order (layout.ts) over the group's members, those sums combined in the ring order over groups, then / N.
 */
export function referenceHierarchicalAllReduce(inputs: Float32Array[], groups: number[][], options: { average?: boolean } = {}): Float32Array {
  const sums = groups.map((grp) => (grp.length === 1 ? inputs[grp[0]].slice() : referenceAllReduce(grp.map((r) => inputs[r]))));
  const out = sums.length === 1 ? sums[0] : referenceAllReduce(sums);
  if (options.average) for (let i = 0; i < out.length; i++) out[i] = out[i] / inputs.length;
  return out;
}

function divideInPlace(buf: Float32Array, divisor: number): void {
  const n = buf.length;
  for (let i = 0; i < n; i++) buf[i] = buf[i] / divisor;
}
