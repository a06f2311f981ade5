/**
 * Kernel-by-kernel profile of the bench's reference training step (docs/performance.md, "What remains"):
 * every wasm kernel is wrapped to time its calls (src/bench/kernel_swap.ts recordKernels), over a few steps
 * after warm-up. Not part of the package; run with:
 *   npx tsc --outDir /tmp/prof --rootDir . --module commonjs --target ES2022 --esModuleInterop --skipLibCheck --resolveJsonModule scripts/profile_step.ts
 *   NODE_PATH=$PWD/node_modules node /tmp/prof/scripts/profile_step.js [threads=1] [native|wasm] [steps=3]
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend';
import { recordKernels } from '../src/bench/kernel_swap';
import { referenceBatch, referenceTrainable, trainStep } from '../src/bench/reference_step';
import { nativeAddon, setNativeEnabled } from '../src/kernels/native';
import { Janus4o } from '../src/model/janus';
import { AdamW } from '../src/train/optimizer';

async function main(): Promise<void> {
  const threads = Number(process.argv[2] ?? '1');
  const mode = process.argv[3] ?? 'native';
  const steps = Number(process.argv[4] ?? '3');
  await initBackend('wasm');
  if (mode === 'wasm') setNativeEnabled(false);
  else nativeAddon()?.setThreads(threads);
  const model = Janus4o.create('tiny', { seed: 0 });
  const trainable = referenceTrainable(model);
  const opt = new AdamW(trainable.map((name) => ({ name, shape: model.params.spec(name).shape })), { weightDecay: 0.1, noDecay: [] });
  const batch = referenceBatch(model, 0);
  for (let i = 0; i < 2; i++) trainStep(model, opt, batch, trainable);
  const names = tf.getKernelsForBackend('wasm').map((k) => k.kernelName);
  const t0 = performance.now();
  const { calls } = await recordKernels(names, () => {
    for (let i = 0; i < steps; i++) trainStep(model, opt, batch, trainable);
  });
  const wall = (performance.now() - t0) / steps;
  // Untimed steps for the wall time without the wrappers' own cost.
  const t1 = performance.now();
  for (let i = 0; i < steps; i++) trainStep(model, opt, batch, trainable);
  const plain = (performance.now() - t1) / steps;
  const byKernel = new Map<string, { ms: number; calls: number }>();
  const byShape = new Map<string, { ms: number; calls: number }>();
  for (const c of calls) {
    const k = byKernel.get(c.kernel) ?? { ms: 0, calls: 0 };
    k.ms += c.ms;
    k.calls++;
    byKernel.set(c.kernel, k);
    if (['BatchMatMul', 'Multiply', 'Add', 'Sum', 'GatherV2', 'Exp', 'Sub'].includes(c.kernel)) {
      const a = c.attrs as { transposeA?: boolean; transposeB?: boolean };
      const key = c.kernel === 'BatchMatMul'
        ? `${JSON.stringify(c.inputs.a)}${a.transposeA ? 'T' : ''} x ${JSON.stringify(c.inputs.b)}${a.transposeB ? 'T' : ''}`
        : `${c.kernel} ${Object.values(c.inputs).map((x) => JSON.stringify(x)).join(' ')}${c.kernel === 'Sum' ? ` axis ${JSON.stringify((c.attrs as { axis?: unknown }).axis)}` : ''}`;
      const s = byShape.get(key) ?? { ms: 0, calls: 0 };
      s.ms += c.ms;
      s.calls++;
      byShape.set(key, s);
    }
  }
  const kernelMs = calls.reduce((a, c) => a + c.ms, 0) / steps;
  console.log(`mode ${mode}, threads ${mode === 'wasm' ? 1 : threads}: step ${plain.toFixed(1)} ms (${wall.toFixed(1)} ms while profiled), kernels ${kernelMs.toFixed(1)} ms/step, outside kernels ${(wall - kernelMs).toFixed(1)} ms/step`);
  for (const [k, v] of [...byKernel].sort((x, y) => y[1].ms - x[1].ms).slice(0, 25)) {
    console.log(`${k.padEnd(24)} ${(v.ms / steps).toFixed(2).padStart(8)} ms/step  ${(v.calls / steps).toFixed(0).padStart(5)} calls/step`);
  }
  console.log('by shape (BatchMatMul, Multiply, Add, Sum, GatherV2, Exp, Sub):');
  for (const [k, v] of [...byShape].sort((x, y) => y[1].ms - x[1].ms).slice(0, Number(process.env.PROFILE_ROWS ?? '30'))) {
    console.log(`  ${k.padEnd(40)} ${(v.ms / steps).toFixed(2).padStart(8)} ms/step  ${(v.calls / steps).toFixed(0).padStart(4)} calls/step`);
  }
  opt.dispose();
  model.dispose();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
