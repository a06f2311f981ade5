/**
 * Exchange dtypes: what a reduction's partial values travel as between ranks. Accumulation is always float32;
 * only the values that cross a transport are rounded.
 *
 *   float32   exact (the default)
 *   bfloat16  8 significant bits, float32's exponent range: unit roundoff u = 2^-8, no overflow or underflow
 *             beyond float32's own (the recommended choice for gradients)
 *   float16   11 significant bits (u = 2^-11) but range 6.1e-5 .. 65504: values below 2^-25 flush to 0
 *             (subnormals below 6.1e-5 keep fewer bits), values above 65504 become Inf (the trainer's NaN/Inf guard
 *             then skips the step)
 *
 * Conversions round to nearest, ties to even; NaN stays NaN. Decoding goes through a 65536-entry table, so
 * adding a 16-bit piece into a float32 accumulator is one table load per element.
 *
 * Error bound of a sum-reduction of N contributions x_k with a 16-bit exchange (see `exchangeErrorBound`): each
 * contribution that crosses a transport is rounded once (relative error <= u), the float32 additions add at most
 * (N-1) 2^-24 sum|x_k| (the same as a float32 exchange), and a result that is sent on (all-gather) is rounded once
 * more (<= u |s|). For float16, values in its subnormal range carry an absolute error of up to 2^-25 each.
 */

export type ExchangeDtype = 'float32' | 'bfloat16' | 'float16';

export const EXCHANGE_DTYPES: readonly ExchangeDtype[] = ['float32', 'bfloat16', 'float16'];

/** Accepts the usual spellings: fp32/float32, bf16/bfloat16, fp16/float16/half. */
export function parseExchangeDtype(text: string): ExchangeDtype {
  const t = text.trim().toLowerCase();
  if (t === 'fp32' || t === 'float32' || t === 'f32') return 'float32';
  if (t === 'bf16' || t === 'bfloat16') return 'bfloat16';
  if (t === 'fp16' || t === 'float16' || t === 'half' || t === 'f16') return 'float16';
  throw new RangeError(`unknown exchange dtype "${text}" (use fp32, bf16 or fp16)`);
}

export function bytesPerElement(dtype: ExchangeDtype): number {
  return dtype === 'float32' ? 4 : 2;
}

/** Unit roundoff of one conversion to the exchange dtype. */
export function unitRoundoff(dtype: ExchangeDtype): number {
  return dtype === 'float32' ? 0 : dtype === 'bfloat16' ? 2 ** -8 : 2 ** -11;
}

/**
 * Bound on |result - exact sum| for one element of a sum-reduction over N ranks whose contributions have
 * absolute values summing to `absSum` and whose result is `absResult` in magnitude, when every contribution and
 * the result are each rounded once to `dtype` and the N-1 additions are float32 (the exchange of
 * ShmCommunicator). Multiply by 1/N for an average.
 */
export function exchangeErrorBound(dtype: ExchangeDtype, n: number, absSum: number, absResult: number): number {
  const u = unitRoundoff(dtype);
  const e = 2 ** -24;
  const tiny = dtype === 'float16' ? (n + 1) * 2 ** -25 : 0;
  // Contributions rounded once (u S), float32 additions ((N-1) e S'), the result rounded once (u |s|), the
  // average's division (e |s|); (1 + 2u) covers the second-order terms (rounding of already-rounded errors).
  return (1 + 2 * u) * (u * absSum + (n - 1) * e * (1 + u) * absSum + (u + e) * absResult) + tiny;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> float16 bits, round to nearest even, with subnormals, Inf and NaN. */
export function float16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = m & ((1 << shift) - 1);
    let h = m >>> shift;
    if (rest > half || (rest === half && (h & 1) === 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++;
  return sign | h;
}

let bf16Table: Float32Array | null = null;
let f16Table: Float32Array | null = null;

/** Float32 value of every 16-bit pattern of `dtype`. */
export function decodeTable(dtype: 'bfloat16' | 'float16'): Float32Array {
  if (dtype === 'bfloat16') {
    if (bf16Table === null) {
      const t = new Float32Array(65536);
      const bits = new Uint32Array(t.buffer);
      for (let h = 0; h < 65536; h++) bits[h] = h << 16;
      bf16Table = t;
    }
    return bf16Table;
  }
  if (f16Table === null) {
    const t = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1;
      const e = (h >>> 10) & 0x1f;
      const m = h & 0x3ff;
      t[h] = e === 0 ? s * m * 2 ** -24 : e === 0x1f ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
    }
    f16Table = t;
  }
  return f16Table;
}

/** out[i] = bits of src[i] in `dtype` (out.length >= src.length). */
export function encode16(dtype: 'bfloat16' | 'float16', src: Float32Array, out: Uint16Array): void {
  const n = src.length;
  if (dtype === 'bfloat16') {
    const bits = new Uint32Array(src.buffer, src.byteOffset, n);
    for (let i = 0; i < n; i++) {
      const b = bits[i];
      // NaN: keep it a (quiet) NaN; rounding could carry it into Inf.
      out[i] = (b & 0x7fffffff) > 0x7f800000 ? (b >>> 16) | 0x40 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
    }
    return;
  }
  for (let i = 0; i < n; i++) out[i] = float16Bits(src[i]);
}

/** dst[i] = decoded src[i]. */
export function decode16(dtype: 'bfloat16' | 'float16', src: Uint16Array, dst: Float32Array): void {
  const t = decodeTable(dtype);
  const n = dst.length;
  for (let i = 0; i < n; i++) dst[i] = t[src[i]];
}

/** acc[i] += decoded src[i]. */
export function decodeAdd16(dtype: 'bfloat16' | 'float16', src: Uint16Array, acc: Float32Array): void {
  const t = decodeTable(dtype);
  const n = acc.length;
  for (let i = 0; i < n; i++) acc[i] += t[src[i]];
}

/** Rounds `buf` in place to values representable in `dtype` (what a rank keeps of a value it also sends). */
export function roundInPlace(dtype: ExchangeDtype, buf: Float32Array, scratch: Uint16Array): void {
  if (dtype === 'float32') return;
  const t = decodeTable(dtype);
  for (let off = 0; off < buf.length; off += scratch.length) {
    const part = buf.subarray(off, Math.min(buf.length, off + scratch.length));
    encode16(dtype, part, scratch);
    for (let i = 0; i < part.length; i++) part[i] = t[scratch[i]];
  }
}
