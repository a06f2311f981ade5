/** Public API of janus4o-tf. Re-exports only. */
export { initBackend, currentBackend, BACKEND_NAMES } from './backend';
export type { BackendName, BackendChoice } from './backend';
export { PRESETS, LLAMA_DEFAULTS, presetConfig, validateConfig, imageTokenCount, tokenGridSide, headDim, isPresetName } from './model/config';
export type { JanusConfig, LlamaConfig, VQConfig, SiglipConfig, PresetName } from './model/config';
export { Janus4o, imageTokenLoss } from './model/janus';
export type { ForwardOptions, ForwardOutput, CreateOptions } from './model/janus';
export type { SequenceInput } from './model/sequence';
export { KVCache } from './model/kv_cache';
export { ParamStore, checkpointShape } from './model/params';
export type { ParamSpec, ParamLayout } from './model/params';
export { memoryPlan, formatPlan } from './model/plan';
export type { MemoryPlan, PlanOptions } from './model/plan';
