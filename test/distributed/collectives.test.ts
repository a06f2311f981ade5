/** Collectives between in-process ranks over real loopback sockets: exactness, layouts, edge sizes. */
import { Communicator, RingCommunicator } from '../../src/distributed/collectives';
import { referenceAllReduce, shardRange } from '../../src/distributed/layout';
import { closeAll, localRing, randomBuffer } from './helpers';

function bytesOf(a: Float32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Left-to-right sum in rank order 0..N-1: a different order than the ring's, for sensitivity checks. */
function naiveSum(inputs: Float32Array[]): Float32Array {
  const out = new Float32Array(inputs[0].length);
  for (const x of inputs) for (let i = 0; i < out.length; i++) out[i] += x[i];
  return out;
}

describe('ring collectives (in-process ranks)', () => {
  test.each([2, 3, 4])('allReduce with N=%i equals the documented reference bit for bit, for awkward sizes and buckets', async (n) => {
    const comms = await localRing(n, { chunkElements: 7 });
    try {
      for (const length of [0, 1, n - 1, n, n + 1, 13, 1000, 4099]) {
        const inputs = comms.map((_, r) => randomBuffer(1000 * n + 17 * r + length, length));
        const bufs = inputs.map((x) => x.slice());
        await Promise.all(comms.map((c, r) => c.allReduce(bufs[r])));
        const want = referenceAllReduce(inputs);
        for (let r = 0; r < n; r++) {
          expect(bytesOf(bufs[r]).equals(bytesOf(want))).toBe(true);
        }
        // The reference is a real sum: within float32 rounding of the float64 sum.
        for (let i = 0; i < length; i++) {
          let exact = 0;
          let scale = 0;
          for (const x of inputs) {
            exact += x[i];
            scale += Math.abs(x[i]);
          }
          expect(Math.abs(want[i] - exact)).toBeLessThanOrEqual(scale * 4e-7 * n);
        }
      }
    } finally {
      await closeAll(comms);
    }
  });

  test('the summation order matters for this data, so bit-exactness above is a real check', () => {
    const inputs = [0, 1, 2, 3].map((r) => randomBuffer(99 + r, 4000));
    const ring = referenceAllReduce(inputs);
    const naive = naiveSum(inputs);
    let differ = 0;
    for (let i = 0; i < ring.length; i++) if (ring[i] !== naive[i]) differ++;
    expect(differ).toBeGreaterThan(0);
  });

  test('average divides once at the owner and all ranks hold identical bytes; results do not depend on bucket size', async () => {
    const n = 3;
    const length = 10_007;
    const inputs = [0, 1, 2].map((r) => randomBuffer(5 + r, length));
    const want = referenceAllReduce(inputs, { average: true });
    for (const chunkElements of [1, 64, 1 << 20]) {
      const comms = await localRing(n, { chunkElements });
      try {
        const bufs = inputs.map((x) => x.slice());
        await Promise.all(comms.map((c, r) => c.allReduce(bufs[r], { average: true })));
        for (const b of bufs) expect(bytesOf(b).equals(bytesOf(want))).toBe(true);
      } finally {
        await closeAll(comms);
      }
    }
  });

  test('reduceScatter leaves each rank its shard of the all-reduce; allGatherInPlace reassembles it (ZeRO-1 path)', async () => {
    const n = 4;
    const comms = await localRing(n, { chunkElements: 5 });
    try {
      for (const length of [3, 4, 37, 2050]) {
        const inputs = comms.map((_, r) => randomBuffer(300 + r + length, length));
        const want = referenceAllReduce(inputs, { average: true });
        const bufs = inputs.map((x) => x.slice());
        const shards = await Promise.all(comms.map((c, r) => c.reduceScatter(bufs[r], { average: true })));
        for (let r = 0; r < n; r++) {
          const { start, end } = shardRange(length, n, r);
          expect(shards[r].length).toBe(end - start);
          expect(bytesOf(shards[r]).equals(bytesOf(want.subarray(start, end)))).toBe(true);
        }
        // Parameters updated on each shard, then gathered: start from garbage outside the own shard.
        const params = comms.map((_, r) => {
          const p = new Float32Array(length).fill(Number.NaN);
          const { start } = shardRange(length, n, r);
          p.set(shards[r], start);
          return p;
        });
        await Promise.all(comms.map((c, r) => c.allGatherInPlace(params[r])));
        for (const p of params) expect(bytesOf(p).equals(bytesOf(want))).toBe(true);
      }
    } finally {
      await closeAll(comms);
    }
  });

  test('broadcast from every root, allGather, barrier, and back-to-back ops without awaiting', async () => {
    const n = 3;
    const comms = await localRing(n, { chunkElements: 11 });
    try {
      for (let root = 0; root < n; root++) {
        const length = 1001 + root;
        const bufs = comms.map((_, r) => (r === root ? randomBuffer(42 + root, length) : new Float32Array(length)));
        const want = bufs[root].slice();
        await Promise.all(comms.map((c, r) => c.broadcast(bufs[r], { root })));
        for (const b of bufs) expect(bytesOf(b).equals(bytesOf(want))).toBe(true);
      }
      const gathered = await Promise.all(comms.map((c, r) => c.allGather(Float32Array.from([r, r + 0.5, -r]))));
      for (const g of gathered) expect(Array.from(g)).toEqual([0, 0.5, -0, 1, 1.5, -1, 2, 2.5, -2]);
      // Queued ops run in call order; rank 2 arrives at the barrier late and nobody passes it early.
      let late = false;
      const passed: boolean[] = [];
      await Promise.all(comms.map(async (c, r) => {
        if (r === 2) await new Promise((res) => setTimeout(res, 300));
        if (r === 2) late = true;
        await c.barrier();
        passed.push(late);
      }));
      expect(passed).toEqual([true, true, true]);
      const many = comms.map((c, r) => {
        const ops: Array<Promise<Float32Array>> = [];
        for (let k = 0; k < 5; k++) ops.push(c.allReduce(Float32Array.from([r + k, 1])));
        return Promise.all(ops);
      });
      const results = await Promise.all(many);
      for (const res of results) expect(res.map((b) => Array.from(b))).toEqual([0, 1, 2, 3, 4].map((k) => [3 + 3 * k, 3]));
    } finally {
      await closeAll(comms);
    }
  });

  test('a buffer can be mutated as soon as its op resolves (sends are flushed before resolving)', async () => {
    const comms = await localRing(2, { chunkElements: 1 << 16 });
    try {
      // 32 MB is far more than the kernel buffers hold, and rank 1 only starts reading after a delay, so
      // an op that resolved before its writes were flushed would ship the root's later garbage.
      const length = 8 << 20;
      const root = new Float32Array(length);
      for (let i = 0; i < length; i++) root[i] = i % 4099;
      const other = new Float32Array(length);
      await Promise.all([
        comms[0].broadcast(root, { root: 0 }).then(() => root.fill(-1)),
        new Promise((res) => setTimeout(res, 300)).then(() => comms[1].broadcast(other, { root: 0 })),
      ]);
      let bad = 0;
      for (let i = 0; i < length; i++) if (other[i] !== i % 4099) bad++;
      expect(bad).toBe(0);
    } finally {
      await closeAll(comms);
    }
  });

  test('world size 1 needs no sockets and returns the input unchanged (bit-identical to no distribution)', async () => {
    const comm: Communicator = new RingCommunicator({ rank: 0, worldSize: 1, links: null });
    const x = randomBuffer(7, 100);
    const before = x.slice();
    await comm.allReduce(x, { average: true });
    expect(bytesOf(x).equals(bytesOf(before))).toBe(true);
    expect(Array.from(await comm.reduceScatter(x))).toEqual(Array.from(before));
    expect(Array.from(await comm.allGather(Float32Array.from([1, 2])))).toEqual([1, 2]);
    await comm.barrier();
    await comm.close();
  });
});
