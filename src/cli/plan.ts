/** `janus4o plan`: parameter count and memory estimate of a preset, without allocating it. */
import type { CommandModule } from 'yargs';
import { PRESETS, presetConfig } from '../model/config';
import { formatPlan, memoryPlan } from '../model/plan';

interface PlanArgs {
  preset: string;
  'micro-batch': number;
  'seq-len': number;
  nproc: number;
  'activation-checkpointing': boolean;
  json: boolean;
}

export const planCommand: CommandModule<object, PlanArgs> = {
  command: 'plan',
  describe: 'Print parameter count and per-rank memory (weights, grads, AdamW, activations) for a preset',
  builder: (y) =>
    y
      .option('preset', { type: 'string', default: 'janus-pro-7b', choices: Object.keys(PRESETS), describe: 'model preset' })
      .option('micro-batch', { type: 'number', default: 1, describe: 'rows per micro-batch' })
      .option('seq-len', { type: 'number', default: 1756, describe: 'positions per row (TI2I ~1.75K at 384 px)' })
      .option('nproc', { type: 'number', default: 8, describe: 'data-parallel ranks' })
      .option('activation-checkpointing', { type: 'boolean', default: false })
      .option('json', { type: 'boolean', default: false, describe: 'print JSON instead of a table' }),
  handler: (a) => {
    const plan = memoryPlan(presetConfig(a.preset), {
      microBatch: a['micro-batch'],
      seqLen: a['seq-len'],
      nproc: a.nproc,
      activationCheckpointing: a['activation-checkpointing'],
    });
    process.stdout.write(a.json ? `${JSON.stringify(plan, null, 2)}\n` : `${formatPlan(plan)}\n`);
  },
};
