/**
 * Mutual HMAC-SHA256 challenge-response over a fresh connection. The secret never crosses the wire: the
 * server sends a random nonce, the client answers with its own nonce, its hello (rank, ports, config
 * fingerprint) and HMAC(secret, label | role | server nonce | client nonce | hello), and the server proves
 * itself back with HMAC over the nonces in the other order. Fresh nonces on both sides defeat replay; the
 * role in the MAC stops a rendezvous answer being reflected onto a ring listener. Until the handshake
 * passes, frames are capped at a few KB and a deadline runs, so a stranger cannot make a rank allocate
 * memory or hold a connection open.
 */
import * as crypto from 'crypto';
import { DistributedError } from './errors';
import { FramedSocket, FrameKind } from './framing';

export const PRE_AUTH_MAX_PAYLOAD = 4096;
const NONCE_BYTES = 32;
const MAC_BYTES = 32;
const LABEL = 'janus4o-dist/v1';

export type AuthRole = 'rendezvous' | 'ring';

/** The key is derived, so a secret string of any length gives a full-size HMAC key. */
export function deriveKey(secret: string): Buffer {
  if (secret.length < 16) {
    throw new DistributedError('CONFIG', 'JANUS4O_JOB_SECRET must be at least 16 characters (use e.g. `openssl rand -hex 32`)');
  }
  return crypto.createHash('sha256').update(`${LABEL}/key\0${secret}`).digest();
}

function mac(key: Buffer, parts: Array<string | Buffer>): Buffer {
  const h = crypto.createHmac('sha256', key);
  for (const p of parts) {
    h.update(p);
    h.update('\0');
  }
  return h.digest();
}

function zeroFrame(kind: FrameKind): { kind: FrameKind; step: number; seq: number; index: number; totalElements: number; fingerprint: number } {
  return { kind, step: 0, seq: 0, index: 0, totalElements: 0, fingerprint: 0 };
}

/** Server side. Resolves with the client's hello (parsed JSON, not yet validated). */
export async function serverHandshake(conn: FramedSocket, key: Buffer, role: AuthRole, timeoutMs: number): Promise<unknown> {
  const serverNonce = crypto.randomBytes(NONCE_BYTES);
  conn.send(zeroFrame(FrameKind.Challenge), serverNonce);
  const hello = await conn.receiveControl([FrameKind.Hello], timeoutMs, 'authentication');
  const p = hello.payload;
  if (p.length < NONCE_BYTES + MAC_BYTES) throw new DistributedError('AUTH', 'hello too short');
  const clientNonce = p.subarray(0, NONCE_BYTES);
  const got = p.subarray(NONCE_BYTES, NONCE_BYTES + MAC_BYTES);
  const body = p.subarray(NONCE_BYTES + MAC_BYTES);
  const want = mac(key, [LABEL, role, 'client', serverNonce, clientNonce, body]);
  if (!crypto.timingSafeEqual(got, want)) throw new DistributedError('AUTH', 'wrong HMAC (client does not know the job secret)');
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new DistributedError('AUTH', 'authenticated hello is not JSON');
  }
  conn.send(zeroFrame(FrameKind.Welcome), mac(key, [LABEL, role, 'server', clientNonce, serverNonce]));
  return parsed;
}

/** Client side. Rejects unless the server proves it holds the same secret. */
export async function clientHandshake(conn: FramedSocket, key: Buffer, role: AuthRole, hello: object, timeoutMs: number): Promise<void> {
  const challenge = await conn.receiveControl([FrameKind.Challenge], timeoutMs, 'the authentication challenge');
  if (challenge.payload.length !== NONCE_BYTES) throw new DistributedError('AUTH', `${conn.label}: malformed challenge`);
  const serverNonce = challenge.payload;
  const clientNonce = crypto.randomBytes(NONCE_BYTES);
  const body = Buffer.from(JSON.stringify(hello), 'utf8');
  const m = mac(key, [LABEL, role, 'client', serverNonce, clientNonce, body]);
  conn.send(zeroFrame(FrameKind.Hello), Buffer.concat([clientNonce, m, body]));
  let welcome;
  try {
    welcome = await conn.receiveControl([FrameKind.Welcome], timeoutMs, 'the authentication answer');
  } catch (e) {
    if (e instanceof DistributedError && e.code === 'PEER_LOST') {
      throw new DistributedError('AUTH', `${conn.label}: the peer dropped the connection during authentication; is JANUS4O_JOB_SECRET the same on every rank?`);
    }
    throw e;
  }
  const want = mac(key, [LABEL, role, 'server', clientNonce, serverNonce]);
  if (welcome.payload.length !== MAC_BYTES || !crypto.timingSafeEqual(welcome.payload, want)) {
    throw new DistributedError('AUTH', `${conn.label}: the peer could not prove the job secret (impostor or a different job)`);
  }
}

export function controlFrame(kind: FrameKind): ReturnType<typeof zeroFrame> {
  return zeroFrame(kind);
}
