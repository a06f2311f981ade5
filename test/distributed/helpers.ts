/**
 * Shared helpers for the distributed tests.
 *
 * Worker processes run plain JS. Rather than depend on dist/ (stale during development, and built from
 * the whole of src/, so any unrelated half-edited file would break these tests), the communication layer
 * (which only uses Node built-ins) is transpiled on its own into a temp directory keyed by the sources'
 * hash, once per content, atomically so parallel jest workers share it.
 */
import { ChildProcess, spawn } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as ts from 'typescript';
import { rendezvous, RendezvousOptions } from '../../src/distributed/rendezvous';
import { Communicator } from '../../src/distributed/collectives';
import { freePort } from '../../src/distributed/launcher';

export const SRC_DIR = path.resolve(__dirname, '../../src/distributed');
export const WORKERS_DIR = path.resolve(__dirname, 'workers');
export const SECRET = 'test-secret-0123456789abcdef';

export function buildDistModule(): string {
  const files = fs.readdirSync(SRC_DIR).filter((f) => f.endsWith('.ts')).sort();
  const hash = crypto.createHash('sha256');
  for (const f of files) hash.update(f).update(fs.readFileSync(path.join(SRC_DIR, f)));
  const dir = path.join(os.tmpdir(), `janus4o-dist-${hash.digest('hex').slice(0, 16)}`);
  if (fs.existsSync(path.join(dir, 'index.js'))) return dir;
  const staging = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-dist-build-'));
  for (const f of files) {
    const out = ts.transpileModule(fs.readFileSync(path.join(SRC_DIR, f), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
      fileName: f,
    });
    fs.writeFileSync(path.join(staging, f.replace(/\.ts$/, '.js')), out.outputText);
  }
  try {
    fs.renameSync(staging, dir);
  } catch {
    // Another jest worker won the race; its copy is identical.
    fs.rmSync(staging, { recursive: true, force: true });
  }
  return dir;
}

export interface ProcResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Proc {
  child: ChildProcess;
  done: Promise<ProcResult>;
  /** Resolves when the combined output contains `text`. */
  waitFor(text: string | RegExp, timeoutMs?: number): Promise<string>;
  output(): string;
}

export function startNode(script: string, args: string[], env: Record<string, string>): Proc {
  const child = spawn(process.execPath, [script, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const waiters: Array<() => void> = [];
  const poke = (): void => waiters.slice().forEach((w) => w());
  child.stdout?.on('data', (d: Buffer) => { stdout += d.toString(); poke(); });
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); poke(); });
  const done = new Promise<ProcResult>((resolve) => {
    child.once('close', (code, signal) => { poke(); resolve({ code, signal, stdout, stderr }); });
  });
  let exited = false;
  void done.then(() => { exited = true; poke(); });
  const output = (): string => stdout + stderr;
  const waitFor = (text: string | RegExp, timeoutMs = 30_000): Promise<string> => new Promise((resolve, reject) => {
    const check = (): void => {
      const all = output();
      const m = typeof text === 'string' ? (all.includes(text) ? text : null) : (text.exec(all)?.[0] ?? null);
      if (m !== null || exited) {
        clearTimeout(timer);
        waiters.splice(waiters.indexOf(check), 1);
        if (m !== null) resolve(m);
        else reject(new Error(`process exited before printing ${String(text)}:\n${all}`));
      }
    };
    const timer = setTimeout(() => {
      waiters.splice(waiters.indexOf(check), 1);
      reject(new Error(`timed out waiting for ${String(text)}:\n${output()}`));
    }, timeoutMs);
    waiters.push(check);
    check();
  });
  return { child, done, waitFor, output };
}

export function torchrunEnv(rank: number, worldSize: number, port: number, extra: Record<string, string> = {}): Record<string, string> {
  return {
    RANK: String(rank), WORLD_SIZE: String(worldSize), LOCAL_RANK: String(rank),
    MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), JANUS4O_JOB_SECRET: SECRET, ...extra,
  };
}

/** N communicators in this process, over real loopback sockets. */
export async function localRing(n: number, options: Partial<RendezvousOptions> = {}): Promise<Communicator[]> {
  const port = await freePort('127.0.0.1');
  return Promise.all(Array.from({ length: n }, (_, rank) => rendezvous({
    rank, worldSize: n, masterAddr: '127.0.0.1', masterPort: port, secret: SECRET,
    rendezvousTimeoutMs: 20_000, log: () => undefined, ...options,
  })));
}

export function closeAll(comms: Communicator[]): Promise<void[]> {
  return Promise.all(comms.map((c) => c.close()));
}

/** Deterministic test data whose sums depend on the addition order (magnitudes spread over 1e-3..1e3). */
export function randomBuffer(seed: number, length: number): Float32Array {
  // Shared with the JS workers, so both sides generate the same inputs.
  const gen = require(path.join(WORKERS_DIR, 'data.js')) as { randomBuffer(seed: number, length: number): Float32Array };
  return gen.randomBuffer(seed, length);
}
