/**
 * Collectives over a unidirectional ring: every rank receives from rank-1 (`prev`) and sends to rank+1
 * (`next`). Ring all-reduce moves 2(N-1)/N of the buffer over each link, the bandwidth optimum.
 *
 * Pipelining: the engine is data-driven. At the start of an op a rank queues all of its step-0 pieces
 * (one frame per bucket); every received piece (step s, bucket k) is reduced or copied into place as its
 * bytes arrive and, once complete, piece (s+1, k) goes out at once. So while bucket k's next step is being
 * sent, bucket k+1 of the current step is being received, and every link streams continuously. Frames on
 * a link are therefore in (step, bucket) order, which the receiver checks along with op kind, sequence
 * number, element count and fingerprint.
 *
 * Sends reference the caller's buffer without copying. That is safe because a region is never written
 * again in the op after it was sent (causality around the ring: its final value can only come back after
 * the sent partial was consumed), and an op resolves only after its last write reached the kernel, so the
 * caller may reuse the buffer as soon as the promise settles.
 *
 * Layout and the exact summation order are in layout.ts.
 */
import { DistributedError, Logger } from './errors';
import { FramedSocket, FrameHeader, FrameKind, PayloadSink, collectSink, fingerprint32 } from './framing';
import { bucketCount, mod, pieceRange, Range, shardRange } from './layout';
import { addSink, copySink } from './sinks';
import type { ExchangeDtype } from './wire';

export interface CollectiveOptions {
  /** Mixed into the frame fingerprint, e.g. a hash of parameter names, so layouts are cross-checked. */
  tag?: string;
}
export interface ReduceOptions extends CollectiveOptions {
  /** Divide the sum by the world size (done once, by the shard owner). */
  average?: boolean;
  /**
   * What values travel as between ranks (wire.ts); sums accumulate in float32 either way. Default float32. The
   * shared-memory transport honours it; the TCP ring carries float32 regardless.
   */
  exchange?: ExchangeDtype;
}
export interface BroadcastOptions extends CollectiveOptions {
  root?: number;
}

export interface Communicator {
  readonly rank: number;
  readonly worldSize: number;
  /** How data moves, for logs and reports: 'single process', 'TCP ring', 'shared memory (...)', 'hierarchical (...)'. */
  readonly transport: string;
  /** In place; every rank ends with identical bytes. Resolves with `buf`. */
  allReduce(buf: Float32Array, options?: ReduceOptions): Promise<Float32Array>;
  /** Reduces into this rank's shard (layout.shardRange) and resolves with a view of it; the rest of `buf` is scratch. */
  reduceScatter(buf: Float32Array, options?: ReduceOptions): Promise<Float32Array>;
  /** Fills every shard of `buf` from its owner; this rank contributes its own shard. Resolves with `buf`. */
  allGatherInPlace(buf: Float32Array, options?: CollectiveOptions): Promise<Float32Array>;
  /** Concatenation of every rank's `local` in rank order (all ranks must pass the same length). */
  allGather(local: Float32Array, options?: CollectiveOptions): Promise<Float32Array>;
  /** In place: every rank ends with the root's bytes. */
  broadcast(buf: Float32Array, options?: BroadcastOptions): Promise<Float32Array>;
  barrier(options?: CollectiveOptions): Promise<void>;
  /** Flushes and closes the links; await it before the process exits. */
  close(): Promise<void>;
}

export interface RingLinks {
  prev: FramedSocket;
  next: FramedSocket;
}

export interface RingOptions {
  rank: number;
  worldSize: number;
  /** Null only when worldSize is 1. */
  links: RingLinks | null;
  chunkElements?: number;
  /** Longest wait without progress inside one collective. */
  opTimeoutMs?: number;
  log?: Logger;
  /** Extra cleanup run by close(), e.g. rank 0's rendezvous listener. */
  onClose?: () => Promise<void>;
}

export const DEFAULT_CHUNK_ELEMENTS = 256 * 1024;
export const DEFAULT_OP_TIMEOUT_MS = 10 * 60 * 1000;
const ABORT_GRACE_MS = 300;

interface OpSpec {
  kind: FrameKind;
  name: string;
  buf: Float32Array;
  steps: number;
  /** Steps 0 .. reduceSteps-1 add into the buffer; later steps copy. */
  reduceSteps: number;
  average: boolean;
  root: number;
  tag: string;
}

interface ActiveOp {
  spec: OpSpec;
  seq: number;
  fingerprint: number;
  buckets: number;
  expected: number;
  received: number;
  pendingWrites: number;
  /** Pieces this rank has sent in this op, and will send in all. */
  sent: number;
  toSend: number;
  timer: NodeJS.Timeout;
  resolve: () => void;
  reject: (err: DistributedError) => void;
}

export class RingCommunicator implements Communicator {
  readonly rank: number;
  readonly worldSize: number;
  readonly transport: string;
  private readonly links: RingLinks | null;
  private readonly chunkElements: number;
  private readonly opTimeoutMs: number;
  private readonly log: Logger;
  private seq = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private active: ActiveOp | null = null;
  private failure: DistributedError | null = null;
  /** The next rank hung up after this rank's part of the running op was out (see onLinkFailure). */
  private nextLost: DistributedError | null = null;
  private closed = false;
  private staging = new Float32Array(0);
  private readonly onClose: (() => Promise<void>) | undefined;

  constructor(options: RingOptions) {
    this.rank = options.rank;
    this.worldSize = options.worldSize;
    this.links = options.links;
    this.chunkElements = options.chunkElements ?? DEFAULT_CHUNK_ELEMENTS;
    this.opTimeoutMs = options.opTimeoutMs ?? DEFAULT_OP_TIMEOUT_MS;
    this.log = options.log ?? (() => undefined);
    this.onClose = options.onClose;
    this.transport = this.worldSize === 1 ? 'single process' : 'TCP ring';
    if (!Number.isInteger(this.chunkElements) || this.chunkElements < 1) throw new RangeError('chunkElements must be a positive integer');
    if ((this.worldSize > 1) !== (this.links !== null)) throw new RangeError('ring links are required exactly when worldSize > 1');
    if (this.links) {
      const { prev, next } = this.links;
      prev.onFailure = (err) => this.onLinkFailure(err, 'prev');
      next.onFailure = (err) => this.onLinkFailure(err, 'next');
      prev.reader.maxPayloadBytes = Math.max(this.chunkElements * 4, 1 << 16);
      prev.reader.setHandler((h) => this.onHeader(h));
      next.reader.setHandler(() => {
        throw new DistributedError('PROTOCOL', `rank ${mod(this.rank + 1, this.worldSize)} sent data backwards on the ring`);
      });
      prev.kick();
      next.kick();
    }
  }

  allReduce(buf: Float32Array, options: ReduceOptions = {}): Promise<Float32Array> {
    const n = this.worldSize - 1;
    return this.enqueue(
      { kind: FrameKind.AllReduce, name: 'allReduce', buf, steps: 2 * n, reduceSteps: n, average: !!options.average, root: 0, tag: options.tag ?? '' },
      () => buf,
    );
  }

  reduceScatter(buf: Float32Array, options: ReduceOptions = {}): Promise<Float32Array> {
    const n = this.worldSize - 1;
    const own = shardRange(buf.length, this.worldSize, this.rank);
    return this.enqueue(
      { kind: FrameKind.ReduceScatter, name: 'reduceScatter', buf, steps: n, reduceSteps: n, average: !!options.average, root: 0, tag: options.tag ?? '' },
      () => buf.subarray(own.start, own.end),
    );
  }

  allGatherInPlace(buf: Float32Array, options: CollectiveOptions = {}): Promise<Float32Array> {
    const n = this.worldSize - 1;
    return this.enqueue(
      { kind: FrameKind.AllGather, name: 'allGather', buf, steps: n, reduceSteps: 0, average: false, root: 0, tag: options.tag ?? '' },
      () => buf,
    );
  }

  allGather(local: Float32Array, options: CollectiveOptions = {}): Promise<Float32Array> {
    return allGatherThroughInPlace(this, local, options);
  }

  broadcast(buf: Float32Array, options: BroadcastOptions = {}): Promise<Float32Array> {
    const root = options.root ?? 0;
    const bad = badBroadcastRoot(root, this.worldSize);
    if (bad) return Promise.reject(bad);
    return this.enqueue(
      { kind: FrameKind.Broadcast, name: 'broadcast', buf, steps: 1, reduceSteps: 0, average: false, root, tag: options.tag ?? '' },
      () => buf,
    );
  }

  async barrier(options: CollectiveOptions = {}): Promise<void> {
    // An all-reduce is a barrier: a rank's last piece has passed through every other rank after it entered.
    const n = this.worldSize - 1;
    const buf = new Float32Array(1);
    await this.enqueue(
      { kind: FrameKind.Barrier, name: 'barrier', buf, steps: 2 * n, reduceSteps: n, average: false, root: 0, tag: options.tag ?? '' },
      () => buf,
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue.catch(() => undefined);
    if (!this.failure) this.failure = new DistributedError('CLOSED', `rank ${this.rank}: communicator is closed`);
    const closing: Array<Promise<void>> = [];
    if (this.links) closing.push(this.links.next.close(), this.links.prev.close());
    if (this.onClose) closing.push(this.onClose());
    await Promise.all(closing);
  }

  /** Why this communicator can no longer be used (a lost link, an abort, close()), or null. */
  get failed(): DistributedError | null {
    return this.failure ?? this.nextLost;
  }

  /**
   * Fails this communicator because something outside it failed (another transport of the same job): a running
   * collective rejects with `err`, and an abort naming this rank goes around the ring so the others stop too.
   */
  abort(err: DistributedError): void {
    if (this.failure || this.closed || this.worldSize === 1) return;
    this.fail(err, true);
  }

  private enqueue<T>(spec: OpSpec, result: () => T): Promise<T> {
    const run = async (): Promise<T> => {
      checkBuffer(spec.buf, spec.name);
      if (this.failure) throw this.failure;
      if (this.nextLost) throw this.nextLost;
      const seq = this.seq++;
      if (this.worldSize > 1) await this.run(spec, seq);
      return result();
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private run(spec: OpSpec, seq: number): Promise<void> {
    const { prev } = this.links as RingLinks;
    const n = this.worldSize;
    const length = spec.buf.length;
    const isBroadcast = spec.kind === FrameKind.Broadcast;
    const buckets = isBroadcast ? Math.max(1, Math.ceil(length / this.chunkElements)) : bucketCount(length, n, this.chunkElements);
    const fingerprint = fingerprint32(`${spec.name}|${length}|${this.chunkElements}|${spec.average ? 1 : 0}|${spec.root}|${spec.tag}`);
    const expected = isBroadcast ? (this.rank === spec.root ? 0 : buckets) : spec.steps * buckets;
    const toSend = isBroadcast ? (this.rank === spec.root || mod(this.rank + 1, n) !== spec.root ? buckets : 0) : spec.steps * buckets;
    if (this.staging.length < this.chunkElements && spec.reduceSteps > 0) this.staging = new Float32Array(this.chunkElements);
    return new Promise<void>((resolve, reject) => {
      const op: ActiveOp = { spec, seq, fingerprint, buckets, expected, received: 0, pendingWrites: 0, sent: 0, toSend, resolve, reject, timer: setTimeout(() => this.onTimeout(op), this.opTimeoutMs) };
      this.active = op;
      if (!isBroadcast || this.rank === spec.root) {
        for (let k = 0; k < buckets; k++) this.sendPiece(op, 0, k);
      }
      prev.kick();
      this.maybeFinish(op);
    });
  }

  /** Shard sent at `step`: reduce-scatter passes on shard r-s-1, all-gather shard r-t. */
  private sentShard(spec: OpSpec, step: number): number {
    return step < spec.reduceSteps ? mod(this.rank - step - 1, this.worldSize) : mod(this.rank - (step - spec.reduceSteps), this.worldSize);
  }

  private pieceOf(op: ActiveOp, shard: number, bucket: number): Range {
    const length = op.spec.buf.length;
    if (op.spec.kind === FrameKind.Broadcast) {
      const start = Math.min(bucket * this.chunkElements, length);
      return { start, end: Math.min(start + this.chunkElements, length) };
    }
    return pieceRange(length, this.worldSize, shard, bucket, this.chunkElements);
  }

  private sendPiece(op: ActiveOp, step: number, bucket: number): void {
    const { next } = this.links as RingLinks;
    const { spec } = op;
    const p = this.pieceOf(op, this.sentShard(spec, step), bucket);
    const bytes = new Uint8Array(spec.buf.buffer, spec.buf.byteOffset + p.start * 4, (p.end - p.start) * 4);
    op.pendingWrites++;
    op.sent++;
    const header = { kind: spec.kind, step, seq: op.seq, index: bucket, totalElements: spec.buf.length, fingerprint: op.fingerprint };
    next.send(header, bytes, (err) => {
      op.pendingWrites--;
      if (err) this.onLinkFailure(new DistributedError('PEER_LOST', `${spec.name} #${op.seq} on rank ${this.rank}: sending to rank ${mod(this.rank + 1, this.worldSize)} failed: ${err.message}`), 'next');
      else this.maybeFinish(op);
    });
  }

  private onHeader(h: FrameHeader): PayloadSink | null {
    if (h.kind === FrameKind.Abort) {
      return collectSink(h.payloadBytes, (p) => this.onAbort(p));
    }
    const op = this.active;
    // Frames beyond this op's share belong to the next collective: hold them until it starts.
    if (op === null || op.received >= op.expected) return null;
    const { spec } = op;
    const step = Math.floor(op.received / op.buckets);
    const bucket = op.received % op.buckets;
    this.checkHeader(op, h, step, bucket);
    const recvShard = step < spec.reduceSteps ? mod(this.rank - step - 2, this.worldSize) : mod(this.rank - (step - spec.reduceSteps) - 1, this.worldSize);
    const p = this.pieceOf(op, recvShard, bucket);
    if (h.payloadBytes !== (p.end - p.start) * 4) {
      throw this.mismatch(op, `frame for step ${step} bucket ${bucket} carries ${h.payloadBytes} bytes, expected ${(p.end - p.start) * 4}`);
    }
    const target = spec.buf.subarray(p.start, p.end);
    const done = (): void => this.onPiece(op, step, bucket, target);
    const progress = (): void => {
      op.timer.refresh();
    };
    return step < spec.reduceSteps ? addSink(this.staging, target, progress, done) : copySink(target, progress, done);
  }

  private checkHeader(op: ActiveOp, h: FrameHeader, step: number, bucket: number): void {
    const { spec } = op;
    const from = mod(this.rank - 1, this.worldSize);
    if (h.kind !== spec.kind) {
      throw this.mismatch(op, `rank ${from} is running ${FrameKind[h.kind] ?? h.kind} #${h.seq} (ranks call collectives in a different order)`);
    }
    if (h.totalElements !== spec.buf.length) {
      throw this.mismatch(op, `rank ${from} has ${h.totalElements} elements, this rank has ${spec.buf.length} (tensor sizes differ across ranks)`);
    }
    if (h.seq !== op.seq) {
      throw this.mismatch(op, `rank ${from} is at collective #${h.seq} (ranks ran a different number of collectives)`);
    }
    if (h.fingerprint !== op.fingerprint) {
      throw this.mismatch(op, `rank ${from} uses different options, tag or bucket size (fingerprint ${hex(h.fingerprint)} vs ${hex(op.fingerprint)}; a worker on another config?)`);
    }
    if (h.step !== step || h.index !== bucket) {
      throw this.mismatch(op, `expected step ${step} bucket ${bucket}, got step ${h.step} bucket ${h.index}`);
    }
  }

  private mismatch(op: ActiveOp, detail: string): DistributedError {
    return new DistributedError('MISMATCH', `${op.spec.name} #${op.seq} on rank ${this.rank}: ${detail}`);
  }

  private onPiece(op: ActiveOp, step: number, bucket: number, target: Float32Array): void {
    if (this.active !== op) return;
    const { spec } = op;
    op.received++;
    op.timer.refresh();
    if (spec.average && step === spec.reduceSteps - 1) {
      for (let i = 0; i < target.length; i++) target[i] = target[i] / this.worldSize;
    }
    if (spec.kind === FrameKind.Broadcast) {
      if (mod(this.rank + 1, this.worldSize) !== spec.root) this.sendPiece(op, 0, bucket);
    } else if (step + 1 < spec.steps) {
      this.sendPiece(op, step + 1, bucket);
    }
    this.maybeFinish(op);
  }

  private maybeFinish(op: ActiveOp): void {
    if (this.active !== op || op.received < op.expected || op.pendingWrites > 0) return;
    clearTimeout(op.timer);
    this.active = null;
    op.resolve();
  }

  private onTimeout(op: ActiveOp): void {
    if (this.active !== op) return;
    const step = Math.floor(op.received / op.buckets);
    const what = op.received < op.expected
      ? `waiting for step ${step} bucket ${op.received % op.buckets} from rank ${mod(this.rank - 1, this.worldSize)} (${op.received}/${op.expected} pieces received)`
      : `waiting for rank ${mod(this.rank + 1, this.worldSize)} to accept ${op.pendingWrites} queued piece(s)`;
    this.fail(new DistributedError('TIMEOUT', `${op.spec.name} #${op.seq} on rank ${this.rank} timed out after ${this.opTimeoutMs} ms ${what}`), true);
  }

  private onAbort(payload: Buffer): void {
    let origin = -1;
    let message = payload.toString('utf8');
    try {
      const parsed = JSON.parse(message) as { rank?: unknown; message?: unknown };
      if (typeof parsed.rank === 'number') origin = parsed.rank;
      if (typeof parsed.message === 'string') message = parsed.message;
    } catch {
      // keep the raw text
    }
    const err = new DistributedError('ABORTED', `rank ${origin} aborted the job: ${message}`);
    this.failWith(err, origin !== mod(this.rank + 1, this.worldSize), origin, message);
  }

  private onLinkFailure(err: DistributedError, link: 'prev' | 'next'): void {
    // A peer that hangs up between collectives has finished (or died); only a loss mid-op is an abort,
    // and prev is no longer needed once this op has received all its pieces.
    const op = this.active;
    if (op === null || (link === 'prev' && op.received >= op.expected)) {
      if (!this.failure) this.failure = err;
      return;
    }
    const { prev } = this.links as RingLinks;
    if (prev.failed) {
      this.fail(err, true);
      return;
    }
    if (link === 'next' && op.sent >= op.toSend) {
      // Everything this op sends was out when the next rank hung up: most likely it completed the op and left
      // (a loaded machine may still be working through what prev sent). The op completes from what prev delivers,
      // or fails with prev; later collectives fail at once.
      if (this.nextLost === null) this.nextLost = err;
      this.maybeFinish(op);
      return;
    }
    // The next rank hung up, most likely because it detected an error; its abort message travels the
    // ring to our prev link and names the cause, so give it a moment before reporting a bare disconnect.
    const grace = setTimeout(() => {
      if (this.active === op) this.fail(err, true);
    }, ABORT_GRACE_MS);
    grace.unref();
  }

  private fail(err: DistributedError, forward: boolean): void {
    this.failWith(err, forward, this.rank, err.message);
  }

  private failWith(err: DistributedError, forward: boolean, origin: number, message: string): void {
    if (this.failure && this.active === null) return;
    this.failure = err;
    const op = this.active;
    this.active = null;
    if (op) {
      clearTimeout(op.timer);
      this.log(err.message);
      op.reject(err);
    }
    if (!this.links) return;
    const { next, prev } = this.links;
    if (forward && !next.failed && next.socket.writable) {
      next.send({ kind: FrameKind.Abort, step: 0, seq: 0, index: 0, totalElements: 0, fingerprint: 0 }, Buffer.from(JSON.stringify({ rank: origin, message })));
    }
    void next.close(1000);
    void prev.close(1000);
  }
}

export function checkBuffer(buf: Float32Array, name: string): void {
  if (!(buf instanceof Float32Array)) throw new TypeError(`${name}: expected a Float32Array`);
}

/** The error for a broadcast root that is not a rank of the world, or null. */
export function badBroadcastRoot(root: number, worldSize: number): RangeError | null {
  return Number.isInteger(root) && root >= 0 && root < worldSize ? null : new RangeError(`broadcast root ${root} is not a rank of a world of ${worldSize}`);
}

/** allGather for any communicator with an in-place all-gather: this rank's block placed at its offset, then gathered. */
export function allGatherThroughInPlace(comm: Pick<Communicator, 'rank' | 'worldSize' | 'allGatherInPlace'>, local: Float32Array, options: CollectiveOptions = {}): Promise<Float32Array> {
  checkBuffer(local, 'allGather');
  const out = new Float32Array(local.length * comm.worldSize);
  out.set(local, local.length * comm.rank);
  return comm.allGatherInPlace(out, options);
}

function hex(v: number): string {
  return `0x${v.toString(16).padStart(8, '0')}`;
}
