/** The AdamW state as checkpoints store it: one shard per ZeRO rank, its metadata and its moment tensors. */

/** Metadata of one optimizer shard, stored next to its tensors in a checkpoint. */
export interface OptimizerShardMeta {
  format: 'janus4o-adamw';
  version: 1;
  rank: number;
  worldSize: number;
  total: number;
  start: number;
  end: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  noDecay: string[];
  /** One entry per owned segment; `step` 0 means never updated (no tensors stored). */
  segments: { name: string; paramSize: number; offset: number; length: number; step: number }[];
}

export interface ExportedOptimizerState {
  meta: OptimizerShardMeta;
  /** `${name}.exp_avg` and `${name}.exp_avg_sq` for every segment with step > 0, each of segment length. */
  tensors: Map<string, Float32Array>;
}

/** A shard to import from: its metadata and a reader for its tensors (lazy, so big shards stream). */
export interface OptimizerStateSource {
  meta: OptimizerShardMeta;
  read(key: string): Promise<Float32Array>;
}

export function inMemorySource(s: ExportedOptimizerState): OptimizerStateSource {
  return {
    meta: s.meta,
    read: async (key) => {
      const t = s.tensors.get(key);
      if (!t) throw new Error(`optimizer state: tensor "${key}" missing from shard ${s.meta.rank} of ${s.meta.worldSize}`);
      return t;
    },
  };
}
