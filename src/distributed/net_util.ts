/**
 * Socket plumbing shared by the rendezvous and the ring: listening on one address, connecting with
 * retries until a deadline, and an accept loop that authenticates every connection and drops (and logs)
 * the ones that fail, without affecting anything else the listener is doing.
 */
import * as net from 'net';
import { DistributedError, Logger } from './errors';
import { AuthRole, PRE_AUTH_MAX_PAYLOAD, serverHandshake } from './auth';
import { FramedSocket } from './framing';

/** Beyond this many connections in the handshake at once, newcomers are refused outright. */
const MAX_PENDING_HANDSHAKES = 64;
const MAX_LOGGED_REJECTIONS = 50;

/**
 * Connections that arrive before anyone accepts on a listener (a neighbour can connect to our ring port
 * before our own roster arrives) wait here; without a 'connection' listener Node would leave them
 * dangling.
 */
const backlogs = new WeakMap<net.Server, net.Socket[]>();

function holdBacklog(server: net.Server): (socket: net.Socket) => void {
  const backlog: net.Socket[] = [];
  backlogs.set(server, backlog);
  return (socket) => {
    socket.pause();
    backlog.push(socket);
  };
}

export function listen(host: string, port: number): Promise<net.Server> {
  return new Promise<net.Server>((resolve, reject) => {
    const server = net.createServer({ pauseOnConnect: false, noDelay: true });
    server.on('connection', holdBacklog(server));
    server.once('error', (e: Error) => reject(new DistributedError('CONFIG', `cannot listen on ${host}:${port}: ${e.message}`)));
    server.listen({ host, port, exclusive: true }, () => {
      server.removeAllListeners('error');
      // Late errors (e.g. EMFILE on accept) must not crash the process; the deadlines report the outcome.
      server.on('error', () => undefined);
      resolve(server);
    });
  });
}

export function boundAddress(server: net.Server): { host: string; port: number } {
  const a = server.address();
  if (a === null || typeof a === 'string') throw new DistributedError('CONFIG', 'listener has no TCP address');
  return { host: a.address, port: a.port };
}

/**
 * Stops listening. Not waiting for close's callback is deliberate: it fires only after every accepted
 * connection has ended, and accepted connections (the ring's prev link) outlive their listener.
 */
export async function closeServer(server: net.Server): Promise<void> {
  if (server.listening) server.close();
  for (const socket of backlogs.get(server) ?? []) socket.destroy();
  backlogs.delete(server);
}

function connectOnce(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise<net.Socket>((resolve, reject) => {
    const socket = net.connect({ host, port, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connect timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (e: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(e);
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Retries every failure (refused, DNS not yet published, unreachable) because in Slurm and Kubernetes
 * jobs workers routinely start before rank 0 listens or before its name resolves.
 */
export async function connectWithRetry(host: string, port: number, deadline: number, attemptTimeoutMs: number, what: string): Promise<net.Socket> {
  const started = Date.now();
  let delay = 50;
  let lastError = 'no attempt';
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new DistributedError('TIMEOUT', `could not connect to ${what} at ${host}:${port} within ${Date.now() - started} ms (last error: ${lastError})`);
    }
    try {
      return await connectOnce(host, port, Math.max(1, Math.min(attemptTimeoutMs, left)));
    } catch (e) {
      lastError = e instanceof Error ? e.message : String(e);
    }
    await sleep(Math.max(0, Math.min(delay, deadline - Date.now())));
    delay = Math.min(delay * 2, 1000);
  }
}

export type PeerHandler = (conn: FramedSocket, hello: unknown) => void;

/** Authenticates every connection on `server`; `onPeer` gets only those that proved the secret. */
export function acceptAuthenticated(server: net.Server, key: Buffer, role: AuthRole, authTimeoutMs: number, log: Logger, onPeer: PeerHandler): () => void {
  const pending = new Set<FramedSocket>();
  let rejections = 0;
  const reject = (who: string, why: string): void => {
    rejections++;
    if (rejections <= MAX_LOGGED_REJECTIONS) log(`rejected ${role} connection from ${who}: ${why}`);
    else if (rejections === MAX_LOGGED_REJECTIONS + 1) log(`rejected more ${role} connections; not logging further rejections`);
  };
  const onConnection = (socket: net.Socket): void => {
    const who = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    if (pending.size >= MAX_PENDING_HANDSHAKES) {
      socket.destroy();
      reject(who, 'too many connections in the handshake');
      return;
    }
    const conn = new FramedSocket(socket, PRE_AUTH_MAX_PAYLOAD, `${role} connection from ${who}`);
    pending.add(conn);
    serverHandshake(conn, key, role, authTimeoutMs).then(
      (hello) => {
        pending.delete(conn);
        onPeer(conn, hello);
      },
      (e: unknown) => {
        pending.delete(conn);
        conn.socket.destroy();
        reject(who, e instanceof Error ? e.message : String(e));
      },
    );
  };
  server.removeAllListeners('connection');
  server.on('connection', onConnection);
  const early = backlogs.get(server) ?? [];
  backlogs.delete(server);
  for (const socket of early.splice(0)) {
    onConnection(socket);
    socket.resume();
  }
  return () => {
    server.off('connection', onConnection);
    server.on('connection', (socket: net.Socket) => socket.destroy());
    for (const conn of pending) conn.socket.destroy();
    pending.clear();
  };
}
