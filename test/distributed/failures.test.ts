/** Failure handling between in-process ranks: mismatches, timeouts, strangers, impostors. */
import * as net from 'net';
import { Communicator } from '../../src/distributed/collectives';
import { DistributedError } from '../../src/distributed/errors';
import { rendezvous, RendezvousOptions } from '../../src/distributed/rendezvous';
import { freePort } from '../../src/distributed/launcher';
import { listen, closeServer } from '../../src/distributed/net_util';
import { FramedSocket, FrameKind, encodeHeader } from '../../src/distributed/framing';
import { PRE_AUTH_MAX_PAYLOAD, clientHandshake, controlFrame, deriveKey } from '../../src/distributed/auth';
import { closeAll, localRing, SECRET } from './helpers';

type Outcome = { ok: true } | { ok: false; err: DistributedError };

async function settle(p: Promise<unknown>): Promise<Outcome> {
  try {
    await p;
    return { ok: true };
  } catch (e) {
    if (!(e instanceof DistributedError)) throw e;
    return { ok: false, err: e };
  }
}

function failed(o: Outcome): DistributedError {
  if (o.ok) throw new Error('expected the operation to fail');
  return o.err;
}

function base(port: number, rank: number, worldSize: number, log: (m: string) => void = () => undefined): RendezvousOptions {
  return { rank, worldSize, masterAddr: '127.0.0.1', masterPort: port, secret: SECRET, rendezvousTimeoutMs: 20_000, log };
}

function connectRaw(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}

describe('mismatch detection', () => {
  test('different tensor sizes across ranks fail every rank with a message naming both sizes', async () => {
    const comms = await localRing(3, { chunkElements: 64 });
    try {
      const outcomes = await Promise.all(comms.map((c, r) => settle(c.allReduce(new Float32Array(r === 1 ? 1001 : 1000)))));
      for (const o of outcomes) {
        const err = failed(o);
        expect(['MISMATCH', 'ABORTED']).toContain(err.code);
        expect(err.message).toMatch(/1001 elements.*1000|1000 elements.*1001/);
      }
      // The communicator stays failed: later collectives are refused rather than mis-paired.
      expect(failed(await settle(comms[0].barrier())).code).toMatch(/MISMATCH|ABORTED/);
    } finally {
      await closeAll(comms);
    }
  });

  test('different options or tags (e.g. a worker on another config) and different op order are detected', async () => {
    let comms = await localRing(2);
    try {
      const outcomes = await Promise.all(comms.map((c, r) => settle(c.allReduce(new Float32Array(10), { tag: r === 0 ? 'params:v1' : 'params:v2' }))));
      for (const o of outcomes) expect(failed(o).message).toMatch(/fingerprint/);
    } finally {
      await closeAll(comms);
    }
    comms = await localRing(2);
    try {
      const outcomes = await Promise.all([settle(comms[0].allReduce(new Float32Array(10))), settle(comms[1].reduceScatter(new Float32Array(10)))]);
      expect(failed(outcomes[0]).message).toMatch(/rank 1 is running ReduceScatter/);
      expect(failed(outcomes[1]).message).toMatch(/rank 0 is running AllReduce/);
    } finally {
      await closeAll(comms);
    }
    comms = await localRing(2);
    try {
      const outcomes = await Promise.all(comms.map((c, r) => settle(c.allReduce(new Float32Array(4), { average: r === 0 }))));
      for (const o of outcomes) expect(failed(o).code).toBe('MISMATCH');
    } finally {
      await closeAll(comms);
    }
  });

  test('a worker with another config fingerprint or world size fails the rendezvous on all ranks', async () => {
    let port = await freePort('127.0.0.1');
    let outcomes = await Promise.all([0, 1, 2].map((r) => settle(rendezvous({ ...base(port, r, 3), configFingerprint: r === 2 ? 'cfg-B' : 'cfg-A' }))));
    for (const o of outcomes) expect(failed(o).message).toMatch(/rank 2 runs configuration "cfg-B" but rank 0 runs "cfg-A"/);
    port = await freePort('127.0.0.1');
    outcomes = await Promise.all([settle(rendezvous(base(port, 0, 2))), settle(rendezvous(base(port, 1, 3)))]);
    for (const o of outcomes) expect(failed(o).message).toMatch(/world size 3, rank 0 with 2/);
  });
});

describe('timeouts', () => {
  test('ranks that never arrive fail the rendezvous with a timeout naming them, on every rank present', async () => {
    const port = await freePort('127.0.0.1');
    const opts = (r: number): RendezvousOptions => ({ ...base(port, r, 4), rendezvousTimeoutMs: 1500 });
    const started = Date.now();
    const outcomes = await Promise.all([settle(rendezvous(opts(0))), settle(rendezvous(opts(1)))]);
    expect(Date.now() - started).toBeLessThan(10_000);
    for (const o of outcomes) {
      const err = failed(o);
      expect(err.code).toBe('TIMEOUT');
      expect(err.message).toMatch(/ranks 2, 3 of world size 4 never arrived/);
    }
  });

  test('a worker whose master never listens fails with a connect timeout naming the address', async () => {
    const port = await freePort('127.0.0.1');
    const err = failed(await settle(rendezvous({ ...base(port, 1, 2), rendezvousTimeoutMs: 800, connectTimeoutMs: 200 })));
    expect(err.code).toBe('TIMEOUT');
    expect(err.message).toContain(`127.0.0.1:${port}`);
  });

  test('a collective that a peer never joins times out with a clear error, and the peer learns of it', async () => {
    const comms = await localRing(2, { opTimeoutMs: 500 });
    try {
      const err = failed(await settle(comms[0].allReduce(new Float32Array(8))));
      expect(err.code).toBe('TIMEOUT');
      expect(err.message).toMatch(/allReduce #1 on rank 0 timed out after 500 ms waiting for step 0 bucket 0 from rank 1/);
      expect(failed(await settle(comms[1].allReduce(new Float32Array(8)))).code).toMatch(/ABORTED|PEER_LOST|MISMATCH/);
    } finally {
      await closeAll(comms);
    }
  });
});

describe('authentication', () => {
  test('a client without the secret and a garbage sender are dropped and logged; the job forms and works', async () => {
    const port = await freePort('127.0.0.1');
    const logs: string[] = [];
    const rank0 = rendezvous(base(port, 0, 2, (m) => logs.push(m)));
    await waitUntil(() => logs.some((l) => l.includes('listening')));
    const intruder = settle(rendezvous({ ...base(port, 1, 2), secret: 'not-the-secret-at-all' }));
    const garbage = await connectRaw(port);
    garbage.on('error', () => undefined);
    garbage.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(4)));
    const bigFrame = await connectRaw(port);
    bigFrame.on('error', () => undefined);
    bigFrame.write(encodeHeader({ ...controlFrame(FrameKind.Hello), payloadBytes: 1 << 30 }));
    const intruderErr = failed(await intruder);
    expect(intruderErr.code).toBe('AUTH');
    expect(intruderErr.message).toMatch(/JANUS4O_JOB_SECRET/);
    await waitUntil(() => logs.filter((l) => l.startsWith('rejected rendezvous connection')).length >= 3);
    expect(logs.join('\n')).toMatch(/wrong HMAC/);
    expect(logs.join('\n')).toMatch(/bad frame magic/);
    expect(logs.join('\n')).toMatch(/exceeds the limit/);
    const comms: Communicator[] = await Promise.all([rank0, rendezvous(base(port, 1, 2))]);
    try {
      const bufs = [Float32Array.from([1, 2, 3]), Float32Array.from([10, 20, 30])];
      await Promise.all(comms.map((c, r) => c.allReduce(bufs[r])));
      expect(Array.from(bufs[1])).toEqual([11, 22, 33]);
      // A late worker (even one with the secret) is told the job is running; strangers still get nothing.
      const late = failed(await settle(rendezvous(base(port, 1, 2))));
      expect(late.message).toMatch(/already complete/);
      await Promise.all(comms.map((c, r) => c.allReduce(bufs[r])));
      expect(Array.from(bufs[0])).toEqual([22, 44, 66]);
    } finally {
      garbage.destroy();
      bigFrame.destroy();
      await closeAll(comms);
    }
  });

  test('a worker refuses an impostor master that cannot prove the secret', async () => {
    const server = await listen('127.0.0.1', 0);
    const port = (server.address() as net.AddressInfo).port;
    server.removeAllListeners('connection');
    const seen: Buffer[] = [];
    server.on('connection', (s: net.Socket) => {
      const conn = new FramedSocket(s, PRE_AUTH_MAX_PAYLOAD, 'impostor');
      conn.send(controlFrame(FrameKind.Challenge), Buffer.alloc(32, 7));
      conn.receiveControl([FrameKind.Hello], 5000, 'hello').then((f) => {
        seen.push(f.payload);
        conn.send(controlFrame(FrameKind.Welcome), Buffer.alloc(32, 9));
      }, () => undefined);
    });
    try {
      const err = failed(await settle(rendezvous({ ...base(port, 1, 2), rendezvousTimeoutMs: 5000 })));
      expect(err.code).toBe('AUTH');
      expect(err.message).toMatch(/could not prove the job secret/);
      // The hello carried a MAC, never the secret itself.
      expect(seen.length).toBe(1);
      expect(seen[0].includes(Buffer.from(SECRET))).toBe(false);
    } finally {
      await closeServer(server);
    }
  });

  test('handshake helpers reject a key mismatch in both directions', async () => {
    const server = await listen('127.0.0.1', 0);
    const port = (server.address() as net.AddressInfo).port;
    const { acceptAuthenticated } = await import('../../src/distributed/net_util');
    const rejected: string[] = [];
    const stop = acceptAuthenticated(server, deriveKey(SECRET), 'ring', 2000, (m) => rejected.push(m), () => undefined);
    try {
      const socket = await connectRaw(port);
      const conn = new FramedSocket(socket, PRE_AUTH_MAX_PAYLOAD, 'client');
      const err = failed(await settle(clientHandshake(conn, deriveKey('another-secret-of-length'), 'ring', { rank: 0 }, 2000)));
      expect(err.code).toBe('AUTH');
      await waitUntil(() => rejected.length > 0);
      expect(rejected[0]).toMatch(/rejected ring connection .*wrong HMAC/);
      expect(() => deriveKey('short')).toThrow(/at least 16/);
    } finally {
      stop();
      await closeServer(server);
    }
  });
});

async function waitUntil(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 20));
  }
}
