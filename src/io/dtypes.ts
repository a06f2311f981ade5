/**
 * Stored tensor dtypes (safetensors names) and their conversion to and from float32, plus the small interface
 * every checkpoint reader implements. tfjs computes in float32 only, so every float dtype is widened on read; the
 * writer narrows to BF16/F16 with round-to-nearest-even, the rounding torch's `.to(torch.bfloat16)` uses.
 */
import * as os from 'os';

export type StoredDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const DTYPE_BYTES: Readonly<Record<StoredDtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export function isStoredDtype(s: unknown): s is StoredDtype {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, s);
}

export interface TensorInfo {
  dtype: StoredDtype;
  /** Shape as stored (PyTorch layout). */
  shape: number[];
}

/** A checkpoint opened for reading: names, shapes and dtypes up front, values one tensor at a time. */
export interface TensorSource {
  names(): string[];
  info(name: string): TensorInfo;
  /** The tensor's values widened to float32, in stored (row-major, PyTorch) layout. */
  read(name: string): Float32Array;
  close(): void;
}

// Every reader views file bytes as typed arrays, which take the host's byte order; checkpoints are little-endian.
if (os.endianness() !== 'LE') throw new Error('janus4o-tf checkpoint io needs a little-endian host');

export function numelOf(shape: readonly number[], what: string): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new Error(`${what}: invalid dimension ${JSON.stringify(d)} in shape [${shape.join(', ')}]`);
    n *= d;
    if (!Number.isSafeInteger(n)) throw new Error(`${what}: shape [${shape.join(', ')}] has more elements than can be addressed`);
  }
  return n;
}

let f16Table: Float32Array | null = null;

function f16Lookup(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) t[h] = sign * frac * 2 ** -24;
    else if (exp === 31) t[h] = frac ? NaN : sign * Infinity;
    else t[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  f16Table = t;
  return t;
}

/**
 * Decodes `count` little-endian values of `dtype` from `src` (any byte offset) into `out[outOffset..]`.
 * Integer dtypes become floats (exact up to 2^24, which covers every index-like buffer a checkpoint holds).
 */
export function decodeInto(src: Uint8Array, dtype: StoredDtype, count: number, out: Float32Array, outOffset: number): void {
  const size = DTYPE_BYTES[dtype];
  if (src.byteLength < count * size) throw new Error(`decode: ${src.byteLength} bytes hold fewer than ${count} ${dtype} values`);
  // Typed-array views need aligned offsets; copy once when the bytes are not.
  const aligned = src.byteOffset % size === 0 ? src : src.slice(0, count * size);
  const buf = aligned.buffer;
  const off = aligned.byteOffset;
  switch (dtype) {
    case 'F32':
      out.set(new Float32Array(buf, off, count), outOffset);
      return;
    case 'BF16': {
      const u16 = new Uint16Array(buf, off, count);
      const u32 = new Uint32Array(out.buffer, out.byteOffset + outOffset * 4, count);
      for (let i = 0; i < count; i++) u32[i] = u16[i] << 16;
      return;
    }
    case 'F16': {
      const u16 = new Uint16Array(buf, off, count);
      const t = f16Lookup();
      for (let i = 0; i < count; i++) out[outOffset + i] = t[u16[i]];
      return;
    }
    case 'F64':
      out.set(new Float64Array(buf, off, count), outOffset);
      return;
    case 'I64': {
      const v = new BigInt64Array(buf, off, count);
      for (let i = 0; i < count; i++) out[outOffset + i] = Number(v[i]);
      return;
    }
    case 'I32':
      out.set(new Int32Array(buf, off, count), outOffset);
      return;
    case 'I16':
      out.set(new Int16Array(buf, off, count), outOffset);
      return;
    case 'I8':
      out.set(new Int8Array(buf, off, count), outOffset);
      return;
    case 'U8':
    case 'BOOL':
      out.set(new Uint8Array(buf, off, count), outOffset);
      return;
  }
}

/** The parts end to end in one new array (a tensor read in pieces: shards of a checkpoint, chunks of a batch). */
export function concatFloat32(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** float32 -> bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN. */
export function toBf16Bits(x: Float32Array): Uint16Array {
  const u32 = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const b = u32[i];
    if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) out[i] = (b >>> 16) | 0x40;
    else out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** float32 -> IEEE half bits, round to nearest even, with subnormals, overflow to infinity. */
export function toF16Bits(x: Float32Array): Uint16Array {
  const u32 = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const b = u32[i];
    const sign = (b >>> 16) & 0x8000;
    const exp = (b >>> 23) & 0xff;
    let mant = b & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 31) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      // Subnormal half (or zero): shift the implicit-1 mantissa right, rounding to nearest even.
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      const half = 1 << (shift - 1);
      const rest = mant & ((1 << shift) - 1);
      let m = mant >>> shift;
      if (rest > half || (rest === half && m & 1)) m++;
      out[i] = sign | m;
      continue;
    }
    let h = (e << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    // A carry out of the mantissa bumps the exponent, which is the correctly rounded result (up to infinity).
    if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++;
    out[i] = sign | h;
  }
  return out;
}

/** The float32 value a float32 takes after a round trip through bfloat16 (what a BF16 save stores). */
export function roundToBf16(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  decodeInto(new Uint8Array(toBf16Bits(x).buffer), 'BF16', x.length, out, 0);
  return out;
}

export function roundToF16(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  decodeInto(new Uint8Array(toF16Bits(x).buffer), 'F16', x.length, out, 0);
  return out;
}
