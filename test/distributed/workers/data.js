'use strict';
// Deterministic inputs shared by the test process and the worker processes. Magnitudes spread over
// 2^-10 .. 2^10 so that float32 sums depend on the order of addition. A plain loop (no closure per
// draw) keeps it fast inside jest's sandbox.
function randomBuffer(seed, length) {
  const out = new Float32Array(length);
  let a = (seed * 2654435761 + 1) >>> 0;
  for (let i = 0; i < length; i++) {
    a = (Math.imul(a, 1103515245) + 12345) >>> 0;
    const b = Math.imul(a ^ (a >>> 13), 0x5bd1e995) >>> 0;
    out[i] = (b / 4294967296 - 0.5) * Math.pow(2, ((a >>> 24) % 21) - 10);
  }
  return out;
}

module.exports = { randomBuffer };
