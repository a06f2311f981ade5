/** The launcher as a process: worker death, worker failure, signal forwarding, no orphans. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { deviceList, launch, report, WorkerRecord } from '../../src/distributed/launcher';
import { parseLaunchArgs } from '../../src/distributed/cli';
import { buildDistModule, Proc, startNode, WORKERS_DIR } from './helpers';
import { processAlive as alive } from '../helpers';

const WORKER = path.join(WORKERS_DIR, 'collective_worker.js');
let distDir: string;
let tmp: string;

beforeAll(() => {
  distDir = buildDistModule();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-launch-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));


function startLauncher(nproc: number, mode: string, extra: Record<string, string> = {}): Proc {
  return startNode(path.join(distDir, 'cli.js'), ['--nproc', String(nproc), '--grace-ms', '3000', '--', WORKER, mode], {
    JANUS4O_DIST_DIR: distDir, TEST_OUT: tmp, TEST_LENGTH: '50000', ...extra,
  });
}

/** Waits until every rank printed its pid; returns pid by rank. */
async function workerPids(launcher: Proc, n: number): Promise<number[]> {
  const pids: number[] = [];
  for (let r = 0; r < n; r++) {
    const line = await launcher.waitFor(new RegExp(`\\[rank ${r}\\] PID (\\d+) rank ${r}`));
    pids[r] = Number(/PID (\d+)/.exec(line)?.[1]);
  }
  return pids;
}

async function killLeftovers(pids: number[]): Promise<void> {
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
}

test('SIGKILL of one of 4 workers mid-job: all exit within 30 s, launcher exits non-zero naming the rank, nothing left behind', async () => {
  const launcher = startLauncher(4, 'loop');
  const pids = await workerPids(launcher, 4);
  try {
    await launcher.waitFor('[rank 0] ITER 10');
    const killedAt = Date.now();
    process.kill(pids[2], 'SIGKILL');
    const res = await launcher.done;
    expect(Date.now() - killedAt).toBeLessThan(30_000);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(/janus4o launch: worker rank 2 \(pid \d+\) was killed by SIGKILL/);
    for (const pid of pids) expect(alive(pid)).toBe(false);
    // The survivors noticed the broken ring themselves rather than hanging until SIGTERM.
    expect(res.stdout + res.stderr).toMatch(/rank 2|PEER_LOST|aborted|closed/);
  } finally {
    await killLeftovers(pids);
  }
});

test('blame goes to the worker killed from outside even when a neighbour exit arrived first and we then signalled it', () => {
  // The order CI once saw: rank 3 lost its ring link and exited first; we SIGTERMed everyone, rank 2's
  // SIGKILL exit (from outside, before our SIGTERM) was processed after that.
  const exit = (rank: number, code: number | null, signal: NodeJS.Signals | null) => ({ rank, pid: 100 + rank, code, signal });
  const workers: WorkerRecord[] = [
    { rank: 0, pid: 100, tail: ['ok'], exit: exit(0, null, 'SIGTERM'), signalsSent: new Set(['SIGTERM']), exitOrder: 3 },
    { rank: 1, pid: 101, tail: ['ok'], exit: exit(1, 1, null), signalsSent: new Set(['SIGTERM']), exitOrder: 4 },
    { rank: 2, pid: 102, tail: ['ITER 10'], exit: exit(2, null, 'SIGKILL'), signalsSent: new Set(['SIGTERM']), exitOrder: 2 },
    { rank: 3, pid: 103, tail: ['DistributedError [PEER_LOST]: ring link from rank 2: connection closed by peer'], exit: exit(3, 1, null), signalsSent: new Set(), exitOrder: 1 },
  ];
  const r = report(workers, null);
  expect(r.exitCode).toBe(1);
  expect(r.failedRank).toBe(2);
  expect(r.message).toMatch(/^worker rank 2 \(pid 102\) was killed by SIGKILL/);
  expect(r.message).toMatch(/also failed: rank 3 exited with code 1/);
  // Ranks 0 and 1 exited because of our SIGTERM: not failures of their own.
  expect(r.message).not.toMatch(/rank [01] /);
});

test('blame goes to the worker that failed by itself even when its exit is processed after we signalled it', () => {
  // The order CI saw under load: rank 1 raised and exited 3, rank 2 lost its ring link, rank 0 was told to abort
  // and exited 1 first; we SIGTERMed everyone, then rank 1's own exit (code 3) arrived.
  const exit = (rank: number, code: number | null, signal: NodeJS.Signals | null) => ({ rank, pid: 100 + rank, code, signal });
  const workers: WorkerRecord[] = [
    { rank: 0, pid: 100, tail: ['worker rank 0: DistributedError [ABORTED]: rank 2 aborted the job'], exit: exit(0, 1, null), signalsSent: new Set(), exitOrder: 1 },
    { rank: 1, pid: 101, tail: ['boom: simulated worker failure'], exit: exit(1, 3, null), signalsSent: new Set(['SIGTERM']), exitOrder: 3 },
    { rank: 2, pid: 102, tail: ['worker rank 2: DistributedError [PEER_LOST]: ring link from rank 1'], exit: exit(2, 1, null), signalsSent: new Set(['SIGTERM']), exitOrder: 2 },
  ];
  const r = report(workers, null);
  expect(r.failedRank).toBe(1);
  expect(r.message).toMatch(/^worker rank 1 \(pid 101\) exited with code 3; its last 1 line\(s\):\n {2}\| boom/);
  expect(r.message).toMatch(/also failed: rank 0 exited with code 1/);
  // Interrupted by the user, an exit code after our SIGTERM is not a failure.
  const stopped = report([{ ...workers[1], exit: exit(1, 1, null), tail: ['ok'] }], 'SIGINT');
  expect(stopped).toMatchObject({ failedRank: null, message: 'interrupted by SIGINT; stopped all workers' });
});

test('a worker that fails by itself: launcher exits non-zero with its rank, exit code and last log lines', async () => {
  const launcher = startLauncher(3, 'fail', { TEST_FAIL_RANK: '1' });
  const res = await launcher.done;
  expect(res.code).toBe(1);
  expect(res.stderr).toMatch(/worker rank 1 \(pid \d+\) exited with code 3; its last \d+ line\(s\):/);
  expect(res.stderr).toMatch(/\| boom: simulated worker failure/);
});

test('SIGTERM to the launcher is forwarded; it exits 143 and leaves no worker behind', async () => {
  const launcher = startLauncher(2, 'loop');
  const pids = await workerPids(launcher, 2);
  try {
    await launcher.waitFor('[rank 0] ITER 0');
    launcher.child.kill('SIGTERM');
    const res = await launcher.done;
    expect(res.code).toBe(143);
    expect(res.stderr).toMatch(/interrupted by SIGTERM/);
    for (const pid of pids) expect(alive(pid)).toBe(false);
  } finally {
    await killLeftovers(pids);
  }
});

test('a worker whose launcher is SIGKILLed exits by itself', async () => {
  const launcher = startLauncher(2, 'loop');
  const pids = await workerPids(launcher, 2);
  try {
    launcher.child.kill('SIGKILL');
    await launcher.done;
    const end = Date.now() + 15_000;
    while (pids.some(alive) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    for (const pid of pids) expect(alive(pid)).toBe(false);
  } finally {
    await killLeftovers(pids);
  }
});

test('argument parsing and GPU assignment', () => {
  expect(parseLaunchArgs(['--nproc', '4', '--gpus', '--master-port', '29501', '--', 'train.js', '--config', 'x.yaml'])).toMatchObject({
    nproc: 4, gpus: true, masterPort: 29501, script: 'train.js', args: ['--config', 'x.yaml'],
  });
  expect(parseLaunchArgs(['--nproc', '2', 'w.js'])).toMatchObject({ nproc: 2, script: 'w.js', args: [] });
  expect(parseLaunchArgs(['--nproc', '8', '--nnodes', '2', '--node-rank', '1', '--master-addr', 'n0', 'w.js'])).toMatchObject({ nproc: 8, nnodes: 2, nodeRank: 1, masterAddr: 'n0' });
  expect(() => parseLaunchArgs(['--nproc', '2'])).toThrow(/usage/);
  expect(() => parseLaunchArgs(['--bogus', 'w.js'])).toThrow(/unknown option/);
  expect(deviceList(true, 2, { CUDA_VISIBLE_DEVICES: '4,5,6' })).toEqual(['4', '5', '6']);
  expect(deviceList(true, 3, {})).toEqual(['0', '1', '2']);
  expect(deviceList(false, 3, {})).toBeNull();
  expect(() => deviceList(true, 4, { CUDA_VISIBLE_DEVICES: '0,1' })).toThrow(/4 GPUs/);
});

test('a multi-node launch refuses to invent the master address, port or secret', async () => {
  const o = { script: WORKER, nproc: 1, nnodes: 2, nodeRank: 1, forwardSignals: false };
  await expect(launch({ ...o, env: { JANUS4O_JOB_SECRET: 'x'.repeat(20) } })).rejects.toThrow(/--master-addr and --master-port/);
  await expect(launch({ ...o, env: {}, masterAddr: 'n0', masterPort: 29500 })).rejects.toThrow(/same JANUS4O_JOB_SECRET/);
  await expect(launch({ ...o, nodeRank: 2, env: {} })).rejects.toThrow(/node rank 2 is not within 2/);
});
