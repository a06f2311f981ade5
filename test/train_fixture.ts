/** A small in-memory training setup for trainer tests: random token samples, a word tokenizer, a micro model. */
import * as tf from '@tensorflow/tfjs-core';
import { TokenSample } from '../src/data/batch';
import { promptIds } from '../src/data/prompt_ids';
import { JanusConfig, imageTokenCount, presetConfig } from '../src/model/config';
import { Janus4o } from '../src/model/janus';
import { WordTokenizer } from '../src/tokenizer/word';
import { TrainConfig, parseTrainConfig } from '../src/train/config';
import { TrainingSet } from '../src/train/trainer';
import { intRng } from './helpers';

export const WORDS = ['a', 'red', 'blue', 'circle', 'square', 'left', 'of', 'make', 'the', 'green'];

export function fixtureConfig(): JanusConfig {
  return presetConfig('tiny', {
    name: 'trainer-micro',
    imageSize: 32,
    llm: { hiddenSize: 32, numLayers: 2, numHeads: 2, numKvHeads: 2, intermediateSize: 64, vocabSize: 32, maxPositionEmbeddings: 128 },
    vq: { codebookSize: 40, baseChannels: 8, chMult: [1, 1, 1, 2], zChannels: 8, normGroups: 4, numAttnBlocks: 0 },
    siglip: { width: 16, depth: 1, numHeads: 2, mlpDim: 32 },
  });
}

export function fixtureData(size: number, seed = 'data'): { data: TrainingSet; tok: WordTokenizer } {
  const tok = WordTokenizer.build(WORDS);
  const cfg = fixtureConfig();
  const n = imageTokenCount(cfg);
  const rnd = intRng(seed);
  const samples: TokenSample[] = Array.from({ length: size }, (_, i) => {
    const prompt = Array.from({ length: 3 + rnd(4) }, () => WORDS[rnd(WORDS.length)]).join(' ');
    // Learnable targets: a pattern set by the prompt's first word, so a few steps can fit them.
    const w = WORDS.indexOf(prompt.split(' ')[0]);
    const target = Array.from({ length: n }, (_, k) => (w * 7 + (k % 4)) % cfg.vq.codebookSize);
    return i % 3 === 2 ? { task: 'edit', prompt, target, source: Array.from({ length: n }, () => rnd(cfg.vq.codebookSize)) } : { task: 't2i', prompt, target };
  });
  const data: TrainingSet = {
    size,
    sample: (i) => samples[i],
    sourceImage: async (i) => tf.tidy(() => tf.sub(tf.mul(tf.randomUniform([cfg.imageSize, cfg.imageSize, 3], 0, 1, 'float32', i + 1), 2), 1) as tf.Tensor3D),
  };
  return { data, tok };
}

export function fixtureTrainConfig(dir: string, train: Record<string, unknown> = {}, backend: 'cpu' | 'wasm' = 'cpu'): TrainConfig {
  return parseTrainConfig(
    {
      model: { preset: 'tiny' },
      data: { kind: 'shapeworld', root: dir },
      train: { lr: 1e-2, max_steps: 4, micro_batch: 2, grad_accum: 2, seed: 7, warmup_ratio: 0.25, ...train },
      checkpoint: { dir, every_steps: 1, keep: 3 },
      backend,
    },
    'test fixture',
  );
}

export function fixtureModel(seed = 1): Janus4o {
  return Janus4o.create(fixtureConfig(), { seed });
}

export function fixtureTemplates(tok: WordTokenizer) {
  return promptIds(tok);
}
