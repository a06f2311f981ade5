/**
 * Resume policy: which config changes a resume may make. The saved config is compared with the current one key by
 * key; a change that alters what is computed is refused unless the user names it (--allow-change).
 */
import { UserError } from '../errors';
import { canonicalJson, dropRetiredKeys, globMatch, show, TrainConfig, TrainConfigSchema } from './config';


export interface ConfigDifference {
  key: string;
  saved: unknown;
  current: unknown;
}

function leaves(v: unknown, prefix: string, out: Map<string, string>): void {
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) leaves(x, prefix ? `${prefix}.${k}` : k, out);
  } else if (v !== undefined) out.set(prefix, canonicalJson(v));
}

/** Leaf keys (dotted) whose values differ; arrays compare as whole values. */
export function diffConfigs(saved: unknown, current: unknown): ConfigDifference[] {
  const a = new Map<string, string>();
  const b = new Map<string, string>();
  leaves(saved, '', a);
  leaves(current, '', b);
  const keys = [...new Set([...a.keys(), ...b.keys()])].sort();
  return keys
    .filter((k) => a.get(k) !== b.get(k))
    .map((k) => ({ key: k, saved: a.has(k) ? JSON.parse(a.get(k) as string) : undefined, current: b.has(k) ? JSON.parse(b.get(k) as string) : undefined }));
}

/** Keys that may change between a checkpoint and its resume without changing what is computed. */
export const RESUME_SAFE_KEYS: readonly string[] = ['checkpoint.*', 'backend', 'train.log_every', 'train.nan_guard_max_skips', 'train.activation_checkpointing', 'data.max_bad_fraction'];

/**
 * Refuses a resume whose config differs from the saved one in a key that changes training, unless the key (or
 * a glob over it) is in `allow`. Returns every difference, allowed ones included, for the log.
 */
export function checkResumeConfig(saved: unknown, current: TrainConfig, allow: readonly string[], checkpointDir: string): ConfigDifference[] {
  // A key added to the schema after the checkpoint was written is absent from it; its default is what that run used.
  // A key retired since is dropped when it holds the value that now always runs (any other value shows as a change).
  const { raw } = dropRetiredKeys(saved);
  const filled = TrainConfigSchema.safeParse(raw);
  const diffs = diffConfigs(filled.success ? filled.data : raw, current);
  const ok = [...RESUME_SAFE_KEYS, ...allow];
  const blocking = diffs.filter((d) => !ok.some((p) => globMatch(d.key, p)));
  if (blocking.length) {
    const list = blocking.map((d) => `${d.key} (checkpoint: ${show(d.saved)}, now: ${show(d.current)})`).join(', ');
    throw new UserError(
      `The training config differs from the one ${checkpointDir} was written with: ${list}. Resume with the same config, ` +
        `or allow deliberate changes by naming the keys (--allow-change ${blocking.map((d) => d.key).join(' ')}).`,
    );
  }
  return diffs;
}

