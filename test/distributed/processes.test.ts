/**
 * Real worker processes on loopback: the launcher, external (torchrun-style) launch, strangers hitting
 * a running job, missing workers. Launcher failure handling is in launcher.test.ts.
 */
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { launch } from '../../src/distributed/launcher';
import { freePort } from '../../src/distributed/launcher';
import { referenceAllReduce, shardRange } from '../../src/distributed/layout';
import { referenceHierarchicalAllReduce } from '../../src/distributed/shm_collectives';
import { DEFAULT_SHM_DIR, segmentPrefix } from '../../src/distributed/shm';
import { encodeHeader, FrameKind } from '../../src/distributed/framing';
import { controlFrame } from '../../src/distributed/auth';
import { buildDistModule, randomBuffer, SECRET, startNode, torchrunEnv, WORKERS_DIR } from './helpers';

const WORKER = path.join(WORKERS_DIR, 'collective_worker.js');
const LENGTHS = [1, 3, 1000, 16387];
let distDir: string;
let tmp: string;

beforeAll(() => {
  distDir = buildDistModule();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-proc-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function read(dir: string, name: string): Float32Array {
  const b = fs.readFileSync(path.join(dir, name));
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

function same(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/**
 * Verifies every file the `check` worker mode wrote against local references: the flat ring's order (TCP ring,
 * shared memory on one node), or with `groups` the hierarchical order (shared memory per node, ring of leaders).
 */
function verifyCheck(dir: string, n: number, groups?: number[][]): void {
  const reference = (xs: Float32Array[], o: { average?: boolean } = {}): Float32Array => (groups ? referenceHierarchicalAllReduce(xs, groups, o) : referenceAllReduce(xs, o));
  for (const L of LENGTHS) {
    const sum = reference(Array.from({ length: n }, (_, r) => randomBuffer(1000 * r + L, L)));
    const avg = reference(Array.from({ length: n }, (_, r) => randomBuffer(1000 * r + L + 1, L)), { average: true });
    const zAvg = reference(Array.from({ length: n }, (_, r) => randomBuffer(1000 * r + L + 2, L)), { average: true });
    for (let r = 0; r < n; r++) {
      expect(same(read(dir, `sum-${L}-${r}.bin`), sum)).toBe(true);
      expect(same(read(dir, `avg-${L}-${r}.bin`), avg)).toBe(true);
      const { start, end } = shardRange(L, n, r);
      expect(same(read(dir, `shard-${L}-${r}.bin`), zAvg.subarray(start, end))).toBe(true);
      expect(same(read(dir, `gathered-${L}-${r}.bin`), zAvg)).toBe(true);
    }
  }
  const bcast = randomBuffer(777, 5000);
  for (let r = 0; r < n; r++) expect(same(read(dir, `bcast-${r}.bin`), bcast)).toBe(true);
}

function workerEnv(extra: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? '', JANUS4O_DIST_DIR: distDir, TEST_LENGTHS: LENGTHS.join(','), TEST_CHUNK: '1000', ...extra };
}

test.each([2, 3, 4])('launcher with N=%i: every collective in separate processes matches the local reference bit for bit', async (n) => {
  const dir = fs.mkdtempSync(path.join(tmp, `launch${n}-`));
  const lines: string[] = [];
  const result = await launch({
    script: WORKER, args: ['check'], nproc: n, env: workerEnv({ TEST_OUT: dir }), gpus: ['7', '5', '3', '1'].slice(0, n),
    forwardSignals: false, onLine: (rank, stream, line) => lines.push(`[${rank} ${stream}] ${line}`),
  });
  expect({ code: result.exitCode, message: result.message }).toEqual({ code: 0, message: null });
  const results = lines.filter((l) => l.includes('RESULT ')).map((l) => JSON.parse(l.slice(l.indexOf('RESULT ') + 7)) as { rank: number; gathered: number[]; cuda: string; transport: string });
  expect(results.length).toBe(n);
  for (const res of results) {
    expect(res.gathered).toEqual(Array.from({ length: n }, (_, r) => [r, 2 * r]).flat());
    expect(res.cuda).toBe(['7', '5', '3', '1'][res.rank]);
    // One machine, LOCAL_RANK set by the launcher: shared memory.
    expect(res.transport).toBe(`shared memory (${n} ranks)`);
  }
  verifyCheck(dir, n);
});

test('multi-node launch: two launchers (--nnodes 2, --node-rank 0/1) of 2 workers each form one job of 4 (hierarchical: shared memory per node, TCP between leaders)', async () => {
  const dir = fs.mkdtempSync(path.join(tmp, 'nodes-'));
  const port = await freePort('127.0.0.1');
  const env = workerEnv({ TEST_OUT: dir, JANUS4O_JOB_SECRET: 'shared-by-both-nodes-0123456789' });
  const lines: string[] = [];
  const results = await Promise.all([0, 1].map((nodeRank) => launch({
    script: WORKER, args: ['check'], nproc: 2, nnodes: 2, nodeRank, masterAddr: '127.0.0.1', masterPort: port, env,
    forwardSignals: false, onLine: (rank, stream, line) => lines.push(`[node ${nodeRank} local ${rank}] ${line}`),
  })));
  for (const r of results) expect({ code: r.exitCode, message: r.message }).toEqual({ code: 0, message: null });
  const ranks = lines.filter((l) => l.includes('RESULT ')).map((l) => (JSON.parse(l.slice(l.indexOf('RESULT ') + 7)) as { rank: number; worldSize: number; transport: string }));
  expect(ranks.map((r) => r.rank).sort()).toEqual([0, 1, 2, 3]);
  expect(ranks.every((r) => r.worldSize === 4 && r.transport.startsWith('hierarchical (2 groups'))).toBe(true);
  verifyCheck(dir, 4, [[0, 1], [2, 3]]);
});

test('external launch: two processes started with the torchrun variables (no launcher) work together', async () => {
  const dir = fs.mkdtempSync(path.join(tmp, 'ext-'));
  const port = await freePort('127.0.0.1');
  const procs = [0, 1].map((r) => startNode(WORKER, ['check'], workerEnv({ ...torchrunEnv(r, 2, port), TEST_OUT: dir })));
  const results = await Promise.all(procs.map((p) => p.done));
  for (const res of results) expect({ code: res.code, err: res.code === 0 ? '' : res.stderr }).toEqual({ code: 0, err: '' });
  verifyCheck(dir, 2);
});

test('strangers without the secret or sending garbage during a running job are rejected and the job completes', async () => {
  const dir = fs.mkdtempSync(path.join(tmp, 'sec-'));
  const port = await freePort('127.0.0.1');
  const stopFile = path.join(dir, 'stop');
  const env = (r: number): Record<string, string> => workerEnv({ ...torchrunEnv(r, 3, port), TEST_OUT: dir, TEST_STOP_FILE: stopFile, TEST_LENGTH: '5000', TEST_PRINT_TRANSPORT: '1' });
  const rank0 = startNode(WORKER, ['loop'], env(0));
  await rank0.waitFor('rendezvous listening');
  const attack = async (): Promise<void> => {
    // Wrong secret: a worker of "another job" with the same port.
    const impostor = startNode(WORKER, ['loop'], workerEnv({ ...torchrunEnv(1, 3, port), JANUS4O_JOB_SECRET: 'some-other-jobs-secret-123' }));
    const res = await impostor.done;
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/JANUS4O_JOB_SECRET/);
    for (const payload of [Buffer.from('\x16\x03\x01 garbage bytes that are not a janus4o frame at all'), encodeHeader({ ...controlFrame(FrameKind.Hello), payloadBytes: 1 << 30 })]) {
      await new Promise<void>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port }, () => s.write(payload));
        s.on('error', () => undefined);
        s.resume();
        s.on('close', () => resolve());
      });
    }
  };
  await attack();
  const others = [1, 2].map((r) => startNode(WORKER, ['loop'], env(r)));
  await rank0.waitFor('ITER 10');
  // The job runs on shared memory, whose segments have no name while it runs: nothing in /dev/shm to open.
  expect(rank0.output()).toContain('TRANSPORT shared memory (3 ranks)');
  if (fs.existsSync(DEFAULT_SHM_DIR)) expect(fs.readdirSync(DEFAULT_SHM_DIR).filter((f) => f.startsWith(segmentPrefix(SECRET)))).toEqual([]);
  await attack();
  await rank0.waitFor(/rejected rendezvous connection[\s\S]*rejected rendezvous connection[\s\S]*rejected rendezvous connection[\s\S]*rejected rendezvous connection[\s\S]*rejected rendezvous connection[\s\S]*rejected rendezvous connection/);
  fs.writeFileSync(stopFile, '');
  const results = await Promise.all([rank0, ...others].map((p) => p.done));
  for (const res of results) expect({ code: res.code, err: res.code === 0 ? '' : res.stderr }).toEqual({ code: 0, err: '' });
  const last = Number(/DONE (\d+)/.exec(results[0].stdout)?.[1]);
  const want = referenceAllReduce([0, 1, 2].map((r) => randomBuffer(7919 * r + last, 5000)));
  for (let r = 0; r < 3; r++) expect(same(read(dir, `loop-${r}.bin`), want)).toBe(true);
  expect(results[0].stderr).toMatch(/wrong HMAC/);
  expect(results[0].stderr).toMatch(/bad frame magic/);
  expect(results[0].stderr).toMatch(/exceeds the limit/);
});

test('a worker that never arrives fails the rendezvous on every started rank, naming the missing rank', async () => {
  const port = await freePort('127.0.0.1');
  const procs = [0, 1, 2].map((r) => startNode(WORKER, ['check'], workerEnv({ ...torchrunEnv(r, 4, port), JANUS4O_RDZV_TIMEOUT_MS: '2000', TEST_OUT: tmp })));
  const results = await Promise.all(procs.map((p) => p.done));
  for (const res of results) {
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/rank 3 of world size 4 never arrived/);
  }
});

test('the all-reduce benchmark runs every transport and reports bus bandwidth beside memcpy and raw TCP throughput', async () => {
  const bench = startNode(path.join(distDir, 'bench.js'), ['--nproc', '2,4', '--sizes-mb', '0.0625,0.25', '--transports', 'tcp,shm,hierarchical', '--exchange', 'fp32,bf16'], {});
  const res = await bench.done;
  expect({ code: res.code, err: res.code === 0 ? '' : res.stderr }).toEqual({ code: 0, err: '' });
  const report = JSON.parse(res.stdout) as { command: string; rows: Array<Record<string, number | string | null>> };
  const key = (r: Record<string, unknown>): string => `${String(r.worldSize)} ${String(r.kind)} ${String(r.exchange)} ${String(r.bytes)}`;
  expect(report.rows.map(key).sort()).toEqual([
    ...[2, 4].flatMap((n) => [65536, 262144].map((b) => `${n} tcp float32 ${b}`)),
    ...[2, 4].flatMap((n) => ['float32', 'bfloat16'].flatMap((e) => [65536, 262144].map((b) => `${n} shm ${e} ${b}`))),
    ...['float32', 'bfloat16'].flatMap((e) => [65536, 262144].map((b) => `4 hierarchical ${e} ${b}`)),
  ].sort());
  for (const r of report.rows) {
    for (const k of ['busGBps', 'memcpyGBps', 'memcpyConcurrentGBps', 'ratioToMemcpy', 'speedupVsTcp']) expect(r[k]).toBeGreaterThan(0);
    expect(r.transport).toMatch(r.kind === 'tcp' ? /^TCP ring/ : r.kind === 'shm' ? /^shared memory/ : /^hierarchical \(2 groups/);
    if (r.kind === 'tcp') {
      for (const k of ['rawStreamGBps', 'rawRingGBps', 'ratioToRawRing', 'ratioToRawStream']) expect(r[k]).toBeGreaterThan(0);
      expect(r.ratioToRawRing).toBeCloseTo((r.busGBps as number) / (r.rawRingGBps as number), 10);
      expect(r.speedupVsTcp).toBe(1);
    }
  }
  expect(report.command).toMatch(/--nproc 2,4 --sizes-mb 0.0625,0.25 --transports tcp,shm,hierarchical --exchange float32,bfloat16/);
}, 120_000);
