/**
 * Training checkpoints (design.md, "Checkpoint directory"):
 *
 *   <root>/step-000123/  model.safetensors   weights under the original Janus names, checkpoint layout
 *                        config.json         model config (Janus config.json shape)
 *                        train_config.json   the resolved training config
 *                        trainer_state.json  step, epoch, sampler cursor, RNG states, schedule, config hash
 *                        optimizer/rank-00000-of-00001.safetensors   AdamW moments, one file per ZeRO shard
 *                        tokenizer files     copied verbatim
 *                        checkpoint.json     manifest: sizes of every file above, step, commit sequence
 *   <root>/latest        the name of the newest complete checkpoint
 *
 * Crash safety: everything is written into `<root>/.tmp-step-000123/`, every file and directory fsynced, the
 * manifest written last, then the directory renamed into place and the root fsynced; only then is `latest`
 * replaced (temp file + rename + fsync). A SIGKILL at any moment therefore leaves `latest` naming a complete
 * checkpoint; leftovers are dot-names that `cleanStaleCheckpointFiles` removes on the next start (it also
 * publishes a checkpoint whose save was killed between its rename and the `latest` update). Old checkpoints are
 * pruned by renaming them to a dot-name before deleting, so a half-deleted one is never visible.
 *
 * With ZeRO (several ranks): rank 0 calls prepareCheckpoint, every rank writeOptimizerShard, rank 0
 * writeCheckpointFiles; after a barrier rank 0 calls commitCheckpoint. saveCheckpoint does all of it in one
 * process.
 */
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { toCheckpointLayout, toStoreLayout as fromCheckpointLayout } from './pretrained';
import { checkpointShape, numel, ParamStore } from '../model/params';
import { atomicWriteFile, copyFileDurable, fsyncDir, makeDir, openTensorFile, removeTreeAtomically, renameDurable, TensorFileReader, TensorWriteSource, writeFileDurable, writeTensorFile } from './atomic';
import type { ExportedOptimizerState, OptimizerShardMeta, OptimizerStateSource } from './optimizer_state';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** trainer_state.json. The sampler and RNG states are opaque to the checkpoint code. */
export interface TrainerState {
  /** Optimizer steps completed. */
  step: number;
  epoch: number;
  sampler: JsonValue;
  rng: JsonValue;
  /** ScheduleState of schedule.ts (kept as JSON here so the file format does not depend on it). */
  schedule: JsonValue;
  config_hash: string;
  /** Anything else the trainer wants back on resume (loss history, skip counters). */
  extra?: JsonValue;
}

export interface CheckpointContent {
  step: number;
  /** Weights in checkpoint layout under checkpoint names. */
  weights: TensorWriteSource;
  modelConfig: JsonValue;
  trainConfig: JsonValue;
  trainerState: TrainerState;
  /** Files copied by basename: the starting folder's side files (tokenizer.json, tokenizer_config.json, ...). */
  tokenizerFiles?: readonly string[];
  /** Written as generation_config.json (the recommended sampling settings), in place of a copied one. */
  generationConfig?: JsonValue | null;
}

export interface CheckpointManifest {
  format: 'janus4o-checkpoint';
  version: 1;
  step: number;
  /** Commit order within the root: keep-K and `latest` follow it, not the step number (resumes can rewind). */
  seq: number;
  created: string;
  worldSize: number;
  /** Relative path -> byte size, for every file of the checkpoint except the manifest. */
  files: Record<string, number>;
}

export const LATEST_FILE = 'latest';
export const MANIFEST_FILE = 'checkpoint.json';
export const WEIGHTS_FILE = 'model.safetensors';
export const OPTIMIZER_DIR = 'optimizer';
const REQUIRED = [WEIGHTS_FILE, 'config.json', 'train_config.json', 'trainer_state.json'];
export const TMP_PREFIX = '.tmp-step-';
export const GENERATION_CONFIG_FILE = 'generation_config.json';
const TRASH_PREFIX = '.trash-step-';
const NAME_RE = /^step-(\d+)(?:-(\d+))?$/;
const SHARD_RE = /^rank-(\d{5})-of-(\d{5})\.safetensors$/;
const OPTIMIZER_META_KEY = 'janus4o_optimizer';

export function checkpointName(step: number): string {
  return `step-${String(step).padStart(6, '0')}`;
}

export function optimizerShardFile(rank: number, worldSize: number): string {
  return `rank-${String(rank).padStart(5, '0')}-of-${String(worldSize).padStart(5, '0')}.safetensors`;
}

/**
 * Start-up recovery (rank 0, before any save): removes temp/trash leftovers of interrupted saves, and when a
 * save was killed after its rename but before `latest` was replaced, points `latest` at that complete
 * checkpoint. With `keep`, also prunes to the newest `keep` (a save killed before its prune leaves one extra).
 * Returns what it did, for the log.
 */
export async function cleanStaleCheckpointFiles(root: string, keep?: number): Promise<string[]> {
  const entries = await fs.promises.readdir(root).catch(() => [] as string[]);
  const stale = entries.filter((e) => e.startsWith(TMP_PREFIX) || e.startsWith(TRASH_PREFIX) || e.startsWith(`${LATEST_FILE}.tmp-`));
  for (const e of stale) await fs.promises.rm(path.join(root, e), { recursive: true, force: true });
  if (stale.length) await fsyncDir(root);
  const done = stale.map((e) => `removed ${e}`);
  const all = await listCheckpoints(root);
  const latest = await readLatestName(root);
  const newest = all[all.length - 1];
  const named = all.find((c) => c.name === latest);
  if (newest && (!named || named.seq < newest.seq)) {
    await atomicWriteFile(path.join(root, LATEST_FILE), `${newest.name}\n`);
    done.push(`${LATEST_FILE} -> ${newest.name}`);
  }
  if (keep !== undefined) for (const name of await pruneCheckpoints(root, keep)) done.push(`pruned ${name}`);
  return done;
}

/** Creates the temp directory of a save (removing an interrupted one of the same step). Rank 0 only. */
/** The temporary folder a checkpoint of `step` is written into before it is committed (every rank writes there). */
export function tempCheckpointDir(root: string, step: number): string {
  return path.join(root, `${TMP_PREFIX}${String(step).padStart(6, '0')}`);
}

export async function prepareCheckpoint(root: string, step: number): Promise<string> {
  await makeDir(root);
  const tmp = tempCheckpointDir(root, step);
  await fs.promises.rm(tmp, { recursive: true, force: true });
  await makeDir(path.join(tmp, OPTIMIZER_DIR));
  return tmp;
}

/** Writes this rank's optimizer shard into the temp directory. Every rank. */
export async function writeOptimizerShard(tmpDir: string, state: ExportedOptimizerState): Promise<void> {
  const { meta, tensors } = state;
  const entries = [...tensors].map(([name, data]) => ({ name, shape: [data.length] }));
  const file = path.join(tmpDir, OPTIMIZER_DIR, optimizerShardFile(meta.rank, meta.worldSize));
  await writeTensorFile(file, { entries, read: (name) => tensors.get(name) as Float32Array }, { [OPTIMIZER_META_KEY]: JSON.stringify(meta) });
}

function jsonText(v: JsonValue | TrainerState): string {
  return `${JSON.stringify(v, null, 2)}\n`;
}

/** Writes weights, configs, trainer state and tokenizer files into the temp directory. Rank 0 only. */
export async function writeCheckpointFiles(tmpDir: string, c: CheckpointContent): Promise<void> {
  await writeTensorFile(path.join(tmpDir, WEIGHTS_FILE), c.weights, { format: 'pt' });
  await writeFileDurable(path.join(tmpDir, 'config.json'), [jsonText(c.modelConfig)]);
  await writeFileDurable(path.join(tmpDir, 'train_config.json'), [jsonText(c.trainConfig)]);
  await writeFileDurable(path.join(tmpDir, 'trainer_state.json'), [jsonText({ ...c.trainerState, step: c.step })]);
  for (const f of c.tokenizerFiles ?? []) {
    const base = path.basename(f);
    if (base === GENERATION_CONFIG_FILE && c.generationConfig) continue;
    if (REQUIRED.includes(base) || base === MANIFEST_FILE) throw new Error(`checkpoint: tokenizer file ${f} would overwrite ${base}`);
    await copyFileDurable(f, path.join(tmpDir, base));
  }
  if (c.generationConfig) await writeFileDurable(path.join(tmpDir, GENERATION_CONFIG_FILE), [jsonText(c.generationConfig)]);
}

async function listFiles(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.promises.readdir(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(dir, r)));
    else if (e.isFile()) out.push(r);
  }
  return out;
}

export interface CheckpointInfo {
  name: string;
  dir: string;
  step: number;
  seq: number;
}

/** Complete checkpoints under root (directories with a readable manifest), oldest commit first. */
export async function listCheckpoints(root: string): Promise<CheckpointInfo[]> {
  const entries = await fs.promises.readdir(root, { withFileTypes: true }).catch(() => [] as fs.Dirent[]);
  const out: CheckpointInfo[] = [];
  for (const e of entries) {
    if (!e.isDirectory() || !NAME_RE.test(e.name)) continue;
    try {
      const m = JSON.parse(await fs.promises.readFile(path.join(root, e.name, MANIFEST_FILE), 'utf8')) as CheckpointManifest;
      if (m.format === 'janus4o-checkpoint' && Number.isInteger(m.seq)) out.push({ name: e.name, dir: path.join(root, e.name), step: m.step, seq: m.seq });
    } catch {
      // Not one of ours (or not readable): ignored, and never pruned.
    }
  }
  return out.sort((a, b) => a.seq - b.seq);
}

async function readLatestName(root: string): Promise<string | null> {
  try {
    const name = (await fs.promises.readFile(path.join(root, LATEST_FILE), 'utf8')).trim();
    return NAME_RE.test(name) ? name : null;
  } catch {
    return null;
  }
}

/**
 * Seals the temp directory into a checkpoint: checks it is complete, writes the manifest, renames it into place,
 * points `latest` at it and prunes to the newest `keep`. Rank 0 only, after every rank has written. Returns the
 * checkpoint directory.
 */
export async function commitCheckpoint(root: string, tmpDir: string, step: number, keep: number): Promise<string> {
  if (!Number.isInteger(keep) || keep < 1) throw new Error(`checkpoint: keep must be a positive integer, got ${keep}`);
  const files = await listFiles(tmpDir);
  for (const f of REQUIRED) if (!files.includes(f)) throw new Error(`checkpoint: ${path.join(tmpDir, f)} was not written`);
  const shards = files.filter((f) => f.startsWith(`${OPTIMIZER_DIR}/`)).map((f) => SHARD_RE.exec(f.slice(OPTIMIZER_DIR.length + 1)));
  const worldSize = shards.length ? Number(shards[0]?.[2]) : 0;
  const ranks = new Set(shards.map((m) => (m && Number(m[2]) === worldSize ? Number(m[1]) : -1)));
  if (!shards.length || ranks.size !== worldSize || [...ranks].some((r) => r < 0 || r >= worldSize)) {
    throw new Error(`checkpoint: ${path.join(tmpDir, OPTIMIZER_DIR)} does not hold exactly one shard per rank (found ${files.filter((f) => f.startsWith(OPTIMIZER_DIR)).join(', ') || 'none'})`);
  }
  const sizes: Record<string, number> = {};
  for (const f of files) sizes[f] = (await fs.promises.stat(path.join(tmpDir, f))).size;
  const existing = await listCheckpoints(root);
  const manifest: CheckpointManifest = {
    format: 'janus4o-checkpoint',
    version: 1,
    step,
    seq: existing.reduce((m, c) => Math.max(m, c.seq), 0) + 1,
    created: new Date().toISOString(),
    worldSize,
    files: sizes,
  };
  await writeFileDurable(path.join(tmpDir, MANIFEST_FILE), [jsonText(manifest as unknown as JsonValue)]);
  await fsyncDir(path.join(tmpDir, OPTIMIZER_DIR));
  await fsyncDir(tmpDir);
  // A rewound run can reach a step it has saved before: keep both, the newer under a suffixed name.
  let name = checkpointName(step);
  for (let i = 2; fs.existsSync(path.join(root, name)); i++) name = `${checkpointName(step)}-${i}`;
  const dir = path.join(root, name);
  await renameDurable(tmpDir, dir);
  await atomicWriteFile(path.join(root, LATEST_FILE), `${name}\n`);
  await pruneCheckpoints(root, keep);
  return dir;
}

/** Deletes all but the newest `keep` complete checkpoints (by commit order), never the one `latest` names. */
export async function pruneCheckpoints(root: string, keep: number): Promise<string[]> {
  const all = await listCheckpoints(root);
  const latest = await readLatestName(root);
  const doomed = all.slice(0, Math.max(0, all.length - keep)).filter((c) => c.name !== latest);
  for (const c of doomed) await removeTreeAtomically(c.dir, `${TRASH_PREFIX}${c.name.slice('step-'.length)}`);
  return doomed.map((c) => c.name);
}

/**
 * One-process save: everything of prepare/write/commit. Returns the checkpoint directory. A save that fails for lack
 * of space or permission removes its temp folder (giving back the space it took) and throws checkpointWriteError's
 * UserError; the checkpoints already committed are untouched.
 */
export async function saveCheckpoint(root: string, content: CheckpointContent, optimizerShards: readonly ExportedOptimizerState[], keep: number): Promise<string> {
  try {
    const tmp = await prepareCheckpoint(root, content.step);
    for (const s of optimizerShards) await writeOptimizerShard(tmp, s);
    await writeCheckpointFiles(tmp, content);
    return await commitCheckpoint(root, tmp, content.step, keep);
  } catch (e) {
    const err = await checkpointWriteError(e, root, `the checkpoint of step ${content.step}`);
    if (err !== e) await fs.promises.rm(tempCheckpointDir(root, content.step), { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
}

/** What each storage error means to the user, by errno code. */
const STORAGE_ERRORS: Readonly<Record<string, { what: string; fix: (root: string) => string }>> = {
  ENOSPC: { what: 'the disk is full', fix: () => 'Free space on that disk' },
  EDQUOT: { what: 'the disk quota is used up', fix: () => 'Free space within your quota' },
  EROFS: { what: 'the file system is read-only', fix: (root) => `Make ${root} writable (or move the run folder to a writable disk)` },
  EACCES: { what: 'permission denied: the folder is not writable', fix: (root) => `Make ${root} writable (or move the run folder to a writable disk)` },
  EPERM: { what: 'the operation is not permitted', fix: (root) => `Make ${root} writable (or move the run folder to a writable disk)` },
};

/**
 * An error from writing into the checkpoint root `root` (`what`: e.g. "the checkpoint of step 12") turned into a
 * UserError when the disk is full or the folder is read-only: it says so, names the path, and names the newest
 * complete checkpoint, which a failed save leaves intact (see the crash-safety note above), and how to go on from
 * it. Any other error comes back unchanged.
 */
export async function checkpointWriteError(e: unknown, root: string, what: string): Promise<unknown> {
  const err = e as NodeJS.ErrnoException | null;
  const kind = typeof err?.code === 'string' && Object.hasOwn(STORAGE_ERRORS, err.code) ? STORAGE_ERRORS[err.code] : undefined;
  if (!kind || !err) return e;
  const abs = path.resolve(root);
  // The checkpoint a resume of this folder starts from (what `latest` names), with its step.
  const latest = await findLatestCheckpoint(abs).catch(() => null);
  const last = latest ? (await listCheckpoints(abs).catch(() => [] as CheckpointInfo[])).find((c) => c.dir === latest) : undefined;
  const where = what.includes(abs) ? '' : ` in ${abs}`;
  const at = err.path && path.resolve(err.path) !== abs && !what.includes(path.resolve(err.path)) ? ` (writing ${err.path})` : '';
  const good = last ? `The last good checkpoint is ${last.dir} (step ${last.step}); it is complete and unchanged.` : 'No checkpoint of this run had been completed yet.';
  const next = last ? `then continue from step ${last.step} with \`janus4o resume --checkpoint ${abs}\`` : 'then start the run again';
  return new UserError(`Cannot write ${what}${where}${at}: ${kind.what} (${err.code}). ${good} ${kind.fix(abs)}, ${next}.`);
}

/** The newest complete checkpoint under root (what `latest` names), or null when there is none. */
export async function findLatestCheckpoint(root: string, warn: (msg: string) => void = () => undefined): Promise<string | null> {
  const name = await readLatestName(root);
  if (name && fs.existsSync(path.join(root, name, MANIFEST_FILE))) return path.join(root, name);
  const all = await listCheckpoints(root);
  if (!all.length) return null;
  const last = all[all.length - 1];
  // Only reachable when someone removed or edited files by hand: say which checkpoint we use instead.
  warn(`${path.join(root, LATEST_FILE)} ${name ? `names ${name}, which is missing or incomplete` : 'is missing or unreadable'}; using ${last.name}, the newest complete checkpoint`);
  return last.dir;
}

/**
 * Turns `--checkpoint <dir|latest>` into a checkpoint directory: `latest` (needs root), a checkpoint root
 * (follows its `latest`), or a checkpoint directory itself.
 */
export async function resolveCheckpoint(target: string, root?: string, warn?: (msg: string) => void): Promise<string> {
  if (target === 'latest') {
    if (!root) throw new UserError('--checkpoint latest needs the checkpoint root (checkpoint.dir of the config); pass a directory instead.');
    const dir = await findLatestCheckpoint(root, warn);
    if (!dir) throw new UserError(`No complete checkpoint in ${root}: nothing to resume from.`);
    return dir;
  }
  const abs = path.resolve(target);
  if (fs.existsSync(path.join(abs, MANIFEST_FILE))) return abs;
  if (fs.existsSync(path.join(abs, LATEST_FILE)) || (await listCheckpoints(abs)).length) {
    const dir = await findLatestCheckpoint(abs, warn);
    if (dir) return dir;
  }
  if (!fs.existsSync(abs)) throw new UserError(`Checkpoint ${abs} does not exist.`);
  throw new UserError(`${abs} is neither a checkpoint (no ${MANIFEST_FILE}) nor a checkpoint root (no ${LATEST_FILE}, no step-* checkpoints).`);
}

/**
 * Every parameter of a store (that passes `filter`) as checkpoint-layout tensors. Reads are synchronous so the
 * writer streams one tensor at a time instead of buffering the whole model on the host.
 */
export function paramStoreWeights(store: ParamStore, filter: (name: string) => boolean = () => true): TensorWriteSource {
  const specs = store.list().filter((s) => filter(s.name));
  return {
    entries: specs.map((s) => ({ name: s.name, shape: checkpointShape(s) })),
    read: (name) => toCheckpointLayout(store.spec(name), store.get(name).dataSync() as Float32Array),
  };
}

/** Sets every parameter of the store from checkpoint weights; all missing or mis-shaped names in one error. */
export async function loadWeightsIntoStore(reader: TensorFileReader, store: ParamStore): Promise<void> {
  const problems: string[] = [];
  for (const spec of store.list()) {
    const e = reader.entries.get(spec.name);
    const want = checkpointShape(spec);
    if (!e) problems.push(`missing ${spec.name}`);
    else if (numel(e.shape) !== numel(want) || e.shape.some((d, i) => d !== want[i])) problems.push(`${spec.name} is [${e.shape}], expected [${want}]`);
  }
  if (problems.length) throw new UserError(`Checkpoint file ${reader.file} does not fit the model: ${problems.join('; ')}.`);
  for (const spec of store.list()) store.setValue(spec.name, fromCheckpointLayout(spec, await reader.read(spec.name)));
}

export interface LoadedCheckpoint {
  dir: string;
  manifest: CheckpointManifest;
  trainerState: TrainerState;
  trainConfig: JsonValue;
  modelConfig: JsonValue;
  /** Absolute paths of the copied tokenizer (and any other extra) files. */
  extraFiles: string[];
  /** Lazy reader of model.safetensors (headers already validated). */
  weights: TensorFileReader;
  /** Every optimizer shard, lazily read; pass all of them to AdamW.importState. */
  optimizer: OptimizerStateSource[];
}

function bad(file: string, why: string): UserError {
  return new UserError(`Checkpoint file ${file} ${why}.`);
}

async function readJson(file: string): Promise<JsonValue> {
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch {
    throw bad(file, 'is missing or unreadable');
  }
  try {
    return JSON.parse(text) as JsonValue;
  } catch (e) {
    throw bad(file, `is not valid JSON (${(e as Error).message})`);
  }
}

/** Opens and validates a checkpoint directory. Errors name the offending file. */
export async function loadCheckpoint(dir: string): Promise<LoadedCheckpoint> {
  const manifestPath = path.join(dir, MANIFEST_FILE);
  const manifest = (await readJson(manifestPath)) as unknown as CheckpointManifest;
  if (manifest?.format !== 'janus4o-checkpoint' || manifest.version !== 1 || typeof manifest.files !== 'object' || manifest.files === null) {
    throw bad(manifestPath, 'is not a janus4o checkpoint manifest (format janus4o-checkpoint, version 1)');
  }
  for (const f of REQUIRED) if (!(f in manifest.files)) throw bad(path.join(dir, f), 'is not listed in the manifest');
  for (const [rel, size] of Object.entries(manifest.files)) {
    const file = path.join(dir, rel);
    const st = await fs.promises.stat(file).catch(() => null);
    if (!st) throw bad(file, 'is missing');
    if (st.size !== size) throw bad(file, `has ${st.size} bytes, the manifest says ${size} (truncated or modified)`);
  }
  const statePath = path.join(dir, 'trainer_state.json');
  const trainerState = (await readJson(statePath)) as unknown as TrainerState;
  if (typeof trainerState !== 'object' || trainerState === null) throw bad(statePath, 'does not hold an object');
  for (const k of ['step', 'epoch'] as const) {
    if (!Number.isInteger(trainerState[k]) || trainerState[k] < 0) throw bad(statePath, `has no valid "${k}" (a non-negative integer)`);
  }
  if (typeof trainerState.config_hash !== 'string') throw bad(statePath, 'has no "config_hash" string');
  if (trainerState.step !== manifest.step) throw bad(statePath, `says step ${trainerState.step}, the manifest says ${manifest.step}`);
  const weightsPath = path.join(dir, WEIGHTS_FILE);
  const weights = await openTensorFile(weightsPath).catch((e: Error) => {
    throw bad(weightsPath, `cannot be read: ${e.message}`);
  });
  const optimizer: OptimizerStateSource[] = [];
  for (let r = 0; r < manifest.worldSize; r++) {
    const file = path.join(dir, OPTIMIZER_DIR, optimizerShardFile(r, manifest.worldSize));
    if (!(`${OPTIMIZER_DIR}/${optimizerShardFile(r, manifest.worldSize)}` in manifest.files)) throw bad(file, 'is not listed in the manifest');
    const reader = await openTensorFile(file).catch((e: Error) => {
      throw bad(file, `cannot be read: ${e.message}`);
    });
    let meta: OptimizerShardMeta;
    try {
      meta = JSON.parse(reader.metadata[OPTIMIZER_META_KEY] ?? 'null') as OptimizerShardMeta;
    } catch {
      throw bad(file, `has unreadable "${OPTIMIZER_META_KEY}" metadata`);
    }
    if (meta?.format !== 'janus4o-adamw' || meta.rank !== r || meta.worldSize !== manifest.worldSize) {
      throw bad(file, `does not hold AdamW state for rank ${r} of ${manifest.worldSize}`);
    }
    for (const s of meta.segments) {
      if (s.step > 0 && !(reader.has(`${s.name}.exp_avg`) && reader.has(`${s.name}.exp_avg_sq`))) throw bad(file, `lacks the moments of "${s.name}"`);
    }
    optimizer.push({ meta, read: (key) => reader.read(key) });
  }
  const known = new Set([...REQUIRED, MANIFEST_FILE]);
  const extraFiles = Object.keys(manifest.files)
    .filter((f) => !known.has(f) && !f.startsWith(`${OPTIMIZER_DIR}/`))
    .map((f) => path.join(dir, f));
  return {
    dir,
    manifest,
    trainerState,
    trainConfig: await readJson(path.join(dir, 'train_config.json')),
    modelConfig: await readJson(path.join(dir, 'config.json')),
    extraFiles,
    weights,
    optimizer,
  };
}
