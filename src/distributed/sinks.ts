/**
 * Where received collective payloads go: summed into the caller's buffer (reduce steps) or copied into it
 * (gather and broadcast steps), as the bytes arrive, so a piece is never staged whole.
 */
import { PayloadSink } from './framing';

/**
 * target[i] += received[i]. Float addition is commutative, so this equals received + target bit for bit
 * (the order layout.ts documents). `staging` (at least target.length floats) holds bytes that arrive
 * misaligned or split mid-float.
 */
export function addSink(staging: Float32Array, target: Float32Array, onBytes: () => void, done: () => void): PayloadSink {
  const stagingBytes = new Uint8Array(staging.buffer, 0, target.length * 4);
  let fill = 0;
  let summed = 0;
  return {
    write: (bytes) => {
      onBytes();
      let rest = bytes;
      if ((fill & 3) === 0 && (bytes.byteOffset & 3) === 0) {
        // Socket reads are usually float-aligned: add straight from them and skip the staging copy.
        const whole = bytes.length >>> 2;
        const src = new Float32Array(bytes.buffer, bytes.byteOffset, whole);
        const base = fill >>> 2;
        for (let i = 0; i < whole; i++) target[base + i] += src[i];
        fill += whole * 4;
        summed = fill >>> 2;
        rest = bytes.subarray(whole * 4);
      }
      if (rest.length === 0) return;
      stagingBytes.set(rest, fill);
      fill += rest.length;
      const full = fill >>> 2;
      for (let i = summed; i < full; i++) target[i] += staging[i];
      summed = full;
    },
    end: done,
  };
}

export function copySink(target: Float32Array, onBytes: () => void, done: () => void): PayloadSink {
  const bytes = new Uint8Array(target.buffer, target.byteOffset, target.byteLength);
  let fill = 0;
  return {
    write: (chunk) => {
      onBytes();
      bytes.set(chunk, fill);
      fill += chunk.length;
    },
    end: done,
  };
}
