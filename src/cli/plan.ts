/**
 * `janus4o plan`: which training settings fit a preset on N GPUs, and how long an optimizer step takes with each
 * (compute, GPU<->host copies, gradient exchange), without allocating anything. `--json` prints one object whose
 * top-level fields describe the recommended setting (or, when nothing fits, the smallest one).
 */
import * as fs from 'fs';
import type { CommandModule } from 'yargs';
import { referenceStepFlops } from '../bench/flops';
import { UserError } from '../errors';
import { PRESETS, presetConfig } from '../model/config';
import { formatTrainingPlan, PlanTransport, SettingEstimate, Throughput, trainingPlan, ZeroStage } from '../model/plan';

/**
 * All-reduce bus bandwidth per transport when neither --allreduce-gbps nor --bench gives one: the 256 MiB figures
 * of the all-reduce bench with N = 8 on the development VM (2 vCPUs; shared memory mapped by the native part;
 * docs/distributed.md). Machines with more cores and memory
 * bandwidth do better; measure yours with `node dist/distributed/bench.js` and pass --bench.
 */
export const DEFAULT_BUS_GBPS: Record<PlanTransport, number> = { tcp: 0.17, shm: 0.98, hierarchical: 0.51 };

interface PlanArgs {
  preset: string;
  nproc: number;
  'gpu-memory': number;
  'global-batch': number;
  'seq-len': number;
  'micro-batch'?: number;
  'activation-checkpointing'?: boolean;
  'zero-stage'?: number;
  tflops: number;
  'half-saturation-tokens': number;
  'host-gbps': number;
  transport: string;
  'allreduce-gbps'?: number;
  bench?: string;
  exchange: string;
  'usable-fraction': number;
  json: boolean;
}

interface BenchRowLike {
  worldSize?: unknown;
  bytes?: unknown;
  kind?: unknown;
  exchange?: unknown;
  busGBps?: unknown;
}

/** The bus bandwidth a bench report measured for a transport: largest buffer, world size nearest to nproc. */
export function measuredBusGBps(file: string, transport: PlanTransport, exchange: string, nproc: number): { gbps: number; source: string } {
  let parsed: { rows?: unknown; allreduce?: { rows?: unknown } };
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof parsed;
  } catch (e) {
    throw new UserError(`--bench ${file}: ${(e as Error).message}`);
  }
  const rows = (Array.isArray(parsed.rows) ? parsed.rows : Array.isArray(parsed.allreduce?.rows) ? parsed.allreduce?.rows : []) as BenchRowLike[];
  const candidates = rows.filter((r) => r.kind === transport && r.exchange === exchange && typeof r.busGBps === 'number' && typeof r.bytes === 'number' && typeof r.worldSize === 'number');
  if (candidates.length === 0) throw new UserError(`--bench ${file} has no ${transport} ${exchange} all-reduce rows (run node dist/distributed/bench.js)`);
  candidates.sort((a, b) => Math.abs((a.worldSize as number) - nproc) - Math.abs((b.worldSize as number) - nproc) || (b.bytes as number) - (a.bytes as number));
  const best = candidates[0];
  return { gbps: best.busGBps as number, source: `measured: ${file}, N=${String(best.worldSize)}, ${(best.bytes as number) / 2 ** 20} MiB` };
}

function summary(s: SettingEstimate): Record<string, unknown> {
  return {
    perRankGiB: s.perRankGiB, fits: s.fits, zeroStage: s.zeroStage, activationCheckpointing: s.activationCheckpointing,
    microBatch: s.microBatch, gradAccum: s.gradAccum,
    computeSecondsPerStep: s.computeSecondsPerStep, copySecondsPerStep: s.copySecondsPerStep, commSecondsPerStep: s.commSecondsPerStep, stepSeconds: s.stepSeconds,
  };
}

export const planCommand: CommandModule<object, PlanArgs> = {
  command: 'plan',
  describe: 'Which training settings (ZeRO stage, activation checkpointing, micro-batch) fit a preset on N GPUs, and seconds per step of each',
  builder: (y) =>
    y
      .option('preset', { type: 'string', default: 'janus-pro-7b', choices: Object.keys(PRESETS), describe: 'model preset' })
      .option('nproc', { type: 'number', default: 8, describe: 'data-parallel ranks (GPUs)' })
      .option('gpu-memory', { type: 'number', default: 80, describe: 'memory per GPU, GiB' })
      .option('global-batch', { type: 'number', default: 64, describe: 'samples per optimizer step over all ranks (the paper: 64)' })
      .option('seq-len', { type: 'number', default: 1756, describe: 'positions per row (TI2I ~1.75K at 384 px)' })
      .option('micro-batch', { type: 'number', describe: 'pin the micro-batch (default: try every divisor of the per-rank batch)' })
      .option('activation-checkpointing', { type: 'boolean', describe: 'pin activation checkpointing on or off (default: try both)' })
      .option('zero-stage', { type: 'number', choices: [0, 1, 2], describe: 'pin the ZeRO stage (default: try 0, 1, 2)' })
      .option('tflops', { type: 'number', default: 50, describe: 'sustained training TFLOP/s per GPU at large micro-batches (model FLOPs)' })
      .option('half-saturation-tokens', { type: 'number', default: 2048, describe: 'tokens per micro-batch at which a GPU reaches half of --tflops' })
      .option('host-gbps', { type: 'number', default: 10, describe: 'GPU<->host copy bandwidth per rank, GB/s' })
      .option('transport', { type: 'string', default: 'shm', choices: ['shm', 'tcp', 'hierarchical'], describe: 'how gradients move between ranks' })
      .option('allreduce-gbps', { type: 'number', describe: 'all-reduce bus bandwidth per byte on the wire, GB/s (default: the measured float32 figure of the transport, see docs/distributed.md)' })
      .option('bench', { type: 'string', describe: 'take the bus bandwidth from this all-reduce bench report (node dist/distributed/bench.js > bench.json)' })
      .option('exchange', { type: 'string', default: 'fp32', choices: ['fp32', 'bf16', 'fp16'], describe: 'gradient exchange dtype (JANUS4O_GRAD_EXCHANGE)' })
      .option('usable-fraction', { type: 'number', default: 0.9, describe: 'fraction of the card a setting may use (the rest: CUDA context, workspace, fragmentation)' })
      .option('json', { type: 'boolean', default: false, describe: 'print one JSON object instead of a table' }),
  handler: (a) => {
    const transport = a.transport as PlanTransport;
    const exchangeName = a.exchange === 'fp32' ? 'float32' : a.exchange === 'bf16' ? 'bfloat16' : 'float16';
    let allreduceGBps = a['allreduce-gbps'];
    let allreduceSource = 'stated (--allreduce-gbps)';
    if (allreduceGBps === undefined && a.bench !== undefined) {
      const m = measuredBusGBps(a.bench, transport, exchangeName, a.nproc);
      allreduceGBps = m.gbps;
      allreduceSource = m.source;
    }
    if (allreduceGBps === undefined) {
      allreduceGBps = DEFAULT_BUS_GBPS[transport];
      allreduceSource = 'measured on the 2-vCPU development VM, N=8, 256 MiB (docs/distributed.md)';
    }
    // Only a stated bandwidth is per byte on the wire, so a 16-bit exchange halves the gradient bytes against it. A
    // measured figure is float32-equivalent already: a bench row of a 16-bit exchange includes its conversions (on
    // the VM's shared memory they cost what the halved copies save), and the default is a float32 measurement.
    const stated = a['allreduce-gbps'] !== undefined;
    const throughput: Throughput = {
      tflops: a.tflops, halfSaturationTokens: a['half-saturation-tokens'], hostGBps: a['host-gbps'], allreduceGBps, transport,
      allreduceSource: a.exchange !== 'fp32' && !stated ? `${allreduceSource}; ${a.exchange} counted at that float32-equivalent rate` : allreduceSource,
      exchangeBytes: a.exchange !== 'fp32' && stated ? 2 : 4,
    };
    if (!(a['usable-fraction'] > 0 && a['usable-fraction'] <= 1)) throw new UserError(`--usable-fraction must be in (0, 1], got ${a['usable-fraction']}`);
    let plan;
    try {
      plan = trainingPlan(
        presetConfig(a.preset),
        { nproc: a.nproc, globalBatch: a['global-batch'], seqLen: a['seq-len'], gpuMemoryGiB: a['gpu-memory'], usableFraction: a['usable-fraction'] },
        throughput,
        (cfg, row) => referenceStepFlops(cfg, { batch: 1, ...row }).training,
        { microBatch: a['micro-batch'], activationCheckpointing: a['activation-checkpointing'], zeroStage: a['zero-stage'] as ZeroStage | undefined },
      );
    } catch (e) {
      throw new UserError((e as Error).message);
    }
    if (!a.json) {
      process.stdout.write(`${formatTrainingPlan(plan)}\n`);
      return;
    }
    const head = plan.recommended ?? [...plan.settings].sort((x, y) => x.perRankGiB - y.perRankGiB)[0];
    process.stdout.write(`${JSON.stringify({ ...summary(head), preset: plan.preset, parameters: plan.parameters, trainableParameters: plan.trainableParameters, job: plan.job, throughput: plan.throughput, flopsPerSample: plan.flopsPerSample, recommended: plan.recommended, settings: plan.settings }, null, 2)}\n`);
  },
};
