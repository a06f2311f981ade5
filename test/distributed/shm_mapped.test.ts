/**
 * The shared-mapping path of the intra-node transport (native/shm_map.c): when the addon is built, segments are
 * mapped and summed in place, with the same bits as the pwrite/pread path and the TCP ring's reference; when it is
 * not (no compiler at install, JANUS4O_NATIVE=0), the transport says so and takes pwrite/pread.
 *
 * The rule of test/native_kernels.test.ts: unless JANUS4O_NATIVE=0 or there is no C compiler (`$CC`, else `cc`),
 * the install builds the addon, so a missing or unloadable one fails here with its cause.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { referenceAllReduce, shardRange } from '../../src/distributed/layout';
import { DEFAULT_SHM_DIR } from '../../src/distributed/shm';
import { SHM_ADDON_PATH, shmNative, shmNativeReason } from '../../src/distributed/shm_native';
import { closeAll, localRing, randomBuffer } from './helpers';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(fs.existsSync(DEFAULT_SHM_DIR) ? DEFAULT_SHM_DIR : os.tmpdir(), 'janus4o-map-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const same = (a: Float32Array, b: Float32Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

const hasCompiler = spawnSync(process.env.CC || 'cc', ['--version'], { stdio: 'ignore' }).status === 0;
const expectMapped = process.env.JANUS4O_NATIVE !== '0' && hasCompiler;

test('the addon is in use where it should be built, or the test says why not', () => {
  if (!expectMapped) {
    console.log(`shared-mapping addon not expected (${process.env.JANUS4O_NATIVE === '0' ? 'JANUS4O_NATIVE=0' : 'no C compiler'}): ${shmNativeReason()}; testing pwrite/pread`);
    expect(shmNative() === null || fs.existsSync(SHM_ADDON_PATH)).toBe(true);
    return;
  }
  if (!shmNative()) {
    throw new Error(`shared-mapping addon expected (JANUS4O_NATIVE is not 0 and a C compiler is present) but not in use: ${shmNativeReason()}. Build it with \`npm run build:native\` (log: build/native-build.log).`);
  }
  expect(shmNativeReason()).toMatch(/mapped through/);
});

test.each([2, 3, 4])('N=%i: the transport names its path; all-reduce, reduce-scatter and all-gather equal the ring reference bit for bit', async (n) => {
  const logs: string[] = [];
  const comms = await localRing(n, { node: 'test-node', shm: { dir, segmentBytes: 2 * n * 8192 * 4 }, log: (m) => logs.push(m) });
  try {
    const line = logs.find((l) => l.startsWith('transport: shared memory'));
    expect(line).toMatch(shmNative() ? /segments mapped/ : /pwrite\/pread/);
    for (const L of [1, 4097, 70001]) {
      for (const average of [false, true]) {
        const xs = comms.map((_, r) => randomBuffer(31 * r + L, L));
        const want = referenceAllReduce(xs, { average });
        await Promise.all(comms.map((c, r) => c.allReduce(xs[r], { average })));
        for (const x of xs) expect(same(x, want)).toBe(true);
        const ys = comms.map((_, r) => randomBuffer(31 * r + L + 1, L));
        const sum = referenceAllReduce(ys, { average });
        const shards = await Promise.all(comms.map((c, r) => c.reduceScatter(ys[r].slice(), { average })));
        shards.forEach((s, r) => {
          const { start, end } = shardRange(L, n, r);
          expect(same(s, sum.subarray(start, end))).toBe(true);
        });
      }
    }
  } finally {
    await closeAll(comms);
  }
}, 60_000);

// The addon's own functions, where it is built (its absence is reported by the first test).
(shmNative() ? describe : describe.skip)('the addon itself', () => {
  test('reduce keeps the ring order ((p0 + p1) + own) / d and rejects mismatched arrays', () => {
    const k = shmNative()!;
    // Values where the order of float32 additions changes the result.
    const own = Float32Array.from([1e8, 1, -1e8, 3]);
    const p0 = Float32Array.from([1, 1e8, 1e8, 1.5]);
    const p1 = Float32Array.from([-1e8, -1e8, 1, 2.25]);
    const out = new Float32Array(4);
    const want = own.map((o, i) => Math.fround(Math.fround(Math.fround(p0[i] + p1[i]) + o) / 3));
    k.reduce(own, [p0, p1], 3, out);
    expect(Array.from(own)).toEqual(Array.from(want));
    expect(Array.from(out)).toEqual(Array.from(want));
    expect(() => k.reduce(own, [new Float32Array(3)], 1, null)).toThrow(/as long as own/);
    expect(() => k.reduce(own, [], 1, null)).toThrow(/1 to 256/);
  });

  test('map gives a shared view: a write through one mapping is read through another', () => {
    const k = shmNative()!;
    const file = path.join(dir, 'view');
    fs.writeFileSync(file, Buffer.alloc(4096), { mode: 0o600 });
    const a = fs.openSync(file, 'r+');
    const b = fs.openSync(file, 'r');
    try {
      const w = new Float32Array(k.map(a, 4096, true));
      const r = new Float32Array(k.map(b, 4096, false));
      w[10] = 42.5;
      expect(r[10]).toBe(42.5);
      expect(fs.readFileSync(file).readFloatLE(40)).toBe(42.5);
      expect(() => k.map(-1, 4096, false)).toThrow(/file descriptor/);
    } finally {
      fs.closeSync(a);
      fs.closeSync(b);
    }
  });
});
