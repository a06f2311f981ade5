/**
 * Where a worker learns its place in the job. Precedence: the torchrun convention (RANK, WORLD_SIZE,
 * LOCAL_RANK, MASTER_ADDR, MASTER_PORT; also what the Kubernetes training operator and our own launcher
 * set), then Slurm (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, rank 0 on the first host of the step's
 * node list), then a single process. torchrun inside a Slurm allocation therefore wins over Slurm's
 * variables, which describe srun's tasks, not torchrun's workers.
 */
import { DistributedError } from './errors';
import { ExchangeDtype, parseExchangeDtype } from './wire';

export type DistSource = 'torchrun' | 'slurm' | 'single';

export interface DistEnv {
  source: DistSource;
  rank: number;
  worldSize: number;
  localRank: number;
  /** Workers on this node, when the launcher says (LOCAL_WORLD_SIZE, SLURM_NTASKS_PER_NODE). */
  localWorldSize: number | undefined;
  masterAddr: string;
  masterPort: number;
  /** JANUS4O_JOB_SECRET; required when worldSize > 1. */
  secret: string | undefined;
  /** JANUS4O_BIND_ADDR: where rank 0 listens when MASTER_ADDR is not a local address (e.g. a Service VIP). */
  bindAddr: string | undefined;
  rendezvousTimeoutMs: number | undefined;
  opTimeoutMs: number | undefined;
  /** Whether LOCAL_RANK / SLURM_LOCALID was given: only then are ranks known to share a node (topology.ts). */
  localRankKnown: boolean;
  /** JANUS4O_TRANSPORT: 'auto' (shared memory inside a node where it works; default) or 'tcp' (the ring only). */
  transport: 'auto' | 'tcp';
  /** JANUS4O_SHM_DIR (default /dev/shm), JANUS4O_SHM_SEGMENT_MB (per rank), JANUS4O_SHM_GROUP_SIZE (ranks per group). */
  shmDir: string | undefined;
  shmSegmentBytes: number | undefined;
  shmGroupSize: number | undefined;
  /** JANUS4O_GRAD_EXCHANGE: the dtype gradients travel as (fp32, bf16, fp16); accumulation stays float32. */
  gradExchange: ExchangeDtype;
}

export type EnvVars = Record<string, string | undefined>;

export const DEFAULT_MASTER_PORT = 29500;
/** Slurm without MASTER_PORT: a port derived from the job id, so concurrent jobs on a node rarely collide. */
export const SLURM_PORT_BASE = 15000;
export const SLURM_PORT_SPAN = 20000;

export function readDistEnv(env: EnvVars = process.env): DistEnv {
  const common = {
    secret: nonEmpty(env.JANUS4O_JOB_SECRET),
    bindAddr: nonEmpty(env.JANUS4O_BIND_ADDR),
    rendezvousTimeoutMs: optInt(env, 'JANUS4O_RDZV_TIMEOUT_MS', 1),
    opTimeoutMs: optInt(env, 'JANUS4O_OP_TIMEOUT_MS', 1),
    transport: transportOf(env),
    shmDir: nonEmpty(env.JANUS4O_SHM_DIR),
    shmSegmentBytes: mib(optInt(env, 'JANUS4O_SHM_SEGMENT_MB', 1)),
    shmGroupSize: optInt(env, 'JANUS4O_SHM_GROUP_SIZE', 1),
    gradExchange: exchangeOf(env),
  };
  if (nonEmpty(env.RANK) !== undefined || nonEmpty(env.WORLD_SIZE) !== undefined) {
    const worldSize = reqInt(env, 'WORLD_SIZE', 1);
    const rank = reqInt(env, 'RANK', 0);
    const masterAddr = nonEmpty(env.MASTER_ADDR);
    if (masterAddr === undefined && worldSize > 1) throw new DistributedError('CONFIG', 'RANK/WORLD_SIZE are set but MASTER_ADDR is not');
    return checked({
      source: 'torchrun', rank, worldSize,
      localRank: optInt(env, 'LOCAL_RANK', 0) ?? 0,
      localRankKnown: nonEmpty(env.LOCAL_RANK) !== undefined,
      localWorldSize: optInt(env, 'LOCAL_WORLD_SIZE', 1),
      masterAddr: masterAddr ?? '127.0.0.1',
      masterPort: optInt(env, 'MASTER_PORT', 1) ?? DEFAULT_MASTER_PORT,
      ...common,
    });
  }
  if (nonEmpty(env.SLURM_PROCID) !== undefined && nonEmpty(env.SLURM_NTASKS) !== undefined) {
    const nodeList = nonEmpty(env.SLURM_STEP_NODELIST) ?? nonEmpty(env.SLURM_JOB_NODELIST) ?? nonEmpty(env.SLURM_NODELIST);
    const masterAddr = nonEmpty(env.MASTER_ADDR) ?? (nodeList !== undefined ? firstNode(nodeList) : undefined);
    if (masterAddr === undefined) throw new DistributedError('CONFIG', 'Slurm job without SLURM_STEP_NODELIST/SLURM_JOB_NODELIST or MASTER_ADDR');
    const jobId = optInt(env, 'SLURM_JOB_ID', 0);
    const derivedPort = jobId === undefined ? DEFAULT_MASTER_PORT : SLURM_PORT_BASE + (jobId % SLURM_PORT_SPAN);
    return checked({
      source: 'slurm',
      rank: reqInt(env, 'SLURM_PROCID', 0),
      worldSize: reqInt(env, 'SLURM_NTASKS', 1),
      localRank: optInt(env, 'SLURM_LOCALID', 0) ?? 0,
      localRankKnown: nonEmpty(env.SLURM_LOCALID) !== undefined,
      localWorldSize: optInt(env, 'SLURM_NTASKS_PER_NODE', 1) ?? firstTaskCount(nonEmpty(env.SLURM_TASKS_PER_NODE)),
      masterAddr,
      masterPort: optInt(env, 'MASTER_PORT', 1) ?? derivedPort,
      ...common,
    });
  }
  return { source: 'single', rank: 0, worldSize: 1, localRank: 0, localRankKnown: true, localWorldSize: 1, masterAddr: '127.0.0.1', masterPort: DEFAULT_MASTER_PORT, ...common };
}

function transportOf(env: EnvVars): 'auto' | 'tcp' {
  const v = nonEmpty(env.JANUS4O_TRANSPORT)?.toLowerCase();
  if (v === undefined || v === 'auto' || v === 'shm') return 'auto';
  if (v === 'tcp') return 'tcp';
  throw new DistributedError('CONFIG', `JANUS4O_TRANSPORT=${env.JANUS4O_TRANSPORT} is not auto, shm or tcp`);
}

/** JANUS4O_GRAD_EXCHANGE alone (the dtype gradients travel as); float32 when unset. */
export function gradExchangeFromEnv(env: EnvVars = process.env): ExchangeDtype {
  return exchangeOf(env);
}

function exchangeOf(env: EnvVars): ExchangeDtype {
  const v = nonEmpty(env.JANUS4O_GRAD_EXCHANGE);
  if (v === undefined) return 'float32';
  try {
    return parseExchangeDtype(v);
  } catch (e) {
    throw new DistributedError('CONFIG', `JANUS4O_GRAD_EXCHANGE=${v}: ${(e as Error).message}`);
  }
}

function mib(v: number | undefined): number | undefined {
  return v === undefined ? undefined : v * 2 ** 20;
}

function checked(e: DistEnv): DistEnv {
  if (e.rank >= e.worldSize) throw new DistributedError('CONFIG', `rank ${e.rank} is not below world size ${e.worldSize} (${e.source} variables)`);
  if (e.masterPort > 65535) throw new DistributedError('CONFIG', `MASTER_PORT ${e.masterPort} is not a TCP port`);
  return e;
}

function nonEmpty(v: string | undefined): string | undefined {
  const t = v?.trim();
  return t === undefined || t === '' ? undefined : t;
}

function optInt(env: EnvVars, name: string, min: number): number | undefined {
  const raw = nonEmpty(env[name]);
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw)) throw new DistributedError('CONFIG', `${name}=${raw} is not a non-negative integer`);
  const v = Number(raw);
  if (v < min) throw new DistributedError('CONFIG', `${name}=${raw} must be at least ${min}`);
  return v;
}

function reqInt(env: EnvVars, name: string, min: number): number {
  const v = optInt(env, name, min);
  if (v === undefined) throw new DistributedError('CONFIG', `${name} is not set`);
  return v;
}

/** SLURM_TASKS_PER_NODE looks like "8(x2),4": the first node's count is what rank 0's node runs. */
function firstTaskCount(v: string | undefined): number | undefined {
  const m = v === undefined ? null : /^(\d+)/.exec(v);
  return m ? Number(m[1]) : undefined;
}

/** Splits a Slurm host list at the commas outside brackets: "a[1-2],b" -> ["a[1-2]", "b"]. */
function splitTopLevel(list: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < list.length; i++) {
    const c = list[i];
    if (c === '[') depth++;
    else if (c === ']') depth--;
    else if (c === ',' && depth === 0) {
      out.push(list.slice(start, i));
      start = i + 1;
    }
    if (depth < 0 || depth > 1) throw new DistributedError('CONFIG', `malformed Slurm node list "${list}"`);
  }
  if (depth !== 0) throw new DistributedError('CONFIG', `malformed Slurm node list "${list}"`);
  out.push(list.slice(start));
  return out.map((s) => s.trim()).filter((s) => s !== '');
}

function expandItem(item: string, limit: number, whole: string): string[] {
  const open = item.indexOf('[');
  if (open < 0) return [item];
  const close = item.indexOf(']', open);
  const prefix = item.slice(0, open);
  const body = item.slice(open + 1, close);
  const rest = expandItem(item.slice(close + 1), limit, whole);
  const out: string[] = [];
  for (const part of body.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new DistributedError('CONFIG', `malformed range "${part}" in Slurm node list "${whole}"`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo) throw new DistributedError('CONFIG', `descending range "${part}" in Slurm node list "${whole}"`);
    // Slurm keeps the zero padding of the range's first number: node[08-10] -> node08, node09, node10.
    const width = m[1].length;
    for (let v = lo; v <= hi; v++) {
      for (const r of rest) {
        out.push(prefix + String(v).padStart(width, '0') + r);
        if (out.length >= limit) return out;
      }
    }
  }
  return out;
}

/** Expands a Slurm host list ("node[01-04,07],gpu-a[1-2]-ib") into host names, at most `limit` of them. */
export function expandNodeList(list: string, limit = Number.POSITIVE_INFINITY): string[] {
  const out: string[] = [];
  for (const item of splitTopLevel(list)) {
    for (const host of expandItem(item, limit - out.length, list)) {
      out.push(host);
      if (out.length >= limit) return out;
    }
  }
  return out;
}

/** The host rank 0 runs on under Slurm: the first of the node list. */
export function firstNode(list: string): string {
  const first = expandNodeList(list, 1)[0];
  if (first === undefined) throw new DistributedError('CONFIG', `empty Slurm node list "${list}"`);
  return first;
}
