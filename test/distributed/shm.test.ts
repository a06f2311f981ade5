/** Shared-memory and hierarchical collectives between in-process ranks over real segments and sockets. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Communicator } from '../../src/distributed/collectives';
import { referenceAllReduce, shardRange } from '../../src/distributed/layout';
import { referenceHierarchicalAllReduce } from '../../src/distributed/shm_collectives';
import { chunkElementsFor, DEFAULT_SHM_DIR, MIN_CHUNK_ELEMENTS, segmentName, segmentPrefix, setupShmGroup, ShmSegments } from '../../src/distributed/shm';
import { ExchangeDtype, exchangeErrorBound } from '../../src/distributed/wire';
import { closeAll, localRing, randomBuffer, SECRET } from './helpers';

let dir: string;
beforeAll(() => {
  // A private directory on the real tmpfs, so that other jobs' files cannot confuse the before/after checks.
  dir = fs.mkdtempSync(path.join(fs.existsSync(DEFAULT_SHM_DIR) ? DEFAULT_SHM_DIR : os.tmpdir(), 'janus4o-test-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function same(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** N ranks on one "node"; segments of 4096-float chunks so that every op spans many windows. */
function shmRing(n: number, groupSize?: number, logs?: string[]): Promise<Communicator[]> {
  return localRing(n, { node: 'test-node', shm: { dir, segmentBytes: 2 * n * 4096 * 4, groupSize }, log: logs ? (m) => logs.push(m) : () => undefined });
}

test.each([2, 3, 4])('flat shared memory, N=%i: every collective is bit-identical to the TCP ring reference', async (n) => {
  const comms = await shmRing(n);
  try {
    expect(comms[0].transport).toMatch(/shared memory/);
    for (const L of [0, 1, 3, 1000, 16387, 50001]) {
      const xs = comms.map((_, r) => randomBuffer(100 * r + L, L));
      const want = referenceAllReduce(xs);
      await Promise.all(comms.map((c, r) => c.allReduce(xs[r])));
      for (const x of xs) expect(same(x, want)).toBe(true);
      const ys = comms.map((_, r) => randomBuffer(100 * r + L + 1, L));
      const avg = referenceAllReduce(ys, { average: true });
      const shards = await Promise.all(comms.map((c, r) => c.reduceScatter(ys[r].slice(), { average: true })));
      shards.forEach((s, r) => {
        const { start, end } = shardRange(L, n, r);
        expect(same(s, avg.subarray(start, end))).toBe(true);
      });
      await Promise.all(comms.map((c, r) => c.allReduce(ys[r], { average: true })));
      for (const y of ys) expect(same(y, avg)).toBe(true);
      const gathered = comms.map((_, r) => {
        const z = new Float32Array(L);
        const { start, end } = shardRange(L, n, r);
        z.set(avg.subarray(start, end), start);
        return z;
      });
      await Promise.all(comms.map((c, r) => c.allGatherInPlace(gathered[r])));
      for (const z of gathered) expect(same(z, avg)).toBe(true);
      const root = L % n;
      const b = comms.map((_, r) => (r === root ? randomBuffer(7, L) : new Float32Array(L)));
      await Promise.all(comms.map((c, r) => c.broadcast(b[r], { root })));
      for (const x of b) expect(same(x, randomBuffer(7, L))).toBe(true);
    }
    const g = await Promise.all(comms.map((c, r) => c.allGather(Float32Array.from([r, 2 * r + 1]))));
    for (const x of g) expect(Array.from(x)).toEqual(Array.from({ length: n }, (_, r) => [r, 2 * r + 1]).flat());
    await Promise.all(comms.map((c) => c.barrier()));
  } finally {
    await closeAll(comms);
  }
}, 60_000);

test.each([
  [4, 2, [[0, 1], [2, 3]]],
  [5, 2, [[0, 1], [2, 3], [4]]],
  [6, 3, [[0, 1, 2], [3, 4, 5]]],
])('hierarchical, N=%i in groups of %i: sums equal the hierarchical reference bit for bit; gathers and broadcasts are exact', async (n, size, groups) => {
  const comms = await shmRing(n, size);
  try {
    expect(comms[0].transport).toMatch(/hierarchical \(\d groups/);
    for (const L of [0, 1, 7, 16387, 50001]) {
      const xs = comms.map((_, r) => randomBuffer(31 * r + L, L));
      const want = referenceHierarchicalAllReduce(xs, groups);
      const avg = referenceHierarchicalAllReduce(xs, groups, { average: true });
      const sums = xs.map((x) => x.slice());
      await Promise.all(comms.map((c, r) => c.allReduce(sums[r])));
      for (const x of sums) expect(same(x, want)).toBe(true);
      const shards = await Promise.all(comms.map((c, r) => c.reduceScatter(xs[r].slice(), { average: true })));
      shards.forEach((s, r) => {
        const { start, end } = shardRange(L, n, r);
        expect(same(s, avg.subarray(start, end))).toBe(true);
      });
      // Different order from the flat ring, same sum within float32 rounding.
      const flat = referenceAllReduce(xs);
      for (let i = 0; i < L; i++) expect(Math.abs(want[i] - flat[i])).toBeLessThanOrEqual(1e-4 * xs.reduce((a, x) => a + Math.abs(x[i]), 0));
      const gathered = comms.map((_, r) => {
        const z = new Float32Array(L).fill(NaN);
        const { start, end } = shardRange(L, n, r);
        z.set(avg.subarray(start, end), start);
        return z;
      });
      await Promise.all(comms.map((c, r) => c.allGatherInPlace(gathered[r])));
      for (const z of gathered) expect(same(z, avg)).toBe(true);
      for (const root of [0, 1, n - 1]) {
        const src = xs[(root + 1) % n];
        const b = comms.map((_, r) => (r === root ? src.slice() : new Float32Array(L)));
        await Promise.all(comms.map((c, r) => c.broadcast(b[r], { root })));
        for (const x of b) expect(same(x, src)).toBe(true);
      }
    }
    const g = await Promise.all(comms.map((c, r) => c.allGather(Float32Array.from([r, 2 * r + 1]))));
    for (const x of g) expect(Array.from(x)).toEqual(Array.from({ length: n }, (_, r) => [r, 2 * r + 1]).flat());
    await Promise.all(comms.map((c) => c.barrier()));
  } finally {
    await closeAll(comms);
  }
}, 60_000);

describe.each(['bfloat16', 'float16'] as const)('%s exchange with float32 accumulation', (dtype: ExchangeDtype) => {
  test.each([
    [3, undefined],
    [4, 2],
  ])('N=%i (group size %s): every rank holds the same bytes, within the stated bound of the exact sum', async (n, size) => {
    const comms = await shmRing(n, size);
    try {
      const L = 30011;
      const xs = comms.map((_, r) => randomBuffer(17 * r + 3, L));
      for (const average of [false, true]) {
        const outs = xs.map((x) => x.slice());
        await Promise.all(comms.map((c, r) => c.allReduce(outs[r], { exchange: dtype, average })));
        for (const o of outs) expect(same(o, outs[0])).toBe(true);
        let worstRatio = 0;
        let maxRel = 0;
        for (let i = 0; i < L; i++) {
          let exact = 0;
          let abs = 0;
          for (const x of xs) {
            exact += x[i];
            abs += Math.abs(x[i]);
          }
          const scale = average ? 1 / n : 1;
          const bound = exchangeErrorBound(dtype, n, abs, Math.max(Math.abs(exact), Math.abs(outs[0][i]) / scale)) * scale;
          const err = Math.abs(outs[0][i] - exact * scale);
          worstRatio = Math.max(worstRatio, err / bound);
          maxRel = Math.max(maxRel, err / (abs * scale));
        }
        expect(worstRatio).toBeLessThanOrEqual(1);
        // The values really travelled rounded: the error is of the order of the dtype's precision.
        expect(maxRel).toBeGreaterThan(dtype === 'bfloat16' ? 2 ** -11 : 2 ** -14);
        expect(maxRel).toBeLessThan(dtype === 'bfloat16' ? 2 ** -7 : 2 ** -10);
      }
      // Reduce-scatter: each shard within the bound too (its owner's own values stay exact).
      const shards = await Promise.all(comms.map((c, r) => c.reduceScatter(xs[r].slice(), { exchange: dtype })));
      shards.forEach((s, r) => {
        const { start } = shardRange(L, n, r);
        for (let i = 0; i < s.length; i++) {
          let exact = 0;
          let abs = 0;
          for (const x of xs) {
            exact += x[start + i];
            abs += Math.abs(x[start + i]);
          }
          expect(Math.abs(s[i] - exact)).toBeLessThanOrEqual(exchangeErrorBound(dtype, n, abs, Math.abs(exact)));
        }
      });
    } finally {
      await closeAll(comms);
    }
  }, 60_000);
});

describe('falling back to TCP, setup and cleanup', () => {
  test('segment sizing: bounded chunks shrink to fit a small /dev/shm (Docker: 64 MB) and give up below the minimum', () => {
    const p = chunkElementsFor(8, 32 << 20, 64 << 20);
    expect(p).toBeGreaterThanOrEqual(MIN_CHUNK_ELEMENTS);
    expect(2 * 8 * 8 * p * 4).toBeLessThanOrEqual(32 << 20);
    expect(chunkElementsFor(2, 32 << 20, 24 * 2 ** 30)).toBe((32 << 20) / 16);
    expect(chunkElementsFor(8, 32 << 20, 1 << 20)).toBe(0);
  });

  test('no usable shared-memory directory: said once, the job runs on the TCP ring with the same results', async () => {
    const logs: string[] = [];
    const comms = await localRing(3, { node: 'test-node', shm: { dir: path.join(dir, 'missing') }, log: (m) => logs.push(m) });
    try {
      expect(comms.map((c) => c.transport)).toEqual(['TCP ring', 'TCP ring', 'TCP ring']);
      expect(logs.filter((l) => l.startsWith('shared memory off')).length).toBe(1);
      expect(logs.join('\n')).toMatch(/missing is not usable/);
      const xs = comms.map((_, r) => randomBuffer(r, 999));
      const want = referenceAllReduce(xs);
      await Promise.all(comms.map((c, r) => c.allReduce(xs[r])));
      for (const x of xs) expect(same(x, want)).toBe(true);
    } finally {
      await closeAll(comms);
    }
  });

  test('segments have no name while the job runs; nothing is left after close', async () => {
    const before = fs.readdirSync(dir);
    const comms = await shmRing(3);
    try {
      expect(fs.readdirSync(dir)).toEqual(before);
      const xs = comms.map((_, r) => randomBuffer(r, 5000));
      await Promise.all(comms.map((c, r) => c.allReduce(xs[r])));
      expect(fs.readdirSync(dir)).toEqual(before);
    } finally {
      await closeAll(comms);
    }
    expect(fs.readdirSync(dir)).toEqual(before);
  });

  test('a file or symlink planted at a segment name is never written through: setup refuses, removes its own files, and reports why', async () => {
    const comms = await localRing(2);
    const nonce = '0123456789abcdef';
    const victim = path.join(dir, 'victim');
    fs.writeFileSync(victim, 'keep me');
    const planted = path.join(dir, segmentName(SECRET, nonce, 1));
    fs.symlinkSync(victim, planted);
    const logs: string[] = [];
    try {
      const results = await Promise.all(comms.map((c, r) => setupShmGroup({
        comm: c, index: r, members: [0, 1], secret: SECRET, nonce, options: { dir, segmentBytes: 1 << 20 }, log: (m) => logs.push(`${r}: ${m}`),
      })));
      for (const res of results) expect(res).toEqual({ unavailable: expect.any(String) });
      expect(logs).toEqual([expect.stringMatching(/^1: shared memory off: cannot create .*EEXIST/)]);
      expect(fs.readFileSync(victim, 'utf8')).toBe('keep me');
      expect(fs.readdirSync(dir).filter((f) => f.startsWith(segmentPrefix(SECRET)))).toEqual([path.basename(planted)]);
    } finally {
      fs.unlinkSync(planted);
      fs.unlinkSync(victim);
      await closeAll(comms);
    }
  });

  test('a segment swapped for another file after its owner announced it is refused (device/inode check)', async () => {
    const comms = await localRing(2);
    const nonce = 'fedcba9876543210';
    try {
      // Rank 1 sets up alone first, so its file exists; the swap happens before rank 0 opens it.
      const name1 = path.join(dir, segmentName(SECRET, nonce, 1));
      const origAllGather = comms[0].allGather.bind(comms[0]);
      let swapped = false;
      comms[0].allGather = async (local, options) => {
        const out = await origAllGather(local, options);
        if (!swapped && options?.tag === 'shm-create') {
          swapped = true;
          fs.unlinkSync(name1);
          fs.writeFileSync(name1, Buffer.alloc(fs.statSync(path.join(dir, segmentName(SECRET, nonce, 0))).size), { mode: 0o600 });
        }
        return out;
      };
      const results = await Promise.all(comms.map((c, r) => setupShmGroup({
        comm: c, index: r, members: [0, 1], secret: SECRET, nonce, options: { dir, segmentBytes: 1 << 20 }, log: () => undefined,
      })));
      expect(swapped).toBe(true);
      expect(results[0]).toEqual({ unavailable: expect.stringMatching(/device\/inode differ/) });
      expect(results[1]).toEqual({ unavailable: expect.any(String) });
      fs.rmSync(name1, { force: true });
      expect(fs.readdirSync(dir).filter((f) => f.startsWith(segmentPrefix(SECRET)))).toEqual([]);
    } finally {
      await closeAll(comms);
    }
  });

  test('segments are created 0600 and unlinked once every member holds them open', async () => {
    const comms = await localRing(2);
    const nonce = '00112233aabbccdd';
    const seen: string[] = [];
    const orig = comms[1].allGather.bind(comms[1]);
    comms[1].allGather = async (local, options) => {
      const out = await orig(local, options);
      if (options?.tag === 'shm-create') {
        for (const r of [0, 1]) seen.push((fs.statSync(path.join(dir, segmentName(SECRET, nonce, r))).mode & 0o777).toString(8));
      }
      return out;
    };
    try {
      const results = await Promise.all(comms.map((c, r) => setupShmGroup({
        comm: c, index: r, members: [0, 1], secret: SECRET, nonce, options: { dir, segmentBytes: 1 << 20 }, log: () => undefined,
      })));
      expect(seen).toEqual(['600', '600']);
      for (const res of results) expect(res).toBeInstanceOf(ShmSegments);
      expect(fs.readdirSync(dir).filter((f) => f.startsWith(segmentPrefix(SECRET)))).toEqual([]);
      for (const res of results) (res as ShmSegments).close();
    } finally {
      await closeAll(comms);
    }
  });
});

test.each([
  [4, undefined],
  [4, 2],
  [2, undefined],
])('N=%i (group size %s): back-to-back collectives of every kind, each rank running ahead of the others, stay exact', async (n, size) => {
  // Each rank runs its own chain without waiting for the others between collectives (as the trainer does): a
  // rank that finishes a collective first starts writing the next one while slower ranks still read the last.
  const comms = await shmRing(n, size);
  try {
    const L = 2 * 4096 + 17;
    const xs = comms.map((_, r) => randomBuffer(5 * r + 1, L));
    const want = size ? referenceHierarchicalAllReduce(xs, [[0, 1], [2, 3]], { average: true }) : referenceAllReduce(xs, { average: true });
    const results = await Promise.all(comms.map(async (c, r) => {
      const out: Float32Array[] = [];
      for (let round = 0; round < 3; round++) {
        const a = xs[r].slice();
        await c.allReduce(a, { average: true });
        out.push(a);
        const s = Float32Array.from([r + 1]);
        await c.allReduce(s);
        out.push(s);
        const g = new Float32Array(L);
        const { start, end } = shardRange(L, n, r);
        g.set(want.subarray(start, end), start);
        await c.allGatherInPlace(g);
        out.push(g);
        const b = r === n - 1 ? want.slice() : new Float32Array(L);
        await c.broadcast(b, { root: n - 1 });
        out.push(b);
        out.push((await c.reduceScatter(xs[r].slice(), { average: true })).slice());
      }
      return out;
    }));
    const total = Float32Array.from([(n * (n + 1)) / 2]);
    results.forEach((out, r) => {
      const { start, end } = shardRange(L, n, r);
      for (let round = 0; round < 3; round++) {
        const [a, s, g, b, shard] = out.slice(5 * round, 5 * round + 5);
        expect(same(a, want)).toBe(true);
        expect(same(s, total)).toBe(true);
        expect(same(g, want)).toBe(true);
        expect(same(b, want)).toBe(true);
        expect(same(shard, want.subarray(start, end))).toBe(true);
      }
    });
  } finally {
    await closeAll(comms);
  }
}, 60_000);
