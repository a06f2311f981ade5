/**
 * Rendezvous and ring construction.
 *
 * 1. Every rank opens a ring listener on an ephemeral port. Rank 0 binds it, and the rendezvous
 *    listener, to MASTER_ADDR only; a worker binds it to the local address of its connection to rank 0,
 *    i.e. the interface that routes to the cluster.
 * 2. Workers connect to MASTER_ADDR:MASTER_PORT (retrying until the deadline), authenticate, and send
 *    their rank, world size, config fingerprint and ring address.
 * 3. When all ranks are in, rank 0 sends everyone the roster and closes the rendezvous port. A worker on
 *    another configuration or world size, or a duplicate rank, fails the whole job with a message naming
 *    it; a stranger that cannot authenticate is only dropped and logged.
 * 4. Each rank connects (authenticated) to rank+1's ring listener and accepts rank-1 on its own, then a
 *    barrier proves the ring works before anyone starts computing.
 * 5. Ranks on one node (topology.ts) also get a ring of their own group and, with several groups, the group
 *    leaders a ring of theirs (same listener, same handshake, the ring named in the hello); then each group sets
 *    up its shared-memory segments (shm.ts). If every group succeeds, the job's communicator is a
 *    ShmCommunicator; if any fails (no room in /dev/shm, no shared /dev/shm), every rank uses the TCP ring and
 *    the rank that found the cause logs it once.
 */
import * as net from 'net';
import { DistributedError, Logger, stderrLogger } from './errors';
import { PRE_AUTH_MAX_PAYLOAD, clientHandshake, controlFrame, deriveKey } from './auth';
import { encodeError, FramedSocket, FrameKind } from './framing';
import { Communicator, RingCommunicator } from './collectives';
import { acceptAuthenticated, boundAddress, closeServer, connectWithRetry, listen } from './net_util';
import { shmNativeReason } from './shm_native';
import { DEFAULT_SEGMENT_BYTES, DEFAULT_SHM_DIR, setupShmGroup, ShmOptions, ShmSegments } from './shm';
import { ShmCommunicator } from './shm_collectives';
import { describeTopology, planTopology, Topology } from './topology';
import * as crypto from 'crypto';

export interface RendezvousOptions {
  rank: number;
  worldSize: number;
  masterAddr: string;
  masterPort: number;
  /** Shared job secret (JANUS4O_JOB_SECRET); at least 16 characters. */
  secret: string;
  /** Any string that must be equal on all ranks, e.g. a hash of the training config. */
  configFingerprint?: string;
  /** Where rank 0 listens; defaults to masterAddr. Only for setups where MASTER_ADDR is not a local address. */
  bindAddr?: string;
  /** Overall limit for all ranks to arrive. */
  rendezvousTimeoutMs?: number;
  /** Limit of one TCP connect attempt. */
  connectTimeoutMs?: number;
  /** Limit for a connection to complete the handshake. */
  authTimeoutMs?: number;
  /** Limit for building the ring once the roster is out. */
  ringTimeoutMs?: number;
  /** Passed to the communicator: longest wait without progress inside one collective. */
  opTimeoutMs?: number;
  /** Elements per frame (bucket piece) in the collectives. */
  chunkElements?: number;
  /**
   * Where this rank runs (topology.nodeKey): ranks with equal keys may exchange data through shared memory.
   * Undefined: a node of its own (TCP only).
   */
  node?: string;
  /** 'auto' (default): shared memory inside a node where it works, TCP between nodes; 'tcp': the TCP ring only. */
  transport?: 'auto' | 'tcp';
  /** Shared-memory settings (shm.ts); groupSize cuts a node's ranks into groups of at most that many. */
  shm?: Partial<ShmOptions> & { groupSize?: number; spinWait?: boolean };
  log?: Logger;
}

/** The transport settings every rank must agree on (rank 0 checks them at rendezvous). */
function transportSetting(o: RendezvousOptions): string {
  return o.transport === 'tcp' ? 'tcp' : `auto/group ${o.shm?.groupSize ?? 'node'}`;
}

export const DEFAULT_RENDEZVOUS_TIMEOUT_MS = 10 * 60 * 1000;

interface Member {
  conn: FramedSocket;
  host: string;
  port: number;
  node: string;
}

interface PeerAddress {
  host: string;
  port: number;
  node: string;
}

interface Roster {
  peers: PeerAddress[];
  /** Random per job run; part of the shared-memory segment names. */
  nonce: string;
}

/** Joins the job and returns a communicator whose ring is proven by a barrier. */
export async function rendezvous(o: RendezvousOptions): Promise<Communicator> {
  const log = o.log ?? stderrLogger(`[janus4o dist rank ${o.rank}]`);
  validate(o);
  if (o.worldSize === 1) return new RingCommunicator({ rank: 0, worldSize: 1, links: null, log });
  const key = deriveKey(o.secret);
  const timeout = o.rendezvousTimeoutMs ?? DEFAULT_RENDEZVOUS_TIMEOUT_MS;
  const deadline = Date.now() + timeout;
  const connectTimeout = o.connectTimeoutMs ?? 10_000;
  const authTimeout = o.authTimeoutMs ?? 10_000;
  const config = o.configFingerprint ?? '';
  const node = o.node ?? `solo-${o.rank}-${crypto.randomBytes(8).toString('hex')}`;
  const transport = transportSetting(o);
  let roster: Roster;
  let ringServer: net.Server;
  let closeRendezvous: (() => Promise<void>) | undefined;
  if (o.rank === 0) {
    const server = await listen(o.bindAddr ?? o.masterAddr, o.masterPort);
    const bound = boundAddress(server);
    log(`rendezvous listening on ${bound.host}:${bound.port}, waiting for ${o.worldSize - 1} rank(s)`);
    try {
      ringServer = await listen(bound.host, 0);
      try {
        const { members, stop } = await gather(o, server, key, authTimeout, timeout, log);
        closeRendezvous = async () => {
          stop();
          await closeServer(server);
        };
        // Advertise the bound IP (a name like "localhost" may resolve to another family on the workers),
        // unless bindAddr made it a wildcard.
        const ring = boundAddress(ringServer);
        const wildcard = ring.host === '0.0.0.0' || ring.host === '::';
        roster = { peers: [{ host: wildcard ? o.masterAddr : ring.host, port: ring.port, node }], nonce: crypto.randomBytes(8).toString('hex') };
        for (let r = 1; r < o.worldSize; r++) {
          const m = members.get(r) as Member;
          roster.peers.push({ host: m.host, port: m.port, node: m.node });
        }
        const payload = Buffer.from(JSON.stringify(roster));
        await Promise.all([...members.values()].map((m) => {
          m.conn.send(controlFrame(FrameKind.Roster), payload);
          return m.conn.close();
        }));
      } catch (e) {
        await closeServer(ringServer);
        throw e;
      }
    } catch (e) {
      if (closeRendezvous) await closeRendezvous();
      else await closeServer(server);
      throw e;
    }
    // Rank 0 keeps the rendezvous port open while the job runs (unref'd, so it never keeps a finished
    // process alive): a restarted or late worker then fails at once with a clear message instead of
    // retrying until its deadline, and strangers are still authenticated-or-dropped.
    server.unref();
  } else {
    const what = `rank 0 (rendezvous)`;
    const socket = await connectWithRetry(o.masterAddr, o.masterPort, deadline, connectTimeout, what);
    const conn = new FramedSocket(socket, PRE_AUTH_MAX_PAYLOAD, `rendezvous with rank 0 at ${o.masterAddr}:${o.masterPort}`);
    try {
      ringServer = await listen(socket.localAddress ?? '127.0.0.1', 0);
      try {
        const me = boundAddress(ringServer);
        await clientHandshake(conn, key, 'rendezvous', { rank: o.rank, worldSize: o.worldSize, config, host: me.host, port: me.port, node, transport }, authTimeout);
        conn.reader.maxPayloadBytes = 1 << 20;
        // Rank 0 reports a missing-rank timeout itself; the slack lets its message arrive before ours.
        const wait = Math.max(1000, deadline - Date.now()) + 2000;
        const frame = await conn.receiveControl([FrameKind.Roster], wait, 'the roster from rank 0 (other ranks have not all arrived)');
        roster = parseRoster(frame.payload, o.worldSize);
      } catch (e) {
        await closeServer(ringServer);
        throw e;
      }
    } finally {
      await conn.close();
    }
  }
  try {
    return await buildRing(o, roster, ringServer, key, authTimeout, connectTimeout, log, closeRendezvous);
  } catch (e) {
    await closeRendezvous?.();
    throw e;
  }
}

function validate(o: RendezvousOptions): void {
  if (!Number.isInteger(o.worldSize) || o.worldSize < 1) throw new DistributedError('CONFIG', `world size must be a positive integer, got ${o.worldSize}`);
  if (!Number.isInteger(o.rank) || o.rank < 0 || o.rank >= o.worldSize) throw new DistributedError('CONFIG', `rank ${o.rank} is outside world size ${o.worldSize}`);
  if (!Number.isInteger(o.masterPort) || o.masterPort < 1 || o.masterPort > 65535) throw new DistributedError('CONFIG', `bad MASTER_PORT ${o.masterPort}`);
}

/** Rank 0: waits for every other rank, failing the job on a config mismatch or the deadline. */
function gather(
  o: RendezvousOptions, server: net.Server, key: Buffer, authTimeout: number, timeout: number, log: Logger,
): Promise<{ members: Map<number, Member>; stop: () => void }> {
  const members = new Map<number, Member>();
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err: DistributedError | null, offender?: FramedSocket): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err === null) return resolve({ members, stop });
      stop();
      log(err.message);
      // Tell every connected worker why, so each rank's log names the cause, not just a lost connection.
      const text = encodeError(err);
      const conns = [...members.values()].map((m) => m.conn);
      if (offender) conns.push(offender);
      for (const conn of conns) {
        if (!conn.failed) conn.send(controlFrame(FrameKind.Error), text);
        void conn.close();
      }
      reject(err);
    };
    const timer = setTimeout(() => {
      const missing: number[] = [];
      for (let r = 1; r < o.worldSize; r++) if (!members.has(r)) missing.push(r);
      finish(new DistributedError('TIMEOUT',
        `rendezvous at ${o.masterAddr}:${o.masterPort} timed out after ${timeout} ms: rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} of world size ${o.worldSize} never arrived (present: 0${[...members.keys()].sort((a, b) => a - b).map((r) => `, ${r}`).join('')})`));
    }, timeout);
    const stop = acceptAuthenticated(server, key, 'rendezvous', authTimeout, log, (conn, hello) => {
      const who = conn.remote;
      if (done) return refuseLate(conn, hello, o.worldSize, log);
      const h = hello as Partial<Record<'rank' | 'worldSize' | 'port', unknown>> & { config?: unknown; host?: unknown; node?: unknown; transport?: unknown };
      if (!isInt(h.rank) || !isInt(h.worldSize) || typeof h.config !== 'string' || typeof h.host !== 'string' || !isInt(h.port)
        || typeof h.node !== 'string' || h.node.length > 400 || typeof h.transport !== 'string') {
        conn.socket.destroy();
        log(`dropped authenticated rendezvous connection from ${who}: malformed hello`);
        return;
      }
      conn.onFailure = (err) => {
        if (!done) finish(new DistributedError('PEER_LOST', `rank ${String(h.rank)} left during rendezvous: ${err.message}`));
      };
      if (h.worldSize !== o.worldSize) {
        return finish(new DistributedError('CONFIG', `rank ${h.rank} (${who}) was started with world size ${h.worldSize}, rank 0 with ${o.worldSize}`), conn);
      }
      if (h.rank < 1 || h.rank >= o.worldSize || members.has(h.rank)) {
        return finish(new DistributedError('CONFIG', `${who} claims rank ${h.rank}, which is ${members.has(h.rank) ? 'already taken' : 'not a worker rank'} (world size ${o.worldSize})`), conn);
      }
      members.set(h.rank, { conn, host: h.host, port: h.port, node: h.node });
      const mine = o.configFingerprint ?? '';
      if (h.config !== mine) {
        return finish(new DistributedError('MISMATCH', `rank ${h.rank} runs configuration "${h.config}" but rank 0 runs "${mine}"; every worker must use the same config`));
      }
      if (h.transport !== transportSetting(o)) {
        return finish(new DistributedError('CONFIG', `rank ${h.rank} uses transport "${h.transport}" but rank 0 uses "${transportSetting(o)}"; JANUS4O_TRANSPORT and JANUS4O_SHM_GROUP_SIZE must be the same on every worker`));
      }
      log(`rank ${h.rank} joined from ${who} (${members.size + 1}/${o.worldSize})`);
      if (members.size === o.worldSize - 1) finish(null);
    });
  });
}

function refuseLate(conn: FramedSocket, hello: unknown, worldSize: number, log: Logger): void {
  const rank = (hello as { rank?: unknown }).rank;
  log(`refused late worker (claims rank ${String(rank)}) from ${conn.remote}: the job is already running`);
  const text = `rendezvous is already complete and the job is running with world size ${worldSize}; restart the whole job to change its workers`;
  conn.send(controlFrame(FrameKind.Error), encodeError(new DistributedError('CONFIG', text)));
  void conn.close();
}

function isInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v);
}

function parseRoster(payload: Buffer, worldSize: number): Roster {
  const parsed = JSON.parse(payload.toString('utf8')) as { peers?: unknown; nonce?: unknown };
  if (!Array.isArray(parsed.peers) || parsed.peers.length !== worldSize || typeof parsed.nonce !== 'string' || !/^[0-9a-f]{16}$/.test(parsed.nonce)) {
    throw new DistributedError('PROTOCOL', 'malformed roster from rank 0');
  }
  const peers = parsed.peers.map((p: unknown) => {
    const q = p as { host?: unknown; port?: unknown; node?: unknown };
    if (typeof q.host !== 'string' || !isInt(q.port) || typeof q.node !== 'string') throw new DistributedError('PROTOCOL', 'malformed roster entry from rank 0');
    return { host: q.host, port: q.port, node: q.node };
  });
  return { peers, nonce: parsed.nonce };
}

interface RingSpec {
  name: 'global' | 'local' | 'leaders';
  /** Global ranks in ring order. */
  members: number[];
}

/** The rings this rank is part of: always the global one; per topology the group's and the leaders'. */
function ringsFor(rank: number, t: Topology): RingSpec[] {
  const n = t.groups.reduce((a, g) => a + g.length, 0);
  const rings: RingSpec[] = [{ name: 'global', members: Array.from({ length: n }, (_, r) => r) }];
  if (t.kind !== 'hierarchical') return rings;
  const group = t.groups[t.group];
  if (group.length > 1) rings.push({ name: 'local', members: group });
  if (t.localIndex === 0) rings.push({ name: 'leaders', members: t.groups.map((g) => g[0]) });
  return rings;
}

async function buildRing(
  o: RendezvousOptions, roster: Roster, ringServer: net.Server, key: Buffer, authTimeout: number, connectTimeout: number, log: Logger,
  onClose: (() => Promise<void>) | undefined,
): Promise<Communicator> {
  const topology: Topology = o.transport === 'tcp'
    ? { ...planTopology(roster.peers.map((_, r) => `r${r}`), o.rank), reason: 'JANUS4O_TRANSPORT=tcp' }
    : planTopology(roster.peers.map((p) => p.node), o.rank, o.shm?.groupSize);
  const rings = ringsFor(o.rank, topology).filter((r) => r.members.length > 1);
  const ringTimeout = o.ringTimeoutMs ?? 60_000;
  const deadline = Date.now() + ringTimeout;
  const config = o.configFingerprint ?? '';
  const position = (r: RingSpec): { prev: number; next: number } => {
    const i = r.members.indexOf(o.rank);
    const m = r.members.length;
    return { prev: r.members[(i + m - 1) % m], next: r.members[(i + 1) % m] };
  };
  let stopAccepting = (): void => undefined;
  let timer: NodeJS.Timeout | undefined;
  const accepted = new Map<string, FramedSocket>();
  const prevAll = new Promise<void>((resolve, reject) => {
    timer = setTimeout(() => {
      const missing = rings.filter((r) => !accepted.has(r.name)).map((r) => `rank ${position(r).prev} (${r.name} ring)`);
      reject(new DistributedError('TIMEOUT', `${missing.join(', ')} did not connect to rank ${o.rank}'s ring listener within ${ringTimeout} ms`));
    }, ringTimeout);
    stopAccepting = acceptAuthenticated(ringServer, key, 'ring', authTimeout, log, (conn, hello) => {
      const h = hello as { rank?: unknown; config?: unknown; ring?: unknown };
      const ring = rings.find((r) => r.name === (h.ring ?? 'global'));
      if (ring === undefined || accepted.has(ring.name) || h.rank !== position(ring).prev || h.config !== config) {
        conn.socket.destroy();
        log(`dropped ring connection from ${conn.remote}: it claims rank ${String(h.rank)} on ring ${String(h.ring)}, expected ${rings.map((r) => `rank ${position(r).prev} on ring ${r.name}`).join(' or ')}`);
        return;
      }
      accepted.set(ring.name, conn);
      if (accepted.size === rings.length) resolve();
    });
  });
  const outgoing: FramedSocket[] = [];
  const links = new Map<string, { prev: FramedSocket; next: FramedSocket }>();
  try {
    const nexts = await Promise.all([
      ...rings.map(async (r) => {
        const nextRank = position(r).next;
        const peer = roster.peers[nextRank];
        const socket = await connectWithRetry(peer.host, peer.port, deadline, connectTimeout, `rank ${nextRank}'s ring listener`);
        const conn = new FramedSocket(socket, PRE_AUTH_MAX_PAYLOAD, `${r.name === 'global' ? 'ring' : `${r.name} ring`} link to rank ${nextRank}`);
        outgoing.push(conn);
        await clientHandshake(conn, key, 'ring', { rank: o.rank, config, ring: r.name }, authTimeout);
        return conn;
      }),
      prevAll.then(() => null),
    ]);
    rings.forEach((r, i) => {
      const prev = accepted.get(r.name) as FramedSocket;
      prev.label = `${r.name === 'global' ? 'ring' : `${r.name} ring`} link from rank ${position(r).prev}`;
      links.set(r.name, { prev, next: nexts[i] as FramedSocket });
    });
  } catch (e) {
    prevAll.catch(() => undefined);
    for (const c of [...outgoing, ...accepted.values()]) c.socket.destroy();
    throw e;
  } finally {
    clearTimeout(timer);
    stopAccepting();
    await closeServer(ringServer);
  }
  const made: RingCommunicator[] = [];
  const ringOf = (name: RingSpec['name']): RingCommunicator | null => {
    const spec = rings.find((r) => r.name === name);
    if (spec === undefined) return null;
    const comm = new RingCommunicator({
      rank: spec.members.indexOf(o.rank), worldSize: spec.members.length, links: links.get(name) ?? null,
      chunkElements: o.chunkElements, opTimeoutMs: o.opTimeoutMs, log, onClose: name === 'global' ? onClose : undefined,
    });
    made.push(comm);
    return comm;
  };
  const global = ringOf('global') as RingCommunicator;
  const local = ringOf('local');
  const leaders = ringOf('leaders');
  let segments: ShmSegments | null = null;
  try {
    await global.barrier({ tag: 'janus4o-ring-ready' });
    if (local) await local.barrier({ tag: 'janus4o-local-ring-ready' });
    if (leaders) await leaders.barrier({ tag: 'janus4o-leaders-ring-ready' });
    if (topology.kind === 'ring') return global;
    const group = topology.groups[topology.group];
    let unavailable = '';
    if (group.length > 1) {
      const r = await setupShmGroup({
        comm: local ?? global, index: topology.localIndex, members: group, secret: o.secret, nonce: roster.nonce,
        options: { dir: o.shm?.dir ?? DEFAULT_SHM_DIR, segmentBytes: o.shm?.segmentBytes ?? DEFAULT_SEGMENT_BYTES }, log,
      });
      if (r instanceof ShmSegments) segments = r;
      else unavailable = r.unavailable;
    }
    // All groups or none: a collective must take the same path on every rank.
    const [failedGroups] = await global.allReduce(Float32Array.from([unavailable ? 1 : 0]), { tag: 'janus4o-shm-ready' });
    if (failedGroups > 0) {
      segments?.close();
      await Promise.all([local, leaders].map((c) => c?.close()));
      if (o.rank === 0) log(`using the TCP ring: shared memory is unavailable on ${failedGroups} group(s)`);
      return global;
    }
    if (o.rank === 0) {
      const how = segments === null ? '' : segments.isMapped ? ' (segments mapped: native/shm_map.c)' : ` (pwrite/pread: ${shmNativeReason()})`;
      log(`transport: ${describeTopology(topology)}${how}`);
    }
    return new ShmCommunicator({
      rank: o.rank, worldSize: o.worldSize, groups: topology.groups, global, local: topology.kind === 'shm' ? global : local, leaders, segments, log,
      opTimeoutMs: o.opTimeoutMs, spinWait: o.shm?.spinWait,
    });
  } catch (e) {
    segments?.close();
    await Promise.all(made.map((c) => c.close()));
    throw e;
  }
}
