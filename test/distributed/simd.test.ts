/** The WebAssembly SIMD kernels give the JS loops' results bit for bit, tails and special values included. */
import { simdKernels, SIMD_SUB } from '../../src/distributed/simd';
import { decode16, encode16, float16Bits } from '../../src/distributed/wire';

/** Bit for bit, except that any NaN equals any NaN (payloads of NaN results differ between wasm and JS adds). */
function same(a: Float32Array | Uint16Array, b: Float32Array | Uint16Array): boolean {
  if (a.length !== b.length) return false;
  if (a instanceof Uint16Array) return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++) if (x[i] !== y[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
}

function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let a = seed >>> 0;
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1103515245) + 12345) >>> 0;
    out[i] = ((a / 2 ** 32) - 0.5) * 2 ** ((a >>> 20) % 80 - 50);
  }
  const bits = new Uint32Array(out.buffer);
  // Specials: NaN (quiet, and signalling ones whose payload lies in the low half), +-Inf, -0, subnormals, the
  // largest finite float (rounds to Inf in bf16), halfway cases of the bf16 rounding.
  const special = [0x7fc00000, 0x7f800001, 0xff800003, 0x7f800000, 0xff800000, 0x80000000, 0x00000001, 0x807fffff, 0x7f7fffff, 0x3f808000, 0x3f818000, 0x3f80ffff];
  special.forEach((b, k) => { if (7 * k < n) bits[7 * k] = b; });
  return out;
}

const k = simdKernels();

(k ? describe : describe.skip)('SIMD kernels', () => {
  test.each([1, 3, 4, 7, 8, 9, 1000, SIMD_SUB - 1, SIMD_SUB])('n=%i: add, divide, bf16 encode / decode / decode-add equal the JS loops', (n) => {
    const kk = k!;
    const a = values(n, n);
    const b = values(n, n + 1);
    const sum = a.slice();
    for (let i = 0; i < n; i++) sum[i] += b[i];
    kk.acc.set(a);
    kk.peer.set(b);
    kk.add(kk.acc.subarray(0, n), kk.peer.subarray(0, n), n);
    expect(same(kk.acc.subarray(0, n), sum)).toBe(true);
    const q = a.slice();
    for (let i = 0; i < n; i++) q[i] = q[i] / 7;
    kk.acc.set(a);
    kk.div(kk.acc.subarray(0, n), 7, n);
    expect(same(kk.acc.subarray(0, n), q)).toBe(true);
    const h = new Uint16Array(n);
    encode16('bfloat16', a, h);
    kk.own.set(a);
    kk.encodeBf16(kk.own.subarray(0, n), n);
    expect(same(kk.half.subarray(0, n), h)).toBe(true);
    const d = new Float32Array(n);
    decode16('bfloat16', h, d);
    kk.decodeBf16(kk.acc.subarray(0, n), n);
    expect(same(kk.acc.subarray(0, n), d)).toBe(true);
    const da = b.slice();
    for (let i = 0; i < n; i++) da[i] += d[i];
    kk.acc.set(b);
    kk.addBf16(kk.acc.subarray(0, n), n);
    expect(same(kk.acc.subarray(0, n), da)).toBe(true);
  });
});

test('16-bit conversions: round to nearest even, NaN stays NaN, bf16 and fp16 ranges', () => {
  const one = (dtype: 'bfloat16' | 'float16', x: number): number => {
    const h = new Uint16Array(1);
    encode16(dtype, Float32Array.from([x]), h);
    const d = new Float32Array(1);
    decode16(dtype, h, d);
    return d[0];
  };
  expect(one('bfloat16', 1 + 2 ** -8)).toBe(1); // halfway, to even
  expect(one('bfloat16', 1 + 3 * 2 ** -8)).toBe(1 + 2 ** -6);
  expect(one('bfloat16', 3.4e38)).toBe(Infinity);
  expect(Math.abs(one('bfloat16', 1e-40) - 1e-40)).toBeLessThanOrEqual(2 ** -134);
  expect(Number.isNaN(one('bfloat16', NaN))).toBe(true);
  expect(one('float16', 1 + 2 ** -11)).toBe(1);
  expect(one('float16', 65504)).toBe(65504);
  expect(one('float16', 70000)).toBe(Infinity);
  expect(one('float16', 2 ** -24)).toBe(2 ** -24);
  expect(one('float16', 2 ** -26)).toBe(0);
  expect(float16Bits(-0)).toBe(0x8000);
  expect(Number.isNaN(one('float16', NaN))).toBe(true);
});
