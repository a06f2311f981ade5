/**
 * Single-machine launcher: N worker processes with the torchrun variables set, one process group each.
 *
 * Process groups: a worker may start helpers of its own; signalling the group (kill(-pid)) reaches them
 * too, so "stop everything" leaves nothing behind. Because detached workers do not receive the
 * terminal's Ctrl-C, the launcher forwards SIGINT/SIGTERM itself. Workers also poll their parent pid
 * (JANUS4O_LAUNCHER_PID, see init.ts) so that even a SIGKILLed launcher leaves no orphans.
 *
 * When a worker fails, the others are sent SIGTERM, then SIGKILL after a grace period. The report names
 * the rank that caused it: a worker killed by an outside signal, else one that failed on its own, over
 * neighbours that exited only because their ring link to it broke (see SECONDARY_FAILURE).
 *
 * Once every worker is gone, the launcher removes any shared-memory segment file of the job still named in
 * /dev/shm (shm.ts: workers unlink their segments right after setup, so only a worker killed during setup can
 * leave one).
 */
import { ChildProcess, spawn } from 'child_process';
import * as crypto from 'crypto';
import * as readline from 'readline';
import { EnvVars } from './env';
import { SECONDARY_FAILURE } from './errors';
import { LAUNCHER_PID_VAR } from './init';
import { boundAddress, closeServer, listen } from './net_util';
import { DEFAULT_SHM_DIR, removeJobSegments } from './shm';

export interface LaunchOptions {
  /** Node script every worker runs. */
  script: string;
  args?: string[];
  /** Workers on this machine. */
  nproc: number;
  /** Machines in the job, each running this launcher with the same nproc (torchrun's --nnodes). */
  nnodes?: number;
  /** This machine's index, 0..nnodes-1; node 0 hosts rank 0 (torchrun's --node-rank). */
  nodeRank?: number;
  /** Extra node flags, e.g. ['--max-old-space-size=16384']. */
  nodeArgs?: string[];
  /** Base environment of the workers (default process.env). */
  env?: EnvVars;
  masterAddr?: string;
  /** Default: MASTER_PORT from the environment, else a free port. */
  masterPort?: number;
  /** true: CUDA_VISIBLE_DEVICES = one device per local rank (from the inherited list, else 0..N-1). */
  gpus?: boolean | string[];
  /** Between SIGTERM and SIGKILL when stopping workers. */
  graceMs?: number;
  /** Lines of each worker's output kept for the failure report. */
  tailLines?: number;
  forwardSignals?: boolean;
  /** Receives every output line; default prefixes it with the rank and copies it to our stdout/stderr. */
  onLine?: (rank: number, stream: 'stdout' | 'stderr', line: string) => void;
}

export interface WorkerExit {
  rank: number;
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface LaunchResult {
  /** 0 on success; what the launcher process should exit with. */
  exitCode: number;
  /** The rank blamed for the failure, or null. */
  failedRank: number | null;
  /** Human-readable failure report (rank, exit status, last lines), or null. */
  message: string | null;
  exits: WorkerExit[];
  pids: number[];
}

/** What the failure report needs to know of one worker. */
export interface WorkerRecord {
  rank: number;
  pid: number;
  tail: string[];
  exit: WorkerExit | null;
  /** Signals we sent it; an exit by any other signal (a SIGKILL from outside while we only sent SIGTERM) is its own failure. */
  signalsSent: Set<NodeJS.Signals>;
  exitOrder: number;
}

interface Worker extends WorkerRecord {
  child: ChildProcess;
  closed: Promise<void>;
}

const SIGNAL_CODES: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 2, SIGTERM: 15 };

export async function freePort(host: string): Promise<number> {
  const server = await listen(host, 0);
  const { port } = boundAddress(server);
  await closeServer(server);
  return port;
}

export function deviceList(gpus: boolean | string[] | undefined, nproc: number, env: EnvVars): string[] | null {
  if (gpus === undefined || gpus === false) return null;
  const list = Array.isArray(gpus)
    ? gpus
    : env.CUDA_VISIBLE_DEVICES !== undefined && env.CUDA_VISIBLE_DEVICES.trim() !== ''
      ? env.CUDA_VISIBLE_DEVICES.split(',').map((s) => s.trim())
      : Array.from({ length: nproc }, (_, i) => String(i));
  if (list.length < nproc) throw new Error(`${nproc} workers need ${nproc} GPUs, only ${list.length} visible (${list.join(',')})`);
  return list;
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

export async function launch(o: LaunchOptions): Promise<LaunchResult> {
  if (!Number.isInteger(o.nproc) || o.nproc < 1) throw new Error(`nproc must be a positive integer, got ${o.nproc}`);
  const nnodes = o.nnodes ?? 1;
  const nodeRank = o.nodeRank ?? 0;
  if (!Number.isInteger(nnodes) || nnodes < 1 || !Number.isInteger(nodeRank) || nodeRank < 0 || nodeRank >= nnodes) {
    throw new Error(`node rank ${nodeRank} is not within ${nnodes} node(s)`);
  }
  const base = o.env ?? process.env;
  const masterAddr = o.masterAddr ?? base.MASTER_ADDR;
  const portText = o.masterPort ?? base.MASTER_PORT;
  if (nnodes > 1) {
    // Every node must agree on where rank 0 listens and on the secret; none of it can be made up locally.
    if (masterAddr === undefined || portText === undefined) throw new Error('a multi-node launch needs --master-addr and --master-port (or MASTER_ADDR/MASTER_PORT)');
    if (base.JANUS4O_JOB_SECRET === undefined) throw new Error('a multi-node launch needs the same JANUS4O_JOB_SECRET on every node');
  }
  const addr = masterAddr ?? '127.0.0.1';
  const masterPort = portText !== undefined ? Number(portText) : await freePort(addr);
  const secret = base.JANUS4O_JOB_SECRET ?? crypto.randomBytes(32).toString('hex');
  const devices = deviceList(o.gpus, o.nproc, base);
  const graceMs = o.graceMs ?? 5000;
  const tailLines = o.tailLines ?? 20;
  const onLine = o.onLine ?? ((rank, stream, line) => (stream === 'stdout' ? process.stdout : process.stderr).write(`[rank ${rank}] ${line}\n`));

  const workers: Worker[] = [];
  let exitCounter = 0;
  let stopping = false;
  let interrupted: NodeJS.Signals | null = null;
  let killTimer: NodeJS.Timeout | undefined;

  const stopAll = (signal: NodeJS.Signals): void => {
    for (const w of workers) {
      if (w.exit === null) {
        w.signalsSent.add(signal);
        killGroup(w.pid, signal);
      }
    }
    if (killTimer === undefined) {
      killTimer = setTimeout(() => {
        for (const w of workers) {
          if (w.exit === null) {
            w.signalsSent.add('SIGKILL');
            killGroup(w.pid, 'SIGKILL');
          }
        }
      }, graceMs);
    }
  };

  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted !== null) {
      // A second Ctrl-C means now.
      for (const w of workers) {
        if (w.exit === null) {
          w.signalsSent.add('SIGKILL');
          killGroup(w.pid, 'SIGKILL');
        }
      }
      return;
    }
    interrupted = signal;
    stopping = true;
    stopAll(signal);
  };
  if (o.forwardSignals !== false) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }

  try {
    for (let local = 0; local < o.nproc; local++) {
      const rank = nodeRank * o.nproc + local;
      const env: EnvVars = {
        ...base,
        RANK: String(rank), LOCAL_RANK: String(local), GROUP_RANK: String(nodeRank),
        WORLD_SIZE: String(nnodes * o.nproc), LOCAL_WORLD_SIZE: String(o.nproc),
        MASTER_ADDR: addr, MASTER_PORT: String(masterPort),
        JANUS4O_JOB_SECRET: secret, [LAUNCHER_PID_VAR]: String(process.pid),
      };
      if (devices) env.CUDA_VISIBLE_DEVICES = devices[local];
      const child = spawn(process.execPath, [...(o.nodeArgs ?? []), o.script, ...(o.args ?? [])], {
        env, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
      });
      const w: Worker = { rank, child, pid: child.pid ?? -1, tail: [], exit: null, closed: Promise.resolve(), signalsSent: new Set(), exitOrder: 0 };
      w.closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
      for (const stream of ['stdout', 'stderr'] as const) {
        const rl = readline.createInterface({ input: child[stream] as NodeJS.ReadableStream, crlfDelay: Infinity });
        rl.on('line', (line) => {
          w.tail.push(line);
          if (w.tail.length > tailLines) w.tail.shift();
          onLine(rank, stream, line);
        });
      }
      child.once('error', (e) => {
        w.tail.push(`spawn failed: ${e.message}`);
        if (w.exit === null) w.exit = { rank, pid: w.pid, code: 127, signal: null };
      });
      child.once('exit', (code, signal) => {
        w.exit = { rank, pid: w.pid, code, signal };
        w.exitOrder = ++exitCounter;
        // Leftover helpers of an exited worker would otherwise outlive the job.
        killGroup(w.pid, 'SIGKILL');
        const failed = code !== 0 || signal !== null;
        if (failed && !stopping) {
          stopping = true;
          stopAll('SIGTERM');
        }
      });
      workers.push(w);
    }
    await Promise.all(workers.map((w) => w.closed));
  } finally {
    clearTimeout(killTimer);
    if (workers.every((w) => w.exit !== null)) removeJobSegments(base.JANUS4O_SHM_DIR?.trim() || DEFAULT_SHM_DIR, secret);
    if (o.forwardSignals !== false) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  }
  return report(workers, interrupted);
}

function describe(e: WorkerExit): string {
  return e.signal !== null ? `was killed by ${e.signal}` : `exited with code ${e.code}`;
}

export function report(workers: WorkerRecord[], interrupted: NodeJS.Signals | null): LaunchResult {
  const exits = workers.map((w) => w.exit ?? { rank: w.rank, pid: w.pid, code: null, signal: null });
  const pids = workers.map((w) => w.pid);
  // A worker's exit event can arrive after a neighbour's (which made us signal everyone), so "we signalled it"
  // proves little. An exit by a signal we sent is never a failure. An exit code after we signalled is either
  // the worker obeying our SIGTERM or its own failure that raced our signal: never listed as a failure, but
  // blamed when nobody else failed on their own (exits of the ranks that only lost a peer can be processed
  // first under load).
  const failed = (w: WorkerRecord): boolean => w.exit !== null && (w.exit.code !== 0 || w.exit.signal !== null);
  const byOurSignal = (w: WorkerRecord): boolean => w.exit?.signal != null && w.signalsSent.has(w.exit.signal);
  const afterOurSignal = (w: WorkerRecord): boolean => w.exit?.signal === null && w.signalsSent.size > 0;
  const failures = workers.filter((w) => failed(w) && !byOurSignal(w) && !afterOurSignal(w));
  const raced = workers.filter((w) => failed(w) && afterOurSignal(w));
  if (interrupted !== null && failures.length === 0) {
    return { exitCode: 128 + (SIGNAL_CODES[interrupted] ?? 1), failedRank: null, message: `interrupted by ${interrupted}; stopped all workers`, exits, pids };
  }
  const secondary = (w: WorkerRecord): boolean => w.tail.some((l) => SECONDARY_FAILURE.test(l));
  const candidates = interrupted !== null ? failures : [...failures, ...raced.filter((w) => !secondary(w))];
  if (candidates.length === 0) return { exitCode: 0, failedRank: null, message: null, exits, pids };
  // Rank a worker killed by an outside signal first, then one that failed on its own, then one whose own
  // failure raced our SIGTERM, then those that only lost a peer.
  const severity = (w: WorkerRecord): number => (w.exit?.signal ? 0 : raced.includes(w) ? 2 : secondary(w) ? 3 : 1);
  candidates.sort((a, b) => severity(a) - severity(b) || a.exitOrder - b.exitOrder);
  const blamed = candidates[0];
  const e = blamed.exit as WorkerExit;
  const lines = blamed.tail.length > 0 ? blamed.tail.map((l) => `  | ${l}`).join('\n') : '  | (no output)';
  const others = failures.filter((w) => w !== blamed).map((w) => `rank ${w.rank} ${describe(w.exit as WorkerExit)}`);
  const message = `worker rank ${blamed.rank} (pid ${blamed.pid}) ${describe(e)}; its last ${blamed.tail.length} line(s):\n${lines}`
    + (others.length > 0 ? `\nalso failed: ${others.join('; ')}` : '')
    + '\nstopped all other workers';
  return { exitCode: 1, failedRank: blamed.rank, message, exits, pids };
}
