/**
 * Wire format. Every message is a 32-byte little-endian header followed by `payloadBytes` bytes:
 *
 *   0  u32 magic 'J4OF'      garbage is rejected on the first 4 bytes
 *   4  u8  version
 *   5  u8  kind              FrameKind
 *   6  u16 step              ring step of a collective
 *   8  u32 seq               collective sequence number on this communicator
 *   12 u32 index             bucket index within the collective
 *   16 u32 totalElements lo  whole buffer length of the collective, so ranks with different tensor sizes
 *   20 u32 totalElements hi  fail loudly instead of summing misaligned data
 *   24 u32 fingerprint       hash of (op, sizes, bucket size, caller tag); catches a worker on another config
 *   28 u32 payloadBytes
 *
 * The reader streams payload bytes straight into a sink chosen per header, so a 64 MB collective never
 * stages a second copy of a whole message, and a header for which no consumer is ready yet stalls the
 * reader (and pauses the socket, which back-pressures the sender through TCP) instead of buffering.
 */
import * as net from 'net';
import { DistributedError } from './errors';

export const HEADER_BYTES = 32;
export const MAGIC = 0x464f344a;
export const PROTOCOL_VERSION = 1;

export enum FrameKind {
  Challenge = 1,
  Hello = 2,
  Welcome = 3,
  Roster = 4,
  Error = 5,
  Abort = 6,
  AllReduce = 16,
  ReduceScatter = 17,
  AllGather = 18,
  Broadcast = 19,
  Barrier = 20,
}

const KNOWN_KINDS = new Set<number>(Object.values(FrameKind).filter((v): v is number => typeof v === 'number'));

export interface FrameHeader {
  kind: FrameKind;
  step: number;
  seq: number;
  index: number;
  totalElements: number;
  fingerprint: number;
  payloadBytes: number;
}

export function encodeHeader(h: FrameHeader): Buffer {
  const b = Buffer.allocUnsafe(HEADER_BYTES);
  b.writeUInt32LE(MAGIC, 0);
  b.writeUInt8(PROTOCOL_VERSION, 4);
  b.writeUInt8(h.kind, 5);
  b.writeUInt16LE(h.step, 6);
  b.writeUInt32LE(h.seq >>> 0, 8);
  b.writeUInt32LE(h.index >>> 0, 12);
  b.writeUInt32LE(h.totalElements % 0x100000000, 16);
  b.writeUInt32LE(Math.floor(h.totalElements / 0x100000000), 20);
  b.writeUInt32LE(h.fingerprint >>> 0, 24);
  b.writeUInt32LE(h.payloadBytes, 28);
  return b;
}

/** Throws a PROTOCOL error for anything that is not a frame of this protocol version. */
export function decodeHeader(b: Buffer, maxPayloadBytes: number): FrameHeader {
  const magic = b.readUInt32LE(0);
  if (magic !== MAGIC) {
    throw new DistributedError('PROTOCOL', `bad frame magic 0x${magic.toString(16).padStart(8, '0')} (not a janus4o peer)`);
  }
  const version = b.readUInt8(4);
  if (version !== PROTOCOL_VERSION) {
    throw new DistributedError('PROTOCOL', `peer speaks protocol version ${version}, this build speaks ${PROTOCOL_VERSION}`);
  }
  const kind = b.readUInt8(5);
  if (!KNOWN_KINDS.has(kind)) throw new DistributedError('PROTOCOL', `unknown frame kind ${kind}`);
  const payloadBytes = b.readUInt32LE(28);
  if (payloadBytes > maxPayloadBytes) {
    throw new DistributedError('PROTOCOL', `frame of ${payloadBytes} bytes exceeds the limit of ${maxPayloadBytes}`);
  }
  return {
    kind: kind as FrameKind,
    step: b.readUInt16LE(6),
    seq: b.readUInt32LE(8),
    index: b.readUInt32LE(12),
    totalElements: b.readUInt32LE(16) + b.readUInt32LE(20) * 0x100000000,
    fingerprint: b.readUInt32LE(24),
    payloadBytes,
  };
}

/** 32-bit FNV-1a: cheap, stable across processes and platforms, enough to tell configurations apart. */
export function fingerprint32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export interface PayloadSink {
  /** `bytes` is only valid during the call. */
  write(bytes: Uint8Array): void;
  end(): void;
}

/** Returns a sink for the frame, or null when no consumer is ready: the reader then stalls on it. */
export type HeaderHandler = (h: FrameHeader) => PayloadSink | null;

export class FrameReader {
  private readonly pending: Buffer[] = [];
  private readonly headerBuf = Buffer.allocUnsafe(HEADER_BYTES);
  private headerFill = 0;
  private header: FrameHeader | null = null;
  private sink: PayloadSink | null = null;
  private remaining = 0;
  private handler: HeaderHandler | null = null;

  constructor(public maxPayloadBytes: number) {}

  /** True when bytes wait for a consumer; the owner should pause the socket. */
  get stalled(): boolean {
    return this.pending.length > 0 || (this.header !== null && this.sink === null);
  }

  setHandler(handler: HeaderHandler | null): void {
    this.handler = handler;
  }

  /** Feeds bytes; throws on garbage. Parsing continues as long as handlers hand out sinks. */
  push(chunk: Buffer): void {
    if (chunk.length > 0) this.pending.push(chunk);
    this.pump();
  }

  /** Re-tries a stalled header, e.g. after a new collective installed its handler. */
  pump(): void {
    for (;;) {
      if (this.header !== null && this.sink === null) {
        if (!this.attachSink()) return;
        continue;
      }
      const chunk = this.pending[0];
      if (chunk === undefined) return;
      let used: number;
      if (this.header === null) {
        used = Math.min(HEADER_BYTES - this.headerFill, chunk.length);
        chunk.copy(this.headerBuf, this.headerFill, 0, used);
        this.headerFill += used;
        if (this.headerFill === HEADER_BYTES) {
          this.headerFill = 0;
          this.header = decodeHeader(this.headerBuf, this.maxPayloadBytes);
          this.remaining = this.header.payloadBytes;
        }
      } else {
        used = Math.min(this.remaining, chunk.length);
        this.remaining -= used;
        const sink = this.sink as PayloadSink;
        sink.write(chunk.subarray(0, used));
        if (this.remaining === 0) this.finishFrame();
      }
      if (used === chunk.length) this.pending.shift();
      else this.pending[0] = chunk.subarray(used);
    }
  }

  private attachSink(): boolean {
    const h = this.header as FrameHeader;
    if (this.handler === null) return false;
    const sink = this.handler(h);
    if (sink === null) return false;
    this.sink = sink;
    if (this.remaining === 0) this.finishFrame();
    return true;
  }

  private finishFrame(): void {
    const sink = this.sink as PayloadSink;
    this.header = null;
    this.sink = null;
    sink.end();
  }
}

/** Collects a whole (small) payload; used for control frames. */
export function collectSink(expectedBytes: number, done: (payload: Buffer) => void): PayloadSink {
  const out = Buffer.allocUnsafe(expectedBytes);
  let fill = 0;
  return {
    write(bytes) {
      out.set(bytes, fill);
      fill += bytes.length;
    },
    end() {
      done(out);
    },
  };
}

const ERROR_CODES = new Set<string>(['TIMEOUT', 'MISMATCH', 'PEER_LOST', 'ABORTED', 'AUTH', 'PROTOCOL', 'CONFIG', 'CLOSED']);

/** Error frames carry {code, message} so a worker reports rank 0's verdict with its original code. */
export function encodeError(err: DistributedError): Buffer {
  return Buffer.from(JSON.stringify({ code: err.code, message: err.message }));
}

function decodeError(p: Buffer): DistributedError {
  try {
    const parsed = JSON.parse(p.toString('utf8')) as { code?: unknown; message?: unknown };
    if (typeof parsed.code === 'string' && ERROR_CODES.has(parsed.code) && typeof parsed.message === 'string') {
      return new DistributedError(parsed.code as DistributedError['code'], `rank 0 reported: ${parsed.message}`);
    }
  } catch {
    // fall through: not JSON
  }
  return new DistributedError('PROTOCOL', `peer sent a malformed error frame`);
}

export interface ControlFrame {
  header: FrameHeader;
  payload: Buffer;
}

/**
 * A socket plus its frame reader. Owners swap the reader's handler as the connection moves from the
 * handshake to rendezvous control messages to collectives, without ever dropping bytes in between.
 */
export class FramedSocket {
  readonly reader: FrameReader;
  /** Set by the current owner; receives socket errors, EOF and garbage. */
  onFailure: ((err: DistributedError) => void) | null = null;
  private failure: DistributedError | null = null;
  private eofError: DistributedError | null = null;
  readonly remote: string;

  constructor(readonly socket: net.Socket, maxPayloadBytes: number, public label: string) {
    this.reader = new FrameReader(maxPayloadBytes);
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.reader.push(chunk);
      } catch (e) {
        this.fail(e instanceof DistributedError ? e : new DistributedError('PROTOCOL', String(e)));
        return;
      }
      if (this.reader.stalled) socket.pause();
    });
    socket.on('error', (e: Error) => this.fail(new DistributedError('PEER_LOST', `${this.label}: ${e.message}`)));
    // A peer that sent its last frames and hung up is only a failure once those frames are consumed.
    socket.on('end', () => this.failAfterDrain(new DistributedError('PEER_LOST', `${this.label}: connection closed by peer`)));
    socket.on('close', () => this.failAfterDrain(new DistributedError('PEER_LOST', `${this.label}: connection closed`)));
  }

  private failAfterDrain(err: DistributedError): void {
    if (this.reader.stalled) {
      if (this.eofError === null) this.eofError = err;
    } else {
      this.fail(err);
    }
  }

  get failed(): DistributedError | null {
    return this.failure;
  }

  /** Call after installing a handler that may accept a stalled frame. */
  kick(): void {
    try {
      this.reader.pump();
    } catch (e) {
      this.fail(e instanceof DistributedError ? e : new DistributedError('PROTOCOL', String(e)));
      return;
    }
    if (this.reader.stalled) return;
    if (this.eofError !== null) this.fail(this.eofError);
    else if (this.socket.isPaused() && !this.socket.destroyed) this.socket.resume();
  }

  /** Header and payload go out in one writev; the payload is referenced, not copied. */
  send(h: Omit<FrameHeader, 'payloadBytes'>, payload?: Uint8Array, onFlushed?: (err?: Error | null) => void): void {
    const body = payload ?? new Uint8Array(0);
    const header = encodeHeader({ ...h, payloadBytes: body.byteLength });
    this.socket.cork();
    this.socket.write(header);
    this.socket.write(body, onFlushed);
    this.socket.uncork();
  }

  /** Waits for one control frame of the given kinds; an Error frame from the peer rejects with its text. */
  receiveControl(kinds: FrameKind[], timeoutMs: number, what: string): Promise<ControlFrame> {
    return new Promise<ControlFrame>((resolve, reject) => {
      const prevFailure = this.onFailure;
      const finish = (err: DistributedError | null, frame?: ControlFrame): void => {
        clearTimeout(timer);
        this.reader.setHandler(null);
        this.onFailure = prevFailure;
        if (err) reject(err);
        else resolve(frame as ControlFrame);
      };
      const timer = setTimeout(
        () => finish(new DistributedError('TIMEOUT', `${this.label}: timed out after ${timeoutMs} ms waiting for ${what}`)),
        timeoutMs,
      );
      if (this.failure) return finish(this.failure);
      this.onFailure = (err) => finish(err);
      this.reader.setHandler((h) => {
        if (h.kind === FrameKind.Error) {
          return collectSink(h.payloadBytes, (p) => finish(decodeError(p)));
        }
        if (!kinds.includes(h.kind)) {
          throw new DistributedError('PROTOCOL', `${this.label}: expected ${what}, got frame kind ${FrameKind[h.kind] ?? h.kind}`);
        }
        return collectSink(h.payloadBytes, (payload) => finish(null, { header: h, payload }));
      });
      this.kick();
    });
  }

  fail(err: DistributedError): void {
    if (this.failure) return;
    this.failure = err;
    this.socket.destroy();
    const cb = this.onFailure;
    if (cb) cb(err);
  }

  /** Graceful close: queued frames are flushed before FIN; resolves once the socket is fully closed. */
  close(graceMs = 2000): Promise<void> {
    if (this.failure === null) this.failure = new DistributedError('CLOSED', `${this.label}: closed`);
    this.onFailure = null;
    const s = this.socket;
    if (s.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => s.destroy(), graceMs);
      s.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      s.resume();
      s.end();
    });
  }
}
