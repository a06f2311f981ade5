/**
 * The shared-memory transport in real worker processes: SIGKILL of a worker ends the job blaming it and leaves
 * no segment of the job behind; the launcher removes files a worker killed during setup could leave.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { launch } from '../../src/distributed/launcher';
import { DEFAULT_SHM_DIR, segmentPrefix } from '../../src/distributed/shm';
import { buildDistModule, Proc, startNode, WORKERS_DIR } from './helpers';
import { processAlive as alive } from '../helpers';

const WORKER = path.join(WORKERS_DIR, 'collective_worker.js');
const JOB_SECRET = `shm-kill-test-${process.pid}-0123456789`;
let distDir: string;
let tmp: string;

beforeAll(() => {
  distDir = buildDistModule();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-shmproc-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));


/**
 * This job's files in /dev/shm. Only this job's: other suites run beside this one (jest workers) and their jobs'
 * segments are briefly named while they are set up, so a snapshot of every janus4o file races with them.
 */
function jobShmFiles(): string[] {
  try {
    return fs.readdirSync(DEFAULT_SHM_DIR).filter((f) => f.startsWith(segmentPrefix(JOB_SECRET))).sort();
  } catch {
    return [];
  }
}

async function workerPids(launcher: Proc, n: number): Promise<number[]> {
  const pids: number[] = [];
  for (let r = 0; r < n; r++) {
    const line = await launcher.waitFor(new RegExp(`\\[rank ${r}\\] PID (\\d+) rank ${r}`));
    pids[r] = Number(/PID (\d+)/.exec(line)?.[1]);
  }
  return pids;
}

const shmAvailable = fs.existsSync(DEFAULT_SHM_DIR);

(shmAvailable ? test.each : test.skip.each)([
  ['shared memory', 4, '', 2],
  ['hierarchical, 2 groups of 2', 4, '2', 3],
  ['shared memory', 2, '', 1],
])('%s, N=%i: SIGKILL of a worker mid-job ends it within 30 s blaming that worker; no /dev/shm file of the job before, during or after', async (kind, n, groupSize, victim) => {
  expect(jobShmFiles()).toEqual([]);
  const extra: Record<string, string> = groupSize ? { JANUS4O_SHM_GROUP_SIZE: groupSize } : {};
  const launcher = startNode(path.join(distDir, 'cli.js'), ['--nproc', String(n), '--grace-ms', '3000', '--', WORKER, 'loop'], {
    JANUS4O_DIST_DIR: distDir, TEST_OUT: tmp, TEST_LENGTH: String(3 << 20), JANUS4O_JOB_SECRET: JOB_SECRET, TEST_PRINT_TRANSPORT: '1', ...extra,
  });
  const pids = await workerPids(launcher, n);
  try {
    await launcher.waitFor('[rank 0] ITER 10', 60_000);
    expect(launcher.output()).toContain(`[rank 0] TRANSPORT ${kind === 'shared memory' ? `shared memory (${n} ranks)` : 'hierarchical (2 groups'}`);
    // Running: the segments exist only as open files, never under a name.
    expect(jobShmFiles()).toEqual([]);
    const killedAt = Date.now();
    process.kill(pids[victim], 'SIGKILL');
    const res = await launcher.done;
    expect(Date.now() - killedAt).toBeLessThan(30_000);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(new RegExp(`janus4o launch: worker rank ${victim} \\(pid \\d+\\) was killed by SIGKILL`));
    for (const pid of pids) expect(alive(pid)).toBe(false);
    expect(jobShmFiles()).toEqual([]);
  } finally {
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
}, 120_000);

test('the launcher removes segment files of its job left by a worker killed during setup, and only those', async () => {
  const dir = fs.mkdtempSync(path.join(shmAvailable ? DEFAULT_SHM_DIR : tmp, 'janus4o-test-'));
  try {
    const prefix = segmentPrefix(JOB_SECRET);
    const leftovers = [`${prefix}.0123456789abcdef.1`, `${prefix}.0123456789abcdef.3`];
    for (const f of leftovers) fs.writeFileSync(path.join(dir, f), 'x', { mode: 0o600 });
    const other = `${segmentPrefix('another-jobs-secret-0123456789')}.0123456789abcdef.0`;
    fs.writeFileSync(path.join(dir, other), 'y');
    const result = await launch({
      script: WORKER, args: ['fail'], nproc: 2, forwardSignals: false, onLine: () => undefined,
      env: { PATH: process.env.PATH ?? '', JANUS4O_DIST_DIR: distDir, TEST_FAIL_RANK: '1', JANUS4O_JOB_SECRET: JOB_SECRET, JANUS4O_SHM_DIR: dir },
    });
    expect(result.failedRank).toBe(1);
    expect(fs.readdirSync(dir)).toEqual([other]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
