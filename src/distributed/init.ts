/**
 * Worker entry point: read the environment, join the job, return a communicator. The same call works
 * under our launcher, torchrun-style launchers, Kubernetes and Slurm, and in a plain single process
 * (world size 1, no sockets at all, so single-process training takes exactly the same code path).
 */
import { DistributedError, Logger, stderrLogger } from './errors';
import { DistEnv, EnvVars, readDistEnv } from './env';
import { rendezvous, RendezvousOptions } from './rendezvous';
import { Communicator, RingCommunicator } from './collectives';
import { nodeKey } from './topology';

/** Set by the launcher; a worker exits when its launcher is gone, so a killed launcher leaves no orphans. */
export const LAUNCHER_PID_VAR = 'JANUS4O_LAUNCHER_PID';

export interface InitOptions {
  env?: EnvVars;
  /** Must be equal on all ranks, e.g. a hash of the resolved training config. */
  configFingerprint?: string;
  log?: Logger;
  /** Overrides for RendezvousOptions (timeouts, bucket size). */
  overrides?: Partial<Omit<RendezvousOptions, 'rank' | 'worldSize' | 'masterAddr' | 'masterPort' | 'secret'>>;
}

export interface DistributedContext {
  env: DistEnv;
  comm: Communicator;
}

export async function initDistributed(options: InitOptions = {}): Promise<DistributedContext> {
  const env = readDistEnv(options.env ?? process.env);
  const log = options.log ?? stderrLogger(`[janus4o dist rank ${env.rank}/${env.worldSize}]`);
  if (env.worldSize === 1) return { env, comm: new RingCommunicator({ rank: 0, worldSize: 1, links: null, log }) };
  if (env.secret === undefined) {
    throw new DistributedError('CONFIG',
      'JANUS4O_JOB_SECRET is not set: every rank needs the same secret (the built-in launcher generates one; for Slurm or Kubernetes export e.g. `openssl rand -hex 32` to all ranks)');
  }
  watchLauncher(options.env ?? process.env, log);
  const comm = await rendezvous({
    rank: env.rank,
    worldSize: env.worldSize,
    masterAddr: env.masterAddr,
    masterPort: env.masterPort,
    secret: env.secret,
    bindAddr: env.bindAddr,
    rendezvousTimeoutMs: env.rendezvousTimeoutMs,
    opTimeoutMs: env.opTimeoutMs,
    configFingerprint: options.configFingerprint,
    node: nodeKey(env.rank, env.localRankKnown ? env.localRank : undefined),
    transport: env.transport,
    shm: { dir: env.shmDir, segmentBytes: env.shmSegmentBytes, groupSize: env.shmGroupSize },
    log,
    ...options.overrides,
  });
  return { env, comm };
}

let watching = false;

function watchLauncher(env: EnvVars, log: Logger): void {
  const raw = env[LAUNCHER_PID_VAR];
  if (raw === undefined || watching) return;
  const launcher = Number(raw);
  if (!Number.isInteger(launcher) || process.ppid !== launcher) return;
  watching = true;
  const timer = setInterval(() => {
    if (process.ppid !== launcher) {
      log(`launcher (pid ${launcher}) is gone; exiting`);
      process.exit(1);
    }
  }, 1000);
  timer.unref();
}
