/** The human-readable table of a bench report (`janus4o bench --pretty`). */
import { BenchReport } from './run';
import { isSkipped } from './util';

/** Fixed decimals, with more for small values so that 0.03 images/s does not print as 0.0. */
const f = (x: number, digits = 1) => (Number.isFinite(x) ? x.toFixed(Math.abs(x) < 1 && x !== 0 ? Math.max(digits, 3) : digits) : String(x));

export function formatReport(r: BenchReport): string {
  const rows: [string, string][] = [];
  const add = (k: string, v: string) => rows.push([k, v]);
  const m = r.machine;
  add('machine', `${m.cpus} x ${m.cpuModel}, ${m.platform}, Node ${m.node}, load ${m.loadAverageStart.map((x) => f(x, 2)).join('/')}`);
  add('backend', `${r.backend.name}, ${r.backend.wasmThreads} thread(s)${r.quick ? ' (QUICK RUN: shapes reduced, not comparable)' : ''}`);
  add('sgemm peak', `${f(r.sgemm.peakGflops)} GFLOP/s (${r.sgemm.points.map((p) => `${p.m}x${p.k}x${p.n}: ${f(p.gflops)}`).join(', ')})`);
  const s = r.referenceStep;
  add('reference step', `${f(s.msPerStep, 0)} ms/step (CPU ${f(s.cpuMsPerStep, 0)} ms), ${f(s.tokensPerSecond, 0)} tokens/s [${s.batch} x (${s.textLen}+${s.imageLen}), ${s.params} params]`);
  add('  model FLOPs', `${f(s.modelFlopsPerStep / 1e9, 2)} GFLOP/step, ${f(s.modelGflopsPerSecond)} GFLOP/s = ${f(100 * s.fractionOfSgemmPeak, 0)}% of sgemm peak`);
  const nat = r.native;
  const calls = Object.entries(nat.kernelCalls).map(([k, c]) => `${k} ${c.native}/${c.native + c.wasm}`).join(', ');
  add('native kernels', nat.status.active ? `${nat.status.kernel}, ${nat.status.threads} thread(s); native calls / all: ${calls || 'none'}` : `not in use: ${nat.status.reason}`);
  if (!isSkipped(nat.sgemm)) {
    const pts = (x: typeof r.sgemm) => x.points.map((p) => `${p.m}x${p.k}x${p.n}: ${f(p.gflops)}`).join(', ');
    add('native sgemm peak', `${f(nat.peakGflops ?? NaN)} GFLOP/s; 1 thread ${f(nat.sgemm.threads1.peakGflops)} (${pts(nat.sgemm.threads1)}); 2 threads ${f(nat.sgemm.threads2.peakGflops)} (${pts(nat.sgemm.threads2)})`);
  }
  add('wasm sgemm peak', `${f(nat.wasm.sgemm.peakGflops)} GFLOP/s (native kernels off)`);
  const stepLine = (x: { msPerStep: number; cpuMsPerStep: number; tokensPerSecond: number }) => `${f(x.msPerStep, 0)} ms/step (CPU ${f(x.cpuMsPerStep, 0)} ms), ${f(x.tokensPerSecond, 0)} tokens/s`;
  if (!isSkipped(nat.referenceStep)) {
    add('  native, 1 thread', stepLine(nat.referenceStep.threads1));
    add('  native, 2 threads', stepLine(nat.referenceStep.threads2));
  }
  add('  wasm kernels only', stepLine(nat.wasm.referenceStep));
  const c = r.cpuBackend.referenceStep;
  add('  cpu backend', `${f(c.msPerStep, 0)} ms/step, ${f(c.tokensPerSecond, 1)} tokens/s; wasm is ${f(r.cpuBackend.wasmSpeedup)}x faster`);
  if (isSkipped(r.torch)) add('  PyTorch', `skipped: ${r.torch.skipped}`);
  else {
    for (const [k, t] of [['1 thread', r.torch.threads1], ['2 threads', r.torch.threads2]] as const) {
      const ratio = k === '1 thread' ? r.torch.ratio.threads1 : r.torch.ratio.threads2;
      const wr = k === '1 thread' ? r.torch.wasmRatio.threads1 : r.torch.wasmRatio.threads2;
      add(`  PyTorch ${k}`, isSkipped(t) ? `skipped: ${t.skipped}` : `${f(t.msPerStep, 0)} ms/step, ${f(t.tokensPerSecond, 0)} tokens/s; ours (same threads) / PyTorch = ${f(ratio ?? NaN, 2)}x, wasm kernels only ${f(wr ?? NaN, 2)}x`);
    }
  }
  const g = r.generation;
  add('generation', `${g.images} images, CFG ${g.cfgRows} rows, ${g.imageTokensPerImage} tokens each: KV cache ${f(g.cached.tokensPerSecond)} tokens/s, recompute ${f(g.recompute.tokensPerSecond)} tokens/s (${f(g.speedup)}x)`);
  for (const v of r.vq.codec) add(`VQ ${v.config} @${v.imageSize}px`, `encode ${f(v.encodeImagesPerSecond, 2)} images/s, decode ${f(v.decodeImagesPerSecond, 2)} images/s (batch ${v.batch})`);
  const t = r.vq.trainStep;
  add('VQ train step', `${t.config} batch ${t.batch} @${t.imageSize}px: ${f(t.msPerStep, 0)} ms/step (conv grads ${f(t.convGradMs, 0)} ms); cpu conv-grad kernels est. ${f(t.cpuKernelStepMsEstimate / 1000, 0)} s/step = ${f(t.speedup, 0)}x slower`);
  add('prepare', `${f(r.prepare.imagesPerSecond)} images/s (${r.prepare.images} images @${r.prepare.imageSize}px)`);
  if (isSkipped(r.allreduce)) add('all-reduce', `skipped: ${r.allreduce.skipped}`);
  else {
    for (const row of r.allreduce.rows) {
      const raw = row.rawRingGBps !== undefined ? `, raw TCP ring ${f(row.rawRingGBps, 2)} GB/s` : '';
      const vs = row.speedupVsTcp !== null ? `, ${f(row.speedupVsTcp, 2)}x the TCP ring` : '';
      add(`all-reduce N=${row.worldSize} ${row.kind} ${row.exchange}`, `${f(row.bytes / 2 ** 20, 0)} MiB: ${f(row.allReduceMs, 1)} ms, bus ${f(row.busGBps, 2)} GB/s (memcpy ${f(row.memcpyGBps, 2)} GB/s)${raw}${vs}`);
    }
  }
  for (const [k, w] of Object.entries(r.cpuFallback)) add(`cpu fallback: ${k}`, w.cpuFallback.length ? `FALLBACK ${w.cpuFallback.join(', ')}` : `none (${w.kernels} kernels)`);
  add('peak RSS', `${f(r.peakRssMiB, 0)} MiB; bench took ${f(r.seconds, 0)} s`);
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n');
}
