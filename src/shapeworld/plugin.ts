/**
 * ShapeWorld as a dataset plugin of the training pipeline (train/dataset.ts): it synthesises data.root when it is
 * missing, gives preset models its closed-vocabulary word tokenizer, recommends its own sampling settings, and
 * measures the starting and the trained model (ShapeEval, samples, edits, copying) for report.html.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { UserError } from '../errors';
import { WordTokenizer } from '../tokenizer/word';
import type { DatasetPlugin, ModelContext, RunContext, RunOutcome } from '../train/dataset';
import { ReportSettings, resolveShapeWorldConfig, shapeWorldSettings } from './config';
import { SHAPEWORLD_VOCAB } from './captions';
import { MAX_OBJECTS } from './edits';
import { BASE_DIR, Showcase, loadShowcase, saveShowcase, showcase, showcaseKey, writeRunReport } from './run_report';
import { datasetSceneKeys } from './shapeeval_run';
import { synthesize } from './synth';

function formatShowcase(s: Showcase): string {
  const pct = (x: number | null) => (x === null ? 'n/a' : `${(x * 100).toFixed(1)}%`);
  return `ShapeEval T2I overall ${pct(s.summary.t2i.overall)}${s.summary.edit ? `, edit overall ${pct(s.summary.edit.overall)}` : ''} (${s.summary.seconds.toFixed(0)} s)`;
}

/**
 * The command the user typed: a data-parallel worker was started by the launcher with `--nproc 1` appended, so the
 * reproduce line puts the job's worker count back.
 */
function userCommand(): string {
  const args = process.argv.slice(2);
  const world = Number(process.env.WORLD_SIZE ?? '1');
  const i = args.lastIndexOf('--nproc');
  if (world > 1 && i >= 0 && args[i + 1] === '1') args.splice(i, 2, '--nproc', String(world));
  return ['janus4o', ...args].join(' ');
}

/** The word tokenizer of ShapeWorld's vocabulary, written beside the data on first use. */
function ensureTokenizer(root: string): string {
  const file = path.join(root, 'tokenizer.json');
  if (!fs.existsSync(file)) fs.writeFileSync(file, WordTokenizer.build(SHAPEWORLD_VOCAB).toJSON());
  return root;
}

/** The report's state across the run: the starting model's showcase, measured before training. */
class ShapeWorldReport {
  private base: Showcase | null = null;
  private exclude = new Set<string>();

  constructor(private readonly settings: ReportSettings) {}

  async before(ctx: ModelContext): Promise<void> {
    const { cfg, log } = ctx;
    this.exclude = await datasetSceneKeys(path.resolve(cfg.data.root));
    const baseDir = path.join(cfg.checkpoint.dir, BASE_DIR);
    const key = showcaseKey(cfg, this.settings);
    // A new run measures its own starting model; a resumed one can only reuse what its first part stored.
    if (!ctx.resumed) {
      log('report: measuring the starting model (ShapeEval, samples, edits)');
      this.base = await showcase(ctx.model, ctx.templates, ctx.tokenizer.vocabSize, this.settings, this.exclude, log);
      await saveShowcase(baseDir, this.base, key);
      log(`report: starting model ${formatShowcase(this.base)}`);
      return;
    }
    const stored = loadShowcase(baseDir, key);
    if (stored === 'missing') log(`report: ${baseDir} is missing (the run was started without report.enabled); the report will have no base column`);
    else if (stored === 'stale') log(`report: ${baseDir} was measured with another starting model or other report settings than this config's; the report will have no base column`);
    else this.base = stored;
  }

  async after(ctx: ModelContext, run: RunOutcome): Promise<void> {
    if (run.stopped) return;
    const { cfg, log } = ctx;
    log('report: measuring the trained model');
    const tuned = await showcase(ctx.model, ctx.templates, ctx.tokenizer.vocabSize, this.settings, this.exclude, log);
    log(`report: trained model ${formatShowcase(tuned)}`);
    const written = await writeRunReport(cfg, this.settings, this.base, tuned, {
      backend: tf.getBackend(),
      steps: run.steps,
      wallSeconds: run.wallSeconds,
      command: userCommand(),
      checkpoint: run.checkpoint,
      heldoutBefore: run.heldoutBefore,
      heldoutAfter: run.heldoutAfter,
      heldoutNote: run.heldoutNote,
      conditionUseBefore: run.conditionUseBefore,
      conditionUseAfter: run.conditionUseAfter,
    });
    log(`report: ${path.resolve(written.html)}`);
  }
}

/** A fresh plugin per run: it keeps the starting model's measurements between its hooks. */
export function shapeWorldDataset(): DatasetPlugin {
  let report: ShapeWorldReport | null = null;
  return {
    kind: 'shapeworld',
    resolveConfig: resolveShapeWorldConfig,
    checkPaths(cfg, source) {
      const root = path.resolve(cfg.data.root);
      const s = shapeWorldSettings(cfg, source);
      if (fs.existsSync(root) || s.synthesizeIfMissing) return;
      const x = s.synth;
      const extra = `${x.caption_noise ? ` --caption-noise ${x.caption_noise}` : ''}${x.max_objects !== MAX_OBJECTS ? ` --max-objects ${x.max_objects}` : ''}${x.captions !== 'rich' ? ` --captions ${x.captions}` : ''}`;
      throw new UserError(
        `data.root in ${source} points at ${root}, which does not exist and data.synthesize_if_missing is false. ` +
          `Create it with \`janus4o synth --t2i ${x.t2i} --edit ${x.edit} --size ${x.size} --seed ${x.seed}${extra} --out ${cfg.data.root}\`.`,
      );
    },
    async prepare(ctx: RunContext) {
      const root = path.resolve(ctx.cfg.data.root);
      if (!fs.existsSync(path.join(root, 'text_to_image.json'))) {
        const s = shapeWorldSettings(ctx.cfg, ctx.source).synth;
        ctx.log(`data: synthesising ShapeWorld into ${root} (${s.t2i} T2I + ${s.edit} edits, ${s.size} px, seed ${s.seed})`);
        await synthesize({ out: root, t2i: s.t2i, edit: s.edit, size: s.size, seed: s.seed, captionNoise: s.caption_noise, maxObjects: s.max_objects, captions: s.captions });
      }
      // Written here, on rank 0 before the data barrier, so every rank can read it.
      if (!ctx.cfg.model.pretrained && !ctx.cfg.model.tokenizer) ensureTokenizer(root);
    },
    presetTokenizerDir: (ctx) => path.resolve(ctx.cfg.data.root),
    generationDefaults(cfg) {
      const se = shapeWorldSettings(cfg, 'the config').report.shapeeval;
      return { cfg_weight: se.cfg, cfg_weight2: se.cfg2, temperature: se.temperature, edit_temperature: se.edit_temperature ?? se.temperature };
    },
    async beforeTraining(ctx) {
      const settings = shapeWorldSettings(ctx.cfg, ctx.source).report;
      if (!settings.enabled) return;
      report = new ShapeWorldReport(settings);
      await report.before(ctx);
    },
    async afterTraining(ctx, outcome) {
      await report?.after(ctx, outcome);
    },
  };
}
