/**
 * The inner loops of the shared-memory reduction as WebAssembly SIMD (4 floats per instruction), from a module
 * of a few hundred bytes written out below, so nothing is compiled on the user's machine. A plain JS loop over
 * Float32Arrays converts every element to a double and back; these kernels run several times faster, which
 * matters because summing is most of the CPU work of an intra-node all-reduce.
 *
 * The kernels work on the module's own memory (`view`): callers read segment data straight into it (pread into
 * a Uint8Array over it) and copy their own values in. Results are bit-identical to the JS loops: a float32 add,
 * multiply or divide is correctly rounded either way (JS rounds the double result once, which for these
 * operations gives the same float; NaN payloads aside), and the bfloat16 conversion is the same bit manipulation (round to nearest
 * even; NaN stays a quiet NaN).
 *
 * Where WebAssembly SIMD is unavailable, `simdKernels()` returns null and callers use their JS loops.
 */

/** Byte layout of the kernels' memory: four areas of `AREA` bytes (acc, peer, own, 16-bit scratch). */
export const SIMD_SUB = 1 << 16;
const AREA = SIMD_SUB * 4;

export interface SimdKernels {
  /** Float32 views of the work areas, SIMD_SUB floats each, and the 16-bit scratch (SIMD_SUB halves). */
  acc: Float32Array;
  peer: Float32Array;
  own: Float32Array;
  half: Uint16Array;
  /** a[i] += b[i] for i < n (any n). */
  add(a: Float32Array, b: Float32Array, n: number): void;
  /** a[i] /= d for i < n. */
  div(a: Float32Array, d: number, n: number): void;
  /** a[i] = bf16 half[i] (decoded) for i < n. */
  decodeBf16(a: Float32Array, n: number): void;
  /** a[i] += bf16 half[i] (decoded) for i < n. */
  addBf16(a: Float32Array, n: number): void;
  /** half[i] = bf16 bits of a[i] for i < n. */
  encodeBf16(a: Float32Array, n: number): void;
}

// --- a tiny assembler for the module ---------------------------------------------------------------------

function uleb(v: number): number[] {
  const out: number[] = [];
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return out;
}

function sleb(v: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = v & 0x7f;
    v >>= 7;
    if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function name(s: string): number[] {
  return [...uleb(s.length), ...Buffer.from(s, 'utf8')];
}

const I32 = 0x7f;
const F32 = 0x7d;
const V128 = 0x7b;
const op = {
  get: (i: number) => [0x20, ...uleb(i)],
  set: (i: number) => [0x21, ...uleb(i)],
  i32: (v: number) => [0x41, ...sleb(v)],
  add: [0x6a],
  shl: [0x74],
  geU: [0x4f],
  simd: (code: number, ...rest: number[]) => [0xfd, ...uleb(code), ...rest],
};
const load = (offset = 0): number[] => op.simd(0x00, 2, ...uleb(offset));
const store = (offset = 0): number[] => op.simd(0x0b, 2, ...uleb(offset));
const load16x4u = (offset = 0): number[] => op.simd(0x04, 1, ...uleb(offset));
const splat = (v: number): number[] => {
  const b = Buffer.alloc(16);
  for (let k = 0; k < 4; k++) b.writeUInt32LE(v >>> 0, 4 * k);
  return op.simd(0x0c, ...b);
};
const F32X4_ADD = op.simd(0xe4);
const F32X4_DIV = op.simd(0xe7);
const F32X4_SPLAT = op.simd(0x13);
const I32X4_SHL = op.simd(0xab);
const I32X4_SHR_U = op.simd(0xad);
const I32X4_ADD = op.simd(0xae);
const I32X4_GT_U = op.simd(0x3c);
const V128_AND = op.simd(0x4e);
const V128_OR = op.simd(0x50);
const V128_BITSELECT = op.simd(0x52);
const I16X8_NARROW_U = op.simd(0x86);

/**
 * A loop `while (p0 < end) { body; p0 += step0; p1 += step1 }` with end = p0 + n * scale (params 0, 1, 2 are
 * p0, p1, n; local `endLocal` holds end).
 */
function loop(endLocal: number, scaleShift: number, step0: number, step1: number, body: number[]): number[] {
  return [
    ...op.get(2), ...op.i32(scaleShift), ...op.shl, ...op.get(0), ...op.add, ...op.set(endLocal),
    0x02, 0x40, 0x03, 0x40,
    ...op.get(0), ...op.get(endLocal), ...op.geU, 0x0d, 0x01,
    ...body,
    ...op.get(0), ...op.i32(step0), ...op.add, ...op.set(0),
    ...op.get(1), ...op.i32(step1), ...op.add, ...op.set(1),
    0x0c, 0x00, 0x0b, 0x0b,
  ];
}

function fn(locals: number[][], code: number[]): number[] {
  const body = [...vec(locals), ...code, 0x0b];
  return [...uleb(body.length), ...body];
}

/** bf16 bits of the i32x4 in local `v`: round to nearest even, a NaN kept quiet (as wire.ts encode16). */
function bf16Of(v: number): number[] {
  return [
    ...op.get(v), ...op.i32(16), ...I32X4_SHR_U, ...splat(0x40), ...V128_OR,
    ...op.get(v), ...op.get(v), ...op.i32(16), ...I32X4_SHR_U, ...splat(1), ...V128_AND, ...I32X4_ADD, ...splat(0x7fff), ...I32X4_ADD,
    ...op.i32(16), ...I32X4_SHR_U,
    ...op.get(v), ...splat(0x7fffffff), ...V128_AND, ...splat(0x7f800000), ...I32X4_GT_U,
    ...V128_BITSELECT,
  ];
}

function moduleBytes(): Uint8Array {
  const t3 = [0x60, 3, I32, I32, I32, 0];
  const tDiv = [0x60, 3, I32, I32, F32, 0];
  const types = section(1, vec([t3, tDiv]));
  // add(a, b, n4), addBf16(a, half, n4), decodeBf16(a, half, n4), encodeBf16(half, a, n8), div(a, n4, d)
  const funcs = section(3, vec([[0], [0], [0], [0], [1]]));
  const memory = section(5, vec([[0x00, ...uleb((4 * AREA) / 65536)]]));
  const exports = section(7, vec([
    [...name('mem'), 0x02, 0],
    [...name('add'), 0x00, 0], [...name('addBf16'), 0x00, 1], [...name('decodeBf16'), 0x00, 2], [...name('encodeBf16'), 0x00, 3], [...name('div'), 0x00, 4],
  ]));
  const add = fn([[1, I32]], loop(3, 2, 16, 16, [...op.get(0), ...op.get(0), ...load(), ...op.get(1), ...load(), ...F32X4_ADD, ...store()]));
  const addBf16 = fn([[1, I32]], loop(3, 2, 16, 8, [...op.get(0), ...op.get(0), ...load(), ...op.get(1), ...load16x4u(), ...op.i32(16), ...I32X4_SHL, ...F32X4_ADD, ...store()]));
  const decodeBf16 = fn([[1, I32]], loop(3, 2, 16, 8, [...op.get(0), ...op.get(1), ...load16x4u(), ...op.i32(16), ...I32X4_SHL, ...store()]));
  // encodeBf16(half, a, n): p0 = half (16 bytes per step), p1 = a (32 bytes per step); n in halves, end = half + 2n.
  const encodeBf16 = fn([[1, I32], [1, V128]], loop(3, 1, 16, 32, [
    ...op.get(0),
    ...op.get(1), ...load(0), ...op.set(4), ...bf16Of(4),
    ...op.get(1), ...load(16), ...op.set(4), ...bf16Of(4),
    ...I16X8_NARROW_U, ...store(),
  ]));
  // div(a, n, d): params a, n, d; locals end (3), splat (4). Reuses the loop with p1 = n as a dummy.
  const div = fn([[1, I32], [1, V128]], [
    ...op.get(2), ...F32X4_SPLAT, ...op.set(4),
    ...op.get(1), ...op.i32(2), ...op.shl, ...op.get(0), ...op.add, ...op.set(3),
    0x02, 0x40, 0x03, 0x40,
    ...op.get(0), ...op.get(3), ...op.geU, 0x0d, 0x01,
    ...op.get(0), ...op.get(0), ...load(), ...op.get(4), ...F32X4_DIV, ...store(),
    ...op.get(0), ...op.i32(16), ...op.add, ...op.set(0),
    0x0c, 0x00, 0x0b, 0x0b,
  ]);
  const code = section(10, [...uleb(5), ...add, ...addBf16, ...decodeBf16, ...encodeBf16, ...div]);
  return Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...types, ...funcs, ...memory, ...exports, ...code]);
}

/** The slice of the WebAssembly API used here (the project's TS lib has no DOM or WebAssembly typings). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
}

interface Exports {
  mem: { buffer: ArrayBuffer };
  add(a: number, b: number, n: number): void;
  addBf16(a: number, half: number, n: number): void;
  decodeBf16(a: number, half: number, n: number): void;
  encodeBf16(half: number, a: number, n: number): void;
  div(a: number, n: number, d: number): void;
}

let cached: SimdKernels | null | undefined;

/** The kernels, or null where WebAssembly SIMD is missing (or JANUS4O_NO_SIMD=1). Each call gets the same instance. */
export function simdKernels(): SimdKernels | null {
  if (cached !== undefined) return cached;
  cached = null;
  if (process.env.JANUS4O_NO_SIMD === '1') return null;
  try {
    const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
    const bytes = moduleBytes();
    if (wasm === undefined || !wasm.validate(bytes)) return null;
    const e = new wasm.Instance(new wasm.Module(bytes), {}).exports as Exports;
    const buf = e.mem.buffer;
    const acc = new Float32Array(buf, 0, SIMD_SUB);
    const peer = new Float32Array(buf, AREA, SIMD_SUB);
    const own = new Float32Array(buf, 2 * AREA, SIMD_SUB);
    const half = new Uint16Array(buf, 3 * AREA, SIMD_SUB);
    const at = (a: Float32Array): number => {
      if (a.buffer !== buf) throw new RangeError('SIMD kernels work on their own memory only');
      return a.byteOffset;
    };
    const HALF = 3 * AREA;
    const kernels: SimdKernels = {
      acc, peer, own, half,
      add(a, b, n) {
        const m = n & ~3;
        e.add(at(a), at(b), m);
        for (let i = m; i < n; i++) a[i] += b[i];
      },
      div(a, d, n) {
        const m = n & ~3;
        e.div(at(a), m, d);
        for (let i = m; i < n; i++) a[i] = a[i] / d;
      },
      decodeBf16(a, n) {
        const m = n & ~3;
        e.decodeBf16(at(a), HALF, m);
        const bits = new Uint32Array(buf, a.byteOffset, n);
        for (let i = m; i < n; i++) bits[i] = half[i] << 16;
      },
      addBf16(a, n) {
        const m = n & ~3;
        e.addBf16(at(a), HALF, m);
        const t = new Float32Array(1);
        const tb = new Uint32Array(t.buffer);
        for (let i = m; i < n; i++) {
          tb[0] = half[i] << 16;
          a[i] += t[0];
        }
      },
      encodeBf16(a, n) {
        const m = n & ~7;
        e.encodeBf16(HALF, at(a), m);
        const bits = new Uint32Array(buf, a.byteOffset, n);
        for (let i = m; i < n; i++) {
          const b = bits[i];
          half[i] = (b & 0x7fffffff) > 0x7f800000 ? (b >>> 16) | 0x40 : ((b + 0x7fff + ((b >>> 16) & 1)) >>> 0) >>> 16;
        }
      },
    };
    cached = kernels;
  } catch {
    cached = null;
  }
  return cached;
}
