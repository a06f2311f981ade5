/** `janus4o bench`: the speed figures of docs/performance.md as one JSON object (a table with --pretty). */
import type { CommandModule } from 'yargs';
import { formatReport } from '../bench/format';
import { runBench } from '../bench/run';

interface BenchArgs {
  pretty: boolean;
  'compare-torch': boolean;
  quick: boolean;
  allreduce: boolean;
  'wasm-threads': number;
}

export const benchCommand: CommandModule<object, BenchArgs> = {
  command: 'bench',
  describe: 'Measure training, generation, VQ and data-preparation speed on the wasm backend (JSON on stdout)',
  builder: (y) =>
    y
      .option('pretty', { type: 'boolean', default: false, describe: 'print a table instead of JSON' })
      .option('compare-torch', { type: 'boolean', default: false, describe: 'also run ../shared/bench/torch_ref_bench.py (PyTorch eager, 1 and 2 threads)' })
      .option('quick', { type: 'boolean', default: false, describe: 'shrink every section (a schema check; figures are not comparable)' })
      .option('allreduce', { type: 'boolean', default: true, describe: 'run the all-reduce bench: TCP ring, shared memory and hierarchical, N = 2, 4, 8, 16-256 MiB, next to memcpy (--no-allreduce skips it)' })
      .option('wasm-threads', { type: 'number', default: 1, describe: 'XNNPACK threads (2+ uses the threaded wasm build through a shim; see docs/performance.md)' }),
  handler: async (a) => {
    const report = await runBench({
      quick: a.quick,
      compareTorch: a['compare-torch'],
      allreduce: a.allreduce,
      wasmThreads: a['wasm-threads'],
      log: (line) => process.stderr.write(`bench: ${line}\n`),
    });
    process.stdout.write(a.pretty ? `${formatReport(report)}\n` : `${JSON.stringify(report)}\n`);
    if (report.cpuFallbackOps.length > 0) {
      process.stderr.write(`bench: FAILED: ops fell back to the cpu backend: ${report.cpuFallbackOps.join(', ')}\n`);
      process.exitCode = 1;
    }
    // Pthread workers of the threaded wasm build (--wasm-threads) would otherwise hold the process open.
    if (a['wasm-threads'] > 1) process.exit();
  },
};
